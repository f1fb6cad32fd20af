"""Benchmark: merging shard statistics, and recomputing them from the arrays.

1. 1,000 shard statistics files (3 speakers each, streams of 461, 45, 42 and 256
   columns, as prepare writes them) loaded and merged, against the obvious alternative
   of re-reading the features: computed on the same number of rows from scratch.
2. The recompute path (chunked float64 moments) in MB/s of float32 feature data on one
   core, against ``numpy`` mean and var of a float64 copy. Not run in CI.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from featprep.stats import array_moments, chunk_moments, load_statistics, merge_all, save_statistics

DIMS = {"ling": 461, "ling_num": 45, "acoustic": 42, "pase": 256}


def main() -> None:
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="featprep-bench-"))
    for i in range(1000):
        stats = {
            stream: {f"p{(i + k) % 100:03d}": chunk_moments(rng.standard_normal((50, dim))) for k in range(3)}
            for stream, dim in DIMS.items()
        }
        save_statistics(work / f"{i:04d}.npz", stats)
    start = time.perf_counter()
    parts = [load_statistics(p) for p in sorted(work.glob("*.npz"))]
    loaded = time.perf_counter()
    merged = merge_all(parts)
    done = time.perf_counter()
    print(
        f"1000 shard statistics: load {loaded - start:.3f} s + merge {done - loaded:.3f} s "
        f"= {done - start:.3f} s ({len(merged['ling'])} speakers, {sum(DIMS.values())} columns)"
    )

    x = rng.standard_normal((200_000, 461)).astype(np.float32) + 1000.0
    mb = x.nbytes / 1e6
    start = time.perf_counter()
    ours = array_moments(x)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    y = x.astype(np.float64)
    mean, var = y.mean(axis=0), y.var(axis=0)
    t_numpy = time.perf_counter() - start
    assert np.allclose(ours.mean, mean) and np.allclose(ours.variance, var, rtol=1e-8)
    print(
        f"recompute: {mb / t_ours:.0f} MB/s per core (chunked moments) vs {mb / t_numpy:.0f} MB/s"
        f" (numpy on a float64 copy), ratio {t_numpy / t_ours:.2f}"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

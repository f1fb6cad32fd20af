"""Benchmark: ``featprep prepare`` of the demo corpus with ``--backend loky`` against
``--backend dask`` (a `LocalCluster` started for the run), both with ``--jobs`` workers,
each run a fresh process as a user starts it (worker and cluster start-up included),
alternating, ``--repeats`` times each; the outputs are compared byte for byte.

Prints each wall time, the medians and the ratio dask / loky, for the demo's own shards
(``shards.max_seconds`` 600: one to three shards) and for small ones (``--max-seconds``).
Not run in CI.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import arguments, demo_corpus

from featprep.demo import DEMO_LABELS


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def main() -> None:
    args = arguments(__doc__, jobs=(int, 2), repeats=(int, 3), max_seconds=(float, 20.0))
    root = demo_corpus(args.workdir) / "VCTK-Corpus"
    for max_seconds in (600.0, args.max_seconds):
        sets = [*DEMO_LABELS["vctk-0.80"], f"shards.max_seconds={max_seconds}"]
        times: dict[str, list[float]] = {"loky": [], "dask": []}
        outs = {}
        for _ in range(args.repeats):
            for backend in times:
                out = args.workdir / f"out-{backend}"
                shutil.rmtree(out, ignore_errors=True)
                command = [sys.executable, "-m", "featprep", "prepare", "vctk", "--root", str(root)]
                command += ["--out", str(out), "-j", str(args.jobs), "--backend", backend, "-q"]
                command += [x for s in sets for x in ("--set", s)]
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                times[backend].append(time.perf_counter() - start)
                outs[backend] = files(out)
        same = outs["loky"] == outs["dask"]
        loky, dask = statistics.median(times["loky"]), statistics.median(times["dask"])
        print(
            f"shards.max_seconds={max_seconds:g}: {done.stdout.splitlines()[1]}; "
            f"jobs={args.jobs}; loky {', '.join(f'{t:.2f}' for t in times['loky'])} s, "
            f"dask {', '.join(f'{t:.2f}' for t in times['dask'])} s; medians {loky:.2f} / {dask:.2f} s, "
            f"dask/loky {dask / loky:.2f}; outputs identical: {same}"
        )


if __name__ == "__main__":
    main()

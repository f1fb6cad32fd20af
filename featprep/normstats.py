"""``normstats``: merge the shards' partial statistics into per-speaker and global ones.

Reads ``stats.npz`` of every shard of the chosen splits (train only by default: nothing
leaks from valid or test) and writes under ``<dir>/stats/``:

- ``<stream>.npz``: ``speakers`` and, per speaker and for ``global``, ``count``, ``mean``,
  ``std`` (with a variance floor), ``min``, ``max``, plus column flags ``binary`` (every
  value 0 or 1) and ``constant`` (min == max); ``fallback`` marks speakers with fewer than
  ``min_frames`` rows, whose normaliser uses the global statistics;
- ``summary.json``: the same in words and numbers, warnings included;
- ``cmvn_<stream>.ark``: Kaldi CMVN statistics per speaker (text archive of 2 x (D+1)
  matrices: sums with the count last, sums of squares), scaled so that Kaldi's mean and
  variance of each column are featprep's (``lf0``: over voiced frames).

``recompute`` rebuilds everything from the arrays themselves and checks that it agrees.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArgumentError, FeatprepError
from .integrity import read_checked_manifest, shards_digest, verify_corpus
from .io import (
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    remove_dead_temporaries,
    sha256_file,
)
from .manifest import shard_paths
from .progress import progress_bar
from .shards import open_shard
from .stats import Moments, StatisticsUnavailable, load_statistics, merge, merge_all, shard_statistics

GLOBAL = "__global__"


def _selected_shards(directory: Path, manifest: dict[str, Any], splits: tuple[str, ...]) -> list[Path]:
    known = {s["split"] for s in manifest["shards"]}
    unknown = sorted(set(splits) - known - {"train", "valid", "test"})
    if unknown:
        raise FeatprepError(f"unknown split(s) {unknown}; this corpus has {sorted(known)}")
    shards = [path for s, path in shard_paths(directory, manifest, splits) if s["rows"] > 0]
    if not shards:
        raise FeatprepError(f"{directory}: no shard in split(s) {list(splits)}")
    return shards


def merged_statistics(directory: Path, splits: tuple[str, ...] = ("train",)) -> dict[str, dict[str, Moments]]:
    """stream -> speaker -> moments, merged from the shards' ``stats.npz``."""
    manifest = read_checked_manifest(directory)
    parts = []
    for shard in _selected_shards(directory, manifest, splits):
        path = shard / "stats.npz"
        if not path.is_file():
            raise StatisticsUnavailable(f"{path} is missing: prepare this corpus again, or use --recompute")
        parts.append(load_statistics(path))
    return merge_all(parts)


def recomputed_statistics(
    directory: Path, splits: tuple[str, ...] = ("train",), *, progress: bool = False
) -> dict[str, dict[str, Moments]]:
    """The same statistics, from the arrays (memory-mapped, read chunk by chunk);
    ``progress``: a bar of the shards read, on stderr."""
    manifest = read_checked_manifest(directory)
    shards = _selected_shards(directory, manifest, splits)
    per_shard = []
    with progress_bar(len(shards), "shard", enabled=progress, desc="recompute") as bar:
        for shard in shards:
            per_shard.append(shard_statistics(*open_shard(shard)))
            bar.update(1)
    return merge_all(per_shard)


def _check_agreement(merged: dict[str, dict[str, Moments]], again: dict[str, dict[str, Moments]]) -> None:
    for stream, per in merged.items():
        for speaker, m in per.items():
            r = again[stream][speaker]
            same = (
                np.array_equal(m.count, r.count)
                and np.allclose(m.mean, r.mean, rtol=1e-9, atol=1e-12)
                and np.allclose(m.m2, r.m2, rtol=1e-7, atol=1e-9)
            )
            if not same:
                raise FeatprepError(
                    f"recomputed {stream} statistics of {speaker} differ from the shards' stats.npz"
                )


def speaker_constant_columns(stats: Any) -> np.ndarray:
    """(speakers + global, columns): columns constant in a speaker's rows, neither binary
    nor constant overall; a normaliser takes the global statistics for them."""
    return (stats["min"] == stats["max"]) & ~(stats["binary"] | stats["constant"])


def _kaldi_matrix(m: Moments) -> str:
    """Kaldi CMVN statistics that give featprep's mean and variance of every column.

    Kaldi reads one frame count N for all columns (mean = sum / N, variance = sum of
    squares / N - mean^2), while a column may count fewer rows (acoustic's ``lf0``: voiced
    frames only): each column's sums are written as its mean and mean square times N, the
    plain sums where the column counts every row."""
    n = m.count.max() if m.count.size else 0.0
    sums = np.append(m.mean * n, n)
    squares = np.append((m.variance + m.mean**2) * n, 0.0)
    row = lambda v: " ".join(repr(float(x)) for x in v)  # noqa: E731
    return f"[\n  {row(sums)}\n  {row(squares)} ]"


def normstats(
    directory: str | Path,
    *,
    splits: tuple[str, ...] = ("train",),
    min_frames: int = 2000,
    variance_floor: float = 1e-8,
    recompute: bool = False,
    verify: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Merge (or recompute) the statistics and write ``stats/``; returns the summary.

    The shards of ``splits`` are checked first (`featprep.integrity.verify_corpus`; sha256
    of every file unless ``verify`` is False). ``summary.json`` records which shards the
    statistics come from and the sha256 of each file written, so that readers refuse them
    once the corpus is prepared again. ``progress``: a bar of the shards ``recompute``
    reads, on stderr.

    Raises `FeatprepError` when an array holds NaN or Inf (reported per stream, speaker
    and column, never averaged) or when ``recompute`` disagrees with the merged values.
    """
    directory = Path(directory)
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or not all(isinstance(s, str) and s for s in splits):
        raise ArgumentError(f"splits must name one or more splits, e.g. ('train',), found {splits!r}")
    if not isinstance(min_frames, int) or isinstance(min_frames, bool) or min_frames < 0:
        raise ArgumentError(f"min_frames must be an integer >= 0, found {min_frames!r}")
    if not isinstance(variance_floor, int | float) or not 0 < variance_floor < math.inf:
        raise ArgumentError(f"variance_floor must be a number > 0, found {variance_floor!r}")
    _selected_shards(directory, read_checked_manifest(directory), splits)  # unknown splits first
    out = directory / "stats"
    check_output_dir(out, "statistics folder")
    remove_dead_temporaries(out)
    manifest = verify_corpus(directory, splits=splits, hashes=verify)
    if recompute:
        stats = recomputed_statistics(directory, splits, progress=progress)
    else:
        stats = merged_statistics(directory, splits)
    problems = [
        f"{stream}: speaker {speaker}: {int(m.nonfinite.sum())} NaN/Inf values "
        f"in columns {np.flatnonzero(m.nonfinite).tolist()[:8]}"
        for stream, per in stats.items()
        for speaker, m in per.items()
        if m.nonfinite.any()
    ]
    if problems:
        raise FeatprepError("non-finite values in the features, not averaged: " + "; ".join(problems))
    if recompute:
        # shards from before stats.npz: the recomputed values stand alone
        with contextlib.suppress(StatisticsUnavailable):
            _check_agreement(merged_statistics(directory, splits), stats)

    out.mkdir(exist_ok=True)
    summary: dict[str, Any] = {
        "splits": list(splits),
        "shards_digest": shards_digest(manifest, splits),
        "min_frames": min_frames,
        "variance_floor": variance_floor,
        "recomputed": recompute,
        "streams": {},
        "warnings": [],
    }
    for stream, per in sorted(stats.items()):
        speakers = sorted(per)
        total = per[speakers[0]]
        for s in speakers[1:]:
            total = merge(total, per[s])
        rows = [per[s] for s in speakers] + [total]
        frames = np.array([m.count.max() for m in rows])
        fallback = frames[:-1] < min_frames
        constant = total.maximum == total.minimum
        arrays = {
            "speakers": np.array(speakers + [GLOBAL]),
            "count": np.stack([m.count for m in rows]),
            "mean": np.stack([m.mean for m in rows]),
            "std": np.stack([m.std(variance_floor) for m in rows]),
            "min": np.stack([m.minimum for m in rows]),
            "max": np.stack([m.maximum for m in rows]),
            "binary": total.binary,
            "constant": constant,
            "fallback": np.append(fallback, False),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(out / f"{stream}.npz", buf.getvalue())
        atomic_write_text(
            out / f"cmvn_{stream}.ark", "".join(f"{s}  {_kaldi_matrix(per[s])}\n" for s in speakers)
        )
        flat = speaker_constant_columns(arrays)
        for i, (s, small) in enumerate(zip(speakers, fallback, strict=True)):
            if small:
                summary["warnings"].append(
                    f"{stream}: speaker {s} has {int(per[s].count.max())} rows < {min_frames}: "
                    "global statistics used"
                )
            elif flat[i].any():
                summary["warnings"].append(
                    f"{stream}: speaker {s} has {int(flat[i].sum())} column(s) constant in its rows "
                    f"({', '.join(map(str, np.flatnonzero(flat[i])[:5]))}): global statistics used for them"
                )
        summary["streams"][stream] = {
            "dim": int(total.mean.size),
            "speakers": {s: int(per[s].count.max()) for s in speakers},
            "global_rows": int(total.count.max()),
            "binary_columns": int(total.binary.sum()),
            "constant_columns": int(constant.sum()),
            "fallback": [s for s, f in zip(speakers, fallback, strict=True) if f],
        }
    # written last: a run killed before it leaves files whose hashes no summary vouches for
    written = [name for stream in sorted(stats) for name in (f"{stream}.npz", f"cmvn_{stream}.ark")]
    summary["files"] = {name: sha256_file(out / name) for name in written}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary

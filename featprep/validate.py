"""``featprep validate``: re-read a prepared corpus and check it against its manifest.

Checks every file's sha256, that each index agrees with its arrays (contiguous offsets,
``len(audio) == 80 * n_frames``, ``n_frames`` rows per frame-rate stream, declared
dimensions and dtypes) and that float arrays are finite. Returns every problem found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import FRAME_SHIFT
from .io import sha256_file
from .manifest import read_manifest
from .shards import open_shard


def validate(directory: str | Path) -> list[str]:
    """List the problems of the prepared corpus in ``directory`` (empty = valid)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems: list[str] = []
    for shard in manifest["shards"]:
        path = directory / shard["name"]
        if not path.is_dir():
            problems.append(f"{shard['name']}: missing")
            continue
        for name, digest in shard["files"].items():
            if not (path / name).is_file():
                problems.append(f"{shard['name']}/{name}: missing")
            elif sha256_file(path / name) != digest:
                problems.append(f"{shard['name']}/{name}: sha256 differs from manifest.json")
        if not any(p.startswith(shard["name"]) for p in problems):
            problems += [f"{shard['name']}: {p}" for p in _check_shard(path, manifest, shard)]
    return problems


def _check_shard(path: Path, manifest: dict, shard: dict) -> list[str]:
    index, arrays = open_shard(path)
    out = []
    if len(index) != shard["rows"]:
        out.append(f"index has {len(index)} rows, manifest says {shard['rows']}")
    frames = index["n_frames"].to_numpy()
    starts = np.concatenate([[0], np.cumsum(frames)[:-1]]) if len(frames) else frames
    if not np.array_equal(index["frame_offset"].to_numpy(), starts):
        out.append("frame offsets are not contiguous")
    if not np.array_equal(index["audio_offset"].to_numpy(), starts * FRAME_SHIFT):
        out.append("audio offsets are not 80 x frame offsets")
    if len(arrays["audio"]) != FRAME_SHIFT * frames.sum():
        out.append(f"audio.npy has {len(arrays['audio'])} samples, expected 80 x {frames.sum()}")
    for spec in manifest["features"]:
        arr = arrays.get(spec["name"])
        if arr is None:
            out.append(f"{spec['name']}.npy missing")
            continue
        if arr.dtype != np.dtype(spec["dtype"]) or arr.ndim != 2 or arr.shape[1] != spec["dim"]:
            out.append(
                f"{spec['name']}.npy is {arr.dtype}{arr.shape}, expected {spec['dtype']} (*, {spec['dim']})"
            )
        else:
            rows = {"frame": frames.sum(), "utterance": len(index)}.get(spec["rate"])
            if rows is None:
                rows = index[f"{spec['name']}_frames"].sum()
            if len(arr) != rows:
                out.append(f"{spec['name']}.npy has {len(arr)} rows, expected {rows}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            out.append(f"{spec['name']}.npy has non-finite values")
    return out

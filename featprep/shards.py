"""Shards: the unit of work of ``prepare`` and the on-disk contract with training.

A shard is a folder ``shards/<split>/shard-NNNNNN/`` holding ``index.parquet`` (one row
per utterance), ``audio.npy`` (int16, every utterance concatenated), one ``<name>.npy``
per feature stream, ``stats.npz`` (the shard's per-speaker statistics, see
`featprep.stats`) and ``shard.json`` (fingerprint, counts, sha256 of every file,
rejections). It is written under a temporary name and renamed when complete, so a
folder with the final name is always whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import FRAME_SHIFT, SAMPLE_RATE
from .io import inside, sha256_file, temporary_name
from .records import Rejection, Utterance
from .splits import SPLITS
from .stage import ArraySpec, Item, clock_columns
from .stats import save_statistics, shard_statistics

if TYPE_CHECKING:  # pandas costs a worker of prepare 0.5 s of imports it does not need
    import pandas as pd

#: index columns every shard has, before the columns of the stages
BASE_COLUMNS: dict[str, pa.DataType] = {
    "utterance": pa.string(),
    "speaker": pa.string(),
    "text": pa.string(),
    "split": pa.string(),
    "audio_path": pa.string(),
    "raw_sample_rate": pa.int32(),
    "raw_channels": pa.int32(),
    "raw_num_samples": pa.int64(),
    "n_frames": pa.int64(),
    "audio_offset": pa.int64(),
    "frame_offset": pa.int64(),
    "custom": pa.string(),
}

#: version of the shard layout; part of every fingerprint, so a new layout rebuilds shards
SHARD_FORMAT = 3


def own_clocks(specs: list[ArraySpec]) -> dict[str, list[str]]:
    """Clocks other than frames and utterances -> their streams, in ``specs`` order."""
    clocks: dict[str, list[str]] = {}
    for spec in specs:
        if spec.rate not in ("frame", "utterance"):
            clocks.setdefault(spec.rate, []).append(spec.name)
    return clocks


def index_clock_columns(specs: list[ArraySpec]) -> dict[str, pa.DataType]:
    """Index columns of the streams with their own clock (`featprep.stage.clock_columns`)."""
    return {column: pa.int64() for rate in own_clocks(specs) for column in clock_columns(rate)}


@dataclass
class ShardPlan:
    """Which utterances one shard holds."""

    split: str
    index: int
    utterances: list[Utterance]

    @property
    def name(self) -> str:
        return f"shards/{self.split}/shard-{self.index:06d}"

    def fingerprint(self, root: str, recipe: dict[str, Any], stages: dict[str, str]) -> str:
        """Hash of everything the shard's content depends on.

        File size and modification time stand in for the audio content, so that a
        changed corpus file invalidates the shard without being read.
        """
        files = []
        for u in self.utterances:
            st = os.stat(os.path.join(root, u.audio_path))
            files.append([u.id, u.speaker, u.text, u.audio_path, u.custom, st.st_size, st.st_mtime_ns])
        blob = json.dumps([SHARD_FORMAT, recipe, stages, files], sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def plan_shards(splits: dict[str, str], utterances: list[Utterance], max_seconds: float) -> list[ShardPlan]:
    """Cut each split into contiguous runs of utterances (sorted by speaker, id).

    A shard holds at most ``max_seconds`` of raw audio, and at least one utterance.
    """
    plans = []
    for split in SPLITS:
        members = sorted(
            (u for u in utterances if splits.get(u.id) == split), key=lambda u: (u.speaker, u.id)
        )
        runs: list[list[Utterance]] = []
        seconds = 0.0
        for utt in members:
            if not runs or seconds + utt.raw_seconds > max_seconds:
                runs.append([])
                seconds = 0.0
            runs[-1].append(utt)
            seconds += utt.raw_seconds
        plans += [ShardPlan(split, i, run) for i, run in enumerate(runs)]
    return plans


def _save_rows(path: Path, rows: list[np.ndarray], dtype: str, dim: int | None) -> str:
    """Write ``rows`` (utterances' arrays) one after another as one ``.npy`` file: the bytes
    ``np.save`` writes for their concatenation cast to ``dtype``, without making it (a
    shard's linguistic features are 150 MB); returns the file's sha256, hashed on the way."""
    promoted = np.result_type(*rows) if rows else np.dtype(dtype)  # np.concatenate's, then the cast
    count = sum(len(r) for r in rows)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": (count,) if dim is None else (count, dim),
        },
    )
    digest = hashlib.sha256(header.getvalue())
    with open(path, "wb") as f:
        f.write(header.getvalue())
        for row in rows:
            data = np.ascontiguousarray(row.astype(promoted, copy=False).astype(dtype, copy=False))
            digest.update(data)
            f.write(data)
    return digest.hexdigest()


def _load_rows(path: Path, dtype: str, dim: int | None) -> np.ndarray:
    """A stream file `_save_rows` wrote, memory-mapped (an empty one cannot be mapped)."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape = np.lib.format.read_array_header_1_0(f)[0]
    if shape[0] == 0:
        return np.zeros((0,) if dim is None else (0, dim), dtype=dtype)
    return np.load(path, mmap_mode="r")


def write_shard(
    out_dir: Path,
    plan: ShardPlan,
    items: list[Item],
    specs: list[ArraySpec],
    columns: dict[str, pa.DataType],
    rejections: list[Rejection],
    fingerprint: str,
) -> dict[str, Any]:
    """Write one shard atomically and return its ``shard.json`` content.

    Checks the alignment contract on the way: ``len(audio) == 80 * n_frames``, every
    frame-rate array has ``n_frames`` rows of ``spec.dim`` columns, and the streams of
    one clock have as many rows as each other.
    """
    final = out_dir / plan.name
    tmp = final.parent / temporary_name(final.name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    clocks = own_clocks(specs)
    schema = pa.schema({**BASE_COLUMNS, **columns, **index_clock_columns(specs)})
    table: dict[str, list[Any]] = {name: [] for name in schema.names}
    audio_offset = frame_offset = 0
    clock_offset = dict.fromkeys(clocks, 0)
    for item in items:
        n = item.n_frames
        if len(item.audio) != n * FRAME_SHIFT:
            raise RuntimeError(f"{item.utterance.id}: {len(item.audio)} samples, not 80 x {n}")
        for spec in specs:
            arr = item.arrays[spec.name]
            if spec.rate == "frame" and arr.shape != (n, spec.dim):
                raise RuntimeError(
                    f"{item.utterance.id}: {spec.name} is {arr.shape}, expected ({n}, {spec.dim})"
                )
        u = item.utterance
        row = {
            "utterance": u.id,
            "speaker": u.speaker,
            "text": u.text,
            "split": item.split,
            "audio_path": u.audio_path,
            "raw_sample_rate": u.sample_rate,
            "raw_channels": u.channels,
            "raw_num_samples": u.num_samples,
            "n_frames": n,
            "audio_offset": audio_offset,
            "frame_offset": frame_offset,
            "custom": json.dumps(u.custom, sort_keys=True),
            **item.fields,
        }
        for rate, names in clocks.items():
            counts = {len(item.arrays[name]) for name in names}
            if len(counts) != 1:
                raise RuntimeError(f"{item.utterance.id}: streams {names} of clock {rate} differ in rows")
            count, offset = clock_columns(rate)
            row[count], row[offset] = counts.pop(), clock_offset[rate]
            clock_offset[rate] += row[count]
        for name in schema.names:
            table[name].append(row[name])
        audio_offset += len(item.audio)
        frame_offset += n

    pq.write_table(pa.Table.from_pydict(table, schema=schema), tmp / "index.parquet")
    streams = {"audio": ([i.audio for i in items], "int16", None)}
    for spec in specs:
        streams[spec.name] = ([i.arrays[spec.name] for i in items], spec.dtype, spec.dim)
    written = {f"{name}.npy": _save_rows(tmp / f"{name}.npy", *stream) for name, stream in streams.items()}
    # partial statistics of this shard, merged later by normstats without re-reading arrays;
    # read back from the files just written (in the page cache), not from a copy in memory
    stacked = {name: _load_rows(tmp / f"{name}.npy", dtype, dim) for name, (_, dtype, dim) in streams.items()}
    save_statistics(tmp / "stats.npz", shard_statistics(table, stacked))
    del stacked  # the maps, before the folder is renamed

    files = {p.name: written.get(p.name) or sha256_file(p) for p in sorted(tmp.iterdir())}
    info = {
        "name": plan.name,
        "split": plan.split,
        "fingerprint": fingerprint,
        "rows": len(items),
        "frames": frame_offset,
        "samples": audio_offset,
        "seconds": audio_offset / SAMPLE_RATE,
        "raw_seconds": sum(i.utterance.raw_seconds for i in items),
        "files": files,
        "rejected": [vars(r) for r in rejections],
    }
    (tmp / "shard.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return info


def read_shard_info(path: Path) -> dict[str, Any] | None:
    """``shard.json`` of a complete shard, or None when there is none."""
    try:
        info = json.loads((path / "shard.json").read_text())
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON: made again
        return None
    return info if isinstance(info, dict) else None


def open_shard(path: str | Path, *, mmap: bool = True) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Read a shard: its index and its arrays (memory-mapped by default).

    Utterance ``i``'s audio is ``arrays["audio"][off : off + 80 * n]`` with ``off =
    index.audio_offset[i]``, ``n = index.n_frames[i]``; its frame rows of a stream are
    ``arrays[name][index.frame_offset[i] :][:n]``. A file linked to outside the shard
    folder is refused (`CorruptCorpus`); `featprep.integrity.check_corpus` checks the rest.
    """
    import pandas as pd

    path = Path(path)
    index = pd.read_parquet(inside(path, "index.parquet", "shard file"))
    arrays = {
        p.stem: np.load(inside(path, p.name, "shard file"), mmap_mode="r" if mmap else None)
        for p in sorted(path.glob("*.npy"))
    }
    return index, arrays

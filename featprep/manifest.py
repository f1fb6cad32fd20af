"""``manifest.json`` and ``rejected.tsv``: what a prepared corpus holds and what it lost.

manifest.json records the recipe as resolved, tool versions, the audio and feature
specs, the index columns, the speaker table with roles and per-split counts, the split
summary, the rejection counts, every shard with its row counts and the sha256 of each
of its files, and the sha256 of ``utterances.parquet`` (every kept utterance: the shards'
indexes in one table, with the shard and the duration). It holds no time stamp: the same
inputs give the same manifest.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import FRAME_SHIFT, SAMPLE_RATE, __version__
from .errors import ArgumentError, FeatprepError, OutputError
from .io import atomic_path, atomic_write_text, inside, sha256_file
from .records import Rejection, Speaker, Utterance

FORMAT = "featprep-manifest"
FORMAT_VERSION = 1
REJECTED_COLUMNS = ("utterance", "speaker", "stage", "code", "detail", "path")
#: the corpus-wide table of kept utterances, beside manifest.json
UTTERANCES = "utterances.parquet"
#: the rejection table beside manifest.json (listed and hashed by it)
REJECTED = "rejected.tsv"


def tool_versions() -> dict[str, str]:
    import numpy
    import pandas
    import soundfile
    import soxr

    return {
        "featprep": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pa.__version__,
        "soundfile": soundfile.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
    }


def write_rejected(path: Path, rejections: list[Rejection]) -> None:
    """Write ``rejected.tsv``: one row per dropped utterance, sorted by id and path."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(REJECTED_COLUMNS)
    for r in sorted(rejections, key=lambda r: (r.utterance, r.path, r.stage)):
        writer.writerow([" ".join(str(getattr(r, c)).split()) for c in REJECTED_COLUMNS])
    atomic_write_text(path, buf.getvalue())


def read_rejected(path: Path) -> list[Rejection]:
    with open(path, newline="", encoding="utf-8") as f:
        return [Rejection(**row) for row in csv.DictReader(f, delimiter="\t")]


def write_manifest(
    path: Path,
    *,
    corpus: str,
    root: str,
    recipe: dict[str, Any],
    layout: dict[str, Any],
    speakers: list[Speaker],
    roles: dict[str, str],
    utterances: list[Utterance],
    shards: list[dict[str, Any]],
    specs: list[Any],
    columns: dict[str, pa.DataType],
    rejections: list[Rejection],
) -> dict[str, Any]:
    """Assemble and atomically write ``manifest.json``; returns its content."""
    from .shards import BASE_COLUMNS, index_clock_columns

    kept: dict[str, Counter] = defaultdict(Counter)
    seconds: dict[str, Counter] = defaultdict(Counter)
    indexes = []
    for shard in shards:
        index = pq.read_table(inside(path.parent, shard["name"], "shard name") / "index.parquet")
        _count_speakers(index, kept, seconds)
        indexes.append(index)
    table_digest = write_utterances(path.parent / UTTERANCES, [s["name"] for s in shards], indexes)
    speaker_rows = []
    for s in speakers:
        row = s.to_dict()
        row["role"] = roles.get(s.id, "unused")
        row["utterances"] = dict(sorted(kept[s.id].items()))
        row["seconds"] = {k: round(v, 3) for k, v in sorted(seconds[s.id].items())}
        speaker_rows.append(row)
    splits: dict[str, dict[str, float]] = {}
    for shard in shards:
        s = splits.setdefault(shard["split"], {"utterances": 0, "seconds": 0.0, "frames": 0, "shards": 0})
        s["utterances"] += shard["rows"]
        s["seconds"] = round(s["seconds"] + shard["seconds"], 3)
        s["frames"] += shard["frames"]
        s["shards"] += 1
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "corpus": corpus,
        "corpus_root": root,
        "layout": layout,
        "recipe": recipe,
        "versions": tool_versions(),
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "frame_shift": FRAME_SHIFT,
            "dtype": "int16",
            "file": "audio.npy",
        },
        "features": [spec.to_dict() for spec in specs],
        "index_columns": {
            k: str(v) for k, v in {**BASE_COLUMNS, **columns, **index_clock_columns(specs)}.items()
        },
        "speakers": speaker_rows,
        "splits": splits,
        "rejected": dict(sorted(Counter(r.code for r in rejections).items())),
        "shards": [
            {k: shard[k] for k in ("name", "split", "rows", "frames", "samples", "seconds", "files")}
            for shard in shards
        ],
        "files": {UTTERANCES: table_digest, **_digest_if_there(path.parent / REJECTED)},
    }
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return manifest


def _digest_if_there(path: Path) -> dict[str, str]:
    """``{name: sha256}`` of ``path`` when it exists (prepare writes rejected.tsv first)."""
    return {path.name: sha256_file(path)} if path.is_file() else {}


def _count_speakers(index: pa.Table, kept: dict[str, Counter], seconds: dict[str, Counter]) -> None:
    for row in index.select(["speaker", "split", "n_frames"]).to_pylist():
        kept[row["speaker"]][row["split"]] += 1
        seconds[row["speaker"]][row["split"]] += row["n_frames"] * FRAME_SHIFT / SAMPLE_RATE


def utterance_table(names: list[str], indexes: list[pa.Table]) -> pa.Table:
    """The shards' indexes in manifest order as one table: ``shard`` (its name), the index
    columns, and ``duration`` (seconds of 16 kHz audio, ``n_frames`` x 5 ms)."""
    parts = []
    for name, index in zip(names, indexes, strict=True):
        shard = pa.array([name] * len(index), pa.string())
        parts.append(index.add_column(0, "shard", shard))
    table = pa.concat_tables(parts)
    duration = pc.multiply(table["n_frames"].cast(pa.float64()), FRAME_SHIFT / SAMPLE_RATE)
    return table.append_column("duration", duration)


def write_utterances(path: Path, names: list[str], indexes: list[pa.Table]) -> str:
    """Write `utterance_table` atomically to ``path``; returns its sha256 for the manifest."""
    with atomic_path(path) as tmp:
        pq.write_table(utterance_table(names, indexes), tmp)
    return sha256_file(path)


#: what prepare, normstats and align write in a prepared corpus folder
CORPUS_ENTRIES = ("manifest.json", "rejected.tsv", "utterances.parquet", "shards", "stats", "align")


def check_outside_corpus(directory: str | Path, out: str | Path, what: str) -> None:
    """Raise `OutputError` when ``out`` (links followed) is the corpus folder ``directory``
    or lies in what featprep wrote there (`CORPUS_ENTRIES`): a report or an export must not
    overwrite or add to the files a corpus is checked against."""
    home, target = Path(directory).resolve(), Path(out).resolve()
    owned = [home / entry for entry in CORPUS_ENTRIES]
    if target == home or any(target == e or e in target.parents for e in owned):
        where = target.relative_to(home).as_posix()
        raise OutputError(
            f"{what} {out} is inside the prepared corpus {directory} (at {where}): "
            "choose a path outside it, or a new name beside manifest.json"
        )


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Load ``<directory>/manifest.json``, checking that it is a featprep manifest."""
    path = Path(directory) / "manifest.json"
    if Path(directory).exists() and not Path(directory).is_dir():
        raise OutputError(f"{directory} is not a folder: expected a prepared corpus (its manifest.json)")
    if path.exists() and not path.is_file():  # a FIFO would hang the read, a folder cannot be read
        raise OutputError(f"{path} is not a regular file: expected prepare's manifest")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{path} does not exist: run featprep prepare first") from None
    except ValueError as e:  # not JSON, not UTF-8
        raise OutputError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise OutputError(f"{path} cannot be read: {e.strerror or e}") from None
    if not isinstance(manifest, dict):
        raise OutputError(f"{path} is not a featprep manifest (a JSON {type(manifest).__name__})")
    if manifest.get("format") != FORMAT:
        raise OutputError(f"{path} is not a featprep manifest (format {manifest.get('format')!r})")
    return manifest


def split_names(splits: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``splits`` as a tuple of names: one string is one split.

    Raises `ArgumentError` when ``splits`` names none or holds a non-string.
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or not all(isinstance(s, str) and s for s in splits):
        raise ArgumentError(f"splits must name one or more splits, e.g. ('train',), found {splits!r}")
    return splits


def check_splits(manifest: dict[str, Any], splits: tuple[str, ...]) -> None:
    """Refuse a split the corpus does not have (train, valid and test always pass: a
    small corpus may have none of one).

    Raises `FeatprepError` naming the unknown splits and the corpus's.
    """
    known = {s["split"] for s in manifest["shards"]}
    unknown = sorted(set(splits) - known - {"train", "valid", "test"})
    if unknown:
        raise FeatprepError(f"unknown split(s) {unknown}; this corpus has {sorted(known)}")


def shard_paths(
    directory: str | Path, manifest: dict[str, Any], splits: tuple[str, ...] | None = None
) -> list[tuple[dict[str, Any], Path]]:
    """The manifest's shards (of ``splits``; all when None) with their folders.

    Every name is checked to stay inside ``directory`` (`featprep.io.inside`): a manifest
    cannot send a reader to another folder.
    """
    return [
        (shard, inside(directory, shard.get("name"), "shard name"))
        for shard in manifest["shards"]
        if splits is None or shard.get("split") in splits
    ]

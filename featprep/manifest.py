"""``manifest.json`` and ``rejected.tsv``: what a prepared corpus holds and what it lost.

manifest.json records the recipe as resolved, tool versions, the audio and feature
specs, the index columns, the speaker table with roles and per-split counts, the split
summary, the rejection counts and every shard with its row counts and the sha256 of each
of its files. It holds no time stamp: the same inputs give the same manifest.
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
import pyarrow.parquet as pq

from . import FRAME_SHIFT, SAMPLE_RATE, __version__
from .errors import OutputError
from .io import atomic_write_text, inside
from .records import Rejection, Speaker, Utterance

FORMAT = "featprep-manifest"
FORMAT_VERSION = 1
REJECTED_COLUMNS = ("utterance", "speaker", "stage", "code", "detail", "path")


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
    from .shards import BASE_COLUMNS, clock_columns

    kept: dict[str, Counter] = defaultdict(Counter)
    seconds: dict[str, Counter] = defaultdict(Counter)
    for shard in shards:
        _count_speakers(inside(path.parent, shard["name"], "shard name"), kept, seconds)
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
        "index_columns": {k: str(v) for k, v in {**BASE_COLUMNS, **columns, **clock_columns(specs)}.items()},
        "speakers": speaker_rows,
        "splits": splits,
        "rejected": dict(sorted(Counter(r.code for r in rejections).items())),
        "shards": [
            {k: shard[k] for k in ("name", "split", "rows", "frames", "samples", "seconds", "files")}
            for shard in shards
        ],
    }
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return manifest


def _count_speakers(shard: Path, kept: dict[str, Counter], seconds: dict[str, Counter]) -> None:
    index = pq.read_table(shard / "index.parquet", columns=["speaker", "split", "n_frames"]).to_pylist()
    for row in index:
        kept[row["speaker"]][row["split"]] += 1
        seconds[row["speaker"]][row["split"]] += row["n_frames"] * FRAME_SHIFT / SAMPLE_RATE


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Load ``<directory>/manifest.json``, checking that it is a featprep manifest."""
    path = Path(directory) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{path} does not exist: run featprep prepare first") from None
    except ValueError as e:  # not JSON, not UTF-8
        raise OutputError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise OutputError(f"{path} is not a featprep manifest (a JSON {type(manifest).__name__})")
    if manifest.get("format") != FORMAT:
        raise OutputError(f"{path} is not a featprep manifest (format {manifest.get('format')!r})")
    return manifest


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

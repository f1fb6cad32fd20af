"""What the report shows, read from a prepared corpus: numbers and arrays, no plotting.

Everything comes from what ``prepare`` and ``normstats`` recorded: ``manifest.json``
(speakers, seconds per split, recipe), ``rejected.tsv``, the shards' indexes (durations,
trim points), their arrays (memory-mapped, one shard at a time: F0 histograms, example
utterances, phone boundaries) and ``stats/`` or the shards' ``stats.npz``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import stat
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import FRAME_SHIFT, SAMPLE_RATE
from ..errors import CorruptCorpus, FeatprepError
from ..integrity import statistics_problems
from ..io import inside, read_npz
from ..labels.linguistic import FRAME_FEATURES
from ..manifest import REJECTED_COLUMNS, shard_paths
from ..normstats import GLOBAL, merged_statistics, recomputed_statistics
from ..shards import open_shard
from ..stats import StatisticsUnavailable, merge

FRAME_SECONDS = FRAME_SHIFT / SAMPLE_RATE
#: F0 histogram bins: 1/24 octave from 32 Hz to 1024 Hz (every search range of the recipes)
F0_EDGES = 32.0 * 2.0 ** (np.arange(5 * 24 + 1) / 24)
#: F0 search of a speaker of unknown gender: first pass (featprep.acoustic.acoustic_features)
UNKNOWN_F0_RANGE = (50.0, 600.0)
#: voiced frames further than this factor from the speaker's median F0 (3/4 octave) count
#: as off by an octave (halving and doubling errors)
OCTAVE_FACTOR = 2.0**0.75
#: voiced frames within this factor of an edge of the search range count as "at the edge"
#: (a speaker whose F0 piles up there was searched in the wrong gender's range)
EDGE_FACTOR = 2.0 ** (1 / 12)

#: rejection codes whose detail holds a measure, ranked worst first: pattern, badness
_SEVERITY: dict[str, tuple[str, Any, str]] = {
    "too_short": (r"([\d.]+) s after trimming", lambda m: -float(m[1]), "shortest first"),
    "too_long": (r"([\d.]+) s after trimming", lambda m: float(m[1]), "longest first"),
    "near_silent": (r"peak (-?[\d.]+) dBFS", lambda m: -float(m[1]), "quietest first"),
    "clipping": (r"([\d.]+)% of samples", lambda m: float(m[1]), "most clipped first"),
    "nan_inf": (r"(\d+) non-finite", lambda m: float(m[1]), "most non-finite samples first"),
    "speaking_rate": (
        r"([\d.]+) chars/s, speaker median ([\d.]+)",
        lambda m: abs(math.log(max(float(m[1]), 1e-3) / max(float(m[2]), 1e-3))),
        "farthest from the speaker's median first",
    ),
    "align_outlier": (
        r"score (-?[\d.]+) per frame, speaker median (-?[\d.]+)",
        lambda m: float(m[2]) - float(m[1]),
        "furthest below the speaker's median score first",
    ),
}


@dataclass
class Rejections:
    """``rejected.tsv`` by code: rows (dicts of its columns), worst first where ranked."""

    rows: dict[str, list[dict[str, str]]]
    order: dict[str, str]  # code -> how its rows are ordered
    note: str = ""  # when rejected.tsv could not be used


@dataclass
class Example:
    """One utterance to draw: audio on the raw file's time axis, trim points, phones."""

    utterance: str
    speaker: str
    split: str
    text: str
    audio: np.ndarray  # float32, mono
    rate: int
    offset: float  # seconds of audio[0] on the raw file's time axis
    trim: tuple[float, float]  # kept span, seconds on the raw file's time axis
    phones: list[tuple[float, float, str]]  # start, end (seconds, raw time axis), name ("" unknown)
    source: str  # what the audio is


@dataclass
class StreamSummary:
    """Statistics of one feature stream over every speaker of the splits counted."""

    columns: list[str]
    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    speakers: dict[str, int]  # speaker -> rows counted


@dataclass
class Statistics:
    streams: dict[str, StreamSummary]
    source: str  # where they come from and which splits they count, in words


@dataclass
class F0Histograms:
    """Per speaker: voiced frames per bin of `F0_EDGES`, and the F0 search range used."""

    counts: dict[str, np.ndarray] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float] | None] = field(default_factory=dict)


def f0_summary(counts: np.ndarray, search: tuple[float, float] | None) -> tuple[float | None, float, float]:
    """From a speaker's F0 histogram: the median F0 (a bin centre; None without a voiced
    frame), the share of voiced frames further than `OCTAVE_FACTOR` from it, and the share
    within `EDGE_FACTOR` of an end of the search range (0 without one)."""
    total = counts.sum()
    if not total:
        return None, 0.0, 0.0
    centres = np.sqrt(F0_EDGES[1:] * F0_EDGES[:-1])
    median = float(centres[np.searchsorted(np.cumsum(counts), total / 2)])
    off = (centres > median * OCTAVE_FACTOR) | (centres < median / OCTAVE_FACTOR)
    edge = 0.0
    if search is not None:
        near = (centres <= search[0] * EDGE_FACTOR) | (centres >= search[1] / EDGE_FACTOR)
        edge = float(counts[near].sum() / total)
    return median, float(counts[off].sum() / total), edge


def utterance_table(directory: Path, manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per kept utterance (index columns only): durations and trim points in seconds."""
    columns = ["utterance", "speaker", "split", "text", "n_frames", "raw_sample_rate", "raw_num_samples"]
    columns += ["raw_trim_start", "raw_trim_end"]
    parts = []
    for number, (shard, path) in enumerate(shard_paths(directory, manifest)):
        if shard["rows"]:
            index = pd.read_parquet(inside(path, "index.parquet", "shard file"), columns=columns)
            parts.append(index.assign(shard=number, row=np.arange(len(index))))
    if not parts:
        raise FeatprepError(f"{directory}: no utterance in any shard: nothing to report")
    table = pd.concat(parts, ignore_index=True)
    table["seconds"] = table["n_frames"] * FRAME_SECONDS
    table["raw_seconds"] = table["raw_num_samples"] / table["raw_sample_rate"]
    table["lead"] = table["raw_trim_start"]
    table["trail"] = (table["raw_seconds"] - table["raw_trim_end"]).clip(lower=0.0)
    return table


def read_rejections(directory: Path) -> Rejections:
    """``rejected.tsv`` by code, each code's rows worst first where its detail has a measure."""
    path = directory / "rejected.tsv"
    try:
        # looked at before opening: reading a FIFO would wait for a writer forever
        info = path.stat()
    except FileNotFoundError:
        return Rejections({}, {}, f"{path.name} is missing: rejections are counted from manifest.json only")
    except OSError as e:
        raise FeatprepError(f"{path} cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FeatprepError(f"{path} is not a regular file: expected prepare's rejection table")
    if info.st_size == 0:  # no header either: nothing was rejected
        return Rejections({}, {})
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader, None)
            if header is None or tuple(header) != REJECTED_COLUMNS:
                raise FeatprepError(
                    f"{path}: header {header!r} is not {'/'.join(REJECTED_COLUMNS)} (not written by prepare)"
                )
            # a short row (a hand-edited file) reads as empty fields rather than failing
            rows = [{c: r[i] if i < len(r) else "" for i, c in enumerate(REJECTED_COLUMNS)} for r in reader]
    except (OSError, UnicodeDecodeError) as e:
        raise FeatprepError(f"{path} cannot be read: {e}") from None
    by_code: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_code.setdefault(row.get("code") or "", []).append(row)
    order = {}
    for code, group in by_code.items():
        if code in _SEVERITY:
            pattern, badness, words = _SEVERITY[code]

            def key(row: dict[str, str], pattern: str = pattern, badness: Any = badness) -> float:
                m = re.search(pattern, row.get("detail") or "")
                return -badness(m) if m else math.inf  # no measure: last

            group.sort(key=key)
            order[code] = words
        else:
            order[code] = "in utterance order"
    return Rejections(dict(sorted(by_code.items())), order)


def f0_range(manifest: dict[str, Any], gender: str) -> tuple[float, float] | None:
    """The F0 search range of a gender (recipe ``acoustic.f0_range``); None: searched per
    utterance around its own median (unknown gender)."""
    ranges = manifest["recipe"].get("acoustic", {}).get("f0_range", {})
    found = ranges.get(gender)
    return (float(found[0]), float(found[1])) if found else None


def stream_column(manifest: dict[str, Any], stream: str, column: str) -> int | None:
    """Index of a named column of a stream in the manifest, None when absent."""
    for spec in manifest["features"]:
        if spec["name"] == stream and column in spec.get("columns", []):
            return list(spec["columns"]).index(column)
    return None


def pick_examples(table: pd.DataFrame, count: int) -> pd.DataFrame:
    """``count`` utterances of speakers spread over the sorted speaker list, each the one
    closest to its speaker's median duration (deterministic)."""
    speakers = sorted(table["speaker"].unique())
    if count <= 0 or not speakers:
        return table.iloc[:0]
    chosen = [speakers[round(i)] for i in np.linspace(0, len(speakers) - 1, min(count, len(speakers)))]
    rows = []
    for speaker in dict.fromkeys(chosen):
        own = table[table["speaker"] == speaker].sort_values("utterance")
        rows.append(own.index[int(np.argmin(np.abs(own["seconds"] - own["seconds"].median()).to_numpy()))])
    return table.loc[rows]


def phone_spans(
    manifest: dict[str, Any], arrays: dict[str, np.ndarray], frames: slice
) -> tuple[list[tuple[int, int, str]], str]:
    """Phones of one utterance's frames as (first frame, end frame, name), and where they
    come from: ``ling_num``'s place of each frame in its phone (exact to the frame), else
    the rows where ``ling``'s phone-level columns change; names from ``ling_cat``'s ``p3``."""
    position = stream_column(manifest, "ling_num", "phone_position")
    length = stream_column(manifest, "ling_num", "phone_frames")
    if position is not None and length is not None and "ling_num" in arrays:
        num = np.asarray(arrays["ling_num"][frames])
        # phone_position = (k + 0.5) / phone_frames for the k-th frame of a phone
        starts = np.flatnonzero(np.rint(num[:, position] * num[:, length] - 0.5) == 0)
        source = "ling_num (each frame's place in its phone)"
    elif "ling" in arrays:
        width = FRAME_FEATURES.get(manifest["recipe"]["linguistic"]["subphone_features"], 0)
        ling = np.asarray(arrays["ling"][frames])
        phone_level = ling[:, : ling.shape[1] - width]
        changed = np.any(phone_level[1:] != phone_level[:-1], axis=1)
        starts = np.concatenate([[0], np.flatnonzero(changed) + 1])
        source = "ling (rows where the phone-level question answers change)"
    else:
        return [], ""
    n = frames.stop - frames.start
    if not len(starts) or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    ends = np.append(starts[1:], n)
    names = [""] * len(starts)
    current = stream_column(manifest, "ling_cat", "p3")
    if current is not None and "ling_cat" in arrays:
        spec = next(s for s in manifest["features"] if s["name"] == "ling_cat")
        vocabulary = spec.get("vocabularies", {}).get("p3", [])
        codes = np.asarray(arrays["ling_cat"][frames][:, current])
        names = [vocabulary[c] if 0 <= c < len(vocabulary) else "?" for c in codes[starts]]
    return [(int(a), int(b), name) for a, b, name in zip(starts, ends, names, strict=True)], source


def _raw_audio(root: str, row: pd.Series) -> tuple[np.ndarray | None, str]:
    """The corpus file's samples (mono) when it is still the file prepare read, else why not."""
    import soundfile as sf

    try:
        path = inside(root, row["audio_path"], "audio path")
    except CorruptCorpus as e:
        return None, str(e)
    if not path.is_file():  # gone, or a FIFO or folder that opening would block on or fail
        return None, f"{row['audio_path']} is not a file under {root}"
    try:
        info = sf.info(str(path))
        if info.samplerate != row["raw_sample_rate"] or info.frames != row["raw_num_samples"]:
            return None, f"{row['audio_path']} changed since prepare (rate or length differ from the index)"
        audio = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        return None, f"{row['audio_path']} cannot be read here ({' '.join(str(e).split())})"
    return audio, f"the corpus file {row['audio_path']} ({row['raw_sample_rate']} Hz, whole)"


def read_shards(
    directory: Path, manifest: dict[str, Any], examples: pd.DataFrame
) -> tuple[F0Histograms, list[Example], str]:
    """One pass over the shards, one memory-mapped shard at a time: per-speaker F0
    histograms of voiced frames, and the example utterances (with the source of their
    phone boundaries)."""
    genders = {s["id"]: s.get("gender", "unknown") for s in manifest["speakers"]}
    lf0, vuv = stream_column(manifest, "acoustic", "lf0"), stream_column(manifest, "acoustic", "vuv")
    hist = F0Histograms()
    drawn: dict[str, Example] = {}
    phones_from = ""
    wanted = {(int(r.shard), int(r.row)): r for r in examples.itertuples()}
    root = manifest.get("corpus_root") or ""
    for number, (shard, path) in enumerate(shard_paths(directory, manifest)):
        if not shard["rows"]:
            continue
        index, arrays = open_shard(path)
        if lf0 is not None and vuv is not None and "acoustic" in arrays:
            acoustic = arrays["acoustic"]
            for speaker, rows in index.groupby("speaker", sort=True):
                counts = hist.counts.setdefault(speaker, np.zeros(len(F0_EDGES) - 1, np.int64))
                hist.ranges.setdefault(speaker, f0_range(manifest, genders.get(speaker, "unknown")))
                for a, n in zip(rows["frame_offset"], rows["n_frames"], strict=True):
                    block = np.asarray(acoustic[a : a + n])
                    counts += np.histogram(np.exp(block[block[:, vuv] > 0.5, lf0]), F0_EDGES)[0]
        for (s, i), r in wanted.items():
            if s != number:
                continue
            row = index.iloc[i]
            frames_count = int(row["n_frames"])
            frames = slice(int(row["frame_offset"]), int(row["frame_offset"]) + frames_count)
            spans, phones_from = phone_spans(manifest, arrays, frames)
            start = float(row["raw_trim_start"])
            trim = (start, start + frames_count * FRAME_SECONDS)
            audio, source = _raw_audio(root, row)
            offset, rate = 0.0, int(row["raw_sample_rate"])
            if audio is None:
                samples = slice(
                    int(row["audio_offset"]), int(row["audio_offset"]) + FRAME_SHIFT * frames_count
                )
                audio = np.asarray(arrays["audio"][samples], np.float32) / np.float32(32768.0)
                offset, rate = start, SAMPLE_RATE
                source = f"the shard's trimmed audio only: {source}"
            drawn[r.utterance] = Example(
                r.utterance, r.speaker, r.split, r.text, audio, rate, offset, trim,
                [(start + a * FRAME_SECONDS, start + b * FRAME_SECONDS, p) for a, b, p in spans], source,
            )  # fmt: skip
    return hist, [drawn[u] for u in examples["utterance"] if u in drawn], phones_from


def statistics(directory: Path, manifest: dict[str, Any]) -> Statistics:
    """Per-stream statistics: ``stats/`` when it belongs to these shards, else merged now
    from the shards' ``stats.npz`` (or from the arrays where a shard has none)."""
    columns = {s["name"]: list(s.get("columns") or []) for s in manifest["features"]}
    columns["audio"] = ["sample"]
    stats_dir = directory / "stats"
    if (stats_dir / "summary.json").is_file():
        problems = statistics_problems(directory, manifest)
        summary = {} if problems else json.loads((stats_dir / "summary.json").read_text())
        if not problems and not isinstance(summary.get("streams"), dict):
            problems = ["stats/summary.json has no table of streams"]
        if not problems:
            streams = {}
            for stream in summary["streams"]:
                data = read_npz(stats_dir / f"{stream}.npz", f"run featprep normstats {directory} again")
                names = data["speakers"].tolist()
                g = names.index(GLOBAL)
                streams[stream] = StreamSummary(
                    columns.get(stream) or [str(i) for i in range(data["mean"].shape[1])],
                    data["count"][g], data["mean"][g], data["std"][g], data["min"][g], data["max"][g],
                    {s: int(data["count"][i].max()) for i, s in enumerate(names) if s != GLOBAL},
                )  # fmt: skip
            return Statistics(
                streams, f"stats/ as featprep normstats wrote it (splits {', '.join(summary['splits'])})"
            )
        why = f"stats/ does not fit these shards ({problems[0]})"
    else:
        why = "no stats/ (featprep normstats not run)"
    with_rows = {s["split"] for s in manifest["shards"] if s["rows"]}
    splits = ["train"] if "train" in with_rows else sorted(with_rows)
    try:
        per_stream = merged_statistics(directory, tuple(splits))
        how = "merged now from the shards' stats.npz"
    except StatisticsUnavailable:
        per_stream = recomputed_statistics(directory, tuple(splits))
        how = "computed now from the shards' arrays (a shard has no stats.npz)"
    streams = {}
    for stream, per in sorted(per_stream.items()):
        total = reduce(merge, [per[s] for s in sorted(per)])
        streams[stream] = StreamSummary(
            columns.get(stream) or [str(i) for i in range(total.mean.size)],
            total.count, total.mean, total.std(), total.minimum, total.maximum,
            {s: int(per[s].count.max()) for s in sorted(per)},
        )  # fmt: skip
    return Statistics(streams, f"{how}, splits {', '.join(splits)}: {why}")

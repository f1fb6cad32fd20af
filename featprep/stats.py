"""Mergeable per-speaker statistics of the feature streams (count, mean, M2, min, max).

Within a chunk the mean and the sum of squared deviations (M2) are computed in float64
around the chunk's own mean; chunks, shards and machines are merged with Chan et al.'s
update, which is associative, so the order of merging does not change the result
beyond rounding:

    d = mean_b - mean_a;  n = n_a + n_b;  mean = mean_a + d n_b / n
    M2 = M2_a + M2_b + d^2 n_a n_b / n

(float32 sums of squares lose everything on data with a large offset.) Non-finite values
are counted, never averaged. ``binary`` marks columns whose every value is 0 or 1 (the
question answers), which normalisers pass through.

Streams: ``audio`` (samples / 32768, one column), ``ling``, ``ling_num``, ``acoustic``
(its ``lf0`` column over voiced frames only), ``pase``, and the phone-level
``ling_phone`` and ``durations`` (one row per phone).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .errors import FeatprepError
from .io import read_npz
from .stage import clock_columns

#: values per chunk (rows x columns): bounds the float64 working copy to 16 MB
CHUNK_VALUES = 1 << 21


@dataclass
class Moments:
    """Statistics of one (speaker, stream): float64 arrays over the stream's columns."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    binary: np.ndarray  # bool
    nonfinite: np.ndarray  # int64

    @classmethod
    def empty(cls, dim: int) -> Moments:
        return cls(
            np.zeros(dim), np.zeros(dim), np.zeros(dim), np.full(dim, np.inf), np.full(dim, -np.inf),
            np.ones(dim, bool), np.zeros(dim, np.int64),
        )  # fmt: skip

    @property
    def variance(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), 0.0)

    def std(self, floor: float = 0.0) -> np.ndarray:
        return np.sqrt(np.maximum(self.variance, floor))


def chunk_moments(x: np.ndarray, valid: np.ndarray | None = None) -> Moments:
    """Moments of the rows of ``x`` (rows x columns); ``valid`` masks values out."""
    x = np.asarray(x)
    if valid is None and np.isfinite(x).all():
        # the common case, in as few passes over the data as possible
        n = float(len(x))
        mean = x.sum(axis=0, dtype=np.float64) / n if n else np.zeros(x.shape[1])
        d = x - mean  # float64
        binary = np.logical_or(x == 0, x == 1).all(axis=0)
        minimum = x.min(axis=0, initial=np.inf).astype(np.float64)
        maximum = x.max(axis=0, initial=-np.inf).astype(np.float64)
        return Moments(
            np.full(x.shape[1], n), mean, np.einsum("ij,ij->j", d, d), minimum, maximum,
            binary, np.zeros(x.shape[1], np.int64),
        )  # fmt: skip
    x = x.astype(np.float64)
    finite = np.isfinite(x)
    ok = finite if valid is None else finite & valid
    count = ok.sum(axis=0).astype(np.float64)
    nonfinite = (~finite).sum(axis=0) if valid is None else (~finite & valid).sum(axis=0)
    xz = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, xz.sum(axis=0) / np.maximum(count, 1), 0.0)
    d = np.where(ok, x - mean, 0.0)
    m2 = np.einsum("ij,ij->j", d, d)
    minimum = np.where(ok, x, np.inf).min(axis=0, initial=np.inf)
    maximum = np.where(ok, x, -np.inf).max(axis=0, initial=-np.inf)
    binary = np.all(~ok | (x == 0) | (x == 1), axis=0)
    return Moments(count, mean, m2, minimum, maximum, binary, nonfinite.astype(np.int64))


def merge(a: Moments, b: Moments) -> Moments:
    """Chan's merge of two sets of moments (either may be empty)."""
    n = a.count + b.count
    d = b.mean - a.mean
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, b.count / np.maximum(n, 1), 0.0)
        mean = a.mean + d * share
        m2 = a.m2 + b.m2 + np.where(n > 0, d * d * a.count * b.count / np.maximum(n, 1), 0.0)
    return Moments(
        n, mean, m2, np.minimum(a.minimum, b.minimum), np.maximum(a.maximum, b.maximum),
        a.binary & b.binary, a.nonfinite + b.nonfinite,
    )  # fmt: skip


def array_moments(x: np.ndarray, valid: np.ndarray | None = None) -> Moments:
    """Moments of a long array, chunk by chunk (bounded memory)."""
    x = x.reshape(len(x), -1)
    chunk = max(1, CHUNK_VALUES // x.shape[1])
    total = Moments.empty(x.shape[1])
    for start in range(0, len(x), chunk):
        part = chunk_moments(
            x[start : start + chunk], None if valid is None else valid[start : start + chunk]
        )
        total = merge(total, part)
    return total


def stream_rows(stream: str, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows a stream's statistics count, and its validity mask (lf0: voiced only)."""
    if stream == "audio":
        return arrays["audio"].reshape(-1, 1) / np.float32(32768.0), None
    x = arrays[stream]
    if stream == "acoustic":
        valid = np.ones(x.shape, bool)
        valid[:, 0] = x[:, 1] > 0.5
        return x, valid
    return x, None


#: streams with statistics -> their row clock (`featprep.stage.ArraySpec.rate`)
STREAM_RATES = {
    "audio": "sample",
    "ling": "frame",
    "ling_num": "frame",
    "acoustic": "frame",
    "pase": "pase",
    "ling_phone": "phone",
    "durations": "phone",
}


def stream_names(arrays: dict[str, np.ndarray]) -> list[str]:
    return [s for s in STREAM_RATES if s in arrays]


def speaker_spans(speakers: list[str], lengths: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    """Row ranges of each speaker, from per-utterance speakers and row counts."""
    spans: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for speaker, n in zip(speakers, lengths, strict=True):
        spans.setdefault(speaker, []).append((start, start + int(n)))
        start += int(n)
    return spans


def shard_statistics(index, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Moments]]:
    """stream -> speaker -> moments of one shard (index: its parquet table's columns, as
    pandas or a dict of lists)."""
    speakers = list(index["speaker"])
    out: dict[str, dict[str, Moments]] = {}
    for stream in stream_names(arrays):
        x, valid = stream_rows(stream, arrays)
        rate = STREAM_RATES[stream]
        if rate == "sample":
            lengths = np.asarray(index["n_frames"]) * 80
        elif rate == "frame":
            lengths = np.asarray(index["n_frames"])
        else:
            lengths = np.asarray(index[clock_columns(rate)[0]])
        per_speaker = {}
        for speaker, spans in speaker_spans(speakers, lengths).items():
            total = Moments.empty(x.shape[1])
            for a, b in spans:
                total = merge(total, array_moments(x[a:b], None if valid is None else valid[a:b]))
            per_speaker[speaker] = total
        out[stream] = per_speaker
    return out


_FIELDS = [f.name for f in fields(Moments)]


def save_statistics(path: Path, stats: dict[str, dict[str, Moments]]) -> None:
    """One ``.npz``: per stream, ``<stream>/speakers`` and ``<stream>/values``, a float64
    (speakers x fields x columns) array with the fields in `Moments` order."""
    arrays = {}
    for stream, per_speaker in stats.items():
        names = sorted(per_speaker)
        if not names:
            continue  # a shard whose utterances were all rejected
        arrays[f"{stream}/speakers"] = np.array(names)
        arrays[f"{stream}/values"] = np.stack(
            [np.stack([getattr(per_speaker[s], f).astype(np.float64) for f in _FIELDS]) for s in names]
        )
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


class StatisticsUnavailable(FeatprepError):
    """A shard's ``stats.npz`` is missing or unreadable (``--recompute`` does without)."""


def load_statistics(path: Path) -> dict[str, dict[str, Moments]]:
    out: dict[str, dict[str, Moments]] = {}
    data = read_npz(
        path, "prepare the corpus again, or run normstats with --recompute", StatisticsUnavailable
    )
    for stream in sorted({k.split("/")[0] for k in data}):
        if f"{stream}/values" not in data or f"{stream}/speakers" not in data:
            raise StatisticsUnavailable(
                f"{path}: statistics in a layout this featprep does not know: prepare the corpus "
                "again, or run normstats with --recompute"
            )
        names = data[f"{stream}/speakers"].tolist()
        values = data[f"{stream}/values"]
        out[stream] = {
            s: Moments(*values[i, :5], values[i, 5].astype(bool), values[i, 6].astype(np.int64))
            for i, s in enumerate(names)
        }
    return out


def merge_all(parts: list[dict[str, dict[str, Moments]]]) -> dict[str, dict[str, Moments]]:
    """Merge shard statistics: stream -> speaker -> moments."""
    out: dict[str, dict[str, Moments]] = {}
    for part in parts:
        for stream, per_speaker in part.items():
            target = out.setdefault(stream, {})
            for speaker, m in per_speaker.items():
                target[speaker] = merge(target[speaker], m) if speaker in target else m
    return out

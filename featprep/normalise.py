"""Normalisers built from ``stats/<stream>.npz`` (written by ``normstats``).

``zscore`` (per speaker; speakers marked ``fallback`` use the global statistics, and so
does a column constant in a speaker's rows, whose z-score is undefined: scaled by the
variance floor, any other value of it became ~1e4) or ``minmax`` (Merlin's input
normalisation to [0.01, 0.99], global min and max of the training data). Binary columns
(question answers, the voicing flag) and constant columns pass through unchanged. Every
transform has its inverse, for generation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FeatprepError
from .integrity import raise_first, statistics_problems
from .io import read_npz
from .normstats import GLOBAL, speaker_constant_columns

METHODS = ("zscore", "minmax")


class Normaliser:
    """``x -> (x - shift) / scale`` on the columns that are neither binary nor constant."""

    def __init__(self, shift: np.ndarray, scale: np.ndarray, keep: np.ndarray) -> None:
        self.shift = np.where(keep, 0.0, shift).astype(np.float32)
        self.scale = np.where(keep, 1.0, scale).astype(np.float32)

    @classmethod
    def load(
        cls, directory: str | Path, stream: str, speaker: str | None = None, method: str = "zscore"
    ) -> Normaliser:
        """The normaliser of ``stream`` for ``speaker`` (None: global).

        Refused (`CorruptCorpus`, one line) when the statistics were computed from other
        shards than the corpus's manifest lists now, e.g. after ``prepare`` ran again.
        """
        path = Path(directory) / "stats" / f"{stream}.npz"
        if method not in METHODS:
            raise FeatprepError(f"normalisation must be one of {list(METHODS)}, found {method!r}")
        raise_first(directory, statistics_problems(directory, hashes=False, needed=(path.name,)))
        data = read_npz(path, f"run featprep normstats {directory} again")
        speakers = data["speakers"].tolist()
        keep = data["binary"] | data["constant"]
        row = speakers.index(GLOBAL)
        if speaker is not None:
            if speaker not in speakers:
                raise FeatprepError(f"speaker {speaker!r} has no {stream} statistics in {path}")
            if not data["fallback"][speakers.index(speaker)]:
                row = speakers.index(speaker)
        g = speakers.index(GLOBAL)
        if method == "zscore":
            flat = speaker_constant_columns(data)[row]
            mean = np.where(flat, data["mean"][g], data["mean"][row])
            return cls(mean, np.where(flat, data["std"][g], data["std"][row]), keep)
        lo, hi = data["min"][g], data["max"][g]
        span = np.where(hi > lo, hi - lo, 1.0) / 0.98
        return cls(lo - 0.01 * span, span, keep)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) - self.shift) / self.scale

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float32) * self.scale + self.shift

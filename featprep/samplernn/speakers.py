"""Speaker vectors from stored PASE frames (the ``pase_seed`` speaker mode).

As in the SSW 2019 system: during training, a speaker's vector is the time mean of the
PASE frames of a random 1 s window of one of that speaker's validation utterances, drawn
anew at every step; at inference, a fixed window starting 0.5 s into the speaker's first
validation utterance (a speaker without one uses its training utterances, listed in
``fallback``). Draws come from a generator seeded by the step, so a resumed run draws
the same windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FeatprepError
from ..manifest import read_manifest
from ..shards import open_shard

FRAMES_PER_SECOND = 100  # PASE frames


class PaseSeeds:
    """Per speaker, the PASE frames of its utterances in ``split``."""

    def __init__(
        self, directory: str | Path, speakers: list[str], split: str = "valid", seconds: float = 1.0
    ) -> None:
        directory = Path(directory)
        manifest = read_manifest(directory)
        if "pase" not in {f["name"] for f in manifest["features"]}:
            raise FeatprepError(
                f"{directory} has no PASE frames: prepare it with pase.checkpoint (or a seed)"
            )
        self.window = max(1, round(seconds * FRAMES_PER_SECOND))
        self.dim = next(f["dim"] for f in manifest["features"] if f["name"] == "pase")
        found: dict[str, dict[str, list[np.ndarray]]] = {
            split: {s: [] for s in speakers},
            "train": {s: [] for s in speakers},
        }
        for shard in manifest["shards"]:
            if shard["split"] not in found or not shard["rows"]:
                continue
            index, arrays = open_shard(directory / shard["name"])
            for r in index.itertuples():
                if r.speaker in found[shard["split"]]:
                    found[shard["split"]][r.speaker].append(
                        arrays["pase"][r.pase_offset : r.pase_offset + r.pase_frames]
                    )
        #: speakers with no utterance in ``split``, whose seeds come from their train utterances
        self.fallback = [s for s in speakers if not found[split][s]]
        chosen = {s: found[split][s] or found["train"][s] for s in speakers}
        missing = [s for s, v in chosen.items() if not v]
        if missing:
            raise FeatprepError(f"speakers without utterances for PASE seeds: {', '.join(missing[:10])}")
        self.frames = [chosen[s] for s in speakers]

    def _mean(self, frames: np.ndarray, start: int) -> np.ndarray:
        return np.asarray(frames[start : start + self.window], np.float32).mean(axis=0)

    def draw(self, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, E) vectors: a random window of a random utterance of each speaker."""
        out = np.empty((len(speakers), self.dim), np.float32)
        for row, s in enumerate(speakers):
            utterances = self.frames[int(s)]
            frames = utterances[rng.integers(len(utterances))]
            start = int(rng.integers(max(1, len(frames) - self.window + 1)))
            out[row] = self._mean(frames, start)
        return out

    def fixed(self, speaker: int, start_seconds: float = 0.5) -> np.ndarray:
        """The inference vector: the window ``start_seconds`` into the first utterance."""
        frames = self.frames[speaker][0]
        start = min(round(start_seconds * FRAMES_PER_SECOND), max(0, len(frames) - self.window))
        return self._mean(frames, start)

"""Speaker vectors from a speaker's own speech (the ``pase_seed`` and ``pase_trained`` modes).

As in the SSW 2019 system: during training, a window of one of the speaker's validation
utterances, drawn anew at every step (1 s by default); at inference, a fixed window
starting 0.5 s into the speaker's first validation utterance. A speaker without a
validation utterance uses its training utterances (listed in ``fallback``). Draws come
from a generator seeded by the step, so a resumed run draws the same windows.

- `PaseSeeds` (``pase_seed``): the time mean of the stored PASE frames of the window.
- `AudioSeeds` (``pase_trained``): the window's audio itself, for an encoder trained in
  the loop.
- `SpeakerSource`: the speaker vectors a trainer (or a trained run) feeds its model, from
  either; any model conditioned on PASE speaker vectors shares it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import FRAME_SHIFT, SAMPLE_RATE
from ..errors import FeatprepError
from ..manifest import read_manifest, shard_paths
from ..shards import open_shard

if TYPE_CHECKING:
    from .train import TrainConfig


class SpeakerWindows:
    """Per speaker, one stream's rows of its utterances in ``split`` (``rate`` rows/s)."""

    stream: str = ""
    rate: int = 1

    def __init__(
        self, directory: str | Path, speakers: list[str], split: str = "valid", seconds: float = 1.0
    ) -> None:
        directory = Path(directory)
        manifest = read_manifest(directory)
        self.check(directory, manifest)
        self.window = max(1, round(seconds * self.rate))
        found: dict[str, dict[str, list[np.ndarray]]] = {
            split: {s: [] for s in speakers},
            "train": {s: [] for s in speakers},
        }
        for shard, path in shard_paths(directory, manifest, tuple(found)):
            if not shard["rows"]:
                continue
            index, arrays = open_shard(path)
            for r in index.itertuples():
                if r.speaker in found[shard["split"]]:
                    found[shard["split"]][r.speaker].append(self.rows(arrays, r))
        #: speakers with no utterance in ``split``, whose windows come from train utterances
        self.fallback = [s for s in speakers if not found[split][s]]
        chosen = {s: found[split][s] or found["train"][s] for s in speakers}
        missing = [s for s, v in chosen.items() if not v]
        if missing:
            raise FeatprepError(f"speakers without utterances for speaker windows: {', '.join(missing[:10])}")
        self.utterances = [chosen[s] for s in speakers]

    def check(self, directory: Path, manifest: dict) -> None:
        """Raise when the corpus lacks the stream."""

    def rows(self, arrays: dict[str, np.ndarray], r) -> np.ndarray:
        raise NotImplementedError

    def _cut(self, rows: np.ndarray, start: int) -> np.ndarray:
        out = np.zeros((self.window, *rows.shape[1:]), np.float32)
        part = np.asarray(rows[start : start + self.window], np.float32)
        out[: len(part)] = part
        return out

    def random_windows(self, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, window, ...) rows: a random window of a random utterance of each speaker."""
        out = []
        for s in speakers:
            utterances = self.utterances[int(s)]
            rows = utterances[rng.integers(len(utterances))]
            out.append(self._cut(rows, int(rng.integers(max(1, len(rows) - self.window + 1)))))
        return np.stack(out)

    def fixed_window(self, speaker: int, start_seconds: float = 0.5) -> np.ndarray:
        rows = self.utterances[speaker][0]
        return self._cut(rows, min(round(start_seconds * self.rate), max(0, len(rows) - self.window)))


class PaseSeeds(SpeakerWindows):
    """Speaker vectors: the mean of stored PASE frames over a window (``pase_seed``)."""

    stream, rate = "pase", 100

    def check(self, directory: Path, manifest: dict) -> None:
        if "pase" not in {f["name"] for f in manifest["features"]}:
            raise FeatprepError(
                f"{directory} has no PASE frames: prepare it with pase.checkpoint (or a seed)"
            )
        self.dim = next(f["dim"] for f in manifest["features"] if f["name"] == "pase")

    def rows(self, arrays: dict[str, np.ndarray], r) -> np.ndarray:
        return arrays["pase"][r.pase_offset : r.pase_offset + r.pase_frames]

    def draw(self, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, E) vectors of random windows."""
        return self.random_windows(speakers, rng).mean(axis=1)

    def fixed(self, speaker: int, start_seconds: float = 0.5) -> np.ndarray:
        """The inference vector: the window ``start_seconds`` into the first utterance."""
        return self.fixed_window(speaker, start_seconds).mean(axis=0)


class AudioSeeds(SpeakerWindows):
    """Audio windows (16 kHz float) for an encoder trained in the loop (``pase_trained``)."""

    stream, rate = "audio", SAMPLE_RATE

    def rows(self, arrays: dict[str, np.ndarray], r) -> np.ndarray:
        return arrays["audio"][r.audio_offset : r.audio_offset + FRAME_SHIFT * r.n_frames] / np.float32(
            32768.0
        )


class SpeakerSource:
    """Speaker vectors for the PASE modes: stored frames (pase_seed) or an encoder in the
    loop (pase_trained), whose BatchNorm layers keep their running statistics (eval mode)
    while its weights are fine-tuned: tiny batches of one window per slot would make
    batch statistics meaningless (the 2019 code left them in training mode)."""

    def __init__(self, mode: str, directory: Path, speakers: list[str], cfg: TrainConfig, dev) -> None:
        self.mode, self.encoder, self.net = mode, None, None
        if mode == "pase_seed":
            self.windows = PaseSeeds(directory, speakers, seconds=cfg.seed_seconds)
            self.dim = self.windows.dim
        else:
            from ..pase import load_encoder

            self.windows = AudioSeeds(directory, speakers, seconds=cfg.seed_seconds)
            self.encoder = load_encoder(
                cfg.pase_arch,
                checkpoint=cfg.pase_checkpoint or None,
                random_init_seed=None if cfg.pase_checkpoint else cfg.seed,
            ).to(dev)
            self.net = self.encoder
            self.dim = self.encoder.arch.emb_dim
        self.dev = dev

    @property
    def fallback(self) -> list[str]:
        return self.windows.fallback

    def train_mode(self) -> None:
        if self.encoder is not None:
            self.encoder.train()
            for m in self.encoder.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.eval()

    def _encode(self, windows: np.ndarray, net) -> torch.Tensor:
        wav = torch.from_numpy(windows).to(self.dev)[:, None, :]
        return net(wav).mean(dim=2)

    def draw(self, speakers: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """(B, E) vectors of random windows, differentiable for pase_trained."""
        if self.encoder is None:
            return torch.from_numpy(self.windows.draw(speakers, rng))
        return self._encode(self.windows.random_windows(speakers, rng), self.net)

    @torch.no_grad()
    def fixed(self, speaker: int) -> torch.Tensor:
        """(E,) inference vector of ``speaker``."""
        if self.encoder is None:
            return torch.from_numpy(self.windows.fixed(speaker))
        was = self.encoder.training
        self.encoder.eval()
        vector = self._encode(self.windows.fixed_window(speaker)[None], self.encoder)[0].cpu()
        if was:
            self.train_mode()
        return vector

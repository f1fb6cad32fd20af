"""The ``pase`` stage: frame-level PASE embeddings of every kept utterance of a shard.

Active when the recipe names a checkpoint (``pase.checkpoint``) or asks for random
weights explicitly (``pase.random_init_seed`` >= 0). Writes ``pase.npy`` (``pase.dtype``,
rows = PASE frames of 10 ms; the index gives each utterance's ``pase_frames`` and
``pase_offset``) and ``pase_mean.npy`` (float32, one row per utterance: the time mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FeatprepError
from ..stage import ArraySpec, Item, Stage
from .architectures import ARCHITECTURES

HOP = 160  # samples per PASE frame (the encoder's total stride)


class PaseStage(Stage):
    name = "pase"

    def __init__(
        self, recipe: dict[str, Any], corpus_root: str, genders: dict[str, str] | None = None
    ) -> None:
        super().__init__(recipe, corpus_root, genders)
        self.cfg = recipe["pase"]
        self.active = bool(self.cfg["checkpoint"]) or self.cfg["random_init_seed"] >= 0
        if self.active and self.cfg["arch"] not in ARCHITECTURES:
            raise FeatprepError(
                f"pase.arch must be one of {sorted(ARCHITECTURES)}, found {self.cfg['arch']!r}"
            )
        if self.cfg["dtype"] not in ("float16", "float32"):
            raise FeatprepError(f'pase.dtype must be "float16" or "float32", found {self.cfg["dtype"]!r}')
        self._encoder = None

    @property
    def encoder(self):  # noqa: ANN201 - a PaseEncoder; torch is imported only when PASE is on
        if self._encoder is None:
            from .checkpoint import load_encoder

            seed = self.cfg["random_init_seed"]
            self._encoder = load_encoder(
                self.cfg["arch"],
                checkpoint=self.cfg["checkpoint"] or None,
                random_init_seed=None if self.cfg["checkpoint"] else seed,
            )
        return self._encoder

    def outputs(self) -> list[ArraySpec]:
        if not self.active:
            return []
        dim = ARCHITECTURES[self.cfg["arch"]].emb_dim
        about = {
            "arch": self.cfg["arch"],
            "weights": self.encoder.source,
            "hop_samples": HOP,
            "centre_of_frame_0": 150,
            "padding": "each utterance right-padded with zeros to a multiple of 160 samples",
        }
        return [
            ArraySpec("pase", self.cfg["dtype"], dim, rate="pase", extra=about),
            ArraySpec("pase_mean", "float32", dim, rate="utterance", extra=about),
        ]

    def version(self) -> str:
        return f"1:{self.encoder.source}" if self.active else "off"

    def process(self, item: Item) -> None:
        """Nothing per utterance: the shard's utterances are encoded together."""

    def finish_shard(self, items: list[Item]) -> None:
        if not self.active or not items:
            return
        import torch

        from .extract import extract

        waves = [item.audio.astype(np.float32) / 32768.0 for item in items]
        # one thread, as in every worker of prepare --jobs N: a convolution split over more
        # threads sums in another order, and shards must not depend on --jobs or the cores
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            frames = extract(
                self.encoder,
                waves,
                batch_size=self.cfg["batch_size"],
                device=self.cfg["device"],
                precision=self.cfg["precision"],
            )
        finally:
            torch.set_num_threads(threads)
        for item, f in zip(items, frames, strict=True):
            item.arrays["pase"] = f.astype(self.cfg["dtype"])
            item.arrays["pase_mean"] = f.mean(axis=0, keepdims=True).astype(np.float32)

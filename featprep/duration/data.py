"""The phone-level stream of prepared shards, in batches of whole utterances.

Inputs are the ``ling_phone`` rows, targets the ``durations`` rows (frames per state or
per phone, the manifest's ``unit``), both z-scored with the global statistics of
``featprep normstats`` (binary and constant question columns pass through): the speaker's
own tempo is the speaker conditioning's to learn, so one scale serves every speaker,
seen or not. Arrays stay memory-mapped; a batch is read and normalised when drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FeatprepError
from ..integrity import raise_first, statistics_problems, verify_corpus
from ..normalise import Normaliser
from ..samplernn.data import speaker_rows


@dataclass
class PhoneUtterance:
    shard: int
    phone_offset: int
    n_phones: int
    n_frames: int
    speaker: int
    utterance: str
    text: str


class PhoneCorpus:
    """The utterances of some splits with their phone rows, durations and normalisers.

    The shards of ``splits`` and the statistics are checked first (sha256 of every file
    unless ``verify`` is False): a corpus without the phone-level stream, or without
    statistics, is one line before any work. ``roles``: only the speakers of these roles
    (None: every speaker), as `featprep.samplernn.data.Corpus` takes them."""

    def __init__(
        self,
        directory: str | Path,
        splits: tuple[str, ...] = ("train",),
        verify: bool = True,
        roles: tuple[str, ...] | None = None,
    ) -> None:
        directory = Path(directory)
        manifest = verify_corpus(directory, splits=splits, hashes=verify)
        streams = {f["name"]: f for f in manifest["features"]}
        if "ling_phone" not in streams or "durations" not in streams:
            raise FeatprepError(
                f"{directory} has no phone-level stream (ling_phone, durations): prepare it with labels"
            )
        raise_first(directory, statistics_problems(directory, manifest, hashes=verify))
        self.directory = directory
        self.questions: list[str] = list(streams["ling_phone"]["columns"])
        self.unit: str = streams["durations"]["unit"]
        self.outputs: int = streams["durations"]["dim"]
        self.inputs_norm = Normaliser.load(directory, "ling_phone")
        self.targets_norm = Normaliser.load(directory, "durations")
        self.speakers, self.shards, rows = speaker_rows(directory, manifest, splits, roles)
        self.utterances = [
            PhoneUtterance(shard, r.phone_offset, r.n_phones, r.n_frames, speaker, r.utterance, r.text)
            for shard, r, speaker in rows
        ]

    def rows(self, u: PhoneUtterance) -> np.ndarray:
        """The utterance's phone rows as stored (question answers), float32."""
        return np.asarray(self.shards[u.shard]["ling_phone"][u.phone_offset : u.phone_offset + u.n_phones])

    def durations(self, u: PhoneUtterance) -> np.ndarray:
        """The utterance's frames per state or phone, (phones, outputs) float32."""
        return np.asarray(self.shards[u.shard]["durations"][u.phone_offset : u.phone_offset + u.n_phones])


@dataclass
class PhoneBatch:
    phones: torch.Tensor  # (B, T, inputs) normalised
    targets: torch.Tensor  # (B, T, outputs) normalised
    mask: torch.Tensor  # (B, T) bool: real phones
    lengths: torch.Tensor  # (B,)
    speakers: torch.Tensor  # (B,)


def make_batch(corpus: PhoneCorpus, utterances: list[PhoneUtterance]) -> PhoneBatch:
    """Utterances padded to the longest one's phones."""
    longest = max(u.n_phones for u in utterances)
    phones = np.zeros((len(utterances), longest, len(corpus.questions)), np.float32)
    targets = np.zeros((len(utterances), longest, corpus.outputs), np.float32)
    mask = np.zeros((len(utterances), longest), bool)
    for i, u in enumerate(utterances):
        phones[i, : u.n_phones] = corpus.inputs_norm(corpus.rows(u))
        targets[i, : u.n_phones] = corpus.targets_norm(corpus.durations(u))
        mask[i, : u.n_phones] = True
    return PhoneBatch(
        torch.from_numpy(phones),
        torch.from_numpy(targets),
        torch.from_numpy(mask),
        torch.tensor([u.n_phones for u in utterances]),
        torch.tensor([u.speaker for u in utterances]),
    )


class UtteranceBatches:
    """One epoch of batches of ``size`` whole utterances in a seeded shuffle (a
    `loop.BatchLoader`): every rank shuffles alike and takes every world-th utterance."""

    def __init__(self, corpus: PhoneCorpus, size: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.corpus, self.size, self.seed, self.rank, self.world = corpus, size, seed, rank, world
        self.epoch = 0
        self._shuffle()

    def _shuffle(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order = rng.permutation(len(self.corpus.utterances)).tolist()[self.rank :: self.world]
        self.next = 0

    def __iter__(self) -> UtteranceBatches:
        return self

    def __next__(self) -> PhoneBatch:
        if self.next >= len(self.order):
            self.epoch += 1
            self._shuffle()
            raise StopIteration
        chosen = self.order[self.next : self.next + self.size]
        self.next += self.size
        return make_batch(self.corpus, [self.corpus.utterances[i] for i in chosen])

    def empty_batch(self) -> PhoneBatch:
        """A batch without targets (one masked utterance), for a rank that finished its epoch."""
        batch = make_batch(self.corpus, self.corpus.utterances[:1])
        batch.mask[:] = False
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "order": list(self.order), "next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.order, self.next = state["epoch"], list(state["order"]), state["next"]

"""The sequential TBPTT loader over memory-mapped shards.

B slots each walk one utterance in chunks of ``seq_len`` top frames (5 ms each). A
chunk carries one top frame of preceding audio as context (zeros at the start of an
utterance) and the frame-level features of its frames. A slot that finishes its
utterance takes the next one of a seeded shuffle and is flagged ``reset`` (the model
restarts its hidden state from h0); a slot with nothing left is empty and masked. The
epoch ends when no slot holds an utterance: a batch without targets is never produced.
The loader's position (epoch, shuffle, slots) is part of a checkpoint.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import FRAME_SHIFT
from ..errors import FeatprepError
from ..integrity import raise_first, statistics_problems, verify_corpus
from ..manifest import shard_paths
from ..normalise import Normaliser
from ..shards import open_shard
from .conditioning import pack, parse_spec


@dataclass
class UtteranceRef:
    shard: int
    audio_offset: int
    frame_offset: int
    n_frames: int
    speaker: int
    utterance: str


def speaker_rows(
    directory: Path, manifest: dict[str, Any], splits: tuple[str, ...], roles: tuple[str, ...] | None
) -> tuple[list[str], list[dict[str, np.ndarray]], list[tuple[int, Any, int]]]:
    """The speakers of ``roles`` (None: every speaker) in sorted order, the memory-mapped
    arrays of every shard of ``splits`` that has rows, and ``(shard number, index row,
    speaker number)`` of each of those speakers' utterances; none is one error line."""
    speakers = sorted(s["id"] for s in manifest["speakers"] if roles is None or s.get("role") in roles)
    speaker_index = {s: i for i, s in enumerate(speakers)}
    shards: list[dict[str, np.ndarray]] = []
    rows: list[tuple[int, Any, int]] = []
    for shard, path in shard_paths(directory, manifest, splits):
        if not shard["rows"]:
            continue
        index, arrays = open_shard(path)
        shards.append(arrays)
        # a speaker of another role is left out
        rows += [
            (len(shards) - 1, r, speaker_index[r.speaker])
            for r in index.itertuples()
            if r.speaker in speaker_index
        ]
    if not rows:
        of = "" if roles is None else f" of {' or '.join(roles)} speakers"
        raise FeatprepError(f"{directory}: no utterance{of} in split(s) {list(splits)}")
    return speakers, shards, rows


class Corpus:
    """The utterances of some splits, with memory-mapped arrays of every shard.

    ``roles``: only the speakers of these roles (``featprep.splits.ROLES``; None: every
    speaker), numbered in sorted order in ``speakers``. ``features``: a feature spec (see
    ``conditioning``), or None; float streams are normalised per speaker with the
    statistics of ``featprep normstats`` when ``normalise``. The shards of ``splits`` and
    the statistics are checked first (`featprep.integrity`; the sha256 of every file unless
    ``verify`` is False): a damaged corpus is one error before the first step, not a
    traceback or a silent one later.
    """

    def __init__(
        self,
        directory: str | Path,
        splits: tuple[str, ...] = ("train",),
        features: str | None = "ling",
        normalise: bool = True,
        verify: bool = True,
        roles: tuple[str, ...] | None = None,
    ) -> None:
        directory = Path(directory)
        manifest = verify_corpus(directory, splits=splits, hashes=verify)
        self.spec = None if features is None else parse_spec(features, manifest["features"])
        self.feature_dim = self.spec.dim if self.spec else 0
        self.features = features if self.spec else None
        self.normaliser = Normalisers(directory) if self.spec and normalise else None
        if self.normaliser is not None:
            raise_first(directory, statistics_problems(directory, manifest, hashes=verify))
        self.speakers, self.shards, rows = speaker_rows(directory, manifest, splits, roles)
        self.utterances = [
            UtteranceRef(shard, r.audio_offset, r.frame_offset, r.n_frames, speaker, r.utterance)
            for shard, r, speaker in rows
        ]

    def audio(self, u: UtteranceRef, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of an utterance (zeros before its start), float32."""
        out = np.zeros(stop - start, np.float32)
        lo = max(start, 0)
        data = self.shards[u.shard]["audio"][u.audio_offset + lo : u.audio_offset + stop]
        out[lo - start :] = data / np.float32(32768.0)
        return out

    def frames(self, u: UtteranceRef, start: int, stop: int) -> np.ndarray:
        """Packed frames [start, stop) of an utterance's features, float32."""
        shard, rows = self.shards[u.shard], slice(u.frame_offset + start, u.frame_offset + stop)
        speaker = self.speakers[u.speaker]
        normalise = None if self.normaliser is None else (lambda s, x: self.normaliser(s, speaker)(x))
        return pack(self.spec, {s: shard[s][rows] for s in self.spec.streams}, normalise)


class Normalisers:
    """Per-speaker normalisers of a corpus's streams, loaded once each (thread-safe: a race
    loads the same file twice)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.cache: dict[tuple[str, str | None], Normaliser] = {}

    def __call__(self, stream: str, speaker: str | None) -> Normaliser:
        if (stream, speaker) not in self.cache:
            self.cache[stream, speaker] = Normaliser.load(self.directory, stream, speaker)
        return self.cache[stream, speaker]


@dataclass
class Batch:
    samples: torch.Tensor  # (B, top + L) float, context + chunk
    features: torch.Tensor | None  # (B, L / top, D)
    speakers: torch.Tensor  # (B,)
    reset: torch.Tensor  # (B,) bool: slot starts an utterance
    mask: torch.Tensor  # (B, L) bool: real targets


@dataclass
class _Plan:
    """One batch decided but not read: (slot, utterance, first frame, frames) per slot,
    and the loader's position once the batch is consumed."""

    reads: list[tuple[int, int, int, int]]
    reset: np.ndarray
    position: dict[str, Any]


class TBPTTLoader:
    """Iterates over one epoch of chunks; `state_dict` / `load_state_dict` resume it.

    Which utterance each slot reads next is decided in order, in the calling thread;
    with ``workers`` > 0 the reading (memory-mapped copies, normalisation) runs in that
    many threads, up to two batches each ahead, and batches come back in order. The
    position (`state_dict`, `epoch`) is that of the last batch handed out, so a
    checkpoint taken with batches still in flight resumes exactly.
    """

    def __init__(
        self,
        corpus: Corpus,
        batch_size: int,
        seq_len: int,
        top_frame: int = FRAME_SHIFT,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        workers: int = 0,
    ) -> None:
        if top_frame != FRAME_SHIFT:
            raise FeatprepError(
                f"the top tier must read 5 ms frames ({FRAME_SHIFT} samples), found {top_frame}"
            )
        self.corpus, self.batch_size, self.seq_len, self.seed = corpus, batch_size, seq_len, seed
        # distributed training: every rank shuffles alike and takes every world-th utterance
        self.rank, self.world = rank, world
        self._epoch = 0
        self._start_epoch()
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers) if workers else None
        self._pending: deque[tuple[Future[Batch], dict[str, Any]]] = deque()
        self._handed: dict[str, Any] | None = None  # position after the last batch handed out
        self._planned_to_end = False

    @property
    def epoch(self) -> int:
        return self._epoch if self._handed is None else self._handed["epoch"]

    def empty_batch(self) -> Batch:
        """A batch without targets, for a rank that finished its epoch before the others."""
        top, n = FRAME_SHIFT, self.seq_len
        features = torch.zeros(self.batch_size, n, self.corpus.feature_dim) if self.corpus.features else None
        return Batch(
            torch.zeros(self.batch_size, top + n * top),
            features,
            torch.zeros(self.batch_size, dtype=torch.long),
            torch.ones(self.batch_size, dtype=torch.bool),
            torch.zeros(self.batch_size, n * top, dtype=torch.bool),
        )

    def _start_epoch(self) -> None:
        rng = np.random.default_rng([self.seed, self._epoch])
        self.order = rng.permutation(len(self.corpus.utterances)).tolist()[self.rank :: self.world]
        self.next_utterance = 0
        self.slots: list[list[int] | None] = [None] * self.batch_size  # [utterance, frame position]

    def _position(self) -> dict[str, Any]:
        # the order list is replaced, never changed, at an epoch start: shared, not copied
        return {
            "epoch": self._epoch,
            "order": self.order,
            "next": self.next_utterance,
            "slots": [None if s is None else list(s) for s in self.slots],
        }

    def state_dict(self) -> dict[str, Any]:
        position = self._handed if self._handed is not None else self._position()
        return {**position, "order": list(position["order"])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for pending, _ in self._pending:
            pending.cancel()
        self._pending.clear()
        self._handed, self._planned_to_end = None, False
        self._epoch, self.order, self.next_utterance = state["epoch"], list(state["order"]), state["next"]
        self.slots = [None if s is None else list(s) for s in state["slots"]]

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._pool is None:
            plan = self._plan()
            if plan is None:
                raise StopIteration
            return self._read(plan)
        while len(self._pending) < 2 * self.workers and not self._planned_to_end:
            plan = self._plan()
            if plan is None:
                self._planned_to_end = True
                break
            self._pending.append((self._pool.submit(self._read, plan), plan.position))
        if not self._pending:  # every batch of the epoch handed out: the next one begins
            self._handed, self._planned_to_end = None, False
            raise StopIteration
        pending, self._handed = self._pending.popleft()
        return pending.result()

    def _plan(self) -> _Plan | None:
        """Move the slots one chunk on; None (and a new epoch) when none is left."""
        reset = np.zeros(self.batch_size, bool)
        for i, slot in enumerate(self.slots):
            if slot is not None and slot[1] >= self.corpus.utterances[slot[0]].n_frames:
                self.slots[i] = slot = None
            if slot is None and self.next_utterance < len(self.order):
                self.slots[i] = [self.order[self.next_utterance], 0]
                self.next_utterance += 1
                reset[i] = True
        if all(s is None for s in self.slots):
            self._epoch += 1
            self._start_epoch()
            return None
        reads = []
        for i, slot in enumerate(self.slots):
            if slot is not None:
                count = min(self.seq_len, self.corpus.utterances[slot[0]].n_frames - slot[1])
                reads.append((i, slot[0], slot[1], count))
                slot[1] += count
        return _Plan(reads, reset, self._position())

    def _read(self, plan: _Plan) -> Batch:
        top, n = FRAME_SHIFT, self.seq_len
        samples = np.zeros((self.batch_size, top + n * top), np.float32)
        features = np.zeros((self.batch_size, n, self.corpus.feature_dim), np.float32)
        mask = np.zeros((self.batch_size, n * top), bool)
        speakers = np.zeros(self.batch_size, np.int64)
        for i, index, pos, count in plan.reads:
            u = self.corpus.utterances[index]
            samples[i, : top + count * top] = self.corpus.audio(u, (pos - 1) * top, (pos + count) * top)
            if self.corpus.features:
                features[i, :count] = self.corpus.frames(u, pos, pos + count)
            mask[i, : count * top] = True
            speakers[i] = u.speaker
        return Batch(
            torch.from_numpy(samples),
            torch.from_numpy(features) if self.corpus.features else None,
            torch.from_numpy(speakers),
            torch.from_numpy(plan.reset),
            torch.from_numpy(mask),
        )

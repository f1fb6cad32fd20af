"""The interface every per-utterance stage of ``prepare`` implements.

A stage takes an `Item` (one utterance and what earlier stages made of it), adds index
columns to ``item.fields`` and arrays to ``item.arrays``, or raises `Rejected`. It never
touches the file system beyond reading its inputs: the shard writer owns the output.

Later stages (labels and linguistic features, acoustic features, PASE embeddings) plug in
by declaring their outputs with `ArraySpec` and their index columns with pyarrow types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from . import FRAME_SHIFT
from .records import Utterance


@dataclass(frozen=True)
class ArraySpec:
    """One array file of a shard: ``<name>.npy`` with ``dim`` columns.

    ``rate`` names the row clock: ``"frame"`` rows are the utterance's 5 ms frames
    (``n_frames`` rows per utterance, the alignment contract); ``"utterance"`` is one row
    per utterance (in index order); any other clock keeps its own per-utterance count and
    offset in the index (`clock_columns`), shared by the streams of that clock (PASE's
    10 ms frames: ``pase_frames``, ``pase_offset``; phones: ``n_phones``, ``phone_offset``).
    """

    name: str
    dtype: str
    dim: int
    rate: str = "frame"
    columns: tuple[str, ...] = ()
    #: for integer arrays of vocabulary indices: column -> vocabulary
    vocabularies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: anything else the manifest should record about the stream (encoder, weights, ...)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "dim": self.dim,
            "rate": self.rate,
            "columns": list(self.columns),
            **({"vocabularies": {k: list(v) for k, v in self.vocabularies}} if self.vocabularies else {}),
            **self.extra,
        }


#: index columns (row count, first row) of a clock whose names are not ``<rate>_frames``,
#: ``<rate>_offset``
_CLOCK_COLUMNS = {"phone": ("n_phones", "phone_offset")}


def clock_columns(rate: str) -> tuple[str, str]:
    """The index columns holding each utterance's row count and first row in the streams
    of clock ``rate`` (not ``"frame"`` or ``"utterance"``)."""
    return _CLOCK_COLUMNS.get(rate, (f"{rate}_frames", f"{rate}_offset"))


@dataclass
class Item:
    """One utterance on its way through the stages of a shard."""

    utterance: Utterance
    split: str
    audio: np.ndarray | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: what a stage hands to a later one without writing it (labels in raw time, ...)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        if self.audio is None:
            raise ValueError(f"{self.utterance.id}: no audio yet")
        return len(self.audio) // FRAME_SHIFT


class Stage:
    """Base of a per-utterance stage. Subclasses set `name` and implement `process`.

    One instance serves every shard a process runs in a prepare run: ``setup`` runs once
    there (load models, compile question sets) so that per-shard and per-utterance work
    stays small; ``begin_shard`` resets what belongs to one shard.
    """

    name: ClassVar[str]
    #: index columns this stage fills, with their parquet types
    columns: ClassVar[dict[str, pa.DataType]] = {}

    def __init__(
        self, recipe: dict[str, Any], corpus_root: str, genders: dict[str, str] | None = None
    ) -> None:
        self.recipe = recipe
        self.corpus_root = corpus_root
        #: speaker -> "M", "F" or "unknown"
        self.genders = genders or {}

    def outputs(self) -> list[ArraySpec]:
        """Array files this stage adds to every shard."""
        return []

    def setup(self) -> None:
        """Per-worker initialisation."""

    def begin_shard(self, utterances: list[Utterance]) -> None:
        """Called before a shard's utterances: batch work over the whole shard (one
        Festival run instead of one per utterance)."""

    def process(self, item: Item) -> None:
        raise NotImplementedError

    def finish_shard(self, items: list[Item]) -> None:
        """Called with the shard's kept items once every utterance went through
        `process`: batch work over the shard (PASE on one device, say)."""

    def version(self) -> str:
        """Part of the shard fingerprint: bump when the stage's output changes."""
        return "1"

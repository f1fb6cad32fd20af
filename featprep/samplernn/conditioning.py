"""Which frame-level streams a run is conditioned on, and how one utterance's are packed.

A feature spec names streams of the prepared corpus joined by ``+``, each optionally
narrowed to some of its columns: ``ling``, ``acoustic``, ``ling+acoustic[lf0,vuv]``.
Aliases give the SSW 2019 sets: ``compact`` (the categorical fields as vocabulary
indices for learned embeddings, plus the numeric fields), ``compact_lf0`` and
``ling_lf0`` (with interpolated log-F0 and the voiced flag). Packed frames put the
categorical columns first, as float indices the model embeds, then the float columns,
z-normalised with the per-speaker statistics of ``featprep normstats`` (binary and
constant columns pass through).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FeatprepError

ALIASES = {
    "compact": "ling_cat+ling_num",
    "compact_lf0": "ling_cat+ling_num+acoustic[lf0,vuv]",
    "ling_lf0": "ling+acoustic[lf0,vuv]",
}
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]*)\])?$")


@dataclass(frozen=True)
class Part:
    stream: str
    columns: tuple[int, ...]  # indices into the stream's columns
    vocabulary_sizes: tuple[int, ...]  # per column, for categorical streams; () for float ones

    @property
    def categorical(self) -> bool:
        return bool(self.vocabulary_sizes)


@dataclass(frozen=True)
class FeatureSpec:
    text: str
    parts: tuple[Part, ...]  # categorical parts first

    @property
    def dim(self) -> int:
        return sum(len(p.columns) for p in self.parts)

    @property
    def vocabulary_sizes(self) -> list[int]:
        """Of the packed categorical columns, which come first."""
        return [n for p in self.parts for n in p.vocabulary_sizes]

    @property
    def streams(self) -> list[str]:
        return [p.stream for p in self.parts]


def parse_spec(text: str, features: list[dict[str, Any]]) -> FeatureSpec | None:
    """The spec ``text`` against a manifest's ``features`` list; None for ``none``."""
    if text in ("none", ""):
        return None
    expanded = ALIASES.get(text, text)
    streams = {f["name"]: f for f in features}
    parts = []
    for piece in expanded.split("+"):
        match = _PART.match(piece.strip())
        if not match:
            raise FeatprepError(
                f"features {text!r}: cannot read {piece!r}; expected STREAM or STREAM[col,...]"
            )
        name, selection = match.groups()
        if name not in streams:
            raise FeatprepError(
                f"features {text!r}: the corpus has no {name!r} stream, only {sorted(streams)}"
            )
        stream = streams[name]
        if stream["rate"] != "frame":
            raise FeatprepError(f"features {text!r}: {name!r} is not frame-level (rate {stream['rate']!r})")
        columns = list(stream["columns"]) or [str(i) for i in range(stream["dim"])]
        wanted = columns if selection is None else [c.strip() for c in selection.split(",")]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise FeatprepError(f"features {text!r}: {name!r} has no column {missing[0]!r}")
        vocabularies = dict(stream.get("vocabularies") or {})
        if stream["dtype"].startswith("int") and len(vocabularies) != len(columns):
            raise FeatprepError(f"features {text!r}: integer stream {name!r} has no vocabulary per column")
        sizes = tuple(len(vocabularies[c]) for c in wanted) if vocabularies else ()
        parts.append(Part(name, tuple(columns.index(c) for c in wanted), sizes))
    parts.sort(key=lambda p: not p.categorical)  # stable: categorical first, order kept
    return FeatureSpec(text, tuple(parts))


def pack(
    spec: FeatureSpec,
    arrays: Mapping[str, np.ndarray],
    normalise: Callable[[str, np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """(frames, spec.dim) float32 of one utterance's ``arrays`` (stream -> frames x dim).

    ``normalise(stream, x)`` is applied to each float stream before its columns are taken.
    """
    columns = []
    for part in spec.parts:
        x = np.asarray(arrays[part.stream])
        if not part.categorical and normalise is not None:
            x = normalise(part.stream, x)
        columns.append(x[:, list(part.columns)].astype(np.float32, copy=False))
    return np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]

"""Corpus layouts: one module per corpus turns a directory into records.

Each module exposes ``discover(root, recipe) -> Discovery``. Everything specific to a
corpus lives in its module and its recipe; nothing downstream knows which corpus it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorpusError
from ..records import Rejection, Speaker, Utterance


@dataclass
class Discovery:
    """What a corpus directory holds: speakers, candidate utterances, early rejections."""

    speakers: list[Speaker]
    utterances: list[Utterance]
    rejections: list[Rejection] = field(default_factory=list)
    #: layout facts worth recording in the manifest (release, microphone, ...)
    layout: dict[str, Any] = field(default_factory=dict)


def _registry() -> dict[str, Callable[[Path, dict[str, Any]], Discovery]]:
    from . import cmu_arctic, vctk

    return {"vctk": vctk.discover, "cmu_arctic": cmu_arctic.discover}


CORPORA = ("vctk", "cmu_arctic")


def discover(corpus: str, root: str | Path, recipe: dict[str, Any]) -> Discovery:
    """Run the discovery of ``corpus`` on ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} does not exist or is not a directory")
    try:
        return _registry()[corpus](root, recipe)
    except KeyError:
        raise CorpusError(f"unknown corpus {corpus!r}; expected one of {list(CORPORA)}") from None

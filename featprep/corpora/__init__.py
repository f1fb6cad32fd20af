"""Corpus layouts: one module per corpus turns a directory into records.

Each module exposes ``discover(root, recipe) -> Discovery``. Everything specific to a
corpus lives in its module and its recipe; nothing downstream knows which corpus it is.
"""

from __future__ import annotations

import re
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
        run = _registry()[corpus]
    except KeyError:
        raise CorpusError(f"unknown corpus {corpus!r}; expected one of {list(CORPORA)}") from None
    return _reject_unsafe_ids(run(root, recipe))


#: what an utterance or speaker id may be: it names files, rows of rejected.tsv, Kaldi
#: table keys and Scheme strings, where a tab, newline, quote or slash would break them
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _reject_unsafe_ids(found: Discovery) -> Discovery:
    """Move utterances whose id or speaker id is not a `SAFE_ID` to the rejections."""
    kept = []
    for utt in found.utterances:
        bad = next((i for i in (utt.id, utt.speaker) if not SAFE_ID.fullmatch(i)), None)
        if bad is None:
            kept.append(utt)
            continue
        detail = f"id {bad!r} has characters other than letters, digits, '_', '.', '-' (or starts with one)"
        found.rejections.append(Rejection(utt.id, utt.speaker, "discover", "bad_id", detail, utt.audio_path))
    found.utterances = kept
    speaking = {u.speaker for u in kept}
    found.speakers = [s for s in found.speakers if s.id in speaking]
    return found

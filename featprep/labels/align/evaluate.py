"""How far aligned phone boundaries are from known ones (the demo's Festival truth, a
shipped label): the boundaries between phones that both sides agree on."""

from __future__ import annotations

import difflib

import numpy as np

from ..hts import HTSLabel, phone_of
from ..xwaves import Segment
from .model import N_STATES, SILENCES


def phone_segments(label: HTSLabel) -> list[Segment]:
    """``(start, end, phone)`` in seconds, one per phone (state-aligned labels folded)."""
    step = N_STATES if label.state_aligned else 1
    return [
        (label.start[i] / 1e7, label.end[i + step - 1] / 1e7, phone_of(label.contexts[i]))
        for i in range(0, len(label), step)
    ]


def _merged(segments: list[Segment]) -> list[Segment]:
    """Silences named ``pau``, runs of them merged into one."""
    out: list[Segment] = []
    for start, end, phone in segments:
        phone = "pau" if phone in SILENCES else phone
        if out and phone == "pau" and out[-1][2] == "pau":
            out[-1] = (out[-1][0], end, "pau")
        else:
            out.append((start, end, phone))
    return out


def boundary_errors(aligned: list[Segment], truth: list[Segment]) -> np.ndarray:
    """Absolute errors (seconds) of the boundaries between two phones present in both.

    The phone sequences are matched in order (silences as ``pau``); a boundary counts
    where both phones on either side of it are matched pairs.
    """
    ours, theirs = _merged(aligned), _merged(truth)
    matcher = difflib.SequenceMatcher(a=[p for *_, p in ours], b=[p for *_, p in theirs], autojunk=False)
    errors = []
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size - 1):
            errors.append(abs(ours[a + k][1] - theirs[b + k][1]))
    return np.array(errors, np.float64)

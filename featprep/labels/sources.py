"""Where an utterance's aligned full-context labels come from (the recipe's ``[labels]``).

- ``dir``: one HTS label file per utterance (Merlin output, the public VCTK set, ...).
- ``festival``: Festival utterance files (``.utt``) with their own segment times (CMU
  Arctic's ``festival/utts``, the demo corpus's ``truth/utts``).
- ``arctic``: CMU Arctic's ``lab/`` phone boundaries put on the full contexts Festival's
  front-end makes from the transcript (`transfer_boundaries`).

Paths come from ``labels.dir`` (relative to the corpus root) and ``labels.pattern``,
with ``{speaker}``, ``{utterance}``, ``{stem}`` (the corpus's own file stem) and
``{tree}`` (CMU Arctic's speaker folder) filled in.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Rejected
from ..records import Utterance
from .hts import HTSLabel, phone_of
from .xwaves import Segment

SOURCES = ("none", "dir", "festival", "arctic", "textgrid", "align")


def label_path(utt: Utterance, labels: dict[str, Any], root: str) -> Path:
    """The label (or utterance) file of ``utt`` under the recipe's ``labels.dir``."""
    name = labels["pattern"].format(
        speaker=utt.speaker,
        utterance=utt.id,
        stem=utt.custom.get("stem", utt.id),
        tree=utt.custom.get("tree", ""),
    )
    return Path(root) / labels["dir"] / name


def speech_span(label: HTSLabel, silences: list[str]) -> tuple[int, int]:
    """Start of the first and end of the last non-silence line, in 100 ns units.

    Raises `Rejected` (``bad_label``) when the labels do not begin and end with one of
    the ``silences`` or hold no speech at all.
    """
    phones = [phone_of(c) for c in label.contexts]
    for where, phone in (("first", phones[0]), ("last", phones[-1])):
        if phone not in silences:
            raise Rejected(
                "bad_label", f"{where} phone {phone!r} is not a silence symbol (labels.silence = {silences})"
            )
    speech = [i for i, p in enumerate(phones) if p not in silences]
    if not speech:
        raise Rejected("bad_label", "labels hold only silence")
    return int(label.start[speech[0]]), int(label.end[speech[-1]])


def transfer_boundaries(
    frontend: HTSLabel, segments: list[Segment], *, silences: list[str], max_edits: int
) -> HTSLabel:
    """Put the times of phone ``segments`` (CMU Arctic ``lab/``) on front-end contexts.

    Speech phones are matched in order; up to ``max_edits`` substituted phones (a
    different vowel reduction, say) are accepted and keep the front-end's context. A
    pause the front-end predicted but the speaker did not make stays with zero frames; a
    pause the speaker made that the front-end did not predict is added to the phone
    before it.
    """
    ours = [phone_of(c) for c in frontend.contexts]
    theirs = [p for _, _, p in segments]
    ours_speech = [i for i, p in enumerate(ours) if p not in silences]
    theirs_speech = [i for i, p in enumerate(theirs) if p not in silences]
    ours_names = [ours[i] for i in ours_speech]
    theirs_names = [theirs[i] for i in theirs_speech]
    matcher = difflib.SequenceMatcher(a=ours_names, b=theirs_names, autojunk=False)
    substituted = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op != "replace" or a1 - a0 != b1 - b0:
            where = f"after {' '.join(ours_names[max(0, a0 - 3) : a0])!r}" if a0 else "at the start"
            raise Rejected(
                "label_mismatch",
                f"lab/ phones differ from Festival's {where}: Festival has {ours_names[a0:a1]}, "
                f"lab/ has {theirs_names[b0:b1]}",
            )
        substituted += [f"{a}->{b}" for a, b in zip(ours_names[a0:a1], theirs_names[b0:b1], strict=True)]
    if len(substituted) > max_edits:
        raise Rejected(
            "label_mismatch",
            f"{len(substituted)} phones differ between Festival and lab/ ({', '.join(substituted)}; "
            f"labels.max_phone_edits = {max_edits})",
        )
    lab_start = {i: round(segments[theirs_speech[k]][0] * 1e7) for k, i in enumerate(ours_speech)}
    lab_end = {i: round(segments[theirs_speech[k]][1] * 1e7) for k, i in enumerate(ours_speech)}
    ends = np.zeros(len(ours), np.int64)
    previous = 0
    for i in range(len(ours)):
        after = next((j for j in range(i + 1, len(ours)) if ours[j] not in silences), None)
        if ours[i] not in silences:
            # up to the next speech phone's start: a pause only the speaker made joins this phone
            ends[i] = lab_start[i + 1] if i + 1 in lab_start else lab_end[i]
        elif after is None:
            ends[i] = round(segments[-1][1] * 1e7) if i == len(ours) - 1 else previous
        elif any(ours[j] in silences for j in range(i + 1, after)):
            ends[i] = previous  # the next silence of the run takes the pause
        else:
            ends[i] = max(previous, lab_start[after])
        previous = int(ends[i])
    starts = np.concatenate([[0], ends[:-1]])
    return HTSLabel(list(frontend.contexts), starts.astype(np.int64), ends)

"""HTS full-context label files: state-aligned, phone-aligned and unaligned.

A line is ``start end context`` (times in 100 ns units, columns padded with any amount
of space), or ``context`` alone for unaligned labels. State-aligned labels end each
context with ``[k]`` (k = 2..6 for five-state models), five lines per phone. Times off
the 5 ms grid (13099999) are kept as written: frame counts are derived by the alignment
contract (`frames`), never by rounding the times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FeatprepError
from ..io import atomic_write_text

#: 5 ms in HTK units (100 ns)
FRAME_UNITS = 50000
_STATE = re.compile(r"\[(\d+)\]$")


class LabelError(FeatprepError):
    """A label file cannot be read; the message names the file and the line."""


@dataclass
class HTSLabel:
    """The lines of one label file.

    ``start`` / ``end`` are int64 arrays in 100 ns units (None when unaligned);
    ``contexts`` hold the full-context strings without the state suffix; ``states``
    holds the state numbers ``k`` of a state-aligned file (None otherwise); ``words``,
    when Festival's front-end made the labels, the spelling of the word each line belongs
    to (``""`` for a silence; label files do not carry it).
    """

    contexts: list[str]
    start: np.ndarray | None = None
    end: np.ndarray | None = None
    states: np.ndarray | None = None
    words: list[str] | None = None

    def __len__(self) -> int:
        return len(self.contexts)

    @property
    def aligned(self) -> bool:
        return self.start is not None

    @property
    def state_aligned(self) -> bool:
        return self.states is not None

    def frames(self, frame_units: int = FRAME_UNITS) -> np.ndarray:
        """Frames per line: ``end // 50000 - start // 50000``, so that lines always sum to
        the utterance's frame count, on the grid or off it."""
        if self.start is None or self.end is None:
            raise LabelError("unaligned labels have no frames")
        return self.end // frame_units - self.start // frame_units

    def num_frames(self, frame_units: int = FRAME_UNITS) -> int:
        return int(self.end[-1] // frame_units - self.start[0] // frame_units) if len(self) else 0

    def shifted(self, units: int) -> HTSLabel:
        """The same labels with every time moved by ``units`` (negative = earlier)."""
        return HTSLabel(self.contexts, self.start + units, self.end + units, self.states, self.words)

    def to_text(self) -> str:
        suffix = [f"[{k}]" for k in self.states] if self.states is not None else [""] * len(self)
        if self.start is None:
            return "".join(f"{c}{s}\n" for c, s in zip(self.contexts, suffix, strict=True))
        return "".join(
            f"{a} {b} {c}{s}\n"
            for a, b, c, s in zip(self.start, self.end, self.contexts, suffix, strict=True)
        )


def parse_hts(text: str, source: str = "<labels>") -> HTSLabel:
    """Parse the text of a label file; ``source`` names it in error messages."""
    contexts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    states: list[int] = []
    n_fields = None
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (1, 3) or (n_fields is not None and len(fields) != n_fields):
            raise LabelError(
                f"{source} line {number}: expected 'start end context' or 'context' on every line, "
                f"found {line.strip()[:80]!r}"
            )
        n_fields = len(fields)
        context = fields[-1]
        if n_fields == 3:
            try:
                a, b = int(fields[0]), int(fields[1])
            except ValueError:
                raise LabelError(
                    f"{source} line {number}: times must be integers (100 ns units), found {fields[:2]}"
                ) from None
            if b < a or (ends and a < starts[-1]):
                raise LabelError(f"{source} line {number}: times {a} {b} go backwards")
            starts.append(a)
            ends.append(b)
        m = _STATE.search(context)
        if m and (states or not contexts):
            states.append(int(m.group(1)))
            context = context[: m.start()]
        elif m or states:
            raise LabelError(f"{source} line {number}: some lines have a state suffix [k] and some do not")
        contexts.append(context)
    if not contexts:
        raise LabelError(f"{source}: no labels")
    label = HTSLabel(contexts)
    if n_fields == 3:
        label.start, label.end = np.array(starts, np.int64), np.array(ends, np.int64)
    if states:
        label.states = np.array(states, np.int64)
        _check_states(label, source)
    return label


def _check_states(label: HTSLabel, source: str) -> None:
    k = label.states
    n = int(k.max() - k.min() + 1)
    first = int(k.min())
    if len(k) % n or not np.array_equal(k, np.tile(np.arange(first, first + n), len(k) // n)):
        raise LabelError(f"{source}: state numbers do not run {first}..{first + n - 1} for every phone")
    ctx = label.contexts
    for p in range(0, len(ctx), n):
        if any(c != ctx[p] for c in ctx[p : p + n]):
            raise LabelError(f"{source} line {p + 1}: the states of one phone have different contexts")


def read_hts(path: str | Path) -> HTSLabel:
    """Read a label file (UTF-8)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelError(f"label file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise LabelError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_hts(text, str(path))


def write_hts(path: str | Path, label: HTSLabel) -> None:
    atomic_write_text(path, label.to_text())


def phone_of(context: str) -> str:
    """The current phone (p3) of a full context ``p1^p2-p3+p4=p5@...``."""
    head = context.split("@", 1)[0]
    return head.split("-", 1)[1].split("+", 1)[0] if "-" in head and "+" in head else context

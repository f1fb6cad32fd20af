"""xwaves / festvox phone label files, as in CMU Arctic's ``lab/`` folders.

A header (``separator ;``, ``nfields 1``) ends with a line ``#``; then one line per
segment, ``end_time colour phone``, end times in seconds. A segment starts where the
previous one ended; the first starts at 0.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FeatprepError

Segment = tuple[float, float, str]


def read_xwaves(path: str | Path) -> list[Segment]:
    """Read a label file into ``(start, end, phone)`` tuples in seconds."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        body = lines.index("#") + 1
    except ValueError:
        body = 0
    segments: list[Segment] = []
    start = 0.0
    for number, line in enumerate(lines[body:], body + 1):
        fields = line.split()
        if not fields:
            continue
        try:
            end = float(fields[0])
            phone = fields[2]
        except (ValueError, IndexError):
            raise FeatprepError(
                f"{path} line {number}: expected 'end_time colour phone', found {line.strip()!r}"
            ) from None
        if end < start:
            raise FeatprepError(f"{path} line {number}: end time {end} before the previous {start}")
        segments.append((start, end, phone))
        start = end
    return segments


def format_xwaves(segments: list[Segment]) -> str:
    """The text of a label file for ``segments`` (only end times and phones are kept)."""
    lines = ["separator ;", "nfields 1", "#"]
    lines += [f"{end:.5f} 125 {phone}" for _, end, phone in segments]
    return "\n".join(lines) + "\n"

"""Praat TextGrids: interval tiers read (long and short text formats) and written.

Praat's text formats hold the same sequence of numbers and quoted strings (a ``""`` inside
a string is one ``"``); the long format adds ``key =`` names and ``[n]`` indices around
them, which the reader skips, as Praat's own does. Point tiers (``TextTier``) are read
past and left out. UTF-8 and Praat's UTF-16 (with a byte-order mark) are read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import FeatprepError
from ..io import atomic_write_text
from .xwaves import Segment

_INDEX = re.compile(r"\[\s*\d+\s*\]")
_TOKEN = re.compile(r'"((?:[^"]|"")*)"|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|<(exists|absent)>')


class TextGridError(FeatprepError):
    """A TextGrid file that cannot be read."""


def _decode(data: bytes, where: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextGridError(f"{where}: neither UTF-8 nor UTF-16 text (byte {e.start})") from None


def parse_textgrid(text: str, where: str = "<TextGrid>") -> dict[str, list[Segment]]:
    """Interval tiers of a TextGrid's text: tier name -> ``(start, end, label)`` in seconds."""
    tokens = []
    for m in _TOKEN.finditer(_INDEX.sub(" ", text)):
        string, number, flag = m.groups()
        tokens.append(string.replace('""', '"') if string is not None else flag or float(number))
    position = 0

    def take(kind: type, what: str):
        nonlocal position
        if position >= len(tokens):
            raise TextGridError(f"{where}: the file ends where {what} should be")
        value = tokens[position]
        position += 1
        if kind is float and isinstance(value, float):
            return value
        if kind is str and isinstance(value, str):
            return value
        raise TextGridError(f"{where}: expected {what}, found {value!r}")

    if take(str, '"ooTextFile"') != "ooTextFile" or take(str, '"TextGrid"') != "TextGrid":
        raise TextGridError(f'{where}: not a Praat TextGrid (no "ooTextFile" "TextGrid" header)')
    take(float, "xmin")
    take(float, "xmax")
    if take(str, "<exists>") != "exists":
        return {}
    tiers: dict[str, list[Segment]] = {}
    for _ in range(int(take(float, "the number of tiers"))):
        kind = take(str, "a tier class")
        name = take(str, "a tier name")
        take(float, "the tier's xmin")
        take(float, "the tier's xmax")
        count = int(take(float, "the number of intervals or points"))
        if kind == "IntervalTier":
            tiers[name] = [
                (take(float, "an interval's xmin"), take(float, "an interval's xmax"), take(str, "a label"))
                for _ in range(count)
            ]
        elif kind == "TextTier":
            for _ in range(count):
                take(float, "a point's time")
                take(str, "a point's mark")
        else:
            raise TextGridError(f"{where}: unknown tier class {kind!r}")
    return tiers


def read_textgrid(path: str | Path) -> dict[str, list[Segment]]:
    """`parse_textgrid` of a file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TextGridError(f"cannot read TextGrid {path}: {e.strerror}") from None
    return parse_textgrid(_decode(data, str(path)), str(path))


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _number(x: float) -> str:
    return f"{x:.7f}".rstrip("0").rstrip(".")


def format_textgrid(tiers: dict[str, list[Segment]]) -> str:
    """The long text format of interval ``tiers`` (name -> contiguous segments)."""
    xmax = max((s[-1][1] for s in tiers.values() if s), default=0.0)
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {_number(xmax)}",
    ]
    lines += ["tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for i, (name, segments) in enumerate(tiers.items(), 1):
        lines += [f"    item [{i}]:", '        class = "IntervalTier"', f"        name = {_quoted(name)}"]
        lines += [
            "        xmin = 0",
            f"        xmax = {_number(xmax)}",
            f"        intervals: size = {len(segments)}",
        ]
        for k, (start, end, label) in enumerate(segments, 1):
            lines += [
                f"        intervals [{k}]:",
                f"            xmin = {_number(start)}",
                f"            xmax = {_number(end)}",
                f"            text = {_quoted(label)}",
            ]
    return "\n".join(lines) + "\n"


def word_segments(phones: list[Segment], words: list[str], word_final: np.ndarray) -> list[Segment]:
    """The words tier of aligned ``phones``: ``words[k]`` is the spelling of phone k's word
    (``""`` for a silence, which stays an interval of its own), ``word_final[k]`` whether
    phone k ends its word (two words of one spelling in a row stay two)."""
    out: list[Segment] = []
    open_word = False
    for (start, end, _), word, final in zip(phones, words, word_final, strict=True):
        if open_word and out[-1][2] == word:
            out[-1] = (out[-1][0], end, word)
        else:
            out.append((start, end, word))
        open_word = bool(word) and not final
    return out


def write_textgrid(path: str | Path, tiers: dict[str, list[Segment]]) -> None:
    """Write `format_textgrid` atomically."""
    atomic_write_text(path, format_textgrid(tiers))


#: Montreal Forced Aligner's silence marks (an empty interval, ``sil``, ``sp``)
SILENCE_MARKS = ("", "sil", "sp")


def festival_phone(mark: str) -> str:
    """An MFA phone (ARPAbet with stress digits, ``AH0``) in Festival's radio set (``ah``);
    silence marks are ``pau``."""
    phone = mark.strip().lower().rstrip("012")
    return "pau" if phone in SILENCE_MARKS else phone


def textgrid_phones(path: str | Path, tier: str = "phones") -> list[Segment]:
    """The ``tier`` (any case) of a TextGrid as Festival phone segments (`festival_phone`)."""
    tiers = read_textgrid(path)
    found = {name.lower(): segments for name, segments in tiers.items()}.get(tier.lower())
    if not found:
        raise TextGridError(f"{path}: no interval tier {tier!r} with intervals (tiers: {sorted(tiers)})")
    return [(start, end, festival_phone(mark)) for start, end, mark in found]

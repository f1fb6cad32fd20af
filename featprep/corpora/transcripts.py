"""Transcript decoding shared by the corpus modules."""

from __future__ import annotations

from ..errors import Rejected


def decode_transcript(raw: bytes) -> str:
    """UTF-8 bytes to a one-line transcript with whitespace runs collapsed.

    Raises `Rejected`: ``text_encoding`` for bytes that are not UTF-8, ``empty_text`` for
    a transcript with nothing but whitespace.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(
            "text_encoding", f"byte {raw[e.start]:#04x} at offset {e.start} is not UTF-8"
        ) from None
    text = " ".join(text.split())
    if not text:
        raise Rejected("empty_text", "transcript is empty")
    return text

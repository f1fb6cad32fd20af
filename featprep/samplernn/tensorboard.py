"""TensorBoard event files, written without TensorBoard or TensorFlow.

An event file is a sequence of records (length, masked CRC-32C of the length, an
``Event`` protocol buffer, masked CRC-32C of it); the few messages needed here (scalar
and audio summaries) are encoded by hand, so training logs to TensorBoard with no extra
dependency. Point ``tensorboard --logdir RUN/tensorboard`` at a run.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import numpy as np

from ..io import wav_bytes

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1  # CRC-32C (Castagnoli), reflected
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, *, summary: bytes = b"", version: str = "", session_start: bool = False) -> bytes:
    event = b"\x09" + struct.pack("<d", time.time())  # wall_time, field 1, double
    event += _varint(2 << 3) + _varint(step)  # step, field 2, varint
    if version:
        event += _field(3, version.encode())
    if summary:
        event += _field(5, summary)
    if session_start:  # session_log, field 7: SessionLog status (field 1) START (1)
        event += _field(7, _varint(1 << 3) + _varint(1))
    return event


class EventWriter:
    """Appends scalar and audio summaries to one event file in ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self._file = (folder / name).open("ab")
        self._write(_event(0, version="brain.Event:2"))

    def _write(self, event: bytes) -> None:
        length = struct.pack("<Q", len(event))
        self._file.write(length + struct.pack("<I", _masked_crc(length)))
        self._file.write(event + struct.pack("<I", _masked_crc(event)))

    def restart(self, step: int) -> None:
        """A resumed run logs again from ``step``: TensorBoard drops what a killed run
        wrote from that step on (a session START purges the steps at and after it)."""
        self._write(_event(step, session_start=True))
        self._file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = b"".join(
            _field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value))  # simple_value, field 2
            for tag, value in values.items()
        )
        self._write(_event(step, summary=summary))
        self._file.flush()

    def audio(self, step: int, tag: str, samples: np.ndarray, rate: int) -> None:
        audio = (
            b"\x0d" + struct.pack("<f", rate)  # sample_rate, field 1, float
            + _varint(2 << 3) + _varint(1)  # num_channels
            + _varint(3 << 3) + _varint(len(samples))  # length_frames
            + _field(4, wav_bytes(samples, rate))
            + _field(5, b"audio/wav")
        )  # fmt: skip
        self._write(_event(step, summary=_field(1, _field(1, tag.encode()) + _field(6, audio))))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

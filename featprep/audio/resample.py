"""Sample-rate conversion with soxr and conversion to 16-bit integers."""

from __future__ import annotations

import numpy as np
import soxr


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a float32 mono signal with soxr's high-quality filter (librosa's default).

    Returns the input unchanged when the rates are equal.
    """
    if sr_in == sr_out:
        return audio
    return soxr.resample(audio, sr_in, sr_out, quality="HQ")


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to int16, rounded, saturating instead of wrapping around."""
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype(np.int16)

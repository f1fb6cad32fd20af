"""Decode audio files with soundfile and turn them into float32 mono signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import Rejected


def probe(path: str | Path) -> tuple[int, int, int]:
    """Read a file's header: ``(sample_rate, num_samples, channels)``.

    libsndfile quietly shortens a truncated WAV to the bytes present and only notes
    ``data : N (should be M)`` in its log; that note is read here.

    Raises `Rejected`: ``unreadable_audio`` when libsndfile cannot open the file,
    ``truncated_audio`` when its data chunk is shorter than the header declares.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise Rejected("unreadable_audio", _one_line(e)) from None
    for line in info.extra_info.splitlines():
        if line.startswith("data") and "should be" in line:
            raise Rejected("truncated_audio", f"data chunk {line.split(':', 1)[1].strip()} bytes")
    return int(info.samplerate), int(info.frames), int(info.channels)


def read_audio(path: str | Path, *, expected_samples: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 in [-1, 1].

    Parameters
    ----------
    path : audio file (any format libsndfile reads: wav, flac, ...).
    expected_samples : samples per channel the header declared; fewer decoded samples
        means a truncated file.

    Returns
    -------
    (audio of shape (samples, channels), sample rate)

    Raises `Rejected`: ``unreadable_audio``, ``truncated_audio``, ``nan_inf``.
    """
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise Rejected("unreadable_audio", _one_line(e)) from None
    if expected_samples is not None and len(audio) < expected_samples:
        raise Rejected("truncated_audio", f"header declares {expected_samples} samples, decoded {len(audio)}")
    if not np.isfinite(audio).all():
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise Rejected("nan_inf", f"{bad} non-finite samples")
    return audio, int(sr)


def downmix(audio: np.ndarray) -> np.ndarray:
    """Average the channels of a (samples, channels) array into one float32 channel."""
    if audio.shape[1] == 1:
        return audio[:, 0]
    return audio.mean(axis=1, dtype=np.float32)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())

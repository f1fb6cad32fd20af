"""Energy-based silence trimming on the 5 ms frame grid."""

from __future__ import annotations

import numpy as np

from .. import FRAME_SHIFT


def speech_bounds(
    audio: np.ndarray,
    *,
    top_db: float = 40.0,
    noise_margin_db: float = 6.0,
    noise_percentile: float = 10.0,
    smooth_frames: int = 5,
    frame: int = FRAME_SHIFT,
) -> tuple[int, int] | None:
    """Find the first and last speech frame of a signal.

    Energy is measured on non-overlapping frames of ``frame`` samples and smoothed over
    ``smooth_frames`` frames, so that a click does not count as speech. A frame is speech
    when its level is within ``top_db`` of the loudest frame and ``noise_margin_db`` above
    the noise floor (the ``noise_percentile``-th percentile of frame levels). The floor
    term is capped at ``top_db / 2`` below the peak: a recording with no silence at all has
    a floor made of speech, and must not lose its soft edges.

    Parameters
    ----------
    audio : float32 mono signal.

    Returns
    -------
    ``(start, end)`` in samples, both multiples of ``frame`` (end exclusive), or None when
    no frame qualifies (an empty or silent signal).
    """
    n = len(audio) // frame
    if n == 0:
        return None
    blocks = audio[: n * frame].reshape(n, frame)
    energy = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / frame
    if smooth_frames > 1 and n >= smooth_frames:
        energy = np.convolve(energy, np.full(smooth_frames, 1.0 / smooth_frames), mode="same")
    level = 10.0 * np.log10(energy + 1e-12)
    peak = float(level.max())
    floor = float(np.percentile(level, noise_percentile))
    threshold = max(peak - top_db, min(floor + noise_margin_db, peak - top_db / 2))
    speech = np.flatnonzero(level > threshold)
    if speech.size == 0:
        return None
    return int(speech[0]) * frame, (int(speech[-1]) + 1) * frame


def trim_bounds(
    start: int, end: int, length: int, *, margin: int, frame: int = FRAME_SHIFT
) -> tuple[int, int]:
    """Widen speech bounds by ``margin`` samples and put them on the frame grid.

    The start is floored to a multiple of ``frame``; the end is chosen so that
    ``end - start`` is a multiple of ``frame`` and ``end <= length``.
    """
    lo = (max(0, start - margin) // frame) * frame
    hi = min(length, end + margin)
    return lo, lo + ((hi - lo) // frame) * frame

"""Level checks on decoded audio: digital silence, near-silence, clipping."""

from __future__ import annotations

import numpy as np

from ..errors import Rejected


def check_levels(
    audio: np.ndarray, *, near_silent_dbfs: float, clip_level: float, clipping_fraction: float
) -> None:
    """Reject recordings that carry no usable signal or are heavily clipped.

    Run on the decoded audio before resampling: the resampler's filter would smooth
    clipped runs into values below full scale.

    Parameters
    ----------
    audio : float32 samples in [-1, 1], any shape.
    near_silent_dbfs : a peak below this level rejects the audio (``near_silent``).
    clip_level, clipping_fraction : more than ``clipping_fraction`` of the samples with
        ``|x| >= clip_level`` rejects the audio (``clipping``).

    Raises `Rejected`: ``digital_silence``, ``near_silent``, ``clipping``.
    """
    magnitude = np.abs(audio)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak == 0.0:
        raise Rejected("digital_silence", "every sample is zero")
    peak_dbfs = 20.0 * np.log10(peak)
    if peak_dbfs < near_silent_dbfs:
        raise Rejected("near_silent", f"peak {peak_dbfs:.1f} dBFS < {near_silent_dbfs} dBFS")
    clipped = np.count_nonzero(magnitude >= clip_level) / magnitude.size
    if clipped > clipping_fraction:
        raise Rejected(
            "clipping",
            f"{100 * clipped:.2f}% of samples at full scale > {100 * clipping_fraction}%",
        )

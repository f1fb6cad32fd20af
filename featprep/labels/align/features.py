"""Aligner features: 13 MFCCs + deltas + delta-deltas at 16 kHz, 25 ms window, 5 ms hop.

Frame ``t`` is the frame of the alignment contract: it covers [5t, 5t + 5) ms (time ``u``
in 100 ns units belongs to frame ``u // 50000``), so its 25 ms analysis window is centred
on that frame's middle, 5t + 2.5 ms (sample 80t + 40 at 16 kHz). A boundary the aligner
puts between frames t - 1 and t is the time 5t ms, exactly on the 5 ms grid. An
utterance of ``N`` samples at rate ``sr`` has ``N * 200 // sr`` frames (whole 5 ms frames
from the start of the file), the frame count its label lines sum to.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import soxr

from ...errors import FeatprepError
from ..hts import FRAME_UNITS

RATE = 16000
HOP = RATE * FRAME_UNITS // 10_000_000  # 80 samples = 5 ms
WINDOW = 400  # 25 ms
N_MFCC = 13
DIM = 3 * N_MFCC
#: HTK's usual front-end: 26 mel channels, cepstral liftering 22, Hamming window
N_MELS = 26
LIFTER = 22
#: a frame's standard deviation never falls below this in CMVN (a constant coefficient)
_STD_FLOOR = 1e-3


@functools.cache
def _filters() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The front-end's fixed matrices: the periodic Hamming window, the HTK-scale mel
    filterbank (26 triangles, 20 Hz to 7.8 kHz, Slaney's area normalisation), the
    orthonormal DCT-II to 13 cepstra and the cepstral lifter, as librosa's ``mfcc`` with
    those options builds them."""
    n = np.arange(WINDOW)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / WINDOW)
    bins = np.fft.rfftfreq(WINDOW, 1 / RATE)
    mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    edges = 700.0 * (10.0 ** (np.linspace(mel(20.0), mel(RATE / 2 - 200.0), N_MELS + 2) / 2595.0) - 1.0)
    width = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    rising, falling = -ramps[:-2] / width[:-1, None], ramps[2:] / width[1:, None]
    basis = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    k = np.arange(N_MFCC)[:, None]
    dct = np.cos(np.pi * k * (2 * np.arange(N_MELS) + 1) / (2 * N_MELS)) * np.sqrt(2.0 / N_MELS)
    dct[0] /= np.sqrt(2.0)
    lifter = 1.0 + (LIFTER / 2) * np.sin(np.pi * np.arange(1, N_MFCC + 1) / LIFTER)
    return window, basis.astype(np.float32), dct.astype(np.float32), lifter.astype(np.float32)


def num_frames(n_samples: int, sr: int) -> int:
    """Whole 5 ms frames in ``n_samples`` at ``sr``: ``floor(duration / 5 ms)``."""
    return n_samples * 10_000_000 // (sr * FRAME_UNITS)


def mfcc_features(audio: np.ndarray, sr: int) -> np.ndarray:
    """``(frames, 39)`` float32: MFCC (c0..c12), deltas and delta-deltas of mono ``audio``.

    ``audio`` is resampled to 16 kHz first; frame ``t`` is centred at 5t + 2.5 ms.
    """
    y = np.asarray(audio, np.float32)
    if y.ndim != 1:
        raise FeatprepError(f"the aligner takes mono audio (one channel), found an array of shape {y.shape}")
    n = num_frames(len(y), sr)
    if n == 0:
        return np.zeros((0, DIM), np.float32)
    if sr != RATE:
        y = soxr.resample(y, sr, RATE, quality="HQ")
    # left padding puts the centre of window t (sample 80t + 200 of the padded signal) at
    # sample 80t + 40 of the audio; the right padding makes room for the last window
    left = WINDOW // 2 - HOP // 2
    need = (n - 1) * HOP + WINDOW - left - len(y)
    y = np.pad(y, (left, max(need, 0) + HOP), mode="reflect" if len(y) > 1 else "constant")
    window, basis, dct, lifter = _filters()
    frames = np.lib.stride_tricks.sliding_window_view(y, WINDOW)[::HOP]
    spectrum = np.fft.rfft(frames * window, axis=1).astype(np.complex64)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    # log mel energies floored 80 dB below the loudest frame (librosa's power_to_db)
    log_mel = 10.0 * np.log10(np.maximum(power @ basis.T, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 80.0)
    mfcc = (log_mel @ dct.T * lifter)[:n]
    # HTK's regression window of +-2 frames (Savitzky-Golay: slope, and curvature of a
    # quadratic), the edge frames repeated, so utterances shorter than it keep their deltas
    edged = np.pad(mfcc, ((2, 2), (0, 0)), mode="edge")
    shifted = [edged[k : k + len(mfcc)] for k in range(5)]
    d1 = sum(w * f for w, f in zip((-2.0, -1.0, 0.0, 1.0, 2.0), shifted, strict=True)) / 10.0
    d2 = sum(w * f for w, f in zip((2.0, -1.0, -2.0, -1.0, 2.0), shifted, strict=True)) / 7.0
    return np.concatenate([mfcc, d1, d2], axis=1).astype(np.float32)


def cmvn_stats(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over every frame of one speaker's utterances."""
    total = sum(len(f) for f in features)
    if total == 0:
        return np.zeros(DIM), np.ones(DIM)
    s1 = sum(f.sum(axis=0, dtype=np.float64) for f in features)
    s2 = sum(np.square(f, dtype=np.float64).sum(axis=0) for f in features)
    mean = s1 / total
    std = np.sqrt(np.maximum(s2 / total - mean**2, 0.0))
    return mean, np.maximum(std, _STD_FLOOR)


def apply_cmvn(features: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Features normalised to zero mean and unit variance by a speaker's ``stats``."""
    mean, std = stats
    return ((features - mean) / std).astype(np.float32)

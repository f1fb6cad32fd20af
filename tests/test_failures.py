"""Failure cases: each one clear line (or a rejection code) before any work, exit codes,
Ctrl-C, damaged files and left-overs; nothing written outside the output folder."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from featprep.corpora import discover
from featprep.demo import run_demo
from featprep.errors import ArgumentError, FeatprepError, OutputError, RecipeError
from featprep.io import check_output_dir
from featprep.labels.align.corpus import align_corpus
from featprep.labels.frontend import text_to_labels
from featprep.manifest import read_rejected, write_rejected
from featprep.normalise import Normaliser
from featprep.normstats import normstats
from featprep.pipeline import prepare
from featprep.recipe import _flatten, _merge, _read_toml, builtin_recipe_path, load_recipe
from featprep.recipe_schema import rule_of
from featprep.samplernn.model import ModelConfig, SampleRNN
from featprep.samplernn.run import Run, generate_to
from featprep.samplernn.train import TrainConfig, train
from featprep.stats import StatisticsUnavailable
from featprep.validate import validate

from .conftest import REAL_CLIPS


def featprep(*args, cwd=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "featprep", *map(str, args)], capture_output=True, text=True, cwd=cwd, **kw
    )


def one_line(result, *fragments: str, code: int = 1) -> str:
    """The command failed with ``code`` and said so in one line holding ``fragments``."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """The two real Arctic clips prepared without labels or acoustic features, with
    normalisation statistics: the quickest corpus a run can be trained on."""
    root = tmp_path_factory.mktemp("clips")
    for spk, (stem, wav, text) in REAL_CLIPS.items():
        tree = root / "cmu_arctic" / f"cmu_us_{spk}_arctic"
        (tree / "wav").mkdir(parents=True)
        (tree / "etc").mkdir()
        shutil.copyfile(wav, tree / "wav" / f"{stem}.wav")
        (tree / "etc" / "txt.done.data").write_text(f'( {stem} "{text}" )\n')
    out = root / "prepared"
    prepare(
        "cmu_arctic", root / "cmu_arctic", out, overrides=["labels.source=none", "acoustic.enabled=false"]
    )
    normstats(out, min_frames=0)
    return out


#: a tiny run's options, as --set arguments and as the library's config
RUN_SETS = {"features": "none", "batch_size": 2, "checkpoint_every": 1000, "valid_every": 1000}


def run_config(**changes) -> TrainConfig:
    return TrainConfig.from_preset("small", {**RUN_SETS, **changes})


def cli_sets(**changes) -> list[str]:
    return sum((["--set", f"{k}={v}"] for k, v in {**RUN_SETS, **changes}.items()), [])


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    train(clips, run, run_config(), steps=2, log=lambda _m: None)
    return run


# -- the recipe: every key has a rule, checked on load -----------------------------------


def test_every_key_of_the_builtin_recipes_has_a_rule_its_default_keeps():
    for corpus in ("vctk", "cmu_arctic"):
        recipe = _read_toml(builtin_recipe_path("common"))
        _merge(recipe, _read_toml(builtin_recipe_path(corpus)))
        for key, value in _flatten(recipe):
            rule = rule_of(key)
            assert rule is not None, f"{corpus}: recipe key {key} has no rule in recipe_schema.SCHEMA"
            assert rule.test(value), (key, value, rule.expected)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trim.margin_seconds=-1", "a number >= 0"),
        ("acoustic.window_seconds=0", "a number >= 0.005"),
        ("trim.smooth_frames=-3", "an integer >= 1"),
        ("trim.smooth_frames=2.5", "an integer >= 1"),
        ("split.max_heldout_fraction=2", "<= 0.5"),
        ("split.test_seconds=-10", "a number >= 0"),
        ("trim.noise_percentile=150", "<= 100"),
        ("acoustic.mcep_order=-1", "an integer >= 1"),
        ("split.seed=-1", "an integer >= 0"),
        ("acoustic.f0_range.M=[-100,0]", "40 <= low < high <= 4000"),
        ("labels.source=festivl", "one of ['none', 'dir', 'festival', 'arctic', 'textgrid', 'align']"),
        ("labels.pattern=../../{speaker}.lab", "without '..'"),
        ("clean.max_seconds=nan", "a number > 0"),
    ],
)
def test_a_value_outside_its_range_is_refused_on_load(override, expected):
    key = override.split("=")[0]
    with pytest.raises(RecipeError, match=f"recipe key '{key}' must be") as e:
        load_recipe("vctk", overrides=[override])
    assert expected in str(e.value) and f"--set {override}" in str(e.value)


def test_limits_joining_two_keys_name_both():
    with pytest.raises(RecipeError, match="clean.min_seconds = 30 must be below clean.max_seconds = 20.0"):
        load_recipe("vctk", overrides=["clean.min_seconds=30"])
    with pytest.raises(RecipeError, match="acoustic.window_seconds = 0.05 .* must fit in acoustic.fft_size"):
        load_recipe("vctk", overrides=["acoustic.window_seconds=0.05"])


def test_a_recipe_file_value_names_the_file(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text("[split]\nmax_heldout_fraction = 0.9\n")
    with pytest.raises(RecipeError, match=f"recipe {user}: recipe key 'split.max_heldout_fraction'"):
        load_recipe("vctk", user)


@pytest.mark.parametrize("damage", ["not_utf8", "a_folder"])
def test_an_unreadable_recipe_file_is_one_line(tmp_path, damage):
    recipe = tmp_path / "recipe.toml"
    if damage == "not_utf8":
        recipe.write_bytes(b"\xff\xfe[labels]\n")
    else:
        recipe.mkdir()
    with pytest.raises(RecipeError, match=f"recipe file {recipe}"):
        load_recipe("vctk", recipe)
    r = featprep("prepare", "vctk", "--root", tmp_path, "--out", tmp_path / "out", "--recipe", recipe)
    one_line(r, str(recipe))


def test_a_bad_recipe_value_is_reported_before_the_corpus_is_read(tmp_path):
    """The root does not even exist: the recipe is what is reported, and no --out made."""
    r = featprep("prepare", "vctk", "--root", tmp_path / "nowhere", "--out", tmp_path / "out",
                 "--set", "labels.source=festivl", "-q")  # fmt: skip
    one_line(r, "labels.source", "festivl")
    assert not (tmp_path / "out").exists()


def test_a_relative_labels_dir_that_does_not_exist_names_value_and_path(demo_corpus, tmp_path):
    root = demo_corpus / "VCTK-Corpus"
    with pytest.raises(RecipeError) as e:
        prepare("vctk", root, tmp_path / "out", overrides=["labels.source=dir", "labels.dir=lab/full"])
    message = str(e.value)
    assert "labels.dir = 'lab/full' (relative to the corpus root)" in message
    assert str(root / "lab" / "full") in message and "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("pase.checkpoint=missing.ckpt", "pase.checkpoint = 'missing.ckpt'"),
        ("linguistic.questions=missing.hed", "linguistic.questions = 'missing.hed'"),
    ],
)
def test_files_a_recipe_names_must_exist_before_work(demo_corpus, tmp_path, override, fragment):
    sets = ["labels.source=dir", "labels.dir=../truth/full", override]
    with pytest.raises(RecipeError, match=fragment):
        prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "out", overrides=sets)
    assert not (tmp_path / "out").exists()


def test_an_arctic_voice_that_is_not_installed_is_reported_before_work(demo_corpus, tmp_path):
    with pytest.raises(RecipeError, match="labels.voice 'kal_diphonex' is not installed; Festival has"):
        prepare(
            "cmu_arctic",
            demo_corpus / "cmu_arctic",
            tmp_path / "out",
            overrides=["labels.voice=kal_diphonex"],
        )
    assert not (tmp_path / "out").exists()


# -- library entry points check their own arguments --------------------------------------


def test_prepare_with_num_shards_needs_a_shard_index(demo_corpus, tmp_path):
    with pytest.raises(ArgumentError, match="shard_index and num_shards"):
        prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "out", num_shards=2)
    with pytest.raises(ArgumentError, match=r"shard_index must be in \[0, 2\), found 2"):
        prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "out", shard_index=2, num_shards=2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("jobs", [0, -2, -5, 1.5])
def test_a_worker_count_that_is_not_one_or_more_or_minus_one_is_refused(demo_corpus, tmp_path, jobs):
    # 0 and -5 used to run on every core without a word
    with pytest.raises(ArgumentError, match=r"jobs must be a whole number >= 1, or -1 for one per core"):
        prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "out", jobs=jobs)
    with pytest.raises(ArgumentError, match=r"jobs must be a whole number >= 1"):
        align_corpus("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "lab", jobs=jobs)
    with pytest.raises(ArgumentError, match=r"jobs must be a whole number >= 1"):
        run_demo(tmp_path / "demo", jobs=jobs, log=lambda _m: None)
    assert sorted(tmp_path.iterdir()) == []


def test_train_without_steps_or_epochs_is_refused(tmp_path):
    with pytest.raises(ArgumentError, match="give steps or epochs"):
        train(tmp_path, tmp_path / "run", run_config())
    with pytest.raises(ArgumentError, match="steps must be an integer >= 1, found 0"):
        train(tmp_path, tmp_path / "run", run_config(), steps=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("hidden", "big", "'hidden' must be an integer >= 1"),
        ("lr", -1.0, "'lr' must be a number > 0"),
        ("rnn", "transformer", "'rnn' must be one of ['gru', 'lstm']"),
        ("tier_hidden", [64, "x"], "'tier_hidden' must be a list of integers >= 1"),
        ("ratios", [20, 5], "their product must be 80"),
        ("bf16", "yes", "'bf16' must be true or false"),
    ],
)
def test_train_config_checks_kinds_and_ranges(option, value, expected):
    with pytest.raises(FeatprepError, match="training option") as e:
        dataclasses.replace(TrainConfig(), **{option: value})
    assert expected in str(e.value)


def test_normstats_and_evaluate_check_their_arguments(clips, trained):
    from featprep.samplernn.evaluate import evaluate

    with pytest.raises(ArgumentError, match="min_frames must be an integer >= 0"):
        normstats(clips, min_frames=-1)
    with pytest.raises(ArgumentError, match="split must be one of"):
        evaluate(trained, split="../outside")
    with pytest.raises(ArgumentError, match="max_seconds must be a number > 0"):
        evaluate(trained, max_seconds=0)


def test_generate_checks_its_arguments_before_loading_the_run(tmp_path):
    with pytest.raises(ArgumentError, match="give labels or texts"):
        generate_to(tmp_path / "no-run", tmp_path / "x.wav", speaker="a")
    with pytest.raises(ArgumentError, match="a speaker or a seed recording"):
        generate_to(tmp_path / "no-run", tmp_path / "x.wav", texts=["Hi."])


# -- output locations are checked before any work ----------------------------------------


def test_generate_refuses_two_label_files_of_one_name(tmp_path):
    # both would be written to OUT/a.wav
    with pytest.raises(ArgumentError, match="same name"):
        generate_to(tmp_path / "no-run", tmp_path / "out", labels=["x/a.lab", "y/a.lab"], speaker="s")


def test_prepare_in_an_unwritable_place(demo_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=f"{blocker} is not a folder"):
        prepare("vctk", demo_corpus / "VCTK-Corpus", blocker / "out")


def test_a_failed_prepare_leaves_no_output_folder(demo_corpus, tmp_path):
    before = files_under(tmp_path)
    r = featprep("prepare", "vctk", "--root", demo_corpus / "cmu_arctic", "--out", tmp_path / "out", "-q")
    one_line(r, "does not look like VCTK")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "generate", "pase", "demo", "linguistic", "frontend"])
def test_commands_refuse_an_unwritable_out_before_work(tmp_path, command):
    """The corpus, run or input does not exist: the output location is what is reported."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    nothing = tmp_path / "nothing"
    args = {
        "train": ["train", nothing, "--out", blocker / "run", "--steps", "1"],
        "generate": ["generate", nothing, "--text", "Hi.", "--speaker", "x", "--out", blocker / "x.wav"],
        "pase": ["pase", nothing, "--random-init", "1", "--out", blocker / "frames"],
        "demo": ["demo", "--out", blocker / "demo"],
        "linguistic": ["linguistic", nothing, "--out", blocker / "x.npy"],
        "frontend": ["frontend", "--utt", nothing, "--out", blocker / "x.lab"],
    }[command]  # fmt: skip
    before = files_under(tmp_path)
    one_line(featprep(*args, cwd=tmp_path), "not writable", str(blocker))
    assert files_under(tmp_path) == before


def test_an_out_on_a_file_system_that_refuses_writes_is_one_line(tmp_path):
    # /proc takes no new files, whatever the permission bits say (to root: yes)
    with pytest.raises(OutputError, match="/proc/featprep-run is not writable"):
        check_output_dir("/proc/featprep-run", "run folder")
    one_line(featprep("frontend", "--text", "Hi.", "--out", "/proc/featprep.lab"), "not writable")
    generate = featprep("generate", tmp_path, "--text", "Hi.", "--speaker", "x", "--out", "/proc/x")
    one_line(generate, "not writable")


def test_a_text_festival_cannot_read_is_one_line_before_festival(tmp_path):
    for text in ("", " \t", "日本語"):
        with pytest.raises(ArgumentError, match="text 1 .* has nothing Festival can read"):
            text_to_labels([text])
    line = one_line(featprep("frontend", "--text", "", "--out", tmp_path / "x.lab"), "text 1")
    assert "featprep-festival" not in line  # no temporary folder


def test_train_refuses_a_folder_where_its_checkpoint_goes(clips, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint.pt").mkdir(parents=True)  # found only at the first save, after training
    with pytest.raises(OutputError, match="checkpoint.pt is not a file"):
        train(clips, run, run_config(), steps=2, log=lambda _m: None)


def test_normstats_refuses_an_unwritable_stats_folder(clips, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(clips, corpus)
    shutil.rmtree(corpus / "stats")
    (corpus / "stats").write_text("")  # a file where the folder should be
    with pytest.raises(OutputError, match="statistics folder .* exists and is not a folder"):
        normstats(corpus)


# -- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_exits_130_with_one_line(demo_corpus, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "featprep", "prepare", "vctk", "--root", demo_corpus / "VCTK-Corpus",
         "--out", tmp_path / "out", "--jobs", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert "discovered" in proc.stderr.readline()  # at work
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"


def test_ctrl_c_in_train_saves_a_checkpoint_that_resumes_exactly(clips, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "featprep", "train", clips, "--out", run, "--preset", "small",
         "--steps", "100000", *cli_sets()],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    log = run / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert 3 <= saved < 1000 and f"interrupted at step {saved}" in err  # not at checkpoint_every
    assert [p.name for p in run.iterdir() if ".tmp-" in p.name] == []
    # resumed, it logs what a run that was never interrupted logs; every part in one torch
    # thread, as the command's part: float sums in another thread count differ by ~1e-7 (in
    # the full suite this process's count had changed and one step differed)
    steps = saved + 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(clips, run, run_config(), steps=steps, resume=True, log=lambda _m: None)
        train(clips, tmp_path / "whole", run_config(), steps=steps, log=lambda _m: None)
    finally:
        torch.set_num_threads(threads)
    logs = [[json.loads(x)["train_bits"] for x in (r / "log.jsonl").read_text().splitlines()]
            for r in (run, tmp_path / "whole")]  # fmt: skip
    assert len(logs[0]) == steps and logs[0] == logs[1]


# -- damaged files: one line, never a traceback -------------------------------------------


def test_a_damaged_shard_statistics_file(clips, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(clips, corpus)
    stats = next(corpus.glob("shards/train/*/stats.npz"))
    stats.write_bytes(stats.read_bytes()[:100])
    with pytest.raises(StatisticsUnavailable, match="damaged or truncated .*--recompute"):
        normstats(corpus, verify=False)  # (with verify, its sha256 already differs)
    one_line(featprep("normstats", corpus), "stats.npz")
    one_line(featprep("normstats", corpus, "--no-verify"), str(stats), "--recompute")
    merged = corpus / "stats" / "audio.npz"  # what train's normalisers read
    merged.write_bytes(merged.read_bytes()[:-50])
    with pytest.raises(FeatprepError, match=f"{merged} is damaged or truncated .*: run featprep normstats"):
        Normaliser.load(corpus, "audio")


@pytest.mark.parametrize(
    "manifest", [[], {"format": "featprep-manifest"}, {"format": "featprep-manifest", "shards": [5]}]
)
def test_a_manifest_of_the_wrong_shape_is_one_line_for_every_reader(clips, tmp_path, manifest):
    corpus = tmp_path / "corpus"
    shutil.copytree(clips, corpus)
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    validated = featprep("validate", corpus)  # the problems on stdout, their count on stderr
    one_line(validated, str(corpus))
    assert "manifest.json" in validated.stdout + validated.stderr
    one_line(featprep("normstats", corpus), "manifest.json")
    one_line(featprep("train", corpus, "--out", tmp_path / "r", "--steps", "1"), "manifest.json")


@pytest.mark.parametrize("config", [[], {"model": 3}, {"model": {"hidden": "x"}}, {"model": {"bogus": 1}}])
def test_a_damaged_run_config_is_one_line(trained, tmp_path, config):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if isinstance(config, dict):
        saved = json.loads((run / "config.json").read_text())
        config = {
            **saved,
            "model": {**saved["model"], **config["model"]} if isinstance(config["model"], dict) else 3,
        }
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(FeatprepError, match="config.json is damaged"):
        Run(run)
    one_line(featprep("evaluate", run, "--max-utterances", "1"), "config.json is damaged")


@pytest.mark.parametrize("damage", ["pickled", "truncated", "not_a_checkpoint", "another_shape"])
def test_a_bad_checkpoint_is_one_line(trained, tmp_path, clips, damage):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    checkpoint = run / "checkpoint.pt"
    if damage == "pickled":
        torch.save({"model": Fraction(1, 2)}, checkpoint)
    elif damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    elif damage == "another_shape":  # its config and options as saved, the weights of a wider model
        saved = torch.load(checkpoint, weights_only=True)
        wider = ModelConfig(**{**json.loads((run / "config.json").read_text())["model"], "hidden": 32})
        saved["model"] = SampleRNN(wider).state_dict()
        torch.save(saved, checkpoint)
    else:
        torch.save({"step": torch.zeros(1)}, checkpoint)
    with pytest.raises(FeatprepError, match=str(checkpoint)):
        Run(run)
    line = one_line(featprep("evaluate", run, "--max-utterances", "1"), str(checkpoint))
    assert "weights_only=False" not in line  # torch's advice to run the file's code
    one_line(featprep("train", clips, "--out", run, "--steps", "4", "--resume", "--preset", "small",
                      *cli_sets()), str(checkpoint))  # fmt: skip


# -- left-overs ---------------------------------------------------------------------------


def _killed_writer_temporary(target: Path) -> Path:
    """What a writer killed inside `atomic_path` leaves: its temporary, by a dead process."""
    code = (
        "import os, sys; from featprep.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000); os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    (left,) = target.parent.glob(f".{target.name}.tmp-*")
    return left


def test_temporaries_of_killed_writers_are_removed(clips, trained, tmp_path):
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    shutil.copytree(clips, corpus)
    shutil.copytree(trained, run)
    dead = [
        _killed_writer_temporary(corpus / "stats" / "acoustic.npz"),
        _killed_writer_temporary(run / "checkpoint.pt"),
    ]
    live = run / f".other.pt.tmp-{socket.gethostname()}-{os.getpid()}"  # a writer still running
    live.write_bytes(b"")
    normstats(corpus, min_frames=0)
    train(clips, run, run_config(), steps=3, resume=True, log=lambda _m: None)
    assert not any(p.exists() for p in dead) and live.exists()


#: the quickest prepare: no labels, no acoustic features
CLIP_SETS = ["labels.source=none", "acoustic.enabled=false"]


def _one_clip_corpus(tmp_path: Path) -> Path:
    """A CMU Arctic tree holding slt's real clip."""
    stem, wav, text = REAL_CLIPS["slt"]
    tree = tmp_path / "cmu_arctic" / "cmu_us_slt_arctic"
    (tree / "wav").mkdir(parents=True)
    (tree / "etc").mkdir()
    shutil.copyfile(wav, tree / "wav" / f"{stem}.wav")
    (tree / "etc" / "txt.done.data").write_text(f'( {stem} "{text}" )\n')
    return tree.parent


@pytest.mark.parametrize("damage", [b"[]", b"\xff\xfe{", b""])
def test_a_damaged_shard_json_makes_the_shard_again(tmp_path, damage):
    root, out, sets = _one_clip_corpus(tmp_path), tmp_path / "out", CLIP_SETS
    prepare("cmu_arctic", root, out, overrides=sets)
    (shard_json,) = out.glob("shards/*/*/shard.json")
    shard_json.write_bytes(damage)
    assert prepare("cmu_arctic", root, out, overrides=sets).shards_written == 1
    assert validate(out) == []


def test_prepare_removes_a_killed_jobs_shard_temporary_not_a_live_ones(tmp_path):
    """Jobs of a Slurm array share the output folder: the rerun of one must not delete the
    shard another job is writing."""
    root, out, sets = _one_clip_corpus(tmp_path), tmp_path / "out", CLIP_SETS
    prepare("cmu_arctic", root, out, overrides=sets)
    split = next((out / "shards").iterdir())
    live = split / f".shard-000007.tmp-{socket.gethostname()}-{os.getpid()}"  # a job still writing
    live.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = split / f".shard-000008.tmp-{socket.gethostname()}-{int(finished.stdout)}"
    dead.mkdir()
    prepare("cmu_arctic", root, out, overrides=sets)
    assert live.is_dir() and not dead.exists()


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it(clips, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "checkpoint.pt").unlink()  # config.json written, killed before the first checkpoint
    with pytest.raises(FeatprepError, match="started with another configuration"):
        train(clips, run, run_config(hidden=32), steps=2, resume=True, log=lambda _m: None)
    said, handler = [], signal.getsignal(signal.SIGINT)
    record = train(clips, run, run_config(), steps=2, resume=True, log=said.append)
    assert record["step"] == 2 and (run / "checkpoint.pt").is_file()
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is the caller's again
    assert any("starting it afresh" in s for s in said)
    with pytest.raises(FeatprepError, match="nothing to resume"):
        train(clips, tmp_path / "empty", run_config(), steps=2, resume=True, log=lambda _m: None)


def test_an_utterance_id_with_a_newline_is_rejected_at_discovery(tmp_path):
    root = tmp_path / "VCTK-Corpus"
    wav = REAL_CLIPS["slt"][1]
    for utt in ("p901_001", "p901_0\n02", "p901_0\t03"):
        for folder, name, write in (("wav48", f"{utt}.wav", lambda p: shutil.copyfile(wav, p)),
                                    ("txt", f"{utt}.txt", lambda p: p.write_text("Some text."))):  # fmt: skip
            (root / folder / "p901").mkdir(parents=True, exist_ok=True)
            write(root / folder / "p901" / name)
    found = discover("vctk", root, load_recipe("vctk"))
    assert [u.id for u in found.utterances] == ["p901_001"]
    assert sorted((r.utterance, r.code) for r in found.rejections) == [
        ("p901_0\t03", "bad_id"),
        ("p901_0\n02", "bad_id"),
    ]
    write_rejected(tmp_path / "rejected.tsv", found.rejections)
    assert len((tmp_path / "rejected.tsv").read_text().splitlines()) == 3  # header + one row each
    assert {r.code for r in read_rejected(tmp_path / "rejected.tsv")} == {"bad_id"}


def test_ctrl_c_under_torchrun_saves_one_checkpoint_at_a_step_all_ranks_share(clips, tmp_path):
    """torchrun passes Ctrl-C to its workers: the ranks agree on the step (through the loss
    reduction), save together and a resumed run logs what an uninterrupted one does."""

    def torchrun(out: Path, *options: str) -> subprocess.Popen:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        launcher += ["--master_port", "29541", "-m", "featprep", "train", clips, "--out", out]
        return subprocess.Popen(
            [str(c) for c in [*launcher, "--preset", "small", "--device", "cpu", *cli_sets(), *options]],
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip

    def finished(proc: subprocess.Popen) -> None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]

    run = tmp_path / "run"
    proc = torchrun(run, "--steps", "100000")
    log = run / "log.jsonl"
    deadline = time.monotonic() + 180
    while not (log.is_file() and log.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the launcher and its workers
    _, err = proc.communicate(timeout=300)
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert err.count(f"interrupted at step {saved['step']}:") == 1  # rank 0 speaks for both
    assert len(saved["loader"]) == 2 and saved["step"] == log.read_text().count("\n")
    steps = saved["step"] + 3
    finished(torchrun(run, "--steps", str(steps), "--resume"))
    finished(torchrun(tmp_path / "whole", "--steps", str(steps)))
    logs = [[json.loads(x)["train_bits"] for x in (r / "log.jsonl").read_text().splitlines()]
            for r in (run, tmp_path / "whole")]  # fmt: skip
    assert len(logs[0]) == steps and logs[0] == logs[1]

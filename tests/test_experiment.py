"""Held-out speakers (the adaptation role) and ``featprep experiment ssw2019`` on the demo corpus."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from featprep.errors import FeatprepError
from featprep.experiment import METRICS, MODES, SPEAKER_SETS, ssw2019
from featprep.manifest import read_manifest
from featprep.pipeline import prepare
from featprep.samplernn.evaluate import evaluate
from featprep.samplernn.train import TrainConfig, train

#: per gender, the two longest speakers model and the shortest of the rest is held out;
#: one test and one valid utterance per speaker (the demo has 4 to 7 each)
HELD_OUT_SPLIT = [
    "split.modeling_per_gender=2",
    "split.adaptation_per_gender=1",
    "split.test_seconds=1",
    "split.valid_seconds=1",
    "split.adaptation_test_seconds=1",
    "split.adaptation_valid_seconds=1",
    "split.max_heldout_fraction=0.3",
]
#: the smallest model that trains: the experiment's test is about the plumbing, not the numbers
TINY = {"features": "none", "batch_size": 2, "hidden": 16, "embedding": 8, "seed_seconds": 0.3}


def featprep(*args):
    return subprocess.run([sys.executable, "-m", "featprep", *map(str, args)], capture_output=True, text=True)


def one_line(result, *fragments: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def held_out(demo_corpus, tmp_path_factory):
    """The demo's CMU Arctic layout with PASE frames (random weights), no labels, and one
    adaptation speaker per gender."""
    from .test_prepare import ARCTIC_GENDERS

    out = tmp_path_factory.mktemp("held_out") / "arctic"
    sets = ARCTIC_GENDERS + HELD_OUT_SPLIT
    sets += ["labels.source=none", "acoustic.enabled=false", "pase.arch=pase", "pase.random_init_seed=0"]
    prepare("cmu_arctic", demo_corpus / "cmu_arctic", out, overrides=sets, jobs=2)
    return out


def roles(corpus) -> dict[str, list[str]]:
    speakers = read_manifest(corpus)["speakers"]
    return {r: sorted(s["id"] for s in speakers if s["role"] == r) for r in ("modeling", "adaptation")}


def test_training_holds_out_adaptation_speakers_and_evaluate_speaks_them_from_a_seed(held_out, tmp_path):
    from featprep.samplernn.run import Run
    from featprep.samplernn.speakers import PaseSeeds

    who = roles(held_out)
    assert len(who["modeling"]) == 4 and len(who["adaptation"]) == 2
    cfg = TrainConfig.from_preset("small", {**TINY, "speaker_mode": "pase_seed"})
    train(held_out, tmp_path / "pase", cfg, steps=2, device="cpu", log=lambda _m: None)
    run = Run(tmp_path / "pase")
    assert run.info["speakers"] == who["modeling"]  # the adaptation speakers stay unseen
    result = evaluate(tmp_path / "pase", role="adaptation", max_seconds=0.2, device="cpu")
    assert result["role"] == "adaptation" and math.isfinite(result["nll_bits"])
    assert sorted({u["speaker"] for u in result["utterances"]}) == who["adaptation"]
    assert json.loads((tmp_path / "pase" / "eval_adaptation_test.json").read_text())["role"] == "adaptation"
    # each spoken from a window of its own valid utterance's PASE frames, not of the utterance evaluated
    seeds = run.speaker_source(who["adaptation"])
    frames = PaseSeeds(held_out, who["adaptation"], split="valid", seconds=cfg.seed_seconds)
    for i, _ in enumerate(who["adaptation"]):
        np.testing.assert_array_equal(seeds.fixed(i).numpy(), frames.fixed(i))
    assert not seeds.fallback
    # the NLL reads the utterances and frames compared, no more
    one = evaluate(tmp_path / "pase", role="adaptation", max_utterances=1, max_seconds=0.2, device="cpu")
    assert len(one["utterances"]) == 1 and one["nll_bits"] != result["nll_bits"]
    # a lookup table has no row for a speaker it never saw
    train(held_out, tmp_path / "table", TrainConfig.from_preset("small", TINY), steps=1, log=lambda _m: None)
    with pytest.raises(FeatprepError, match="needs a PASE speaker mode .*this run's is 'embedding'"):
        evaluate(tmp_path / "table", role="adaptation", device="cpu")
    with pytest.raises(FeatprepError, match="role must be one of"):
        evaluate(tmp_path / "table", role="unused")


def test_ssw2019_end_to_end_resumes_and_skips_by_fingerprint(held_out, tmp_path):
    """The table's shape, not its numbers; a rerun redoes only what its inputs changed."""
    exp = tmp_path / "exp"
    options = dict(steps=2, preset="small", overrides=TINY, max_utterances=2, max_seconds=0.2, device="cpu")
    # a killed experiment: the embedding run stopped after its first step's checkpoint
    first = TrainConfig.from_preset("small", {**TINY, "speaker_mode": "embedding", "seed": 0})
    train(held_out, exp / "embedding", first, steps=1, log=lambda _m: None)
    said = []
    result = ssw2019(held_out, exp, log=said.append, **options)
    assert "embedding: resuming" in said[0] and any("pase_seed: training" in m for m in said)
    steps = [json.loads(x)["step"] for x in (exp / "embedding" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert json.loads((exp / "results.json").read_text(), parse_constant=pytest.fail) == result  # strict JSON
    assert result["metrics"] == list(METRICS)
    assert [(row["mode"], row["speakers"]) for row in result["rows"]] == [
        (m, s) for m in MODES for s in SPEAKER_SETS
    ]
    who = roles(held_out)
    for row in result["rows"]:
        if row["mode"] == "embedding" and row["speakers"] == "held_out":
            assert row["not_applicable"] and all(row[k] is None for k in METRICS)
            continue
        assert row["not_applicable"] is None and row["utterances"] == 2
        assert set(row["speaker_ids"]) <= set(who[SPEAKER_SETS[row["speakers"]][0]])
        for key in METRICS:  # F0 RMSE is undefined (null) only without a frame voiced in both
            undefined = row[key] is None and key == "f0_rmse_hz" and row["f0_frames"] == 0
            assert undefined or math.isfinite(row[key])
    table = (exp / "results.md").read_text().splitlines()
    assert [c.strip() for c in table[0].split("|")[4:-1]] == [column for column, _ in METRICS.values()]
    assert all(len(line.split("|")) == 9 for line in table[:8]) and not table[8]
    assert table[3].endswith("| n/a | n/a | n/a | n/a | n/a |") and "embedding | held-out" in table[3]
    assert "n/a" not in "".join(table[2:3] + table[4:8])
    # rerun as it was, from the command line: nothing trained or evaluated again, the table printed
    checkpoints = {m: (exp / m / "checkpoint.pt").stat().st_mtime_ns for m in MODES}
    sets = sum((["--set", f"{k}={v}"] for k, v in TINY.items()), [])
    r = featprep("experiment", "ssw2019", held_out, "--out", exp, "--steps", 2, "--preset", "small", *sets,
                 "--max-utterances", 2, "--max-seconds", 0.2, "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("trained already") == 3 and r.stderr.count("evaluated already") == 5
    assert r.stdout.splitlines() == table
    assert json.loads((exp / "results.json").read_text()) == result
    assert {m: (exp / m / "checkpoint.pt").stat().st_mtime_ns for m in MODES} == checkpoints
    # other evaluation options: evaluated again, not trained again
    said.clear()
    again = ssw2019(held_out, exp, log=said.append, **{**options, "max_utterances": 1})
    assert sum("trained already" in m for m in said) == 3 and sum("evaluating" in m for m in said) == 5
    assert all(row["utterances"] in (1, None) for row in again["rows"])
    # other training options, fewer steps than trained: one line, the runs kept
    with pytest.raises(FeatprepError, match="holds a run of other training options"):
        ssw2019(held_out, exp, seed=1, **options)
    with pytest.raises(FeatprepError, match="trained 2 steps, more than 1"):
        ssw2019(held_out, exp, **{**options, "steps": 1})
    assert {m: (exp / m / "checkpoint.pt").stat().st_mtime_ns for m in MODES} == checkpoints


def test_ssw2019_bad_input_is_one_line_before_any_work(held_out, tmp_path):
    one_line(featprep("experiment", "ssw2019", tmp_path / "nope", "--out", tmp_path / "x", "--steps", 1),
             "manifest.json does not exist")  # fmt: skip
    one_line(featprep("experiment", "ssw2019", held_out, "--out", tmp_path / "x", "--steps", 1,
                      "--set", "speaker_mode=none"), "'speaker_mode' is the experiment's")  # fmt: skip
    manifest = read_manifest(held_out)
    # the same corpus's manifest without adaptation speakers, without PASE frames, with PASE
    # weights that are gone
    for change, says in (
        (lambda m: [s.update(role="modeling") for s in m["speakers"]], "has no adaptation speakers"),
        (lambda m: m.update(features=[f for f in m["features"] if f["name"] != "pase"]), "no PASE frames"),
        (lambda m: m["recipe"]["pase"].update(checkpoint=str(tmp_path / "gone.ckpt")), "not a file here"),
    ):
        edited = json.loads(json.dumps(manifest))
        change(edited)
        corpus = tmp_path / says.replace(" ", "_")
        corpus.mkdir()
        (corpus / "manifest.json").write_text(json.dumps(edited))
        with pytest.raises(FeatprepError, match=says):
            ssw2019(corpus, tmp_path / "exp", steps=1)
        assert not (tmp_path / "exp").exists()
    with pytest.raises(FeatprepError, match="steps must be an integer >= 1"):
        ssw2019(held_out, tmp_path / "exp", steps=0)
    with pytest.raises(FeatprepError, match="max_seconds must be a number > 0"):  # before any training
        ssw2019(held_out, tmp_path / "exp", steps=1, max_seconds=0)
    assert not (tmp_path / "exp").exists()

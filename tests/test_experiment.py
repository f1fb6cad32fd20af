"""Held-out speakers (the adaptation role): never trained on, evaluated from a seed recording."""

import json
import math

import numpy as np
import pytest

from featprep.errors import FeatprepError
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
#: the smallest model that trains: these tests are about the plumbing, not the numbers
TINY = {"features": "none", "batch_size": 2, "hidden": 16, "embedding": 8, "seed_seconds": 0.3}


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

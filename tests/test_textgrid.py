"""Praat TextGrids (long and short text formats) and the ``textgrid`` label source (MFA)."""

from __future__ import annotations

import numpy as np
import pytest

from featprep.check import check
from featprep.corpora import discover
from featprep.errors import Rejected
from featprep.labels.align import boundary_errors, phone_segments
from featprep.labels.align.train import word_ends
from featprep.labels.frontend import merlin_normalise, text_to_labels
from featprep.labels.hts import phone_of
from featprep.labels.stage import LabelStage
from featprep.labels.textgrid import (
    TextGridError,
    festival_phone,
    format_textgrid,
    parse_textgrid,
    read_textgrid,
    textgrid_phones,
    word_segments,
)
from featprep.labels.xwaves import read_xwaves
from featprep.recipe import load_recipe
from featprep.stage import Item

#: Festival's radio vowels that MFA's ARPAbet marks with a stress digit
VOWELS = frozenset(
    ["aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"]
)

SHORT = """File type = "ooTextFile"
Object class = "TextGrid"

0
1.5
<exists>
2
"IntervalTier"
"phones"
0
1.5
3
0
0.25
""
0.25
1.25
"AH0"
1.25
1.5
"sil"
"TextTier"
"clicks"
0
1.5
1
0.5
"say ""hi"" now"
"""


def test_short_and_long_formats_read_alike(tmp_path):
    short = parse_textgrid(SHORT)
    assert short == {"phones": [(0.0, 0.25, ""), (0.25, 1.25, "AH0"), (1.25, 1.5, "sil")]}
    tiers = {"phones": short["phones"], "words": [(0.0, 0.25, ""), (0.25, 1.5, 'a "b"')]}
    assert parse_textgrid(format_textgrid(tiers)) == tiers
    # Praat's UTF-16 with a byte-order mark
    (tmp_path / "a.TextGrid").write_bytes(format_textgrid(tiers).encode("utf-16"))
    assert read_textgrid(tmp_path / "a.TextGrid") == tiers
    phones = textgrid_phones(tmp_path / "a.TextGrid")
    assert phones == [(0.0, 0.25, "pau"), (0.25, 1.25, "ah"), (1.25, 1.5, "pau")]


def test_a_broken_textgrid_is_one_clear_error(tmp_path):
    with pytest.raises(TextGridError, match="not a Praat TextGrid"):
        parse_textgrid('File type = "ooTextFile"\nObject class = "Pitch"\n')
    with pytest.raises(TextGridError, match="ends where an interval's xmax should be"):
        parse_textgrid(SHORT[: SHORT.index('"AH0"') - 6])
    (tmp_path / "w.TextGrid").write_text(format_textgrid({"words": [(0.0, 1.0, "x")]}))
    with pytest.raises(TextGridError, match="no interval tier 'phones'"):
        textgrid_phones(tmp_path / "w.TextGrid")


def test_arpabet_to_festival():
    assert [festival_phone(p) for p in ("AH0", "IY1", "ER2", "T", "sil", "sp", "")] == [
        "ah", "iy", "er", "t", "pau", "pau", "pau"
    ]  # fmt: skip


def _mfa_textgrid(truth: list[tuple[float, float, str]]) -> dict[str, list]:
    """What MFA writes for an utterance: ARPAbet with stress digits, silence as 'sil' at the
    edges and '' inside."""
    phones = []
    for k, (start, end, p) in enumerate(truth):
        if p == "pau":
            mark = "sil" if k in (0, len(truth) - 1) else ""
        else:
            mark = p.upper() + ("1" if p in VOWELS else "")
        phones.append((start, end, mark))
    return {"words": [(truth[0][0], truth[-1][1], "")], "phones": phones}


def test_textgrid_source_puts_mfa_boundaries_on_festival_contexts(demo_corpus, truth, tmp_path):
    grids = tmp_path / "mfa"
    ok = [r for r in truth if r["expected"] == "ok"]
    for row in ok:
        truth_lab = demo_corpus / "truth" / "labels" / row["vctk_speaker"] / f"{row['utterance']}.lab"
        segments = read_xwaves(truth_lab)
        path = grids / row["vctk_speaker"] / f"{row['utterance']}.TextGrid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_textgrid(_mfa_textgrid(segments)))
    root = demo_corpus / "VCTK-Corpus"
    recipe = load_recipe(
        "vctk",
        overrides=[
            "labels.source=textgrid",
            f"labels.dir={grids}",
            "labels.pattern={speaker}/{utterance}.TextGrid",
        ],
    )
    utterances, _ = check(discover("vctk", root, recipe).utterances, str(root), recipe["clean"])
    stage = LabelStage(recipe, str(root))
    stage.begin_shard(utterances)
    errors = []
    for utt in utterances:
        row = next((r for r in ok if r["utterance"] == utt.id), None)
        item = Item(utt, "train")
        if row is None:
            continue
        stage.process(item)
        assert item.fields["label_source"] == "textgrid"
        true = read_xwaves(demo_corpus / "truth" / "labels" / utt.speaker / f"{utt.id}.lab")
        errors.append(boundary_errors(phone_segments(item.data["label"]), true))
    errors = np.concatenate(errors)
    assert len(errors) > 100 and errors.max() < 1e-6  # the TextGrid's own boundaries, exactly
    missing = next(u for u in utterances if u.id not in {r["utterance"] for r in ok})
    with pytest.raises(Rejected, match="no .*TextGrid"):
        stage.process(Item(missing, "train"))


def test_words_tier_keeps_a_repeated_word_twice():
    """ "the the": two words of one spelling in a row stay two intervals; a silence is an
    empty interval of its own; word boundaries fall on phone boundaries."""
    label = merlin_normalise(text_to_labels(["Say the the end."])[0])
    phones = [(i * 0.1, (i + 1) * 0.1, phone_of(c)) for i, c in enumerate(label.contexts)]
    words = word_segments(phones, label.words, word_ends(label))
    assert [w for *_, w in words] == ["", "Say", "the", "the", "end", ""]
    assert words[0][0] == 0.0 and words[-1][1] == phones[-1][1]
    assert {e for _, e, _ in words} <= {e for _, e, _ in phones}

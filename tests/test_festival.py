import pytest

from featprep.demo import SPEAKERS, synthesize
from featprep.errors import FeatprepError
from featprep.festival import run_script, scheme_string
from featprep.labels.xwaves import format_xwaves, read_xwaves

TRICKY = 'He said "no" (twice) \\ then: café, naïve — 5€ ) ("'


def test_scheme_string_escapes_and_folds():
    assert scheme_string('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert scheme_string("café naïve\nnew") == '"cafe naive new"'
    assert scheme_string(TRICKY).isascii()


def test_tricky_text_goes_through_real_festival(tmp_path):
    """Quotes, backslashes, parentheses and non-ASCII do not break Festival's reader."""
    out = synthesize(SPEAKERS[0], {"x": TRICKY, "y": "Plain words."}, tmp_path)
    phones = [p for _, _, p in out["x"].segments]
    assert phones[0] == "pau" and phones[-1] == "pau" and len(phones) > 20
    # the utterance after the tricky one is synthesised too: the script kept its shape
    assert [p for _, _, p in out["y"].segments if p != "pau"][:3] == ["p", "l", "ey"]
    # segment times cover the synthesised audio (48 kHz); a diphone voice's last
    # half-diphone runs a few ms past the last segment
    assert 0 <= len(out["x"].audio) / 48000 - out["x"].segments[-1][1] < 0.05


def test_festival_errors_are_reported(tmp_path):
    with pytest.raises(FeatprepError, match="festival failed"):
        run_script("(this_function_does_not_exist 1)\n", tmp_path)


def test_festival_errors_read_the_same_whatever_the_work_folder(tmp_path):
    # an EST error (no "ERROR" line): the message is Festival's last words, which name the
    # script; rejected.tsv and shard.json hold it and must be byte-identical run to run
    script = '(item.feat (utt.relation.first (Utterance Text "hi") (quote Segment)) "end")\n'
    messages = []
    for name in ("one", "two"):
        with pytest.raises(FeatprepError) as e:
            run_script(script, tmp_path / name)
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert str(tmp_path) not in messages[0] and "Segment not defined" in messages[0]


def test_xwaves_round_trip_and_errors(tmp_path):
    segments = [(0.0, 0.25, "pau"), (0.25, 0.31, "hh"), (0.31, 0.5, "ay")]
    path = tmp_path / "a.lab"
    path.write_text(format_xwaves(segments))
    assert read_xwaves(path) == segments
    path.write_text("#\n0.1 125 pau\n0.05 125 hh\n")
    with pytest.raises(FeatprepError, match="line 3: end time 0.05 before"):
        read_xwaves(path)
    path.write_text("#\nabc 125\n")
    with pytest.raises(FeatprepError, match="line 2"):
        read_xwaves(path)

"""Values that reach Festival from a recipe, an option or a corpus: refused or passed exactly."""

import json
import shutil
import time

import pytest

from featprep.errors import FeatprepError
from featprep.festival import installed_voices, scheme_path, voice_command
from featprep.labels.frontend import utterance_to_labels
from featprep.manifest import read_manifest, read_rejected
from featprep.pipeline import prepare
from featprep.shards import open_shard

from .test_cli import _one_error_line, featprep, prepare_arctic

#: issue 12's attack: a voice name that closes the voice call and runs a shell command
ATTACK = 'cmu_us_slt_arctic_hts) (system "touch {pwned}") (voice_cmu_us_slt_arctic_hts'


def test_voice_injection_in_a_recipe_file_is_refused(demo_corpus, tmp_path):
    pwned = tmp_path / "pwned"
    recipe = tmp_path / "shared.toml"
    recipe.write_text(f"[labels]\nsource = 'arctic'\nvoice = {json.dumps(ATTACK.format(pwned=pwned))}\n")
    r = prepare_arctic(demo_corpus, tmp_path / "out", f"labels.voice={ATTACK.format(pwned=pwned)}")
    _one_error_line(r, "labels.voice", "not a voice name")
    r = featprep(
        "prepare", "cmu_arctic", "--root", demo_corpus / "cmu_arctic", "--out", tmp_path / "out2",
        "--recipe", recipe, "-q",
    )  # fmt: skip
    _one_error_line(r, "labels.voice", "not a voice name")
    assert not pwned.exists()


def test_voice_injection_in_the_frontend_option_is_refused(tmp_path):
    pwned = tmp_path / "pwned"
    r = featprep(
        "frontend", "--text", "Hello.", "--voice", ATTACK.format(pwned=pwned), "--out", tmp_path / "a.lab"
    )
    _one_error_line(r, "Festival voice", "not a voice name")
    assert not pwned.exists() and not (tmp_path / "a.lab").exists()
    # a well-formed name that is not installed: the installed ones are listed
    r = featprep("frontend", "--text", "Hello.", "--voice", "no_such_voice", "--out", tmp_path / "a.lab")
    _one_error_line(r, "'no_such_voice' is not installed", "kal_diphone")


def test_voices_are_the_installed_ones():
    assert {"kal_diphone", "cmu_us_slt_arctic_hts"} <= set(installed_voices())
    assert voice_command("kal_diphone") == "(voice_kal_diphone)"
    for bad in ("Kal", "kal diphone", "kal)", "", "kal_diphone\n"):
        with pytest.raises(FeatprepError, match="not a voice name"):
            voice_command(bad)


def test_paths_reach_festival_byte_for_byte(demo_corpus, tmp_path):
    """Non-ASCII, quotes, backslashes and spaces in a path name that very file."""
    (source,) = sorted((demo_corpus / "truth" / "utts").glob("p904/*.utt"))[:1]
    odd = tmp_path / 'ünï "q" \\ é' / "a b.utt"
    odd.parent.mkdir()
    shutil.copyfile(source, odd)
    assert scheme_path(odd).count("\\\\") == 1  # the backslash, escaped
    (label,) = utterance_to_labels([odd])
    (expected,) = utterance_to_labels([source])
    assert label.contexts == expected.contexts and (label.end == expected.end).all()


def test_festival_label_source_under_a_non_ascii_folder(demo_corpus, tmp_path):
    """Issue 12.7: the demo's CMU Arctic layout (festival .utt labels) under ``ünï/``."""
    root = tmp_path / "corpus" / "ünï"
    shutil.copytree(demo_corpus / "cmu_arctic" / "cmu_us_dfa_arctic", root / "cmu_us_dfa_arctic")
    sets = [
        "speakers.gender.dfa=F",
        "labels.source=festival",
        "labels.pattern={tree}/festival/utts/{stem}.utt",
    ]
    report = prepare("cmu_arctic", root, tmp_path / "out", overrides=sets)
    utts = root / "cmu_us_dfa_arctic" / "festival" / "utts"
    for r in read_rejected(tmp_path / "out" / "rejected.tsv"):
        # only an utterance the demo made without a .utt (a defect) may lack labels
        utt = utts / f"{r.path.rsplit('/', 1)[-1][:-4]}.utt"
        assert r.stage != "labels" or (r.code == "missing_label" and not utt.exists()), r
    assert report.kept >= 4
    for shard in read_manifest(tmp_path / "out")["shards"]:
        index, _ = open_shard(tmp_path / "out" / shard["name"])
        assert (index.label_source == "festival").all() and (index.n_phones > 10).all()


def _arctic_with_a_long_transcript(real_arctic, chars: int):
    """slt gets a second utterance: a0009's audio and lab/ with a transcript of ``chars``;
    awb (no lab/, so aligned by featprep's aligner: tests/test_align_corpus.py) is removed."""
    shutil.rmtree(real_arctic / "cmu_us_awb_arctic")
    tree = real_arctic / "cmu_us_slt_arctic"
    shutil.copyfile(tree / "wav" / "arctic_a0009.wav", tree / "wav" / "arctic_a0010.wav")
    shutil.copyfile(tree / "lab" / "arctic_a0009.lab", tree / "lab" / "arctic_a0010.lab")
    sentence = "He turned sharply, and faced Gregson across the table. "
    long_text = (sentence * (chars // len(sentence) + 1))[:chars]
    with open(tree / "etc" / "txt.done.data", "a") as f:
        f.write(f'( arctic_a0010 "{long_text}" )\n')


def test_an_overlong_transcript_is_refused_before_festival(real_arctic, tmp_path):
    _arctic_with_a_long_transcript(real_arctic, 25_000)
    started = time.monotonic()
    report = prepare("cmu_arctic", real_arctic, tmp_path / "out")
    assert time.monotonic() - started < 120  # Festival never saw the 25 KB text
    rejected = {r.utterance: r for r in read_rejected(tmp_path / "out" / "rejected.tsv")}
    assert rejected["slt_arctic_a0010"].code == "text_too_long"
    assert "25000 characters (labels.max_text_chars = 1000)" in rejected["slt_arctic_a0010"].detail
    assert report.kept == 1  # slt_arctic_a0009


def test_a_festival_timeout_rejects_only_that_utterance(real_arctic, tmp_path):
    """Issue 12.5: the shard's Festival run times out; a0009 is labelled on its own."""
    _arctic_with_a_long_transcript(real_arctic, 25_000)
    sets = ["labels.max_text_chars=100000", "labels.festival_timeout=8.0"]
    report = prepare("cmu_arctic", real_arctic, tmp_path / "out", overrides=sets)
    rejected = {r.utterance: r for r in read_rejected(tmp_path / "out" / "rejected.tsv")}
    assert rejected["slt_arctic_a0010"].code == "festival_timeout"
    assert "within 8 s" in rejected["slt_arctic_a0010"].detail
    assert report.kept == 1
    (shard,) = read_manifest(tmp_path / "out")["shards"]
    assert list(open_shard(tmp_path / "out" / shard["name"])[0].utterance) == ["slt_arctic_a0009"]

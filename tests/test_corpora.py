import shutil

import pytest

from featprep.corpora import discover
from featprep.corpora.vctk import detect_version, read_speaker_info
from featprep.errors import CorpusError
from featprep.labels.sources import label_path
from featprep.recipe import load_recipe


def test_vctk_080_layout(demo_corpus):
    found = discover("vctk", demo_corpus / "VCTK-Corpus", load_recipe("vctk"))
    assert found.layout["release"] == "0.80"
    ids = {u.id for u in found.utterances}
    assert "p901_001" in ids and not any(i.startswith("p315") for i in ids)
    codes = {r.utterance: r.code for r in found.rejections}
    assert codes["p315_001"] == "excluded_speaker"
    assert codes["p901_101"] == "missing_text"
    assert codes["p902_101"] == "missing_audio"
    assert {s.id: s.gender for s in found.speakers}["p904"] == "F"
    assert all(u.audio_path.startswith("wav48/") for u in found.utterances)


def test_vctk_092_mic_choice_and_fallback(demo_corpus, tmp_path):
    root = tmp_path / "VCTK-Corpus-0.92"
    shutil.copytree(demo_corpus / "VCTK-Corpus-0.92", root)
    for f in (root / "wav48_silence_trimmed" / "p906").glob("*_mic2.flac"):
        f.unlink()  # like p280: no mic2 recordings
    recipe = load_recipe("vctk", overrides=["discover.mic=mic2"])
    found = discover("vctk", root, recipe)
    mics = {u.id: u.custom["mic"] for u in found.utterances}
    assert found.layout["release"] == "0.92"
    assert mics["p901_001"] == "mic2" and mics["p906_001"] == "mic1"
    no_fallback = load_recipe("vctk", overrides=["discover.mic=mic2", "discover.mic_fallback=false"])
    found = discover("vctk", root, no_fallback)
    codes = {r.utterance: r.code for r in found.rejections}
    assert codes["p906_001"] == "missing_audio"


def test_speaker_info_both_releases(demo_corpus):
    old = read_speaker_info(demo_corpus / "VCTK-Corpus" / "speaker-info.txt")
    new = read_speaker_info(demo_corpus / "VCTK-Corpus-0.92" / "speaker-info.txt")
    assert old["p901"].gender == new["p901"].gender == "M"
    assert old["p905"].age == new["p905"].age == 27
    assert old["p901"].custom["region"] == "Festival kal_diphone"


def test_cmu_arctic_layout(demo_corpus):
    recipe = load_recipe("cmu_arctic", overrides=["speakers.gender.dfa=F"])
    found = discover("cmu_arctic", demo_corpus / "cmu_arctic", recipe)
    speakers = {s.id: s.gender for s in found.speakers}
    assert speakers["dfa"] == "F" and speakers["dma"] == "unknown"
    utt = next(u for u in found.utterances if u.id == "dma_arctic_b0001")
    assert utt.custom["lab"].endswith("lab/arctic_b0001.lab")
    codes = {r.utterance: r.code for r in found.rejections}
    assert codes["dma_arctic_b0102"] == "empty_text"
    assert codes["dma_arctic_b0103"] == "text_encoding"
    # one tree given directly as the root
    tree = demo_corpus / "cmu_arctic" / "cmu_us_dfa_arctic"
    one = discover("cmu_arctic", tree, recipe)
    assert {u.speaker for u in one.utterances} == {"dfa"}
    # its paths are relative to that root, so they name the tree's own files
    for utt in one.utterances:
        assert (tree / utt.audio_path).is_file(), utt.audio_path
        assert not utt.custom["lab"] or (tree / utt.custom["lab"]).is_file(), utt.custom["lab"]
        pattern = {"dir": "", "pattern": "{tree}/festival/utts/{stem}.utt"}
        assert label_path(utt, pattern, str(tree)) == tree / "festival" / "utts" / f"{utt.custom['stem']}.utt"


def test_real_arctic_clips(real_arctic):
    found = discover("cmu_arctic", real_arctic, load_recipe("cmu_arctic"))
    assert [(u.id, u.speaker) for u in found.utterances] == [
        ("awb_arctic_a0007", "awb"),
        ("slt_arctic_a0009", "slt"),
    ]
    assert {s.id: s.gender for s in found.speakers} == {"awb": "M", "slt": "F"}
    assert found.utterances[1].text.startswith("He turned sharply,")


@pytest.mark.parametrize("corpus", ["vctk", "cmu_arctic"])
def test_wrong_layout_is_explained(tmp_path, corpus):
    with pytest.raises(CorpusError, match="does not look like"):
        discover(corpus, tmp_path, load_recipe(corpus))


def test_missing_root(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        discover("vctk", tmp_path / "nope", load_recipe("vctk"))


def test_detect_version_refuses_ambiguous_layout(tmp_path):
    for d in ("txt", "wav48", "wav48_silence_trimmed"):
        (tmp_path / d).mkdir()
    with pytest.raises(CorpusError):
        detect_version(tmp_path)

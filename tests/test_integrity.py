"""Damaged and hostile corpora: discovery accounts for every file, readers refuse a
damaged prepared corpus before they use it, and no manifest sends a reader outside.

Every case is made here from the demo corpus: a prepared copy per test, damaged in one
way, then the one-line error or the rejection code is asserted.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featprep.corpora import _registry, discover
from featprep.errors import CorpusError, CorruptCorpus, FeatprepError
from featprep.integrity import shards_digest
from featprep.io import sha256_file
from featprep.manifest import read_manifest, read_rejected
from featprep.normalise import Normaliser
from featprep.normstats import normstats
from featprep.pipeline import prepare
from featprep.recipe import load_recipe
from featprep.samplernn.evaluate import evaluate
from featprep.samplernn.train import TrainConfig, train
from featprep.shards import open_shard
from featprep.validate import validate

from .conftest import NO_LABELS
from .test_cli import _one_error_line, featprep
from .test_prepare import ARCTIC_GENDERS

TRAIN = TrainConfig.from_preset("small", {"features": "acoustic", "batch_size": 4})
SHARD = "shards/train/shard-000000"


@pytest.fixture(scope="module")
def prepared(demo_corpus, tmp_path_factory):
    """The demo's VCTK 0.80 layout prepared (audio and acoustic features), with statistics."""
    out = tmp_path_factory.mktemp("integrity") / "vctk"
    prepare("vctk", demo_corpus / "VCTK-Corpus", out, overrides=NO_LABELS)
    normstats(out, min_frames=0)
    return out


@pytest.fixture()
def copy(prepared, tmp_path):
    """A copy of the prepared corpus for one test to damage."""
    return Path(shutil.copytree(prepared, tmp_path / "vctk"))


def resign(corpus: Path) -> None:
    """Rewrite the manifest's sha256 of every shard file: damage a hash cannot see."""
    path = corpus / "manifest.json"
    manifest = json.loads(path.read_text())
    for shard in manifest["shards"]:
        folder = corpus / shard["name"]
        shard["files"] = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != "shard.json"}
    path.write_text(json.dumps(manifest, indent=1))


def edit_index(corpus: Path, change) -> None:
    index_path = corpus / SHARD / "index.parquet"
    index = pd.read_parquet(index_path)
    change(index)
    index.to_parquet(index_path, index=False)
    resign(corpus)


def train_error(corpus: Path, tmp_path: Path, **kw) -> str:
    with pytest.raises(CorruptCorpus) as e:
        train(corpus, tmp_path / "run", TRAIN, steps=2, log=lambda _m: None, **kw)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    return str(e.value)


# -- train, normstats, evaluate check what they read (issue 12, item 3) ----------------------


def test_a_flipped_bit_stops_train_normstats_and_validate(copy, tmp_path):
    audio = copy / SHARD / "audio.npy"
    data = bytearray(audio.read_bytes())
    data[len(data) // 2] ^= 0x01
    audio.write_bytes(bytes(data))
    said = f"{SHARD}: audio.npy: sha256 differs from manifest.json"
    assert said in train_error(copy, tmp_path)
    with pytest.raises(CorruptCorpus, match=said):
        normstats(copy)
    assert f"{SHARD}: audio.npy: sha256 differs from manifest.json" in validate(copy)
    # only a hash sees it: without one, the layout is whole and training goes on
    record = train(copy, tmp_path / "unverified", TRAIN, steps=1, verify=False, log=lambda _m: None)
    assert record["step"] == 1


def test_the_train_command_says_it_in_one_line(copy, tmp_path):
    (copy / SHARD / "acoustic.npy").unlink()
    result = featprep("train", copy, "--out", tmp_path / "run", "--preset", "small", "--steps", "1")
    _one_error_line(result, f"{SHARD}: acoustic.npy: missing")


def test_frame_offsets_out_of_step_with_a_resigned_manifest(copy, tmp_path):
    def shift(index):
        index.loc[1:, "frame_offset"] += 40  # 200 ms: the features of other audio

    edit_index(copy, shift)
    error = train_error(copy, tmp_path, verify=False)  # no hash can see it: the manifest agrees
    assert "frame_offset of" in error and "without gap or overlap" in error
    assert any("frame_offset" in p for p in validate(copy))


def test_audio_offsets_must_be_80_frame_offsets(copy, tmp_path):
    def overlap(index):
        index.loc[2, "audio_offset"] -= 80

    edit_index(copy, overlap)
    assert "audio_offset of" in train_error(copy, tmp_path, verify=False)


@pytest.mark.parametrize("damage", ["truncated", "narrower", "wrong dtype", "fewer rows"])
def test_arrays_of_another_shape(copy, tmp_path, damage):
    path = copy / SHARD / "acoustic.npy"
    arr = np.load(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        changed = {"narrower": arr[:, :40], "wrong dtype": arr.astype(np.float64), "fewer rows": arr[:-3]}
        np.save(path, changed[damage])
    resign(copy)
    error = train_error(copy, tmp_path, verify=False)
    assert f"{SHARD}: acoustic.npy" in error
    expected = "cannot be read" if damage == "truncated" else f"expected float32 ({len(arr)}, 42)"
    assert expected in error


def test_a_renamed_shard(copy, tmp_path):
    os.rename(copy / SHARD, copy / "shards/train/shard-000007")
    assert f"{SHARD}: missing" in train_error(copy, tmp_path)
    problems = validate(copy)
    assert f"{SHARD}: missing" in problems
    assert "shards/train/shard-000007: a shard folder manifest.json does not list" in problems


def test_evaluate_checks_its_split(copy, tmp_path):
    train(copy, tmp_path / "run", TRAIN, steps=1, log=lambda _m: None)
    test_shard = copy / "shards/test/shard-000000"
    (test_shard / "audio.npy").write_bytes(b"\x93NUMPY damaged")
    with pytest.raises(FeatprepError, match="shards/test/shard-000000: audio.npy: sha256 differs"):
        evaluate(str(tmp_path / "run"), max_utterances=1, max_seconds=0.1, device="cpu")


# -- statistics belong to the shards they came from (item 4) ---------------------------------


def test_statistics_of_an_earlier_prepare_are_refused(copy, demo_corpus, tmp_path):
    before = np.load(copy / "stats" / "acoustic.npz")["mean"]
    prepare("vctk", demo_corpus / "VCTK-Corpus", copy, overrides=[*NO_LABELS, "trim.margin_seconds=0.05"])
    said = "stats/ was computed from other shards than manifest.json lists: run featprep normstats"
    with pytest.raises(CorruptCorpus, match=said):
        Normaliser.load(copy, "acoustic")
    assert said in train_error(copy, tmp_path)
    assert any(said in p for p in validate(copy))
    normstats(copy, min_frames=0)
    assert not np.array_equal(np.load(copy / "stats" / "acoustic.npz")["mean"], before)
    assert validate(copy) == []


def test_a_damaged_or_unlisted_statistics_file(copy, tmp_path):
    with open(copy / "stats" / "acoustic.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    assert any("stats/acoustic.npz: sha256 differs from stats/summary.json" in p for p in validate(copy))
    assert "stats/acoustic.npz: sha256 differs" in train_error(copy, tmp_path)
    # a stream's statistics left by an older normstats are not used
    shutil.copyfile(copy / "stats" / "audio.npz", copy / "stats" / "ling.npz")
    with pytest.raises(CorruptCorpus, match="stats/ling.npz: not written by the last normstats"):
        Normaliser.load(copy, "ling")
    (copy / "stats" / "summary.json").write_text("{")
    assert any("stats/summary.json cannot be read" in p for p in validate(copy))


# -- validate finds what it missed; nothing leaves the corpus folder (item 8) ----------------


def test_validate_lists_every_problem(copy):
    assert validate(copy) == []
    shutil.copytree(copy / SHARD, copy / "shards/train/shard-000001")
    manifest = json.loads((copy / "manifest.json").read_text())
    gone = manifest["speakers"].pop(0)["id"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / SHARD / "extra.npy").write_bytes(b"")
    problems = validate(copy)
    assert "shards/train/shard-000001: a shard folder manifest.json does not list" in problems
    assert f"{SHARD}: extra.npy: not listed in manifest.json" in problems
    assert any(f"speaker(s) {gone} not in the manifest's speaker table" in p for p in problems)
    result = featprep("validate", copy)
    assert result.returncode == 1 and result.stdout.splitlines() == problems


def _flip_a_bit(corpus: Path) -> None:
    audio = corpus / SHARD / "audio.npy"
    data = bytearray(audio.read_bytes())
    data[len(data) // 2] ^= 0x01
    audio.write_bytes(bytes(data))


def _truncate(corpus: Path) -> None:
    path = corpus / SHARD / "acoustic.npy"
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 168])  # one row of 42 float32


def _resign_with_statistics(corpus: Path) -> None:
    """`resign`, and the statistics tied to the shards as they are now."""
    resign(corpus)
    summary = json.loads((corpus / "stats/summary.json").read_text())
    summary["shards_digest"] = shards_digest(read_manifest(corpus), summary["splits"])
    (corpus / "stats/summary.json").write_text(json.dumps(summary))


def _write_nan(corpus: Path) -> None:
    """A NaN in a feature and every hash signed again over it: only reading the values
    can see it."""
    path = corpus / SHARD / "acoustic.npy"
    arr = np.load(path)
    arr[3, 5] = np.nan
    np.save(path, arr)
    _resign_with_statistics(corpus)


def _offset_off_by_one(corpus: Path) -> None:
    def shift(index):
        index.loc[1, "frame_offset"] += 1

    edit_index(corpus, shift)
    _resign_with_statistics(corpus)  # only the contract can see it


DAMAGE = {
    # name: (damage, what full validate says, whether --quick sees it too)
    "bit flip": (_flip_a_bit, f"{SHARD}: audio.npy: sha256 differs from manifest.json", True),
    "truncation": (_truncate, f"{SHARD}: acoustic.npy: sha256 differs from manifest.json", True),
    "deleted file": (
        lambda c: (c / SHARD / "acoustic.npy").unlink(),
        f"{SHARD}: acoustic.npy: missing",
        True,
    ),
    "NaN, manifest signed again": (_write_nan, f"{SHARD}: acoustic.npy has non-finite values", False),
    "offset off by one, manifest signed again": (_offset_off_by_one, f"{SHARD}: frame_offset of", False),
    "extra shard": (
        lambda c: shutil.copytree(c / SHARD, c / "shards/train/shard-000009"),
        "shards/train/shard-000009: a shard folder manifest.json does not list",
        True,
    ),
    "renamed shard": (
        lambda c: os.rename(c / SHARD, c / "shards/train/shard-000007"),
        f"{SHARD}: missing",
        True,
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_validate_and_quick_on_each_kind_of_damage(copy, damage):
    """Issue 14, item 4: each damage is caught by the full check; --quick (the files
    against the manifest, no array read) catches all but what a manifest signed again
    vouches for (values and offsets)."""
    assert validate(copy) == [] and validate(copy, quick=True) == []
    harm, said, quick_sees = DAMAGE[damage]
    harm(copy)
    assert any(p.startswith(said) for p in validate(copy)), validate(copy)
    quick = validate(copy, quick=True)
    assert bool(quick) == quick_sees, quick
    if quick_sees:
        assert any(p.startswith(said) for p in quick), quick


def test_validate_command_quick_and_full(copy):
    _write_nan(copy)
    quick = featprep("validate", copy, "--quick")
    assert quick.returncode == 0 and quick.stdout.strip() == f"{copy}: ok"
    full = featprep("validate", copy)
    assert full.returncode == 1
    assert full.stdout.splitlines() == [f"{SHARD}: acoustic.npy has non-finite values"]
    assert full.stderr.strip() == f"Error: {copy}: 1 problem(s)"  # no bar: stderr is not a terminal


@pytest.mark.parametrize("how", ["name", "folder link", "file link"])
def test_a_manifest_cannot_send_readers_outside(copy, tmp_path, how):
    """A whole, valid shard moved outside the corpus folder, reached by a shard name, a
    linked shard folder or a linked file: the hashes agree, so only the containment check
    can refuse it, and it does before anything outside is read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(copy / SHARD, outside / "shard-000000")
    said = "leads outside"
    if how == "name":
        manifest = json.loads((copy / "manifest.json").read_text())
        next(s for s in manifest["shards"] if s["name"] == SHARD)["name"] = "../outside/shard-000000"
        (copy / "manifest.json").write_text(json.dumps(manifest))
        said = "shard name '../outside/shard-000000' is not a relative path inside"
    elif how == "folder link":
        (copy / SHARD).symlink_to(outside / "shard-000000")
    else:
        shutil.copytree(outside / "shard-000000", copy / SHARD)
        (copy / SHARD / "audio.npy").unlink()
        (copy / SHARD / "audio.npy").symlink_to(outside / "shard-000000" / "audio.npy")
    assert any(said in p for p in validate(copy))
    assert said in train_error(copy, tmp_path)
    if how == "file link":  # the notebook's reader too
        with pytest.raises(CorruptCorpus, match=said):
            open_shard(copy / SHARD)
    for verify in (True, False):
        with pytest.raises(CorruptCorpus, match=said):
            normstats(copy, verify=verify)


def test_etc_is_never_hashed(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["name"] = "../../../../../../../../etc"
    manifest["shards"][0]["files"] = {"shadow": "0" * 64}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = featprep("validate", copy)
    assert result.returncode == 1
    assert "'../../../../../../../../etc' is not a relative path inside" in result.stdout
    assert "shadow" not in result.stdout


# -- discovery accounts for every file (items 2 and 6) ---------------------------------------


def _vctk_copy(demo_corpus: Path, tmp_path: Path, release: str) -> Path:
    name = {"0.80": "VCTK-Corpus", "0.92": "VCTK-Corpus-0.92"}[release]
    return Path(shutil.copytree(demo_corpus / name, tmp_path / name))


@pytest.mark.parametrize("release", ["0.80", "0.92"])
def test_a_file_in_another_speakers_folder_replaces_nothing(demo_corpus, tmp_path, release):
    root = _vctk_copy(demo_corpus, tmp_path, release)
    audio_dir = "wav48" if release == "0.80" else "wav48_silence_trimmed"
    suffixes = [".wav"] if release == "0.80" else ["_mic1.flac", "_mic2.flac"]
    for suffix in suffixes:  # p903's own recording, named as p901's
        shutil.copyfile(
            root / audio_dir / "p903" / f"p903_002{suffix}", root / audio_dir / "p903" / f"p901_002{suffix}"
        )
    shutil.copyfile(root / "txt/p903/p903_002.txt", root / "txt/p903/p901_002.txt")
    found = discover("vctk", root, load_recipe("vctk"))
    kept = {u.id: u for u in found.utterances}
    assert kept["p901_002"].audio_path.startswith(f"{audio_dir}/p901/")
    assert kept["p901_002"].text == (root / "txt/p901/p901_002.txt").read_text().strip()
    misplaced = sorted(r.path for r in found.rejections if r.code == "misplaced_file")
    assert misplaced == sorted(
        [f"{audio_dir}/p903/p901_002{s}" for s in suffixes] + ["txt/p903/p901_002.txt"]
    )
    # without the speaker's own files the misplaced ones are still not taken for them
    for p in [*(root / audio_dir / "p901").glob("p901_002*"), root / "txt/p901/p901_002.txt"]:
        p.unlink()
    again = discover("vctk", root, load_recipe("vctk"))
    assert "p901_002" not in {u.id for u in again.utterances}
    assert {r.code for r in again.rejections if r.utterance == "p901_002"} == {"misplaced_file"}


def test_misplaced_files_reach_rejected_tsv(demo_corpus, tmp_path):
    root = _vctk_copy(demo_corpus, tmp_path, "0.80")
    shutil.copyfile(root / "wav48/p903/p903_002.wav", root / "wav48/p903/p901_002.wav")
    shutil.copyfile(root / "txt/p903/p903_002.txt", root / "txt/p903/p901_002.txt")
    prepare("vctk", root, tmp_path / "out", overrides=NO_LABELS)
    rows = [r for r in read_rejected(tmp_path / "out" / "rejected.tsv") if r.utterance == "p901_002"]
    assert [(r.code, r.path) for r in rows] == [
        ("misplaced_file", "txt/p903/p901_002.txt"),
        ("misplaced_file", "wav48/p903/p901_002.wav"),
    ]
    for shard in read_manifest(tmp_path / "out")["shards"]:
        index = open_shard(tmp_path / "out" / shard["name"])[0]
        for row in index[index["utterance"] == "p901_002"].itertuples():
            assert (row.speaker, row.audio_path) == ("p901", "wav48/p901/p901_002.wav")


def test_odd_entries_are_rejections_not_tracebacks(demo_corpus, tmp_path):
    root = _vctk_copy(demo_corpus, tmp_path, "0.80")
    (root / "wav48/p901/p901_002.wav").unlink()
    (root / "wav48/p901/p901_002.wav").symlink_to("p901_002.wav")  # points at itself
    (root / "txt/p901/p901_003.txt").unlink()
    (root / "txt/p901/p901_003.txt").symlink_to("p901_003.txt")
    (root / "wav48/p901/p901_004.wav").unlink()
    os.mkfifo(root / "wav48/p901/p901_004.wav")  # libsndfile would wait on it for ever
    (root / "wav48/p902/p902_001.wav").unlink()
    (root / "wav48/p902/p902_001.wav").mkdir()
    shutil.rmtree(root / "wav48/p904")
    (root / "wav48/p904").symlink_to("p904")  # a speaker folder that is a loop
    (root / "wav48/p999").symlink_to("p999")  # ... of a speaker without transcripts
    found = discover("vctk", root, load_recipe("vctk"))
    codes = {(r.utterance, r.code) for r in found.rejections}
    assert ("p901_002", "unreadable_audio") in codes
    assert ("p901_003", "unreadable_text") in codes
    assert ("p901_004", "unreadable_audio") in codes
    assert ("p902_001", "unreadable_audio") in codes
    p904 = {u for u, c in codes if u.startswith("p904_")}
    assert p904 and all((u, "unreadable_folder") in codes for u in p904)
    assert ("", "unreadable_folder") in codes  # p999: nothing to name but the folder
    details = {r.utterance: r.detail for r in found.rejections}
    assert "symbolic links" in details["p901_002"] and "FIFO" in details["p901_004"]
    assert "a folder" in details["p902_001"]


def _as_nobody(function, *args):
    """``function(*args)`` in a child process without root's right to read everything
    (mode 000 means nothing to root); its result comes back as JSON."""
    if os.geteuid() != 0:
        return function(*args)
    _registry()  # the corpus modules, imported while the interpreter's own files can be read
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, report, leave without cleanup handlers
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(function(*args)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def _discovered(corpus: str, root: str, recipe: dict) -> list[list[str]] | str:
    """The rejections of discovery, or the one-line error."""
    try:
        found = discover(corpus, Path(root), recipe)
    except CorpusError as e:
        return str(e)
    return [[r.utterance, r.code, r.detail] for r in found.rejections]


@pytest.mark.parametrize("corpus", ["vctk", "cmu_arctic"])
def test_files_and_folders_without_read_permission(demo_corpus, corpus):
    """A transcript and a speaker folder with mode 000 (checked as nobody when run as
    root, who reads them anyway), then the corpus's own audio folder."""
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)  # nobody must reach the corpus
        name = "VCTK-Corpus" if corpus == "vctk" else "cmu_arctic"
        root = Path(shutil.copytree(demo_corpus / name, Path(scratch) / name))
        recipe = load_recipe(corpus, overrides=ARCTIC_GENDERS if corpus == "cmu_arctic" else [])
        if corpus == "vctk":
            locked = [root / "txt/p901/p901_003.txt", root / "wav48/p902"]
            expected = {("p901_003", "unreadable_text"), ("p902_001", "unreadable_folder")}
            top = root / "wav48"
        else:
            locked = [root / "cmu_us_dfa_arctic/etc/txt.done.data", root / "cmu_us_dfb_arctic/wav"]
            expected = {("dfa_arctic_b0001", "unreadable_text"), ("dfb_arctic_b0001", "unreadable_folder")}
            top = root
        try:
            for path in locked:
                os.chmod(path, 0)
            rows = _as_nobody(_discovered, corpus, str(root), recipe)
            found = {(u, c) for u, c, _ in rows}
            assert expected <= found, rows
            assert all("Permission denied" in d for u, c, d in rows if (u, c) in expected)
            os.chmod(top, 0)
            assert _as_nobody(_discovered, corpus, str(root), recipe) == (
                f"cannot list the corpus folder {top}: Permission denied"
            )
            if corpus == "vctk":
                locked.append(root / "speaker-info.txt")
                os.chmod(locked[-1], 0)
                assert _as_nobody(_discovered, corpus, str(root), recipe) == (
                    f"cannot read {locked[-1]}: Permission denied"
                )
        finally:
            for path in [*locked, top]:
                os.chmod(path, 0o755)

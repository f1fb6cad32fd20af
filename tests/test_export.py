"""Exports and the corpus-wide readers (issue 14, items 2, 3 and 8): Kaldi data
directories read back by kaldiio, lhotse manifests loaded and validated by lhotse's own
code, ``utterances.parquet`` checked by validate, and `ShardDataset` against the shards.

One prepared corpus per module (the demo's CMU Arctic layout, Festival labels, PASE
frames from random weights: every kind of stream clock), exported once per format.
"""

import gzip
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from featprep.dataset import ShardDataset
from featprep.demo import DEMO_LABELS, DEMO_PASE
from featprep.errors import ArgumentError, CorruptCorpus, FeatprepError, OutputError
from featprep.export import common, export_kaldi, export_lhotse
from featprep.export.kaldi import segment_time
from featprep.integrity import check_corpus
from featprep.io import sha256_file
from featprep.manifest import read_manifest
from featprep.pipeline import prepare
from featprep.shards import open_shard
from featprep.validate import validate

from .test_cli import _one_error_line, featprep
from .test_prepare import ARCTIC_GENDERS


@pytest.fixture(scope="module")
def corpus(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "arctic"
    sets = ARCTIC_GENDERS + DEMO_LABELS["cmu_arctic"] + DEMO_PASE + ["shards.max_seconds=25"]
    prepare("cmu_arctic", demo_corpus / "cmu_arctic", out, overrides=sets, jobs=2)
    return out


@pytest.fixture(scope="module")
def kaldi(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("kaldi") / "data"
    result = export_kaldi(corpus, out, streams=["acoustic", "ling"])
    return out, result


@pytest.fixture(scope="module")
def lhotse_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("lhotse") / "manifests"
    export_lhotse(corpus, out)
    return out


def _shard_utterances(corpus):
    """utterance -> (split, speaker, text, audio, arrays' rows), straight from the shards."""
    out = {}
    for shard in read_manifest(corpus)["shards"]:
        index, arrays = open_shard(corpus / shard["name"])
        for r in index.itertuples():
            frames = slice(r.frame_offset, r.frame_offset + r.n_frames)
            out[r.utterance] = {
                "split": r.split,
                "speaker": r.speaker,
                "text": r.text,
                "audio": np.asarray(arrays["audio"][r.audio_offset : r.audio_offset + 80 * r.n_frames]),
                "acoustic": np.asarray(arrays["acoustic"][frames]),
                "ling": np.asarray(arrays["ling"][frames]),
                "pase": np.asarray(arrays["pase"][r.pase_offset : r.pase_offset + r.pase_frames]),
            }
    return out


def _table(path: Path) -> list[list[str]]:
    return [line.split(" ", 1) for line in path.read_text().splitlines()]


# -- Kaldi ------------------------------------------------------------------------------------


def test_kaldi_round_trip(corpus, kaldi):
    out, result = kaldi
    truth = _shard_utterances(corpus)
    splits = {u["split"] for u in truth.values()}
    assert set(result.utterances) == splits and sum(result.utterances.values()) == len(truth)
    for split in splits:
        folder = out / split
        mine = {u: t for u, t in truth.items() if t["split"] == split}
        utt2spk = dict(_table(folder / "utt2spk"))
        assert utt2spk == {u: t["speaker"] for u, t in mine.items()}
        for name in ("utt2spk", "text", "segments", "feats.scp", "spk2utt", "wav.scp", "cmvn.scp"):
            keys = [row[0] for row in _table(folder / name)]
            assert keys == sorted(keys) and len(set(keys)) == len(keys), name  # Kaldi's sorted tables
        spk2utt = {s: utts.split() for s, utts in _table(folder / "spk2utt")}
        assert spk2utt == {s: sorted(u for u in mine if utt2spk[u] == s) for s in set(utt2spk.values())}
        assert dict(_table(folder / "text")) == {u: " ".join(t["text"].split()) for u, t in mine.items()}
        assert set(dict(_table(folder / "spk2gender")).values()) <= {"m", "f"}
        assert (folder / "frame_shift").read_text() == "0.005\n"

        # the audio Kaldi reads: wav.scp's file, cut at segments' times as extract-segments cuts
        wavs = {rec: sf.read(path, dtype="int16")[0] for rec, path in _table(folder / "wav.scp")}
        for line in (folder / "segments").read_text().splitlines():
            utt, rec, start, end = line.split()
            samples = wavs[rec][_kaldi_sample(start) : _kaldi_sample(end)]
            np.testing.assert_array_equal(samples, mine[utt]["audio"])  # bit for bit

        for stream in ("acoustic", "ling"):
            feats = kaldiio.load_scp(str(folder / f"feats_{stream}.scp"))
            assert sorted(feats) == sorted(mine)
            for utt, t in mine.items():
                x = feats[utt]
                assert x.dtype == np.float32
                np.testing.assert_array_equal(x, t[stream])
            # CMVN: per speaker, sums over exactly the frames of feats.scp, the count last
            cmvn = kaldiio.load_scp(str(folder / f"cmvn_{stream}.scp"))
            assert sorted(cmvn) == sorted(spk2utt)
            for speaker, utts in spk2utt.items():
                rows = np.concatenate([feats[u] for u in utts]).astype(np.float64)
                stats = cmvn[speaker]
                assert stats.shape == (2, rows.shape[1] + 1) and stats.dtype == np.float64
                assert stats[0, -1] == len(rows) and stats[1, -1] == 0
                np.testing.assert_allclose(stats[0, :-1], rows.sum(axis=0), rtol=1e-12, atol=1e-9)
                np.testing.assert_allclose(stats[1, :-1], (rows**2).sum(axis=0), rtol=1e-12, atol=1e-9)
                # what apply-cmvn does with them: every column of the speaker's frames mean 0
                mean = stats[0, :-1] / stats[0, -1]
                assert np.abs((rows - mean).mean(axis=0)).max() < 1e-9
        assert (folder / "feats.scp").read_text() == (folder / "feats_acoustic.scp").read_text()
        assert (folder / "cmvn.scp").read_text() == (folder / "cmvn_acoustic.scp").read_text()


def _kaldi_sample(time: str) -> int:
    """The sample Kaldi's extract-segments cuts at: ``int32 start_samp = start * samp_freq``
    (double, truncated); readers that round (lhotse) must find the same sample."""
    sample = int(float(time) * 16000.0)
    assert round(float(time) * 16000) == sample
    return sample


def test_segment_times_cut_at_the_exact_sample():
    """Every 5 ms boundary of an hour: truncated (Kaldi) and rounded, the same sample
    (plain three-decimal times such as 1.005 s truncate to the sample before)."""
    for sample in range(0, 16000 * 3600, 80):
        assert _kaldi_sample(segment_time(sample)) == sample


def test_kaldi_archives_are_deterministic(corpus, kaldi, tmp_path):
    out, _ = kaldi
    export_kaldi(corpus, tmp_path / "again", streams=["acoustic", "ling"])
    for ark in sorted(out.glob("*/data/*.ark")) + sorted(out.glob("audio/*.wav")):
        assert sha256_file(ark) == sha256_file(tmp_path / "again" / ark.relative_to(out)), ark


def test_kaldi_streams_and_default(corpus, tmp_path):
    result = export_kaldi(corpus, tmp_path / "default")
    assert result.streams == ["acoustic"]
    assert not (tmp_path / "default" / "train" / "feats_ling.scp").exists()
    with pytest.raises(ArgumentError, match="ling_cat"):
        export_kaldi(corpus, tmp_path / "ints", streams=["ling_cat"])  # integers: not Kaldi features
    assert not (tmp_path / "ints").exists()
    bare = export_kaldi(corpus, tmp_path / "bare", streams=[])
    assert bare.streams == [] and not (tmp_path / "bare" / "train" / "feats.scp").exists()
    assert (tmp_path / "bare" / "train" / "wav.scp").is_file()
    assert "note: no feats.scp: no stream asked for (audio and tables only)" in bare.lines()
    assert not any("no feats.scp" in line for line in result.lines())


# -- lhotse -----------------------------------------------------------------------------------


def test_lhotse_loads_validates_and_reads_the_shard_samples(corpus, lhotse_dir):
    from lhotse import CutSet, load_manifest
    from lhotse.qa import validate as lhotse_validate
    from lhotse.qa import validate_recordings_and_supervisions

    truth = _shard_utterances(corpus)
    seen = set()
    for split in ("train", "valid", "test"):
        recordings = load_manifest(lhotse_dir / f"cmu_arctic_recordings_{split}.jsonl.gz")
        supervisions = load_manifest(lhotse_dir / f"cmu_arctic_supervisions_{split}.jsonl.gz")
        validate_recordings_and_supervisions(recordings, supervisions)
        cuts = CutSet.from_file(lhotse_dir / f"cmu_arctic_cuts_{split}.jsonl.gz")
        lhotse_validate(cuts, read_data=True)
        for cut in cuts:
            t = truth[cut.id]
            assert t["split"] == split and cut.supervisions[0].speaker == t["speaker"]
            assert cut.supervisions[0].text == " ".join(t["text"].split())
            audio = cut.load_audio()  # through lhotse's own reader
            assert audio.shape == (1, len(t["audio"]))
            np.testing.assert_array_equal(audio[0] * 32768, t["audio"])  # exactly the int16 samples
            sup = supervisions[cut.id]
            np.testing.assert_array_equal(
                recordings[sup.recording_id].load_audio(offset=sup.start, duration=sup.duration)[0] * 32768,
                t["audio"],
            )
            seen.add(cut.id)
    assert seen == set(truth)


def test_lhotse_files_are_json_lines_without_time_stamps(corpus, lhotse_dir, tmp_path):
    export_lhotse(corpus, tmp_path / "again")
    for path in sorted(lhotse_dir.glob("*.jsonl.gz")):
        again = (tmp_path / "again" / path.name).read_bytes()
        raw = gzip.decompress(path.read_bytes()).decode().replace(str(lhotse_dir), str(tmp_path / "again"))
        assert gzip.decompress(again).decode() == raw  # the same but for the folder
        assert path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0
        assert all(isinstance(json.loads(line), dict) for line in raw.splitlines())


# -- bad input: one line, nothing written ------------------------------------------------------


def test_exports_refuse_bad_input(corpus, tmp_path):
    for run in (export_kaldi, export_lhotse):
        with pytest.raises(OutputError, match="run featprep prepare first"):
            run(tmp_path / "nothing", tmp_path / "out")
        (tmp_path / "full").mkdir(exist_ok=True)
        (tmp_path / "full" / "x").write_text("")
        with pytest.raises(OutputError, match="is not empty"):
            run(corpus, tmp_path / "full")
        with pytest.raises(OutputError, match="not writable"):
            run(corpus, tmp_path / "full" / "x")  # a file
        with pytest.raises(OutputError, match="whitespace"):
            run(corpus, tmp_path / "my data")
        assert not (tmp_path / "out").exists() and not (tmp_path / "my data").exists()
        with pytest.raises(OutputError, match=r"inside the prepared corpus .* \(at shards/kaldi\)"):
            run(corpus, corpus / "shards" / "kaldi")  # validate would then find an unlisted shard folder
    # an empty folder is fine: the export replaces it; so is a link to one (the export goes there)
    (tmp_path / "empty").mkdir()
    export_lhotse(corpus, tmp_path / "empty")
    assert (tmp_path / "empty" / "cmu_arctic_cuts_train.jsonl.gz").is_file()
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    export_lhotse(corpus, tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "target" / "cmu_arctic_cuts_train.jsonl.gz").is_file()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert validate(corpus) == []


def test_a_shard_too_long_for_a_wav_file(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "WAV_MAX_SAMPLES", 16000)  # 1 s instead of 37 h
    for run in (export_kaldi, export_lhotse):
        with pytest.raises(OutputError, match="more than a WAV file holds"):
            run(corpus, tmp_path / "out")
        assert list(tmp_path.iterdir()) == []


def test_a_damaged_corpus_is_not_exported(corpus, tmp_path):
    copy = Path(shutil.copytree(corpus, tmp_path / "arctic"))
    audio = copy / read_manifest(copy)["shards"][0]["name"] / "audio.npy"
    data = bytearray(audio.read_bytes())
    data[-1] ^= 1
    audio.write_bytes(bytes(data))
    for run in (export_kaldi, export_lhotse):
        with pytest.raises(CorruptCorpus, match="audio.npy: sha256 differs"):
            run(copy, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_export_commands(corpus, tmp_path):
    r = featprep("export", "kaldi", corpus, tmp_path / "kaldi")
    assert r.returncode == 0, r.stderr
    assert "feats.scp: acoustic" in r.stdout and (tmp_path / "kaldi" / "train" / "cmvn.scp").is_file()
    r = featprep("export", "lhotse", corpus, tmp_path / "lhotse")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "lhotse" / "cmu_arctic_cuts_valid.jsonl.gz").is_file()
    _one_error_line(featprep("export", "kaldi", corpus, tmp_path / "kaldi"), "is not empty")
    _one_error_line(
        featprep("export", "kaldi", corpus, tmp_path / "k2", "--streams", "pase"), "streams ['pase']"
    )
    _one_error_line(featprep("export", "lhotse", tmp_path / "nothing", tmp_path / "x"), "prepare first")


def test_the_exports_import_neither_toolkit(corpus, tmp_path):
    code = (
        "import sys; from featprep.export import export_kaldi, export_lhotse; "
        "export_kaldi(sys.argv[1], sys.argv[2]); export_lhotse(sys.argv[1], sys.argv[3]); "
        "print(sorted({'lhotse', 'kaldiio'} & set(sys.modules)))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, corpus, tmp_path / "k", tmp_path / "l"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# -- utterances.parquet and ShardDataset -------------------------------------------------------


def test_utterances_table_is_the_shards_indexes(corpus):
    manifest = read_manifest(corpus)
    table = pd.read_parquet(corpus / "utterances.parquet")
    assert manifest["files"] == {
        name: sha256_file(corpus / name) for name in ("utterances.parquet", "rejected.tsv")
    }
    parts = []
    for shard in manifest["shards"]:
        index = pd.read_parquet(corpus / shard["name"] / "index.parquet")
        index.insert(0, "shard", shard["name"])
        parts.append(index)
    expected = pd.concat(parts, ignore_index=True)
    expected["duration"] = expected["n_frames"] * 0.005
    pd.testing.assert_frame_equal(table, expected)
    assert len(table) == sum(s["rows"] for s in manifest["shards"]) == table["utterance"].nunique()
    assert validate(corpus) == []


def test_validate_checks_the_utterances_table(corpus, tmp_path):
    copy = Path(shutil.copytree(corpus, tmp_path / "arctic"))
    path = copy / "utterances.parquet"
    table = pd.read_parquet(path)
    table.loc[0, "audio_offset"] += 80
    table.to_parquet(path, index=False)
    assert "utterances.parquet: sha256 differs from manifest.json" in check_corpus(copy, hashes=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["utterances.parquet"] = sha256_file(path)  # re-signed: the rows still differ
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert validate(copy) == ["utterances.parquet: its rows differ from the shards' index.parquet files"]
    path.unlink()
    assert validate(copy) == ["utterances.parquet: missing"]
    with pytest.raises(CorruptCorpus, match="utterances.parquet: missing"):
        ShardDataset(copy)


def test_dataset_items_are_the_shard_rows(corpus):
    truth = _shard_utterances(corpus)
    data = ShardDataset(corpus)
    assert len(data) == len(truth)
    for i in (0, len(data) // 2, len(data) - 1):
        item = data[i]
        t = truth[item["utterance"]]
        assert item["speaker"] == t["speaker"] and item["split"] == t["split"]
        assert item["audio"].dtype == torch.float32
        np.testing.assert_array_equal(item["audio"].numpy() * 32768, t["audio"])
        for stream in ("acoustic", "ling", "pase"):
            np.testing.assert_array_equal(item[stream].numpy(), t[stream])
        assert item["pase_mean"].shape == (1, t["pase"].shape[1])
        assert item["ling_cat"].dtype == torch.int32
    with pytest.raises(IndexError):
        data[len(data)]

    valid = ShardDataset(corpus, splits=("valid",), streams=["acoustic"])
    assert len(valid) == sum(t["split"] == "valid" for t in truth.values())
    assert set(valid[0]) == {"utterance", "speaker", "split", "text", "audio", "acoustic"}
    # a worker gets the table, not the memory-mapped data
    assert len(pickle.dumps(data)) < 64 * 1024 < sum(t["audio"].nbytes for t in truth.values())
    again = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(again[3]["ling"].numpy(), data[3]["ling"].numpy())
    loader = torch.utils.data.DataLoader(valid, batch_size=None, num_workers=1)
    assert [item["utterance"] for item in loader] == list(valid.table["utterance"])
    with pytest.raises(ArgumentError, match="mfcc"):
        ShardDataset(corpus, streams=["mfcc"])


def test_dataset_splits_one_string_or_known_names(corpus):
    valid = ShardDataset(corpus, splits=("valid",), verify=False)
    one = ShardDataset(corpus, splits="valid", verify=False)
    assert len(one) > 0 and list(one.table["utterance"]) == list(valid.table["utterance"])
    known = sorted({s["split"] for s in read_manifest(corpus)["shards"]})
    with pytest.raises(FeatprepError) as refused:
        ShardDataset(corpus, splits=("train", "bogus"), verify=False)
    assert str(refused.value) == f"unknown split(s) ['bogus']; this corpus has {known}"

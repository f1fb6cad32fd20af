"""Statistics: against numpy over the concatenated arrays, merge order, offsets, NaN."""

import itertools
import json
import shutil

import numpy as np
import pytest

from featprep.demo import DEMO_LABELS
from featprep.errors import FeatprepError
from featprep.manifest import read_manifest
from featprep.normalise import Normaliser
from featprep.normstats import GLOBAL, normstats
from featprep.pipeline import prepare
from featprep.shards import open_shard
from featprep.stats import Moments, array_moments, chunk_moments, load_statistics, merge, merge_all

from .test_prepare import ARCTIC_GENDERS


@pytest.fixture(scope="module")
def corpus(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("stats") / "arctic"
    sets = ARCTIC_GENDERS + DEMO_LABELS["cmu_arctic"] + ["shards.max_seconds=25"]
    sets += ["pase.arch=pase", "pase.random_init_seed=0"]
    prepare("cmu_arctic", demo_corpus / "cmu_arctic", out, overrides=sets, jobs=2)
    return out


def _train_rows(corpus, stream):
    """speaker -> rows of ``stream`` in the train split, straight from the arrays."""
    rows: dict[str, list[np.ndarray]] = {}
    for shard in read_manifest(corpus)["shards"]:
        if shard["split"] != "train" or not shard["rows"]:
            continue
        index, arrays = open_shard(corpus / shard["name"])
        for r in index.itertuples():
            if stream == "pase":
                x = arrays["pase"][r.pase_offset : r.pase_offset + r.pase_frames]
            elif stream in ("ling_phone", "durations"):  # one row per phone
                x = arrays[stream][r.phone_offset : r.phone_offset + r.n_phones]
            else:
                x = arrays[stream][r.frame_offset : r.frame_offset + r.n_frames]
            rows.setdefault(r.speaker, []).append(np.asarray(x, np.float64))
    return {s: np.concatenate(v) for s, v in rows.items()}


def test_speakers_span_shards(corpus):
    manifest = read_manifest(corpus)
    speakers_per_shard = [
        set(open_shard(corpus / s["name"])[0]["speaker"]) for s in manifest["shards"] if s["split"] == "train"
    ]
    assert any(len(a & b) for a, b in itertools.combinations(speakers_per_shard, 2))


@pytest.mark.parametrize("stream", ["ling", "ling_num", "acoustic", "pase", "ling_phone", "durations"])
def test_normstats_equals_numpy(corpus, stream):
    summary = normstats(corpus, min_frames=0)
    data = np.load(corpus / "stats" / f"{stream}.npz")
    speakers = data["speakers"].tolist()
    rows = _train_rows(corpus, stream)
    assert sorted(rows) == sorted(s for s in speakers if s != GLOBAL)
    for speaker, x in [*rows.items(), (GLOBAL, np.concatenate(list(rows.values())))]:
        i = speakers.index(speaker)
        if stream == "acoustic":  # lf0 over voiced frames only
            voiced = x[:, 1] > 0.5
            np.testing.assert_allclose(data["mean"][i][0], x[voiced, 0].mean(), rtol=1e-12)
            x = x[:, 1:]
            mean, std, lo = data["mean"][i][1:], data["std"][i][1:], data["min"][i][1:]
        else:
            mean, std, lo = data["mean"][i], data["std"][i], data["min"][i]
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(std, np.sqrt(np.maximum(x.var(axis=0), 1e-8)), rtol=1e-8, atol=1e-12)
        np.testing.assert_array_equal(lo, x.min(axis=0))
    assert summary["streams"][stream]["global_rows"] == sum(len(v) for v in rows.values())


def test_only_train_by_default_and_recompute_agrees(corpus):
    train = normstats(corpus, min_frames=0)
    everything = normstats(corpus, splits=("train", "valid", "test"), min_frames=0)
    assert everything["streams"]["ling"]["global_rows"] > train["streams"]["ling"]["global_rows"]
    again = normstats(corpus, min_frames=0, recompute=True)
    assert again["streams"] == train["streams"]
    summary = json.loads((corpus / "stats" / "summary.json").read_text())
    assert summary["recomputed"] is True


def test_small_speakers_fall_back_to_global(corpus):
    summary = normstats(corpus, min_frames=10**9)
    assert summary["warnings"] and all("global statistics used" in w for w in summary["warnings"])
    speaker = next(iter(summary["streams"]["ling_num"]["speakers"]))
    glob, own = Normaliser.load(corpus, "ling_num"), Normaliser.load(corpus, "ling_num", speaker)
    np.testing.assert_array_equal(own.shift, glob.shift)


def test_a_column_constant_in_a_speakers_rows_takes_the_global_statistics(corpus, tmp_path):
    """Scaled by the variance floor, any other value of such a column became ~1e4 (a demo
    speaker's valid NLL was 45 bits per sample): the global mean and std stand in."""
    summary = normstats(corpus, min_frames=0)
    said = [w for w in summary["warnings"] if "constant in its rows" in w and w.startswith("ling_num:")]
    real = np.load(corpus / "stats" / "ling_num.npz")
    varies = ~(real["binary"] | real["constant"])
    assert len(said) == int((real["min"][:-1] == real["max"][:-1])[:, varies].any(axis=1).sum()) >= 1
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    data = dict(np.load(copy / "stats" / "ling_num.npz"))
    moving = np.flatnonzero(~(data["binary"] | data["constant"]))
    column, speaker = moving[0], data["speakers"][0]
    data["max"][0, column] = data["min"][0, column]  # speaker 0 saw one value in its rows
    data["std"][0, column] = 1e-4  # its std at the variance floor
    np.savez(copy / "stats" / "ling_num.npz", **data)
    own, glob = Normaliser.load(copy, "ling_num", speaker), Normaliser.load(copy, "ling_num")
    assert own.scale[column] == glob.scale[column] and own.shift[column] == glob.shift[column]
    # the demo's own data has such columns too; every other column keeps the speaker's
    flat = data["min"][0] == data["max"][0]
    expected = np.where(flat, data["std"][-1], data["std"][0]).astype(np.float32)
    np.testing.assert_array_equal(own.scale[moving], expected[moving])
    assert (~flat[moving]).sum() > 30 and flat[moving].sum() >= 1


def test_normalisers(corpus):
    normstats(corpus, min_frames=0)
    data = np.load(corpus / "stats" / "acoustic.npz")
    speaker = data["speakers"][0]
    x = _train_rows(corpus, "acoustic")[speaker].astype(np.float32)
    z = Normaliser.load(corpus, "acoustic", speaker)
    y = z(x)
    np.testing.assert_array_equal(y[:, 1], x[:, 1])  # vuv is binary: untouched
    assert abs(float(y[:, 5].mean())) < 1e-3 and abs(float(y[:, 5].std()) - 1) < 1e-3
    np.testing.assert_allclose(z.inverse(y), x, rtol=1e-5, atol=1e-4)
    ling = Normaliser.load(corpus, "ling", method="minmax")
    rows = np.concatenate(list(_train_rows(corpus, "ling").values())).astype(np.float32)
    scaled = ling(rows)
    flags = np.load(corpus / "stats" / "ling.npz")
    moving = ~(flags["binary"] | flags["constant"])
    assert scaled[:, moving].min() >= 0.01 - 1e-5 and scaled[:, moving].max() <= 0.99 + 1e-5
    np.testing.assert_array_equal(scaled[:, ~moving], rows[:, ~moving])


def test_kaldi_cmvn_export(corpus):
    normstats(corpus, min_frames=0)
    text = (corpus / "stats" / "cmvn_ling_num.ark").read_text()
    first = text.split("]")[0]
    speaker, body = first.split("[")
    sums, squares = (np.array(line.split(), float) for line in body.strip().splitlines())
    x = _train_rows(corpus, "ling_num")[speaker.strip()]
    assert sums[-1] == len(x) and squares[-1] == 0
    np.testing.assert_allclose(sums[:-1], x.sum(axis=0), rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(squares[:-1], (x**2).sum(axis=0), rtol=1e-10, atol=1e-6)


def test_kaldi_cmvn_means_what_featprep_means(corpus):
    """Kaldi reads one frame count for every column; lf0's statistics count voiced frames
    only, so its sums are scaled to that count: Kaldi's mean and variance are featprep's."""
    normstats(corpus, min_frames=0)
    text = (corpus / "stats" / "cmvn_acoustic.ark").read_text()
    speaker, body = text.split("]")[0].split("[")
    sums, squares = (np.array(line.split(), float) for line in body.strip().splitlines())
    x = _train_rows(corpus, "acoustic")[speaker.strip()]
    mean = sums[:-1] / sums[-1]
    variance = squares[:-1] / sums[-1] - mean**2
    voiced = x[x[:, 1] > 0.5, 0]
    assert sums[-1] == len(x) and len(voiced) < len(x)
    np.testing.assert_allclose(mean[0], voiced.mean(), rtol=1e-9)
    np.testing.assert_allclose(variance[0], voiced.var(), rtol=1e-6)
    np.testing.assert_allclose(mean[1:], x[:, 1:].mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(variance[1:], x[:, 1:].var(axis=0), rtol=1e-6, atol=1e-9)


def test_merge_is_order_free(corpus):
    parts = [
        load_statistics(corpus / s["name"] / "stats.npz")
        for s in read_manifest(corpus)["shards"]
        if s["rows"]
    ]
    reference = merge_all(parts)
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = merge_all([parts[i] for i in rng.permutation(len(parts))])
        for stream, per in reference.items():
            for speaker, m in per.items():
                o = shuffled[stream][speaker]
                np.testing.assert_array_equal(o.count, m.count)
                np.testing.assert_allclose(o.mean, m.mean, rtol=1e-12, atol=1e-300)
                np.testing.assert_allclose(o.m2, m.m2, rtol=1e-12, atol=1e-300)


def test_huge_offset_where_float32_sums_fail():
    rng = np.random.default_rng(1)
    x = (1000.0 + 0.1 * rng.standard_normal((2_000_000, 2))).astype(np.float32)
    exact = x.astype(np.float64)
    ours = array_moments(x)
    assert np.abs(ours.variance / exact.var(axis=0) - 1).max() < 1e-9
    n = len(x)
    naive = (x * x).sum(axis=0, dtype=np.float32) / n - (x.sum(axis=0, dtype=np.float32) / n) ** 2
    assert np.abs(naive / exact.var(axis=0) - 1).max() > 1.0  # float32 sums: nothing left


def test_empty_and_nonfinite():
    empty = Moments.empty(3)
    data = chunk_moments(np.arange(12, dtype=float).reshape(4, 3))
    both = merge(empty, data)
    np.testing.assert_array_equal(both.mean, data.mean)
    np.testing.assert_array_equal(merge(data, empty).m2, data.m2)
    x = np.ones((5, 2))
    x[2, 1] = np.nan
    m = chunk_moments(x)
    assert m.nonfinite.tolist() == [0, 1] and np.isfinite(m.mean).all() and m.count.tolist() == [5, 4]


def test_nan_in_an_array_is_reported_not_averaged(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    shard = next(s for s in read_manifest(copy)["shards"] if s["split"] == "train" and s["rows"])
    path = copy / shard["name"] / "ling_num.npy"
    arr = np.load(path)
    arr[3, 7] = np.nan
    np.save(path, arr)
    with pytest.raises(FeatprepError, match=r"ling_num: speaker \w+: 1 NaN/Inf values in columns \[7\]"):
        normstats(copy, recompute=True, verify=False)  # verified, the sha256 would catch it first


def test_unknown_statistics_layout_needs_recompute(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    shard = next(s for s in read_manifest(copy)["shards"] if s["split"] == "train" and s["rows"])
    np.savez(copy / shard["name"] / "stats.npz", **{"ling/mean": np.zeros(3)})  # an older layout
    with pytest.raises(FeatprepError, match="layout this featprep does not know"):
        normstats(copy, verify=False)  # verified, the sha256 would catch it first
    assert normstats(copy, recompute=True, min_frames=0, verify=False)["recomputed"] is True

"""SampleRNN: causality, state carry, the TBPTT loader, training, resume, generation."""

import dataclasses
import io
import json
import math
import re
import sys
import time

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from featprep.errors import FeatprepError
from featprep.manifest import read_manifest
from featprep.pipeline import prepare
from featprep.samplernn.data import Corpus, TBPTTLoader
from featprep.samplernn.evaluate import evaluate as evaluate_run
from featprep.samplernn.generate import Generator, _draw, _uniform, generate, generate_many
from featprep.samplernn.loss import evaluate_nll
from featprep.samplernn.model import ModelConfig, SampleRNN, mu_law_decode, mu_law_encode, quantise
from featprep.samplernn.train import TrainConfig, train
from featprep.shards import open_shard


def resumed_run_matches(corpus, tmp_path, cfg, steps: int) -> list[float]:
    """Train ``steps`` in one go (run "a") and in two halves with a resume (run "b"), the
    second half reading its batches in the loop (no reader threads); assert both logged
    the same losses and return them. Run "b" is also killed once after its checkpoint
    at the half, having logged a step more: the steps it logs again are not doubled."""
    train(corpus, tmp_path / "a", cfg, steps=steps, log=lambda _m: None)
    b = tmp_path / "b"
    train(corpus, b, cfg, steps=steps // 2, log=lambda _m: None)
    at_half = (b / "checkpoint.pt").read_bytes()
    train(corpus, b, cfg, steps=steps // 2 + 1, resume=True, log=lambda _m: None)
    (b / "checkpoint.pt").write_bytes(at_half)  # as if killed before the next checkpoint
    in_the_loop = dataclasses.replace(cfg, loader_workers=0)
    train(corpus, b, in_the_loop, steps=steps, resume=True, log=lambda _m: None)
    logs = [
        [json.loads(x)["train_bits"] for x in (tmp_path / r / "log.jsonl").read_text().splitlines()]
        for r in "ab"
    ]
    assert logs[0] == logs[1] and len(logs[0]) == steps
    return logs[0]


def small_model(**kw) -> SampleRNN:
    torch.manual_seed(0)
    return SampleRNN(ModelConfig(hidden=32, embedding=16, feature_dim=6, speakers=2, **kw)).eval()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The two real Arctic clips, prepared without labels (no conditioning features)."""
    from .conftest import REAL_CLIPS

    root = tmp_path_factory.mktemp("clips")
    for spk, (stem, wav, text) in REAL_CLIPS.items():
        tree = root / "cmu_arctic" / f"cmu_us_{spk}_arctic"
        (tree / "wav").mkdir(parents=True)
        (tree / "etc").mkdir()
        (tree / "wav" / f"{stem}.wav").write_bytes(wav.read_bytes())
        (tree / "etc" / "txt.done.data").write_text(f'( {stem} "{text}" )\n')
    out = root / "prepared"
    prepare(
        "cmu_arctic", root / "cmu_arctic", out, overrides=["labels.source=none", "acoustic.enabled=false"]
    )
    return out


TIERS_OF_THEIR_OWN = {"ratios": [20, 2, 2], "tier_hidden": [24, 40, 16], "tier_layers": [1, 2, 1]}


@pytest.mark.parametrize("rnn, tiers", [("gru", {}), ("lstm", {}), ("gru", TIERS_OF_THEIR_OWN)])
def test_no_sample_depends_on_itself_or_the_future(rnn, tiers):
    model = small_model(rnn=rnn, **tiers)
    x = torch.rand(2, 80 + 4 * 80) * 1.6 - 0.8
    f, s = torch.randn(2, 4, 6), torch.tensor([0, 1])
    logits, _ = model(x, f, s, model.initial_state(2))
    for t in (0, 1, 19, 20, 79, 80, 81, 159, 160, 250, 319):
        changed = x.clone()
        changed[:, 80 + t :] = torch.rand_like(changed[:, 80 + t :]) * 1.6 - 0.8
        again, _ = model(changed, f, s, model.initial_state(2))
        # logit t predicts sample 80 + t: it must ignore that sample and everything after
        torch.testing.assert_close(again[:, : t + 1], logits[:, : t + 1], rtol=0, atol=0)
        if t + 1 < logits.shape[1]:
            assert not torch.allclose(again[:, t + 1 :], logits[:, t + 1 :])


def test_carried_state_equals_one_long_chunk():
    model = small_model()
    x = torch.rand(1, 80 + 6 * 80) * 1.6 - 0.8
    f, s = torch.randn(1, 6, 6), torch.tensor([1])
    whole, _ = model(x, f, s, model.initial_state(1))
    first, state = model(x[:, : 80 + 3 * 80], f[:, :3], s, model.initial_state(1))
    second, _ = model(x[:, 3 * 80 :], f[:, 3:], s, state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-5, atol=1e-5)
    # a reset slot starts from the learned h0 again
    reset = model.reset_state(state, torch.tensor([True]))
    torch.testing.assert_close(reset[0], model.initial_state(1)[0])
    kept = model.reset_state(state, torch.tensor([False]))
    torch.testing.assert_close(kept[0], state[0])


def test_tap_sums_backward_as_embedding_bag():
    """The sample level's first layer: PyTorch's embedding_bag gradient, summed per tap."""
    from featprep.samplernn.model import _TapSum

    torch.manual_seed(0)
    window, levels, n = 5, 7, 40
    rows = torch.randint(0, levels, (n, window)) + torch.arange(window) * levels
    table = torch.randn(window * levels, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(n, 3, dtype=torch.float64)
    summed = torch.nn.functional.embedding_bag(rows, table, mode="sum")
    assert torch.equal(_TapSum.apply(rows, table), summed)
    (ours,) = torch.autograd.grad(_TapSum.apply(rows, table), table, upstream)
    (theirs,) = torch.autograd.grad(summed, table, upstream)
    torch.testing.assert_close(ours, theirs)


def test_mu_law_round_trip():
    x = torch.linspace(-1, 1, 1001)
    q = mu_law_encode(x)
    assert q.min() == 0 and q.max() == 255
    assert (mu_law_decode(q) - x).abs().max() < 0.04
    assert (mu_law_decode(mu_law_encode(mu_law_decode(q))) == mu_law_decode(q)).all()


def test_loader_walks_every_sample_once(clips):
    corpus = Corpus(clips, ("train",), features=None)
    loader = TBPTTLoader(corpus, batch_size=3, seq_len=7, seed=1)
    seen = {i: [] for i in range(len(corpus.utterances))}
    slot_owner: dict[int, int] = {}
    batches = list(loader)
    assert batches and all(b.mask.any() for b in batches)  # never a batch without targets
    index, arrays = open_shard(next(clips.glob("shards/train/shard-*")))
    for b in batches:
        for slot in range(3):
            if b.reset[slot]:
                slot_owner[slot] = len(slot_owner)
                assert not b.samples[slot, :80].any()  # context before an utterance: zeros
            n = int(b.mask[slot].sum())
            if n:
                seen[slot_owner[slot]].append(b.samples[slot, 80 : 80 + n].numpy())
    assert len(slot_owner) == len(corpus.utterances) == 2
    # each slot's chunks, joined, are one utterance's audio exactly once
    joined = sorted((np.concatenate(v) for v in seen.values() if v), key=len)
    audio = [
        arrays["audio"][r.audio_offset : r.audio_offset + 80 * r.n_frames] / 32768.0
        for r in index.itertuples()
    ]
    assert sorted(len(a) for a in audio) == [len(j) for j in joined]
    for a in audio:
        assert any(len(j) == len(a) and np.array_equal(j, a.astype(np.float32)) for j in joined)
    # the epoch ended; the next one starts with another shuffle
    assert loader.epoch == 1 and len(list(loader)) == len(batches)


def _same_batches(a, b) -> bool:
    fields = ("samples", "speakers", "reset", "mask")
    return len(a) == len(b) and all(
        all(torch.equal(getattr(x, f), getattr(y, f)) for f in fields) for x, y in zip(a, b, strict=True)
    )


def test_loader_workers_keep_the_order_and_the_position(pase_corpus):
    """Reader threads hand out the same batches in the same order; the position (epoch,
    state_dict) is the last handed-out batch's, however far the readers have got."""
    corpus = Corpus(pase_corpus, ("train",), features=None)
    plain = TBPTTLoader(corpus, batch_size=2, seq_len=3, seed=4)
    first_epoch = list(plain)
    assert len(first_epoch) > 8
    threaded = TBPTTLoader(corpus, batch_size=2, seq_len=3, seed=4, workers=3)
    assert _same_batches(list(threaded), first_epoch) and threaded.epoch == 1
    second_epoch = list(plain)
    # stop five batches into the second epoch, with readers ahead, and resume elsewhere
    head = [next(threaded) for _ in range(5)]
    assert threaded.epoch == 1 and threaded._planned_to_end is False
    saved = threaded.state_dict()
    resumed = TBPTTLoader(corpus, batch_size=2, seq_len=3, seed=4, workers=2)
    resumed.load_state_dict(saved)
    assert _same_batches(head + list(resumed), second_epoch)
    # near the end of an epoch the readers have planned past it; the epoch has not moved
    again = TBPTTLoader(corpus, batch_size=2, seq_len=3, seed=4, workers=3)
    for _ in range(len(first_epoch) - 1):
        next(again)
    assert again._planned_to_end and again.epoch == 0
    next(again)
    with pytest.raises(StopIteration):
        next(again)
    assert again.epoch == 1


def test_training_learns_and_resumes_exactly(clips, tmp_path):
    cfg = TrainConfig.from_preset(
        "small",
        {"features": "none", "batch_size": 2, "valid_every": 10**6, "checkpoint_every": 20, "lr": 3e-3},
    )
    corpus = Corpus(clips, ("train",), features=None)
    torch.manual_seed(cfg.seed)
    untrained = evaluate_nll(
        SampleRNN(ModelConfig(hidden=64, embedding=32, speakers=2)), TBPTTLoader(corpus, 2, 13), "cpu"
    )
    resumed_run_matches(clips, tmp_path, cfg, 160)  # the resumed run logs the same losses
    from featprep.samplernn.run import Run

    trained = Run(tmp_path / "a").model
    learned = evaluate_nll(trained, TBPTTLoader(corpus, 2, 13), "cpu")
    assert learned < untrained - 1.0, (untrained, learned)  # bits per sample
    with pytest.raises(FeatprepError, match="holds a trained run: --resume to continue it"):
        train(clips, tmp_path / "a", cfg, steps=170)
    with pytest.raises(FeatprepError, match="another configuration"):
        train(
            clips,
            tmp_path / "a",
            TrainConfig.from_preset("small", {"features": "none"}),
            steps=170,
            resume=True,
        )


def test_a_run_ended_by_its_epochs_keeps_its_last_step(clips, tmp_path):
    """The last epoch read out ends the run between checkpoints: its end is saved."""
    cfg = TrainConfig.from_preset("small", {"features": "none", "batch_size": 2, "checkpoint_every": 10**6})
    record = train(clips, tmp_path, cfg, epochs=1, log=lambda _m: None)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == record["step"] > 10 and record["epoch"] == 0
    logged = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, saved["step"] + 1))
    # a second epoch goes on from there
    assert train(clips, tmp_path, cfg, epochs=2, resume=True, log=lambda _m: None)["step"] > saved["step"]


def test_a_checkpoint_that_fails_to_save_leaves_the_last_one(tmp_path):
    from featprep.samplernn.checkpoint import save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    with pytest.raises(Exception, match="pickle"):
        save_checkpoint(path, {"step": 2, "unpicklable": lambda: None})
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left behind


def test_glibc_keeps_freed_memory():
    from featprep.samplernn.loop import keep_freed_memory

    assert keep_freed_memory()  # Debian's glibc takes both settings


def test_non_finite_losses_stop_training(clips, tmp_path):
    cfg = TrainConfig.from_preset(
        "small", {"features": "none", "batch_size": 2, "checkpoint_every": 5, "max_bad_steps": 3}
    )
    train(clips, tmp_path, cfg, steps=5, log=lambda _m: None)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    key = next(k for k in saved["model"] if k.endswith("mlp.5.weight"))
    saved["model"][key][:] = float("nan")
    torch.save(saved, tmp_path / "checkpoint.pt")
    with pytest.raises(FeatprepError, match="3 non-finite losses in a row"):
        train(clips, tmp_path, cfg, steps=50, resume=True, log=lambda _m: None)


def test_generation_shape_and_seed():
    model = small_model()
    f, s = torch.randn(2, 3, 6), torch.tensor([0, 1])
    a = generate(model, f, s, 3, seed=1)
    b = generate(model, f, s, 3, seed=1)
    c = generate(model, f, s, 3, seed=2)
    assert a.shape == (2, 240) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 1.0
    # one Generator serves many calls, and its batch rows are independent utterances
    generator = Generator(model)
    assert torch.equal(generator(f, s, 3, seed=1), a)
    # numpy for small models; for large ones at batch 1 only
    assert generator.runs_numpy(1) and generator.runs_numpy(64)
    large = Generator(SampleRNN(ModelConfig(hidden=512, embedding=8, feature_dim=6, speakers=2)))
    assert large.runs_numpy(1) and not large.runs_numpy(2)
    # at batch 1 compiled, its BLAS in one thread and numpy's as it is, the same samples
    one = large(f[:1, :1], s[:1], 1, seed=1)
    large.compiled = False
    assert torch.equal(large(f[:1, :1], s[:1], 1, seed=1), one)
    assert not Generator(model, dtype=torch.bfloat16).runs_numpy(1)
    with pytest.raises(FeatprepError, match="3 frames of features for 2 frames"):
        generate(model, f, s, 2)
    with pytest.raises(FeatprepError, match="temperature -1"):
        generate(model, f, s, 3, temperature=-1)
    with pytest.raises(FeatprepError, match="temperature nan: expected a finite number"):
        generate(model, f, s, 3, temperature=math.nan)
    # numpy's generators refuse a negative seed (was its ValueError's traceback)
    with pytest.raises(FeatprepError, match="seed -1: expected a whole number >= 0"):
        generate(model, f, s, 3, seed=-1)
    with pytest.raises(FeatprepError, match="seed -1"):
        generate_many(generator, [(f[0].numpy(), s[:1], 3)], seed=-1)


@pytest.mark.parametrize(
    "option, line",
    [
        ({"seed": -1}, "seed -1"),
        ({"temperature": math.nan}, "temperature nan"),
        ({"batch_size": 0}, "batch size 0"),
    ],
)
def test_generate_to_checks_its_sampling_options_first(option, line, tmp_path):
    """A bad seed, temperature or batch size is its own line before the run is read or
    Festival runs (they were found after both, or named a run folder that is not there)."""
    from featprep.samplernn.run import generate_to

    with pytest.raises(FeatprepError, match=line):
        generate_to(tmp_path / "no-run", tmp_path / "x.wav", texts=["Hi."], speaker="p1", **option)


@pytest.mark.parametrize(
    "option, line", [({"seed": -1}, "seed -1"), ({"temperature": math.inf}, "temperature inf")]
)
def test_evaluate_checks_its_sampling_options_as_generate_does(option, line, tmp_path):
    """evaluate takes the sampling options through generate's own check, before it reads the
    run (a negative seed reached numpy's generator only after the model was loaded)."""
    from featprep.samplernn.evaluate import evaluate

    with pytest.raises(FeatprepError, match=line):
        evaluate(tmp_path / "no-run", **option)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # numpy (compiled) and PyTorch draws
def test_a_tiny_temperature_draws_as_greedy(dtype):
    """As T falls to 0 the draw becomes the argmax; where log2(e) / T overflows float32 it
    drew uniform noise (inf scale: the largest logit's weight a NaN, every class alike)."""
    model = small_model()
    f, s = torch.randn(2, 3, 6), torch.tensor([0, 1])
    near = generate(model, f, s, 3, temperature=1e-30, seed=1, dtype=dtype)
    if dtype == torch.float32:  # bfloat16 logits tie often: greedy takes the first, a draw either
        assert torch.equal(near, generate(model, f, s, 3, temperature=0, dtype=dtype))
    assert near.std() > 0
    for temperature in (1e-40, 1e-300):
        assert torch.equal(generate(model, f, s, 3, temperature=temperature, seed=1, dtype=dtype), near)


def test_tier_threads_chosen_by_the_clock_keep_the_samples(monkeypatch):
    """A large model at batch 1 times a frame in one BLAS thread and one in numpy's own
    count, then runs in the faster: the samples are those of one thread throughout."""
    from featprep.samplernn import generate as generation

    torch.manual_seed(0)
    generator = Generator(SampleRNN(ModelConfig(hidden=512, embedding=8, feature_dim=6, speakers=2)))
    f, s = torch.randn(1, 5, 6), torch.tensor([1])
    made, init = [], generation._TierThreads.__init__
    monkeypatch.setattr(generation._TierThreads, "__init__", lambda self: made.append(self) or init(self))
    monkeypatch.setattr(generation._TierThreads, "EVERY", 3)  # trials at frames 0, 1, 3 and 4
    chosen = generator(f, s, 5, seed=3)
    assert set(made[0].seconds) == {1, None}  # both timed
    with threadpool_limits(1, user_api="blas"):
        assert torch.equal(generator(f, s, 5, seed=3), chosen)
    assert chosen.std() > 0.05


def test_generate_many_pads_without_touching_the_samples():
    """A short utterance batched with a longer one: whatever pads its features, its own
    samples are the same (generation is causal), and each comes back at its length."""
    model = small_model()
    generator = Generator(model)
    short, long = torch.randn(2, 6).numpy(), torch.randn(5, 6).numpy()
    requests = [(short, torch.tensor([0]), 2), (long, torch.tensor([1]), 5)]
    a, b = generate_many(generator, requests, batch_size=2, seed=3)
    assert len(a) == 160 and len(b) == 400

    def padded_with(value: float) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.concatenate([short, np.full((3, 6), value, np.float32)]), long]))

    # generate_many pads with zeros; padding with 9s gives the same samples where they count
    again = generator(padded_with(9.0), torch.tensor([0, 1]), 5, seed=3)
    np.testing.assert_array_equal(again[0, :160].numpy(), a)
    np.testing.assert_array_equal(again[1].numpy(), b)
    # ... and other samples after them: the padding is read, only later
    zeros = generator(padded_with(0.0), torch.tensor([0, 1]), 5, seed=3)
    assert not torch.equal(again[0, 160:], zeros[0, 160:])
    with pytest.raises(FeatprepError, match="batch size 0"):
        generate_many(generator, requests, batch_size=0)
    # a batch size beyond any count of utterances is one batch of them all (was islice's ValueError)
    huge = generate_many(generator, requests, batch_size=2**70, seed=3)
    for got, want in zip(huge, (a, b), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "rnn, backend, dtype, batch, batched, tiers",
    [
        ("gru", "numpy", torch.float32, 1, False, TIERS_OF_THEIR_OWN),
        ("gru", "numpy", torch.float32, 2, False, {}),
        ("gru", "numpy", torch.float32, 2, True, {}),
        ("lstm", "numpy", torch.float32, 1, False, TIERS_OF_THEIR_OWN),
        ("lstm", "numpy", torch.float32, 2, True, {}),
        ("gru", "torch", torch.float32, 1, False, {}),
        ("lstm", "torch", torch.float32, 1, False, {}),
        ("lstm", "torch", torch.float32, 2, False, {}),
        ("lstm", "torch", torch.float32, 2, True, {}),
        ("gru", "torch", torch.bfloat16, 1, False, {}),
        ("gru", "torch", torch.bfloat16, 2, False, {}),
        ("gru", "torch", torch.bfloat16, 2, True, {}),
    ],
)
def test_generation_draws_what_the_model_predicts(rnn, backend, dtype, batch, batched, tiers):
    """Each generated sample is the inverse-CDF draw, with the seed's uniforms, from the
    logits the model gives, run teacher-forced, to the generated past: the unrolled
    tiers, the tap tables, the first layer (pushed or, as for large batches, pulled), the
    bias folding, the RNN cells written out (numpy; PyTorch at batch 1) and the draw all
    agree with the forward."""
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=32, embedding=16, feature_dim=6, speakers=2, rnn=rnn, layers=2, **tiers)
    model = SampleRNN(cfg).eval()
    frames, temperature, seed = 4, 0.7, 5
    f, s = torch.randn(batch, frames, 6), torch.tensor([0, 1][:batch])
    generator = Generator(model, backend=backend, dtype=dtype)
    if batched:  # the large-batch paths, on a batch small enough to check
        generator.PULL_FROM = generator.ROWS_PER_THREAD = 1
    y = generator(f, s, frames, temperature=temperature, seed=seed)
    assert y.std() > 0.05  # not a constant: the check below has something to check
    rng = np.random.default_rng(seed)
    uniforms = np.empty((frames * 80, batch), np.float32)
    for j in range(frames):  # one (top, B) block a top frame, as the generator draws them
        _uniform(rng, uniforms[j * 80 : (j + 1) * 80])
    with torch.no_grad():
        logits, _ = model(torch.cat([torch.zeros(batch, 80), y], dim=1), f, s, model.initial_state(batch))
    scale = np.float32(math.log2(math.e) / temperature)
    drawn = [
        _draw(step.T.numpy(), u, scale) for step, u in zip(logits.transpose(0, 1), uniforms, strict=True)
    ]
    agreement = (torch.from_numpy(np.stack(drawn, 1)) == quantise(y, model.cfg)).float().mean().item()
    # bfloat16 products may flip a near tie; float32 must not (beyond summation order)
    assert agreement >= (0.99 if dtype == torch.bfloat16 else 0.999)


def test_bulk_uniforms_are_numpys():
    """The noise's uniforms, drawn in bulk from the generator's raw output, are the numbers
    ``rng.random`` gives, in sizes even and odd (a half left over from an odd draw)."""
    bulk, numpy = np.random.default_rng(7), np.random.default_rng(7)
    for shape in [(80, 2, 256), (3, 5), (4, 6), (2, 256), (1,), (8,)]:
        got = np.empty(shape, np.float32)
        _uniform(bulk, got)
        np.testing.assert_array_equal(got, numpy.random(dtype=np.float32, size=shape))


def test_draws_are_the_softmax_inverse_cdf():
    """_draw picks, for each uniform u, the class where u falls in the softmax's CDF at
    the temperature (as float64 arithmetic puts it, but for u within float32 rounding of
    a class boundary)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(256) * 3
    n, temperature = 100_000, 0.8
    u = rng.random(n, dtype=np.float32)
    drawn = _draw(
        np.repeat(logits[:, None].astype(np.float32), n, axis=1), u, np.float32(math.log2(math.e) / 0.8)
    )
    p = np.exp((logits - logits.max()) / temperature)
    cdf = np.cumsum(p / p.sum())
    expected = np.minimum(np.searchsorted(cdf, u.astype(np.float64), side="right"), 255)
    assert (drawn == expected).mean() > 0.999
    assert len(np.unique(drawn)) > 20  # not one class: the check had something to check


@pytest.mark.parametrize("batch", [1, 5])
def test_compiled_draws_equal_numpys(batch):
    """kernels.py's draw picks _draw's classes bit for bit, sampled and greedy, on
    ordinary logits and on NaNs, infinities, ties and logits far below the largest."""
    from featprep.samplernn import kernels

    rng = np.random.default_rng(1)
    columns = [rng.standard_normal(256) * s for s in (0.5, 3, 30)]
    columns += [np.zeros(256), np.r_[np.full(255, -1e30), 0.0], np.r_[np.nan, np.zeros(255)]]
    columns += [np.r_[np.zeros(100), np.inf, np.zeros(155)], np.r_[np.zeros(7), np.nan, np.ones(248)]]
    for column in columns:
        logits = np.repeat(column[:, None].astype(np.float32), batch, axis=1)
        logits[-1] += np.arange(batch)  # columns not all alike
        uniforms = rng.random((80, batch), dtype=np.float32)
        drawn, bits, top = kernels._scratch(256, batch)
        for row, scale in [(3, np.float32(1.4426950408889634)), (79, np.float32(0.03))]:
            kernels._draw(logits.copy(), uniforms, row, scale, bits, top, drawn)
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, a small weight as in the kernel
                np.testing.assert_array_equal(drawn, _draw(logits, uniforms[row], scale))
        kernels._draw(logits.copy(), uniforms[:0], 0, np.float32(0), bits, top, drawn)
        np.testing.assert_array_equal(drawn, _draw(logits, None, np.float32(0)))


def test_a_failed_group_of_rows_stops_the_others(monkeypatch):
    """When the first group of rows ends in an error (Ctrl-C), the groups on the other
    threads stop at their next top frame: the pool waited for them to finish the batch
    (Ctrl-C at batch 64 took 6.6 s to end the command)."""
    from featprep.samplernn import generate as generation

    generator = Generator(small_model())
    generator.ROWS_PER_THREAD = 1
    monkeypatch.setattr(generation, "_cores", lambda: 2)
    steps, step = [], generator.numpy_tiers[-1].step
    monkeypatch.setattr(generator.numpy_tiers[-1], "step", lambda *a: steps.append(1) or step(*a))
    rows = generator._rows

    def first_fails(run, group, **kw):
        if group.start == 0:
            time.sleep(0.05)  # the other group is at work
            raise KeyboardInterrupt
        return rows(run, group, **kw)

    monkeypatch.setattr(generator, "_rows", first_fails)
    frames = 2000  # 160,000 samples a row: far more than 0.05 s of work
    with pytest.raises(KeyboardInterrupt):
        generator(torch.randn(2, frames, 6), torch.tensor([0, 1]), frames, seed=1)
    assert 0 < len(steps) < frames


@pytest.mark.parametrize("batch, pulled, threads", [(1, False, 1), (3, False, 1), (3, True, 1), (4, True, 2)])
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_compiled_frames_equal_the_numpy_step(batch, pulled, threads, temperature, monkeypatch):
    """A bottom frame compiled (numba) draws what the numpy step draws, bit for bit: the
    same products, additions, exp2 and running sums of the draw, and argmax; the rows
    split between threads draw the same; without numba the numpy step runs."""
    from featprep.samplernn import generate as generation

    torch.manual_seed(0)
    model = SampleRNN(ModelConfig(hidden=32, embedding=16, feature_dim=6, speakers=2, ratios=[8, 2])).eval()
    f, s = torch.randn(batch, 6, 6), torch.tensor([0, 1, 1, 0][:batch])
    generator = Generator(model)
    if pulled:
        generator.PULL_FROM = 1
    generator.ROWS_PER_THREAD = batch // threads
    monkeypatch.setattr(generation, "_cores", lambda: threads)
    assert generator.compiled
    compiled = generator(f, s, 6, temperature=temperature, seed=4)
    assert compiled.std() > 0.05
    generator.compiled = False
    torch.testing.assert_close(generator(f, s, 6, temperature=temperature, seed=4), compiled, rtol=0, atol=0)
    monkeypatch.setitem(sys.modules, "numba", None)  # as if numba were not installed
    monkeypatch.delitem(sys.modules, "featprep.samplernn.kernels")
    monkeypatch.delattr(sys.modules["featprep.samplernn"], "kernels")
    generation._kernels.cache_clear()
    try:
        assert not Generator(model).compiled
    finally:
        generation._kernels.cache_clear()


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("arrays", [False, True])
def test_unrolled_tier_steps_equal_the_tier(rnn, batch, arrays):
    """The generator's tier, one frame a step (the RNN cells written out in numpy and, at
    batch 1, in PyTorch), gives the model tier's upsampled output and state."""
    from featprep.samplernn.generate import _Tier

    torch.manual_seed(1)
    cfg = ModelConfig(hidden=24, embedding=8, feature_dim=5, rnn=rnn, layers=2)
    tier = SampleRNN(cfg).tiers[1].eval()
    with torch.no_grad():  # nothing left at its zero initialisation
        for p in tier.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    steps = 5
    prev, upper = torch.rand(batch, steps, tier.frame) * 2 - 1, torch.randn(batch, steps, 24)
    cond = torch.randn(batch, steps, cfg.cond_dim)
    with torch.no_grad():
        expected, hidden = tier(prev, upper, cond, tier.initial(batch))
        unrolled = _Tier.of(tier, torch.float32)
        projected = tier.cond(cond)
    if arrays:
        unrolled = unrolled.numpy()
        prev, upper, projected = prev.numpy(), upper.numpy(), projected.numpy()
    state = unrolled.initial(batch)
    got = np.stack([unrolled.step(prev[:, j], upper[:, j], projected[:, j], state) for j in range(steps)], 1)
    np.testing.assert_allclose(got.reshape(expected.shape), expected.numpy(), atol=2e-5)
    np.testing.assert_allclose(np.stack(state), hidden.numpy(), atol=2e-5)


def test_presets_and_unknown_options():
    assert TrainConfig.from_preset("paper").hidden == 1024
    assert TrainConfig.from_preset("small", {"hidden": 16}).hidden == 16
    with pytest.raises(FeatprepError, match="unknown training option 'hiden'"):
        TrainConfig.from_preset("small", {"hiden": 16})
    with pytest.raises(FeatprepError, match="tier_hidden has 3 values for 2 frame tiers"):
        ModelConfig(tier_hidden=[8, 16, 32])
    model = SampleRNN(ModelConfig(hidden=32, embedding=8, tier_hidden=[16, 48], tier_layers=[2, 1]))
    assert [t.rnn.hidden_size for t in model.tiers] == [16, 48]
    assert [t.rnn.num_layers for t in model.tiers] == [2, 1]


@pytest.fixture(scope="module")
def pase_corpus(demo_corpus, tmp_path_factory):
    """Demo CMU Arctic layout with PASE frames (random weights, asked for) and no labels."""
    from .test_prepare import ARCTIC_GENDERS

    out = tmp_path_factory.mktemp("pase") / "arctic"
    sets = ARCTIC_GENDERS + [
        "labels.source=none",
        "acoustic.enabled=false",
        "pase.arch=pase",
        "pase.random_init_seed=0",
    ]
    prepare("cmu_arctic", demo_corpus / "cmu_arctic", out, overrides=sets, jobs=2)
    return out


def test_pase_seed_speakers(pase_corpus, tmp_path, clips):
    from featprep.samplernn.run import Run
    from featprep.samplernn.speakers import PaseSeeds

    cfg = TrainConfig.from_preset(
        "small",
        {
            "features": "none",
            "speaker_mode": "pase_seed",
            "batch_size": 2,
            "checkpoint_every": 4,
            "valid_every": 4,
        },
    )
    resumed_run_matches(pase_corpus, tmp_path, cfg, 8)  # the per-step windows are drawn again identically
    run = Run(tmp_path / "a")
    seeds = PaseSeeds(pase_corpus, run.info["speakers"])
    vector = run.speaker_input("dfa")
    assert vector.shape == (1, 100)
    np.testing.assert_array_equal(vector[0].numpy(), seeds.fixed(run.speaker_index("dfa")))
    known = ", ".join(run.info["speakers"])
    with pytest.raises(FeatprepError) as e:
        run.speaker_index("p225")
    assert (
        str(e.value)
        == f"speaker 'p225' is not in this run; it knows {len(run.info['speakers'])} speakers: {known}"
    )
    draws = np.stack([seeds.draw(np.array([0]), np.random.default_rng(i))[0] for i in range(5)])
    assert draws.shape == (5, 100) and len({d.tobytes() for d in draws}) > 1  # redrawn windows differ
    assert generate(run.model, None, vector, 2).shape == (1, 160)
    # evaluate speaks with each utterance's fixed PASE vector, a batch of them at once
    result = evaluate_run(str(tmp_path / "a"), max_utterances=2, max_seconds=0.05)
    assert len(result["utterances"]) == 2 and result["nll_bits"] > 0
    with pytest.raises(FeatprepError, match="no PASE frames"):
        PaseSeeds(clips, ["awb"])
    # an unseen speaker, from a recording, through the corpus's own encoder
    from .conftest import PYSPTK_DATA

    from_wav = run.speaker_from_wav(PYSPTK_DATA / "arctic_a0007.wav")
    assert from_wav.shape == (1, 100) and torch.isfinite(from_wav).all()
    assert generate(run.model, None, from_wav, 2).shape == (1, 160)


def test_distributed_training_with_two_processes(clips, tmp_path):
    """torchrun, gloo, 2 CPU processes: disjoint utterances, an uneven epoch end, resume,
    and a run bounded by epochs, stopped and resumed while one rank waits for the other."""
    import os
    import subprocess
    import sys

    def run(out, *options):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        launcher += ["--master_port", "29517"]
        sets = ["--set", "features=none", "--set", "batch_size=2", "--set", "checkpoint_every=10"]
        cmd = [*launcher, "-m", "featprep", "train", clips, "--out", tmp_path / out, "--preset", "small"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        r = subprocess.run(
            [str(c) for c in [*cmd, "--device", "cpu", *sets, *options]],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return [json.loads(x) for x in (tmp_path / out / "log.jsonl").read_text().splitlines()]

    run("run", "--steps", "30")
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    orders = [set(state["order"]) for state in saved["loader"]]
    assert len(orders) == 2 and orders[0].isdisjoint(orders[1]) and orders[0] | orders[1] == {0, 1}
    records = run("run", "--steps", "80", "--resume")  # the clips differ in length: one rank waits
    assert [r["step"] for r in records] == list(range(1, 81))
    assert records[-1]["epoch"] >= 1 and all(np.isfinite(r["train_bits"]) for r in records)
    # --epochs: every rank leaves at the same step (a rank that finished first used to
    # leave alone and the other waited for it forever)
    short, long = sorted(math.ceil(u.n_frames / 13) for u in Corpus(clips, ("train",), None).utterances)
    assert long > short + 1
    whole = run("whole", "--epochs", "2")
    assert [r["step"] for r in whole] == list(range(1, 2 * long + 1)) and whole[-1]["epoch"] == 1
    assert torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["step"] == 2 * long
    run("parts", "--steps", str(short + 1))  # its checkpoint: one rank waiting
    loaders = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)["loader"]
    assert any(position["waiting"] for position in loaders)
    parts = run("parts", "--epochs", "2", "--resume")
    assert [r["train_bits"] for r in parts] == [r["train_bits"] for r in whole]


def test_audio_samples_at_intervals(clips, tmp_path):
    import soundfile as sf

    cfg = TrainConfig.from_preset(
        "small", {"features": "none", "batch_size": 2, "sample_every": 3, "sample_seconds": 0.1}
    )
    train(clips, tmp_path, cfg, steps=6, log=lambda _m: None)
    written = sorted(p.name for p in (tmp_path / "samples").glob("*.wav"))
    assert written == ["step-0000003.wav", "step-0000006.wav"]
    audio, sr = sf.read(tmp_path / "samples" / written[0])
    assert sr == 16000 and len(audio) == 1600
    # TensorBoard (its own reader, which checks every record's CRC-32C) sees the same
    # losses as log.jsonl and the same audio as the wav files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"audio": 0})
    board.Reload()
    logged = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    nll = board.Scalars("train/nll_bits_per_sample")
    assert [e.step for e in nll] == [r["step"] for r in logged]
    np.testing.assert_allclose([e.value for e in nll], [r["train_bits"] for r in logged], rtol=1e-6)
    assert {"train/grad_norm", "train/lr", "train/samples_per_s"} <= set(board.Tags()["scalars"])
    clips_seen = board.Audio("sample")
    assert [e.step for e in clips_seen] == [3, 6]
    heard, rate = sf.read(io.BytesIO(clips_seen[0].encoded_audio_string))
    assert rate == 16000 and np.array_equal(heard, audio)
    # killed after logging steps 7 and 8, resumed from step 6: each step shows once
    at_six = (tmp_path / "checkpoint.pt").read_bytes()
    train(clips, tmp_path, cfg, steps=8, resume=True, log=lambda _m: None)
    (tmp_path / "checkpoint.pt").write_bytes(at_six)
    train(clips, tmp_path, cfg, steps=9, resume=True, log=lambda _m: None)
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    logged = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    nll = board.Scalars("train/nll_bits_per_sample")
    assert [e.step for e in nll] == [r["step"] for r in logged] == list(range(1, 10))
    np.testing.assert_allclose([e.value for e in nll], [r["train_bits"] for r in logged], rtol=1e-6)


def test_pase_trained_speakers(pase_corpus, tmp_path):
    """The encoder in the loop: its weights learn, its BatchNorm statistics stay frozen."""
    from featprep.pase import load_encoder
    from featprep.samplernn.run import Run

    cfg = TrainConfig.from_preset(
        "small",
        {
            "features": "none",
            "speaker_mode": "pase_trained",
            "batch_size": 2,
            "checkpoint_every": 2,
            "seed_seconds": 0.3,
        },
    )
    resumed_run_matches(pase_corpus, tmp_path, cfg, 4)
    start = load_encoder("pase", random_init_seed=cfg.seed).state_dict()
    tuned = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["encoder"]
    assert not torch.equal(tuned["W.weight"], start["W.weight"])  # fine-tuned
    assert torch.equal(tuned["blocks.3.norm.running_mean"], start["blocks.3.norm.running_mean"])  # frozen
    run = Run(tmp_path / "a")
    vector = run.speaker_input("dma")
    assert vector.shape == (1, 100) and torch.isfinite(vector).all()
    assert generate(run.model, None, vector, 2).shape == (1, 160)


@pytest.fixture(scope="module")
def labelled_corpus(demo_corpus, tmp_path_factory):
    """Demo CMU Arctic layout with Festival's labels: ling, the compact set, acoustic."""
    from featprep.demo import DEMO_LABELS
    from featprep.normstats import normstats

    from .test_prepare import ARCTIC_GENDERS

    out = tmp_path_factory.mktemp("labelled") / "arctic"
    prepare(
        "cmu_arctic", demo_corpus / "cmu_arctic", out, overrides=ARCTIC_GENDERS + DEMO_LABELS["cmu_arctic"]
    )
    normstats(out, min_frames=0)
    return out


def test_feature_specs_pack_the_streams_they_name(labelled_corpus, pase_corpus):
    from featprep.normalise import Normaliser
    from featprep.samplernn.conditioning import parse_spec

    features = read_manifest(labelled_corpus)["features"]
    dims = {f["name"]: f["dim"] for f in features}
    compact = parse_spec("compact_lf0", features)
    # the SSW 2019 set: 10 categorical fields first, 45 numeric, log-F0 and the voiced flag
    assert compact.dim == 57 == dims["ling_cat"] + dims["ling_num"] + 2
    assert compact.streams == ["ling_cat", "ling_num", "acoustic"]
    assert compact.vocabulary_sizes[0] == len(features[[f["name"] for f in features].index("ling_cat")]
                                               ["vocabularies"]["p1"])  # fmt: skip
    assert parse_spec("acoustic+ling_cat", features).streams == ["ling_cat", "acoustic"]
    assert parse_spec("none", features) is None
    for bad, message in [
        ("ling+mel", "no 'mel' stream"),
        ("acoustic[lf0,f0]", "no column 'f0'"),
        ("ling[", "cannot read"),
    ]:
        with pytest.raises(FeatprepError, match=re.escape(message)):
            parse_spec(bad, features)
    with pytest.raises(FeatprepError, match="not frame-level"):  # PASE frames are 10 ms
        parse_spec("pase", read_manifest(pase_corpus)["features"])
    # packed frames: normalised float columns where they belong, indices kept as they are
    corpus = Corpus(labelled_corpus, ("train",), "ling_lf0")
    u = corpus.utterances[0]
    speaker = corpus.speakers[u.speaker]
    index, arrays = open_shard(next(labelled_corpus.glob("shards/train/shard-*")))
    first = index.iloc[0]
    rows = slice(first.frame_offset, first.frame_offset + 9)
    ling = Normaliser.load(labelled_corpus, "ling", speaker)(arrays["ling"][rows])
    lf0_vuv = Normaliser.load(labelled_corpus, "acoustic", speaker)(arrays["acoustic"][rows])[:, :2]
    np.testing.assert_array_equal(corpus.frames(u, 0, 9), np.concatenate([ling, lf0_vuv], axis=1))
    cat = Corpus(labelled_corpus, ("train",), "compact").frames(u, 0, 9)[:, :10]
    np.testing.assert_array_equal(cat, arrays["ling_cat"][rows])


@pytest.mark.parametrize("features", ["compact", "ling_lf0"])
def test_training_on_compact_and_f0_conditioning(labelled_corpus, tmp_path, features):
    """The categorical columns go through embeddings; labels give the compact set at
    generation time, but not F0, which only the corpus has."""
    from featprep.labels.frontend import merlin_normalise, text_to_labels
    from featprep.samplernn.run import Run

    cfg = TrainConfig.from_preset("small", {"features": features, "batch_size": 2, "valid_every": 3})
    record = train(labelled_corpus, tmp_path, cfg, steps=3, log=lambda _m: None)
    assert math.isfinite(record["valid_bits"])
    run = Run(tmp_path)
    categorical = len(run.model.categories)
    assert categorical == (10 if features == "compact" else 0)
    label = merlin_normalise(text_to_labels(["Hello."])[0])
    if features == "compact":
        conditioning, frames = run.conditioning(label, "dfa")
        assert conditioning.shape == (frames, 55) and np.all(
            conditioning[:, :10] == np.round(conditioning[:, :10])
        )
        audio = generate(run.model, torch.from_numpy(conditioning)[None], run.speaker_input("dfa"), frames)
        assert audio.shape == (1, frames * 80)
    else:
        with pytest.raises(FeatprepError, match="also reads 'acoustic'"):
            run.conditioning(label, "dfa")
    result = evaluate_run(str(tmp_path), max_utterances=1, max_seconds=0.05)
    assert len(result["utterances"]) == 1


def test_train_says_what_it_trains_and_where_its_checkpoint_is(clips, tmp_path):
    cfg = TrainConfig.from_preset("small", {"features": "none", "checkpoint_every": 2})
    lines: list[str] = []
    train(clips, tmp_path / "run", cfg, steps=3, log=lines.append)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    parameters = sum(t.numel() for t in saved["model"].values())
    rows = sum(
        s["rows"]
        for s in json.loads((clips / "manifest.json").read_text())["shards"]
        if s["split"] == "train"
    )
    head, corpus, folder = lines[:3]
    assert head.startswith("train: device ") and head.endswith(
        f", {parameters:,} parameters, features none, speaker embedding, until step 3"
    )
    assert corpus.startswith(f"corpus {clips}: train {rows} utterances, 2 speakers")
    assert folder == f"run folder {tmp_path / 'run'}: checkpoint.pt every 2 steps and at the end"
    assert lines[-1] == f"checkpoint: {tmp_path / 'run' / 'checkpoint.pt'} (step 3)"

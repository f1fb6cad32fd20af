"""PASE encoders: architecture, checkpoint forms, formulas, causality, batching."""

import numpy as np
import pytest
import soundfile as sf
import torch

from featprep.errors import FeatprepError
from featprep.pase import load_encoder
from featprep.pase.checkpoint import CheckpointError, state_digest
from featprep.pase.extract import extract
from featprep.pase.model import MIN_SAMPLES, PaseEncoder, QRNNLayer
from featprep.pase.stage import PaseStage
from featprep.recipe import load_recipe
from featprep.records import Utterance
from featprep.stage import Item

# shapes from the published architecture (reference table), channels of blocks 0..7
CHANNELS = [64, 64, 128, 128, 256, 256, 512, 512]
CONV_SHAPES = [
    (64, 64, 20),
    (128, 64, 11),
    (128, 128, 11),
    (256, 128, 11),
    (256, 256, 11),
    (512, 256, 11),
    (512, 512, 11),
]


def expected_shapes(arch: str) -> dict[str, tuple]:
    emb = {"pase": 100, "pase+": 256, "pase_dense_qrnn": 100}[arch]
    shapes: dict[str, tuple] = {}
    if arch != "pase":
        shapes.update({f"denseskips.{i}.weight": (emb, c, 1) for i, c in enumerate(CHANNELS[:-1])})
    shapes["blocks.0.conv.low_hz_"] = shapes["blocks.0.conv.band_hz_"] = (64, 1)
    for i, c in enumerate(CHANNELS):
        if i:
            shapes[f"blocks.{i}.conv.weight"] = CONV_SHAPES[i - 1]
            shapes[f"blocks.{i}.conv.bias"] = (c,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"blocks.{i}.norm.{name}"] = (c,)
        shapes[f"blocks.{i}.norm.num_batches_tracked"] = ()
        shapes[f"blocks.{i}.act.weight"] = (c,)
    if arch == "pase+":
        shapes["rnn.layers.0.linear.weight"], shapes["rnn.layers.0.linear.bias"] = (1536, 1024), (1536,)
    if arch == "pase_dense_qrnn":
        shapes["rnn.layers.0.linear.weight"], shapes["rnn.layers.0.linear.bias"] = (300, 1024), (300,)
    shapes["W.weight"] = (emb, 512 if arch != "pase_dense_qrnn" else 100, 1)
    shapes["W.bias"] = (emb,)
    shapes.update(
        {"norm_out.running_mean": (emb,), "norm_out.running_var": (emb,), "norm_out.num_batches_tracked": ()}
    )
    return shapes


@pytest.mark.parametrize(
    ("arch", "keys", "parameters"),
    [("pase", 69, 5_818_020), ("pase+", 78, 7_832_896), ("pase_dense_qrnn", 78, None)],
)
def test_every_key_and_shape(arch, keys, parameters):
    model = PaseEncoder(arch)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_shapes(arch)
    assert list(state)[0] == ("denseskips.0.weight" if arch != "pase" else "blocks.0.conv.low_hz_")
    assert len(state) == keys
    if parameters is not None:
        assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize("arch", ["pase", "pase+"])
def test_output_length(arch):
    model = load_encoder(arch, random_init_seed=1)
    lengths = [MIN_SAMPLES, 1600, 16000, 16080, *range(16151, 16160), 23456]
    with torch.no_grad():
        for t in lengths:
            y = model(torch.randn(1, 1, t) * 0.1)
            assert y.shape == (1, model.arch.emb_dim, (-(-t // 10)) // 16), t
        with pytest.raises(ValueError, match="at least 471"):
            model(torch.zeros(1, 1, MIN_SAMPLES - 1))
    assert not model.training


def test_sinc_filters_follow_the_formula():
    conv = PaseEncoder("pase").blocks[0].conv
    with torch.no_grad():
        conv.low_hz_.uniform_(-200, 3000)
        conv.band_hz_.uniform_(-500, 2000)
        got = conv.filters()[:, 0].numpy().astype(np.float64)
    low = 50 + np.abs(conv.low_hz_.detach().numpy()[:, 0].astype(np.float64))
    high = np.clip(low + 50 + np.abs(conv.band_hz_.detach().numpy()[:, 0].astype(np.float64)), 50, 8000)
    m = np.arange(-125, 126) / 16000
    ideal = 2 * high[:, None] * np.sinc(2 * high[:, None] * m) - 2 * low[:, None] * np.sinc(
        2 * low[:, None] * m
    )
    half = 0.54 - 0.46 * np.cos(2 * np.pi * np.linspace(0, 251 / 2 - 1, 125) / 251)
    window = np.concatenate([half, [1.0], half[::-1]])
    expected = ideal * window / (2 * (high - low))[:, None]
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4)


def test_qrnn_recurrence_and_causality():
    torch.manual_seed(0)
    layer = QRNNLayer(6, 4)
    x = torch.randn(9, 2, 6)
    with torch.no_grad():
        y = layer(x).numpy()
        w, b = layer.linear.weight.numpy(), layer.linear.bias.numpy()
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for batch in range(2):
        c = np.zeros(4)
        prev = np.zeros(6)
        for t in range(9):
            z, f, o = np.split(w @ np.concatenate([x[t, batch].numpy(), prev]) + b, 3)
            c = sig(f) * np.tanh(z) + (1 - sig(f)) * c
            np.testing.assert_allclose(y[t, batch], sig(o) * c, rtol=1e-5, atol=1e-6)
            prev = x[t, batch].numpy()
    changed = x.clone()
    changed[5:] += 1.0
    with torch.no_grad():
        np.testing.assert_array_equal(layer(changed)[:5].numpy(), y[:5])


def test_pase_plus_never_looks_far_ahead():
    """Frames well before a change of the input (beyond the receptive field) stay equal."""
    model = load_encoder("pase+", random_init_seed=2)
    x = torch.randn(1, 1, 16000) * 0.1
    later = x.clone()
    later[..., 12000:] = 0.0
    with torch.no_grad():
        a, b = model(x), model(later)
    # frame j sees samples up to about 160 j + 150 + 2370 / 2
    np.testing.assert_allclose(a[..., :60].numpy(), b[..., :60].numpy(), atol=1e-5)
    assert not torch.allclose(a[..., 90:], b[..., 90:])


def test_checkpoint_forms_load_strictly(tmp_path):
    source = load_encoder("pase+", random_init_seed=3)
    state = source.state_dict()
    forms = {
        "raw.ckpt": state,
        "wrapped.ckpt": {"state_dict": state, "step": 10, "optimizer": {}},
        "frontend.ckpt": {f"frontend.{k}": v for k, v in state.items()},
        "module.ckpt": {f"module.{k}": v for k, v in state.items()},
        "old.ckpt": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
        loaded = load_encoder("pase+", checkpoint=tmp_path / name)
        if name != "old.ckpt":
            assert state_digest(loaded) == state_digest(source), name
        assert loaded.source.startswith("sha256:") and not loaded.training


def test_checkpoint_mismatches_name_the_key(tmp_path):
    state = load_encoder("pase", random_init_seed=4).state_dict()
    torch.save(state, tmp_path / "pase.ckpt")
    with pytest.raises(
        CheckpointError, match=r"missing key 'denseskips.0.weight' \(expected shape \(256, 64, 1\)\)"
    ):
        load_encoder("pase+", checkpoint=tmp_path / "pase.ckpt")
    bad = dict(state)
    bad["W.weight"] = torch.zeros(100, 256, 1)
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(
        CheckpointError, match=r"'W.weight' has shape \(100, 256, 1\), pase expects \(100, 512, 1\)"
    ):
        load_encoder("pase", checkpoint=tmp_path / "bad.ckpt")
    torch.save({**state, "extra.weight": torch.zeros(2)}, tmp_path / "extra.ckpt")
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        load_encoder("pase", checkpoint=tmp_path / "extra.ckpt")
    torch.save({"model": object()}, tmp_path / "pickle.ckpt", _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_encoder("pase", checkpoint=tmp_path / "pickle.ckpt")


def test_random_weights_only_when_asked():
    with pytest.raises(FeatprepError, match="checkpoint file or an explicit random"):
        load_encoder("pase")
    a, b, c = (load_encoder("pase", random_init_seed=s) for s in (5, 5, 6))
    assert state_digest(a) == state_digest(b) != state_digest(c)
    assert a.source == "random-init:5"


@pytest.mark.parametrize("arch", ["pase", "pase+"])
def test_batched_equals_unbatched_but_near_the_padding(arch):
    model = load_encoder(arch, random_init_seed=7)
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 20080, 31920, 8000, 48000)]
    batched = extract(model, waves, batch_size=5, device="cpu")
    for wave, frames in zip(waves, batched, strict=True):
        (alone,) = extract(model, [wave], batch_size=1, device="cpu")
        assert frames.shape == alone.shape == (-(-len(wave) // 160), model.arch.emb_dim)
        np.testing.assert_allclose(frames[:-8], alone[:-8], atol=1e-4)


def test_extract_refuses_autocast_on_cpu():
    model = load_encoder("pase", random_init_seed=0)
    with pytest.raises(FeatprepError, match="needs a CUDA device"):
        extract(model, [np.zeros(16000, np.float32)], device="cpu", precision="bf16")


def test_the_pase_stage_gives_the_same_frames_whatever_the_threads(demo_corpus):
    """prepare --jobs 1 ran PASE on every core, its workers on one: pase.npy differed."""
    recipe = load_recipe("vctk", overrides=["pase.arch=pase", "pase.random_init_seed=0"])
    stage = PaseStage(recipe, str(demo_corpus))
    wav = next((demo_corpus / "cmu_arctic" / "cmu_us_dfa_arctic" / "wav").glob("*.wav"))
    audio = (sf.read(wav, dtype="int16")[0])[: 16000 * 3]
    outputs, before = [], torch.get_num_threads()
    try:
        for threads in (1, 4):
            torch.set_num_threads(threads)
            item = Item(Utterance("u", "s", "t", "u.wav"), "train", audio=audio)
            stage.finish_shard([item])
            assert torch.get_num_threads() == threads  # the caller's setting is given back
            outputs.append(item.arrays["pase"].tobytes())
    finally:
        torch.set_num_threads(before)
    assert outputs[0] == outputs[1]

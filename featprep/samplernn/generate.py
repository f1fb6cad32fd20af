"""Autoregressive generation: frame tiers run only at their frame boundaries.

Batched over utterances; the conditioning is computed once per frame. The sample-level
step, the only work done for every sample, is reduced to table look-ups and three small
matrix products: the window convolution over embeddings is precomputed as one table per
tap (``conv(embed(w)) = sum_i T_i[w_i]``), the conditioning's share is added once per
frame, and on the CPU the step runs in numpy (a PyTorch call costs more than the
arithmetic at these sizes). Sampling uses the Gumbel-max trick. Returns float waveforms.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.utils.parametrize

from ..errors import FeatprepError
from .model import SampleRNN, dequantise, quantise


class _SampleStep:
    """The sample-level MLP as numpy arrays (small models, where a PyTorch call costs more
    than its arithmetic) or PyTorch tensors (large ones, where its matrix products win)."""

    NUMPY_UP_TO = 256  # hidden size; measured on 2 CPU threads

    def __init__(self, model: SampleRNN) -> None:
        sample = model.sample
        with torch.no_grad():
            tables = torch.einsum("le,hei->ilh", sample.embed.weight, sample.conv.weight)
        self.numpy = model.cfg.hidden <= self.NUMPY_UP_TO
        linear = [m for m in sample.mlp if isinstance(m, torch.nn.Linear)]
        if self.numpy:
            self.tables = tables.cpu().numpy().astype(np.float32)  # (window, levels, hidden)
            self.taps = np.arange(self.tables.shape[0])
            self.layers = [
                (m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy()) for m in linear
            ]
        else:
            self.tables = tables.cpu()
            self.taps = torch.arange(self.tables.shape[0])
            self.layers = [(m.weight.detach().cpu(), m.bias.detach().cpu()) for m in linear]

    def logits(self, window: np.ndarray, base: np.ndarray) -> np.ndarray:
        """window: (B, taps) class indices; base: (B, hidden) upper tier + conditioning."""
        if self.numpy:
            h = self.tables[self.taps, window].sum(axis=1) + base
            for w, b in self.layers:
                h = np.maximum(h, 0.0) @ w + b
            return h
        h = self.tables[self.taps, torch.from_numpy(window)].sum(dim=1) + torch.from_numpy(base)
        for w, b in self.layers:
            h = torch.nn.functional.linear(torch.relu(h), w, b)
        return h.numpy()


@torch.inference_mode()
def generate(
    model: SampleRNN,
    features: torch.Tensor | None,
    speakers: torch.Tensor | None,
    frames: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """(B, frames * 80) samples for ``frames`` 5 ms frames of conditioning.

    ``speakers``: indices (B,) or speaker vectors (B, E), as the model was trained.
    """
    if features is not None and features.shape[1] != frames:
        raise FeatprepError(f"{features.shape[1]} frames of features for {frames} frames to generate")
    model.eval()
    device = next(model.parameters()).device
    batch = speakers.shape[0] if speakers is not None else features.shape[0]
    rng = np.random.default_rng(seed)
    top = model.top_frame
    cond = model.conditioning(features, speakers, frames)
    levels = model.cfg.levels
    q = np.full((batch, top + frames * top), int(quantise(torch.zeros(1), model.cfg)[0]), np.int64)
    x = torch.zeros(batch, top + frames * top, device=device)
    values = dequantise(torch.arange(levels), model.cfg).numpy()  # class -> sample value
    state = model.initial_state(batch)
    window = model.cfg.ratios[0]
    sizes = model.cfg.frame_sizes
    step = _SampleStep(model)
    sample = model.sample
    scale = 1.0 / max(temperature, 1e-5)

    def run_tier(i: int, start: int, upper: torch.Tensor | None, c: torch.Tensor | None) -> None:
        """Generate the samples of tier i's frame that begins at ``start`` (buffer index)."""
        tier = model.tiers[i]
        size = sizes[i]
        prev = x[:, start - size : start].reshape(batch, 1, size)
        up, state[i] = tier(prev, upper, c, state[i])  # (B, ratio, hidden)
        stride = size // tier.ratio
        if i > 0:
            for k in range(tier.ratio):
                run_tier(i - 1, start + k * stride, up[:, k : k + 1], c)
            return
        base = up[:, :, :]
        if c is not None and sample.cond is not None:
            base = base + sample.cond(c)
        base = base.cpu().numpy()
        for k in range(tier.ratio):
            t = start + k
            logits = step.logits(q[:, t - window : t], base[:, k]) * scale
            drawn = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
            q[:, t] = drawn
        x[:, start : start + tier.ratio] = torch.from_numpy(values[q[:, start : start + tier.ratio]]).to(
            device
        )

    # weight-normed layers: compute their weights once, not at every frame
    with torch.nn.utils.parametrize.cached():
        for j in range(frames):
            c = None if cond is None else cond[:, j : j + 1]
            run_tier(len(model.tiers) - 1, top + j * top, None, c)
    return x[:, top:].cpu()

"""Autoregressive generation: frame tiers run only at their frame boundaries.

Batched over utterances; the conditioning is computed once; each sample costs one
sample-level MLP step on a 20-sample window. Returns float waveforms at 16 kHz.
"""

from __future__ import annotations

import torch

from .model import SampleRNN, dequantise, quantise


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
    """(B, frames * 80) samples for ``frames`` 5 ms frames of conditioning."""
    model.eval()
    device = next(model.parameters()).device
    batch = speakers.shape[0] if speakers is not None else features.shape[0]  # indices or vectors
    generator = torch.Generator(device=device).manual_seed(seed)
    top = model.top_frame
    cond = model.conditioning(features, speakers, frames)
    length = frames * top
    x = torch.zeros(batch, top + length, device=device)
    q = quantise(x, model.cfg)
    state = model.initial_state(batch)
    window = model.cfg.ratios[0]
    sizes = model.cfg.frame_sizes
    sample = model.sample
    # the window convolution as one table per tap: conv(embed(w)) = sum_i tables[i, w_i]
    tables = torch.einsum("le,hei->ilh", sample.embed.weight, sample.conv.weight)  # (window, levels, hidden)
    taps = torch.arange(window, device=device)
    layers = [m for m in sample.mlp if isinstance(m, torch.nn.Linear)]

    def run_tier(i: int, start: int, upper: torch.Tensor | None, c: torch.Tensor | None) -> None:
        """Generate the samples of tier i's frame that begins at ``start`` (buffer index)."""
        nonlocal bias
        tier = model.tiers[i]
        if i == 0:  # the conditioning's share of the sample MLP is fixed for the frame
            bias = sample.cond(c[:, 0]) if c is not None and sample.cond is not None else 0.0
        size = sizes[i]
        prev = x[:, start - size : start].reshape(batch, 1, size)
        up, state[i] = tier(prev, upper, c, state[i])  # (B, ratio, hidden)
        step = size // tier.ratio
        for k in range(tier.ratio):
            begin = start + k * step
            if i > 0:
                run_tier(i - 1, begin, up[:, k : k + 1], c)
            else:
                t = begin
                h = tables[taps, q[:, t - window : t]].sum(dim=1) + up[:, k] + bias
                for layer in layers:
                    h = layer(torch.relu(h))
                logits = h / max(temperature, 1e-5)
                drawn = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
                q[:, t] = drawn
                x[:, t] = dequantise(drawn, model.cfg)

    bias: torch.Tensor | float = 0.0
    for j in range(frames):
        c = None if cond is None else cond[:, j : j + 1]
        run_tier(len(model.tiers) - 1, top + j * top, None, c)
    return x[:, top:]

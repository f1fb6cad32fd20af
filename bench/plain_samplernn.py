"""The plain reference the SampleRNN benchmarks compare against (not part of featprep).

The same model, weights and arithmetic, run the way the 2017 PyTorch implementations
run it: frame tiers through their modules, upsampling with ``ConvTranspose1d``, and

- the sample level: embeddings of the window's samples through a convolution over the
  window (featprep sums one precomputed table row per tap instead);
- generation: a Python loop, one sample per iteration, frame tiers at their frame
  boundaries, the sample-level MLP recomputed from its 20-sample window at every step,
  ``softmax`` + ``multinomial``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from featprep.samplernn.model import FrameTier, SampleRNN, dequantise, quantise


def plain_tier(tier: FrameTier, prev, upper, cond, hidden):
    """A frame tier as the 2017 code has it: 1x1 convolution in, RNN, transposed
    convolution out."""
    x = tier.expand(prev.transpose(1, 2)).transpose(1, 2)
    if upper is not None:
        x = x + upper
    if cond is not None and tier.cond is not None:
        x = x + tier.cond(cond)
    if isinstance(tier.rnn, nn.LSTM):
        h, c = hidden.chunk(2, dim=0)
        out, (h, c) = tier.rnn(x, (h.contiguous(), c.contiguous()))
        hidden = torch.cat([h, c], dim=0)
    else:
        out, hidden = tier.rnn(x, hidden)
    return tier.upsample(out.transpose(1, 2)).transpose(1, 2), hidden


def plain_sample_logits(model: SampleRNN, q_window: torch.Tensor, upper: torch.Tensor, cond) -> torch.Tensor:
    """The sample level as the 2017 code has it: embeddings, a convolution over the window."""
    sample = model.sample
    h = sample.conv(sample.embed(q_window).transpose(1, 2)).transpose(1, 2) + upper
    if cond is not None and sample.cond is not None:
        h = h + sample.cond(cond)
    return sample.mlp(h)


@contextlib.contextmanager
def plain(model: SampleRNN) -> Iterator[SampleRNN]:
    """``model`` with its tiers and sample level swapped for the plain ones, for training."""
    for tier in model.tiers:
        tier.forward = lambda prev, upper, cond, state, tier=tier: plain_tier(tier, prev, upper, cond, state)
    model.sample.forward = lambda w, u, c: plain_sample_logits(model, w, u, c)
    try:
        yield model
    finally:
        for module in [*model.tiers, model.sample]:
            del module.forward


@torch.no_grad()
def plain_generate(model: SampleRNN, features, speakers, frames: int, seed: int = 0) -> torch.Tensor:
    model.eval()
    batch = speakers.shape[0]
    device = next(model.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    top, window, sizes = model.top_frame, model.cfg.ratios[0], model.cfg.frame_sizes
    cond = model.conditioning(features, speakers, frames)
    x = torch.zeros(batch, top + frames * top, device=device)
    q = quantise(x, model.cfg)
    state = model.initial_state(batch)

    def tier(i, start, upper, c):
        t = model.tiers[i]
        prev = x[:, start - sizes[i] : start].reshape(batch, 1, sizes[i])
        up, state[i] = plain_tier(t, prev, upper, c, state[i])
        stride = sizes[i] // t.ratio
        for k in range(t.ratio):
            if i > 0:
                tier(i - 1, start + k * stride, up[:, k : k + 1], c)
            else:
                s = start + k
                logits = plain_sample_logits(model, q[:, s - window : s], up[:, k : k + 1], c)[:, 0]
                q[:, s] = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
                x[:, s] = dequantise(q[:, s], model.cfg)

    for j in range(frames):
        tier(len(model.tiers) - 1, top + j * top, None, None if cond is None else cond[:, j : j + 1])
    return x[:, top:]

"""The plain reference the SampleRNN benchmarks compare against (not part of featprep).

Generation the way the 2017 implementations do it: a Python loop, one sample per
iteration, frame tiers run at their frame boundaries, the sample-level MLP recomputed
from its 20-sample window (embedding + convolution) at every step, all in PyTorch.
Training the way they feed the sample level: one-hot vectors of the 256 classes through
a convolution over the window (instead of an embedding table).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from featprep.samplernn.model import SampleRNN, dequantise, quantise


@torch.no_grad()
def plain_generate(model: SampleRNN, features, speakers, frames: int, seed: int = 0) -> torch.Tensor:
    model.eval()
    batch = speakers.shape[0]
    g = torch.Generator().manual_seed(seed)
    top, window, sizes = model.top_frame, model.cfg.ratios[0], model.cfg.frame_sizes
    cond = model.conditioning(features, speakers, frames)
    x = torch.zeros(batch, top + frames * top)
    q = quantise(x, model.cfg)
    state = model.initial_state(batch)

    def tier(i, start, upper, c):
        t = model.tiers[i]
        up, state[i] = t(x[:, start - sizes[i] : start].reshape(batch, 1, sizes[i]), upper, c, state[i])
        stride = sizes[i] // t.ratio
        for k in range(t.ratio):
            if i > 0:
                tier(i - 1, start + k * stride, up[:, k : k + 1], c)
            else:
                s = start + k
                logits = model.sample(q[:, s - window : s], up[:, k : k + 1], c)[:, 0]
                q[:, s] = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
                x[:, s] = dequantise(q[:, s], model.cfg)

    for j in range(frames):
        tier(len(model.tiers) - 1, top + j * top, None, None if cond is None else cond[:, j : j + 1])
    return x[:, top:]


def plain_sample_logits(model: SampleRNN, q_window: torch.Tensor, upper: torch.Tensor, cond) -> torch.Tensor:
    """The sample level with one-hot inputs: conv over (levels x window) one-hot frames."""
    one_hot = F.one_hot(q_window, model.cfg.levels).float().transpose(1, 2)  # (B, levels, S + w - 1)
    weight = torch.einsum("le,hei->hli", model.sample.embed.weight, model.sample.conv.weight)
    h = F.conv1d(one_hot, weight).transpose(1, 2) + upper
    if cond is not None and model.sample.cond is not None:
        h = h + model.sample.cond(cond)
    return model.sample.mlp(h)

"""Benchmark: SampleRNN training and generation against the plain reference (bench/plain_samplernn.py).

In one run, at the small preset (hidden 64) and the paper configuration (hidden 1024):
training samples/s (featprep's embedding-table sample level vs one-hot inputs) and
generation samples/s at batch 1 and 64 (featprep's table look-ups and numpy step vs the
plain per-sample PyTorch loop). CPU threads as given (torch.get_num_threads()).
"""

from __future__ import annotations

import resource
import time

import torch
from plain_samplernn import plain_generate, plain_sample_logits
from torch.nn import functional as F

from featprep.samplernn.generate import generate
from featprep.samplernn.model import ModelConfig, SampleRNN, quantise


def training_rate(model: SampleRNN, batch: int, plain: bool, steps: int = 3) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, 80 + 13 * 80) * 1.6 - 0.8
    f = torch.randn(batch, 13, model.cfg.feature_dim)
    s = torch.zeros(batch, dtype=torch.long)
    target = quantise(x[:, 80:], model.cfg)
    original = model.sample.forward
    if plain:
        model.sample.forward = lambda w, u, c: plain_sample_logits(model, w, u, c)
    try:
        start = 0.0
        for i in range(steps + 1):  # the first step warms up allocators and kernels
            if i == 1:
                start = time.perf_counter()
            logits, _ = model(x, f, s, model.initial_state(batch))
            loss = F.cross_entropy(logits.reshape(-1, model.cfg.levels), target.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps * batch * 13 * 80 / (time.perf_counter() - start)
    finally:
        model.sample.forward = original


def generation_rate(model: SampleRNN, batch: int, plain: bool, frames: int) -> float:
    f = torch.randn(batch, frames, model.cfg.feature_dim)
    s = torch.zeros(batch, dtype=torch.long)
    run = plain_generate if plain else generate
    start = time.perf_counter()
    run(model, f, s, frames)
    return batch * frames * 80 / (time.perf_counter() - start)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for hidden, embedding, frames, train_batch in ((64, 32, 25, 8), (1024, 256, 3, 8)):
        torch.manual_seed(0)
        model = SampleRNN(ModelConfig(hidden=hidden, embedding=embedding, feature_dim=50, speakers=4))
        ours_t, plain_t = training_rate(model, train_batch, False), training_rate(model, train_batch, True)
        print(f"hidden {hidden:>4} train (batch {train_batch}): featprep {ours_t:9.0f} samples/s, "
              f"plain {plain_t:9.0f}, ratio {ours_t / plain_t:.2f}")  # fmt: skip
        plain_1 = generation_rate(model, 1, True, frames)
        for batch in (1, 64):
            ours = generation_rate(model, batch, False, frames)
            print(f"hidden {hidden:>4} generate batch {batch:>2}: featprep {ours:9.0f} samples/s, "
                  f"plain loop batch 1 {plain_1:7.0f}, ratio {ours / plain_1:6.1f}")  # fmt: skip
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

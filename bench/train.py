"""Benchmark: SampleRNN training steps against the plain reference (bench/plain_samplernn.py).

At the small preset (hidden 64) and the paper configuration (hidden 1024), in one run:
training samples/s of featprep's model (table rows summed at the sample level, upsampling
as one matrix product) and of the same model run the plain way (embeddings convolved over
the window, ConvTranspose1d upsampling). Forward, backward and Adam step; the first step is a
warm-up and not timed. Each rate is the best of three runs, the two models' runs
interleaved (a small model's step takes milliseconds: one run of a few steps is mostly
the machine's noise). glibc keeps freed memory for reuse, as in ``featprep train``
(``keep_freed_memory``; ``--default-malloc`` to measure without). CPU threads as given.

    python bench/train.py [--batch 8] [--steps N] [--device cpu|cuda]  (steps: small 20, paper 3)
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from plain_samplernn import plain
from samplernn_models import PRESETS, peak_rss_mb, preset_model
from torch.nn import functional as F

from featprep.samplernn.loop import keep_freed_memory
from featprep.samplernn.model import SampleRNN, quantise


def training_rate(model: SampleRNN, batch: int, steps: int, device: str, autocast: bool = False) -> float:
    """Training samples/s: forward, backward and Adam step on random batches (the first
    step is a warm-up); ``autocast``: the forward pass in bfloat16 (bench/gpu.py)."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    frames = 13  # the presets' seq_len
    x = torch.rand(batch, 80 + frames * 80, device=device) * 1.6 - 0.8
    f = torch.randn(batch, frames, model.cfg.feature_dim, device=device)
    s = torch.zeros(batch, dtype=torch.long, device=device)
    target = quantise(x[:, 80:], model.cfg)
    cast = torch.autocast(device, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    start = 0.0
    for i in range(steps + 1):
        if i == 1:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with cast:
            logits, _ = model(x, f, s, model.initial_state(batch))
            loss = F.cross_entropy(logits.reshape(-1, model.cfg.levels).float(), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch * frames * 80 / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, help="timed steps a run (default: small 20, paper 3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc as it is")
    args = ap.parse_args()
    kept = not args.default_malloc and keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"glibc keeps freed memory: {'yes' if kept else 'no'}")  # fmt: skip
    for preset in PRESETS:
        model = preset_model(preset).to(args.device)
        steps = args.steps or {"small": 20, "paper": 3}[preset]
        rates = {"featprep": 0.0, "plain": 0.0}
        for _ in range(3):
            for name in rates:
                with plain(model) if name == "plain" else contextlib.nullcontext():
                    rates[name] = max(rates[name], training_rate(model, args.batch, steps, args.device))
        print(f"{preset:>5} (hidden {model.cfg.hidden}) train batch {args.batch}: "
              f"featprep {rates['featprep']:9.0f} samples/s, plain {rates['plain']:9.0f}, "
              f"ratio {rates['featprep'] / rates['plain']:.2f}")  # fmt: skip
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()

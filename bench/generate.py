"""Benchmark: SampleRNN generation against the plain per-sample loop (bench/plain_samplernn.py).

At the small preset (hidden 64) and the paper configuration (hidden 1024): featprep's
Generator at batch 1 and 64, float32 and (where the CPU or GPU has it) bfloat16, against
the plain loop at batch 1, all in one run, each rate the best of three. The Generator is
built once (its set-up time is printed apart: it is paid once per model, not per
utterance). CPU threads as given; the plain loop also in one thread, and the ratios are
against the faster of its two rates.

    python bench/generate.py [--seconds 0.5] [--device cpu|cuda] [--temperature 1] [--dtypes float32]

``--temperature 0`` (greedy) leaves out the draw (one uniform a sample and the softmax's
running sums), a tenth of the small model's step at batch 64. From batch 16 groups of
rows are generated on threads of their own, one a core: the figures at batch 64 depend on
the cores free.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
from plain_samplernn import plain_generate
from samplernn_models import PRESETS, peak_rss_mb, preset_model
from threadpoolctl import threadpool_limits

from featprep.samplernn.generate import Generator, _torch_threads


def rate(run, model, batch: int, frames: int, device: str, repeats: int = 3) -> float:
    """Samples/s of the best of ``repeats`` runs (the machine's noise only slows a run)."""
    f = torch.randn(batch, frames, model.cfg.feature_dim, device=device)
    s = torch.zeros(batch, dtype=torch.long, device=device)
    run(f[:, :1], s, 1)  # warm-up: allocators, kernels, BLAS threads
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(f, s, frames)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return batch * frames * model.top_frame / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.5, help="of audio per utterance")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--temperature", type=float, default=1.0, help="of featprep's generation")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="of featprep's products, comma-separated")
    args = ap.parse_args()
    frames = max(2, round(args.seconds * 200))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{frames * 80 / 16000:.2f} s per utterance, temperature {args.temperature}")  # fmt: skip
    for preset in PRESETS:
        model = preset_model(preset).to(args.device)
        plain_frames = max(2, frames // 8)  # the plain loop is slow; its rate does not depend on length
        plain = rate(partial(plain_generate, model), model, 1, plain_frames, args.device)
        with threadpool_limits(1), _torch_threads(1):
            # on a busy machine the plain loop's two-thread products wait for their second
            # thread (10x slower here with a load of 12 on 2 cores): the faster one counts
            alone = rate(partial(plain_generate, model), model, 1, plain_frames, args.device)
        print(f"{preset:>5} (hidden {model.cfg.hidden}): plain loop batch 1 {plain:9.0f} samples/s, "
              f"{alone:.0f} in one thread")  # fmt: skip
        plain = max(plain, alone)
        for dtype in (getattr(torch, name) for name in args.dtypes.split(",")):
            start = time.perf_counter()
            generator = partial(Generator(model, dtype=dtype), temperature=args.temperature)
            setup = time.perf_counter() - start
            for batch in (1, 64):
                ours = rate(generator, model, batch, frames, args.device)
                print(f"{preset:>5} {str(dtype)[6:]:>8} batch {batch:>2}: featprep {ours:9.0f} samples/s "
                      f"({ours / 16000:6.2f}x real time), {ours / plain:6.1f}x the plain loop's batch-1 "
                      f"rate (set-up {setup:.2f} s)")  # fmt: skip
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()

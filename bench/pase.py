"""Benchmark: the PASE stage's extraction, batched against one utterance at a time.

Real speech: the demo corpus's 16 kHz CMU Arctic layout (built on the first run). On the
CPU (all cores) for PASE and PASE+: real-time factor batched (length-sorted, batch 16)
and unbatched, and the ratio; on a CUDA device when present, the same in fp32 and bf16.
Random weights: speed does not depend on the values. Not run in CI.
"""

from __future__ import annotations

import resource
import time

import soundfile as sf
import torch
from common import arguments, demo_corpus

from featprep.pase import load_encoder
from featprep.pase.extract import extract


def timed(encoder, waves, **kw) -> float:
    extract(encoder, waves[:2], **kw)  # warm-up: allocator, kernels
    start = time.perf_counter()
    extract(encoder, waves, **kw)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    args = arguments(__doc__, utterances=(int, 32))
    corpus = demo_corpus(args.workdir)
    files = sorted((corpus / "cmu_arctic").glob("cmu_us_*_arctic/wav/arctic_b000*.wav"))[: args.utterances]
    waves = [sf.read(f, dtype="float32")[0] for f in files]
    seconds = sum(len(w) for w in waves) / 16000
    print(
        f"{len(waves)} utterances, {seconds:.1f} s of speech; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for arch in ("pase", "pase+"):
        encoder = load_encoder(arch, random_init_seed=0)
        one = timed(encoder, waves, batch_size=1, device="cpu")
        many = timed(encoder, waves, batch_size=16, device="cpu")
        print(
            f"CPU {arch:<6} one at a time {seconds / one:7.1f}x real time, "
            f"batched {seconds / many:7.1f}x real time, ratio {one / many:.2f}"
        )
        if torch.cuda.is_available():
            for precision in ("fp32", "bf16"):
                t = timed(encoder, waves * 8, batch_size=64, device="cuda", precision=precision)
                print(f"CUDA {arch:<6} {precision} batched {8 * seconds / t:9.0f}x real time")
        else:
            print(f"CUDA {arch:<6} no CUDA device here")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""Benchmark: the TBPTT loader reading ahead in threads against reading in the loop.

Prepares the demo corpus's CMU Arctic layout with Festival labels (once, in --workdir),
then times epochs of 13-frame chunks with Merlin linguistic features, normalised per
speaker, with ``workers=0`` (the plain way: read in the training loop) and with reader
threads; a training step is stood in for by ``--step-ms`` of sleep, as the readers
overlap with the step. Best of three epochs each.

    python bench/loader.py [--workdir DIR] [--batch 16] [--workers 2] [--step-ms 5]
"""

from __future__ import annotations

import time

from common import arguments, demo_corpus
from samplernn_models import peak_rss_mb

from featprep.demo import DEMO_GENDERS, DEMO_LABELS
from featprep.normstats import normstats
from featprep.pipeline import prepare
from featprep.samplernn.data import Corpus, TBPTTLoader


def epoch_seconds(corpus: Corpus, batch: int, workers: int, step: float) -> tuple[float, int]:
    best, batches = float("inf"), 0
    for seed in range(3):
        loader = TBPTTLoader(corpus, batch, 13, seed=seed, workers=workers)
        start = time.perf_counter()
        batches = 0
        for _ in loader:
            time.sleep(step)
            batches += 1
        best = min(best, time.perf_counter() - start - batches * step)
    return best, batches


def main() -> None:
    args = arguments(__doc__, batch=(int, 16), workers=(int, 2), **{"step-ms": (float, 5.0)})
    prepared = args.workdir / "prepared-arctic"
    if not (prepared / "stats").is_dir():
        sets = DEMO_GENDERS + DEMO_LABELS["cmu_arctic"] + ["acoustic.enabled=false"]
        prepare("cmu_arctic", demo_corpus(args.workdir) / "cmu_arctic", prepared, overrides=sets)
        normstats(prepared, min_frames=0)
    corpus = Corpus(prepared, ("train",), "ling")
    step = args.step_ms / 1000
    plain, batches = epoch_seconds(corpus, args.batch, 0, step)
    ahead, _ = epoch_seconds(corpus, args.batch, args.workers, step)
    print(f"{len(corpus.utterances)} utterances, {batches} batches of {args.batch} x 13 frames an epoch, "
          f"a {args.step_ms:g} ms step between batches")  # fmt: skip
    wait, wait_ahead = plain * 1000 / batches, ahead * 1000 / batches
    print(
        f"the training loop waits for data {wait:.2f} ms a batch reading in the loop, "
        f"{wait_ahead:.2f} ms with {args.workers} reader threads, ratio {wait / wait_ahead:.1f}"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()

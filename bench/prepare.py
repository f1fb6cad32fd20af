"""Benchmark: ``prepare`` (decode + resample + trim + shard) against a plain librosa loop.

Builds a VCTK 0.80 layout of at least ``--minutes`` of 48 kHz speech from the Festival
demo corpus (copies of its utterances, each with its own room noise), then in one run:

- featprep's prepare with 1 worker, and with every core;
- the obvious alternative: ``librosa.load(sr=16000)`` + ``librosa.effects.trim`` +
  ``soundfile.write`` per file, one process.

Prints audio-seconds per wall-second per core, the ratio, and peak RSS; then prepare with
its acoustic stage on as well, for scale. Not run in CI.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import arguments, demo_corpus

from featprep.demo import RATE, room
from featprep.pipeline import prepare


def make_corpus(root: Path, demo: Path, minutes: float) -> float:
    """Copy the demo's good 0.80 utterances under new speakers until ``minutes`` of audio."""
    sources = sorted((demo / "VCTK-Corpus" / "wav48").glob("p90*/p90*_00*.wav"))
    rng = np.random.default_rng(0)
    total, k = 0.0, 0
    while total < minutes * 60:
        src = sources[k % len(sources)]
        spk = f"p{500 + k // 40}"
        utt = f"{spk}_{k % 40 + 1:03d}"
        audio, sr = sf.read(src, dtype="float32")
        audio = audio + room(len(audio), rng, -66.0)
        (root / "wav48" / spk).mkdir(parents=True, exist_ok=True)
        (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
        sf.write(root / "wav48" / spk / f"{utt}.wav", audio, sr, subtype="PCM_16")
        txt = demo / "VCTK-Corpus" / "txt" / src.parent.name / f"{src.stem}.txt"
        shutil.copyfile(txt, root / "txt" / spk / f"{utt}.txt")
        total += len(audio) / RATE
        k += 1
    return total


def plain_loop(root: Path, out: Path) -> None:
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(root.glob("wav48/*/*.wav")):
        y, _ = librosa.load(path, sr=16000)
        yt, _ = librosa.effects.trim(y, top_db=40)
        sf.write(out / f"{path.stem}.wav", yt, 16000, subtype="PCM_16")


def timed(f, *args, **kwargs) -> float:
    start = time.perf_counter()
    f(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    args = arguments(__doc__, minutes=(float, 12.0))
    work = args.workdir
    demo = demo_corpus(work)
    root = work / "VCTK-Corpus"
    if not root.exists():
        make_corpus(root, demo, args.minutes)
    seconds = sum(sf.info(p).duration for p in root.glob("wav48/*/*.wav"))
    cores = os.cpu_count() or 1
    print(f"corpus: {seconds / 60:.1f} min of 48 kHz audio in {len(list(root.glob('wav48/*/*.wav')))} files")

    # librosa's first call costs seconds of imports and JIT: pay it outside the timing
    import librosa

    librosa.effects.trim(librosa.resample(np.zeros(4800, np.float32), orig_sr=48000, target_sr=16000))
    # the work the plain loop does too: decode, resample, trim, write (no acoustic features)
    sets = [
        "split.test_seconds=0",
        "split.valid_seconds=0",
        "clean.speaking_rate_factor=100.0",
        "acoustic.enabled=false",
    ]
    t_plain = timed(plain_loop, root, work / "plain")
    shutil.rmtree(work / "out1", ignore_errors=True)
    t_one = timed(prepare, "vctk", root, work / "out1", overrides=sets, jobs=1)
    shutil.rmtree(work / "outN", ignore_errors=True)
    t_all = timed(prepare, "vctk", root, work / "outN", overrides=sets, jobs=cores)
    shutil.rmtree(work / "outA", ignore_errors=True)
    t_acoustic = timed(prepare, "vctk", root, work / "outA", overrides=sets[:-1], jobs=1)
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    plain_rate = seconds / t_plain
    one_rate = seconds / t_one
    all_rate = seconds / t_all / cores
    print(f"plain librosa loop (1 core):   {plain_rate:8.0f} x real time per core ({t_plain:.2f} s)")
    print(f"featprep prepare -j 1:         {one_rate:8.0f} x real time per core ({t_one:.2f} s)")
    print(f"featprep prepare -j {cores}:         {all_rate:8.0f} x real time per core ({t_all:.2f} s wall)")
    print(f"ratio prepare -j 1 / plain loop: {one_rate / plain_rate:.2f}x")
    print(
        f"with the acoustic stage (RAPT, mel-cepstrum), -j 1: {seconds / t_acoustic:.0f} x real time per core"
    )
    print(f"peak RSS: main process {rss_self:.0f} MB, largest worker {rss_children:.0f} MB")


if __name__ == "__main__":
    main()

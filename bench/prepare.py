"""Benchmark: ``prepare`` against the plain loops a user would write instead, in one run.

Builds a VCTK 0.80 layout of at least ``--minutes`` of 48 kHz speech from the Festival
demo corpus (each new speaker reads one demo voice's utterances, every copy with its own
room noise; genders in ``speaker-info.txt``, as VCTK has them), then measures, each
figure a ratio within this run (the machine may be shared: the load average is printed
with each):

- the audio path: prepare ``-j 1`` without labels or acoustic features against a
  ``librosa.load(sr=16000)`` + ``librosa.effects.trim`` + ``soundfile.write`` loop;
- the default stages (VCTK's: the aligner's labels, linguistic and acoustic features) and
  the recipe's held-out sets, as a user runs it: prepare ``-j 1`` from nothing (the
  aligner trained, then every utterance aligned), and again with the aligner's model and
  labels already in ``OUT/align`` (the stages alone), against a plain loop of librosa
  load + trim + ``pysptk.rapt`` + ``pysptk.sp2mc`` of a Blackman-windowed power spectrum
  per 5 ms frame;
- the acoustic stage alone against RAPT alone, on the prepared utterances;
- ``-j 1`` against ``-j N`` (``--jobs``, default every core): the stages alone, and from
  nothing; the shards of both must be the same bytes.

The default stages run as ``featprep prepare vctk`` commands, each a fresh process (the
audio path and the plain loops run in this one, warmed up).

``--parts scaling`` measures the last item alone, the stages without the aligner (for a
60-minute corpus). Peak RSS of this process and of the largest command process or worker
is printed. Not run in CI.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import arguments, demo_corpus
from threadpoolctl import threadpool_limits

from featprep.acoustic import acoustic_features, f0
from featprep.compat import pysptk
from featprep.corpora.vctk import read_speaker_info
from featprep.demo import RATE, room
from featprep.io import sha256_file
from featprep.pipeline import prepare
from featprep.recipe import load_recipe
from featprep.shards import open_shard

#: the default stages as a user runs them, but every copy's transcript accepted whatever
#: its speaking rate (copies of few utterances fool the check)
SETS = ["clean.speaking_rate_factor=100.0"]
#: the audio path does the plain loop's work: one split, no labels, no acoustic features
AUDIO_ONLY = [
    *SETS,
    "split.test_seconds=0",
    "split.valid_seconds=0",
    "labels.source=none",
    "acoustic.enabled=false",
]


def make_corpus(root: Path, demo: Path, minutes: float) -> float:
    """Copy the demo's good 0.80 utterances under new speakers, 40 each, until ``minutes``
    of audio; speaker ``p5NN`` reads the utterances of one demo voice, with its gender."""
    voices = sorted(p.name for p in (demo / "VCTK-Corpus" / "wav48").glob("p90*"))
    genders = read_speaker_info(demo / "VCTK-Corpus" / "speaker-info.txt")
    rng = np.random.default_rng(0)
    total, k = 0.0, 0
    rows = ["ID  AGE  GENDER  ACCENTS  REGION"]
    while total < minutes * 60:
        voice = voices[(k // 40) % len(voices)]
        sources = sorted((demo / "VCTK-Corpus" / "wav48" / voice).glob(f"{voice}_00*.wav"))
        src = sources[k % len(sources)]
        spk = f"p{500 + k // 40}"
        if k % 40 == 0:
            rows.append(f"{spk[1:]}  30  {genders[voice].gender}  American  copy of {voice}")
        utt = f"{spk}_{k % 40 + 1:03d}"
        audio, sr = sf.read(src, dtype="float32")
        audio = audio + room(len(audio), rng, -66.0)
        (root / "wav48" / spk).mkdir(parents=True, exist_ok=True)
        (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
        sf.write(root / "wav48" / spk / f"{utt}.wav", audio, sr, subtype="PCM_16")
        txt = demo / "VCTK-Corpus" / "txt" / voice / f"{src.stem}.txt"
        shutil.copyfile(txt, root / "txt" / spk / f"{utt}.txt")
        total += len(audio) / RATE
        k += 1
    (root / "speaker-info.txt").write_text("\n".join(rows) + "\n")
    return total


def plain_audio_loop(root: Path, out: Path) -> None:
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(root.glob("wav48/*/*.wav")):
        y, _ = librosa.load(path, sr=16000)
        yt, _ = librosa.effects.trim(y, top_db=40)
        sf.write(out / f"{path.stem}.wav", yt, 16000, subtype="PCM_16")


def plain_feature_loop(root: Path, out: Path) -> None:
    """What a user would write for log-F0 and mel-cepstra: RAPT, then sp2mc frame by frame."""
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    window = np.blackman(400)
    for path in sorted(root.glob("wav48/*/*.wav")):
        y, _ = librosa.load(path, sr=16000)
        yt, _ = librosa.effects.trim(y, top_db=40)
        hz = pysptk.rapt((yt * 32768.0).astype(np.float32), 16000, 80, min=60.0, max=400.0, otype="f0")
        frames = librosa.util.frame(np.pad(yt, 200, mode="reflect"), frame_length=400, hop_length=80)
        mcep = np.array(
            [pysptk.sp2mc(np.abs(np.fft.rfft(f * window, 512)) ** 2 + 1e-10, 39, 0.41) for f in frames.T]
        )
        n = min(len(hz), len(mcep))
        np.save(out / f"{path.stem}.npy", np.column_stack([np.log(np.maximum(hz[:n], 1.0)), mcep[:n]]))


def timed(f, *args, **kwargs) -> tuple[float, float]:
    """(wall seconds of ``f(*args, **kwargs)``, the 1-minute load average after it); the
    CPU seconds of this process and of its finished children (Festival's runs; not live
    loky workers) go to ``CPU[f]``."""
    start, cpu = time.perf_counter(), cpu_seconds()
    f(*args, **kwargs)
    CPU[f] = cpu_seconds() - cpu
    return time.perf_counter() - start, os.getloadavg()[0]


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


#: CPU seconds of this process in the last `timed` call of each function: on a shared
#: machine a -j 1 run's CPU time is its cost per core, whatever the wall clock
CPU: dict = {}


def command(root: Path, out: Path, jobs: int) -> None:
    """``featprep prepare vctk`` as a user runs it: a fresh process (its imports, its
    workers' start and each stage's first call are part of the cost), default stages."""
    sets = [arg for s in SETS for arg in ("--set", s)]
    run = [sys.executable, "-m", "featprep", "prepare", "vctk", "--root", str(root), "--out", str(out)]
    subprocess.run([*run, "--jobs", str(jobs), "-q", *sets], check=True, stdout=subprocess.DEVNULL)


def digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.glob("shards/*/*/*"))}


def acoustic_against_rapt(out: Path) -> tuple[float, float]:
    """CPU seconds of the acoustic stage's function and of RAPT alone (same F0 range) over
    the prepared utterances, in turns so that the machine's load falls on both; one BLAS
    thread, as prepare runs them."""
    ranges = load_recipe("vctk")["acoustic"]["f0_range"]
    genders = read_speaker_info(out.parent / "VCTK-Corpus" / "speaker-info.txt")
    t_features = t_rapt = 0.0
    for shard in sorted(out.glob("shards/*/shard-*")):
        index, arrays = open_shard(shard)
        for row in index.itertuples():
            audio = arrays["audio"][row.audio_offset : row.audio_offset + 80 * row.n_frames]
            audio = audio.astype(np.float32) / 32768.0
            lo, hi = ranges[genders[row.speaker].gender]
            start = time.process_time()
            acoustic_features(audio, 16000, f0_range=(lo, hi))
            t_features += time.process_time() - start
            start = time.process_time()
            f0(audio, 16000, f0_min=lo, f0_max=hi)
            t_rapt += time.process_time() - start
    return t_features, t_rapt


def scaling(
    root: Path, work: Path, seconds: float, jobs: int, from_nothing: bool = True
) -> tuple[tuple[float, float], tuple[float, float]]:
    """-j 1 against -j N: the default stages from nothing (unless ``from_nothing`` is
    False: the aligner then runs once, untimed), and alone (the aligner's model and labels
    left in OUT/align); the shards must be the same bytes. Returns -j 1's (wall, CPU)
    seconds from nothing (NaN when not measured) and alone."""
    one, many = work / "default-j1", work / f"default-j{jobs}"
    for out in (one, many):
        shutil.rmtree(out, ignore_errors=True)
    t_full1 = cpu_full1 = float("nan")
    if from_nothing:
        t_full1, load = timed(command, root, one, 1)
        cpu_full1 = CPU[command]
        print(
            f"prepare -j 1, default stages from nothing: {seconds / t_full1:6.0f} x real time "
            f"({t_full1:.2f} s; {seconds / cpu_full1:.0f} x per CPU-second; load {load:.1f})"
        )
        t_fullN, load = timed(command, root, many, jobs)
        print(
            f"prepare -j {jobs}, default stages from nothing: {seconds / t_fullN:6.0f} x real time "
            f"({t_fullN:.2f} s wall, {t_fullN / t_full1:.2f} x -j 1's; load {load:.1f})"
        )
        same = digests(one) == digests(many)
    else:
        command(root, many, jobs)
        shutil.copytree(many / "align", one / "align")
        same = True
    for out in (one, many):  # the stages alone: the aligner's model and labels stay in OUT/align
        shutil.rmtree(out / "shards", ignore_errors=True)
    t_one, load1 = timed(command, root, one, 1)
    cpu_one = CPU[command]
    t_many, loadN = timed(command, root, many, jobs)
    same = same and digests(one) == digests(many)
    print(
        f"prepare -j 1, default stages, aligner's output reused: {seconds / t_one:6.0f} x real time "
        f"({t_one:.2f} s; {seconds / cpu_one:.0f} x per CPU-second; load {load1:.1f})"
    )
    print(
        f"prepare -j {jobs}, the same: {seconds / t_many:6.0f} x real time ({t_many:.2f} s wall, "
        f"{t_many / t_one:.2f} x -j 1's, {t_one / t_many:.2f} x its throughput; load {loadN:.1f}); "
        f"shards {'identical' if same else 'DIFFERENT'} to -j 1's"
    )
    return (t_full1, cpu_full1), (t_one, cpu_one)


def main() -> None:
    args = arguments(__doc__, minutes=(float, 12.0), jobs=(int, os.cpu_count() or 1), parts=(str, "all"))
    work = args.workdir
    demo = demo_corpus(work)
    root = work / "VCTK-Corpus"
    if not root.exists():
        make_corpus(root, demo, args.minutes)
    files = sorted(root.glob("wav48/*/*.wav"))
    seconds = sum(sf.info(p).duration for p in files)
    load = os.getloadavg()[0]
    print(f"corpus: {seconds / 60:.1f} min of 48 kHz audio in {len(files)} files; load {load:.1f}")
    if args.parts == "scaling":
        scaling(root, work, seconds, args.jobs, from_nothing=False)
        return

    # librosa's first call costs seconds of imports and JIT: pay it outside the timing
    import librosa

    librosa.effects.trim(librosa.resample(np.zeros(4800, np.float32), orig_sr=48000, target_sr=16000))
    shutil.rmtree(work / "audio-j1", ignore_errors=True)
    t_plain, load_plain = timed(plain_audio_loop, root, work / "plain-audio")
    t_audio, load_audio = timed(prepare, "vctk", root, work / "audio-j1", overrides=AUDIO_ONLY, jobs=1)
    print(
        f"plain librosa load+trim+write loop: {seconds / t_plain:6.0f} x real time "
        f"({t_plain:.2f} s; load {load_plain:.1f})"
    )
    print(
        f"prepare -j 1, audio path:           {seconds / t_audio:6.0f} x real time ({t_audio:.2f} s; "
        f"load {load_audio:.1f}): {t_plain / t_audio:.2f} x the plain loop "
        f"(CPU: {CPU[plain_audio_loop] / CPU[prepare]:.2f} x)"
    )
    t_plainf, load_plainf = timed(plain_feature_loop, root, work / "plain-features")
    cpu_plain = CPU[plain_feature_loop]
    print(
        f"plain loop load+trim+rapt+sp2mc per frame: {seconds / t_plainf:6.0f} x real time "
        f"({t_plainf:.2f} s; {seconds / cpu_plain:.0f} x per CPU-second; load {load_plainf:.1f})"
    )
    (t_full, cpu_full), (t_stages, cpu_stages) = scaling(root, work, seconds, args.jobs)
    print(
        f"prepare -j 1 default stages against the plain feature loop: {t_plainf / t_stages:.1f} x "
        f"(aligner's output reused; CPU {cpu_plain / cpu_stages:.1f} x), {t_plainf / t_full:.1f} x "
        f"(from nothing; CPU {cpu_plain / cpu_full:.1f} x)"
    )
    one = work / "default-j1"
    with threadpool_limits(limits=1):
        t_features, t_rapt = acoustic_against_rapt(one)
    kept = sum(len(open_shard(s)[0]) for s in one.glob("shards/*/shard-*"))
    print(
        f"acoustic stage alone: {t_features:.2f} CPU-s, RAPT alone {t_rapt:.2f} over {kept} utterances: "
        f"{t_features / t_rapt:.2f} x RAPT's time (load {os.getloadavg()[0]:.1f})"
    )
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"peak RSS: this process {rss_self:.0f} MB, the largest featprep command or worker "
        f"{rss_children:.0f} MB"
    )


if __name__ == "__main__":
    main()

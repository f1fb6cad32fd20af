"""``evaluate``: generate a split's utterances and compare them with the recordings.

NLL (bits per sample, teacher-forced) over the split's utterances (or the first
``max_utterances``, up to ``max_seconds`` of each); on the same utterances generated
from their own features, against the reference with the same frames (durations come
from the labels, so no alignment is needed): mel-cepstral distortion (dB, coefficients
1..M), F0 RMSE (Hz, frames voiced in both) and the voiced/unvoiced error rate, each from
featprep's acoustic analysis (F0 searched over 50-600 Hz for both). The split's figures
pool the frames of all its utterances, as Merlin's do (a long utterance weighs more than
a short one). An F0 RMSE with no frame voiced in both is undefined: ``None`` (JSON
``null``), never NaN, which strict JSON readers reject.

Speakers: the run's own (``role="modeling"``, what it trained on), or held-out ones
(``role="adaptation"``, the recipe's adaptation speakers, which no run trains on), each
spoken from a seed recording of theirs: the PASE vector of a window of their first
valid utterance (as `speakers.SpeakerSource` fixes it), never one of those evaluated.
Only the PASE speaker modes can speak as a speaker from a recording.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import FRAME_SHIFT, SAMPLE_RATE
from ..acoustic import f0, mel_cepstrum
from ..device import resolve_device, resolve_dtype
from ..errors import ArgumentError, FeatprepError
from ..io import atomic_write_text, check_output_dir
from ..progress import progress_bar
from ..splits import ROLES, SPLITS
from .data import Corpus, TBPTTLoader
from .generate import Generator, check_sampling, generate_many
from .loss import evaluate_nll
from .run import Run

MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def frame_errors(
    reference: np.ndarray, generated: np.ndarray, f0_range: tuple[float, float] = (50.0, 600.0)
) -> dict[str, np.ndarray]:
    """Per analysis frame of two waveforms of the same length: ``mcd`` (dB), ``vuv``
    (voicing differs) and ``f0_sq`` (squared F0 error, Hz^2, frames voiced in both)."""
    ref_mc, gen_mc = mel_cepstrum(reference), mel_cepstrum(generated)
    mcd = MCD_SCALE * np.sqrt(((ref_mc[:, 1:] - gen_mc[:, 1:]) ** 2).sum(axis=1))
    ref_f0 = f0(reference, SAMPLE_RATE, f0_min=f0_range[0], f0_max=f0_range[1])
    gen_f0 = f0(generated, SAMPLE_RATE, f0_min=f0_range[0], f0_max=f0_range[1])
    both = (ref_f0 > 0) & (gen_f0 > 0)
    return {"mcd": mcd, "vuv": (ref_f0 > 0) != (gen_f0 > 0), "f0_sq": (ref_f0[both] - gen_f0[both]) ** 2}


def summarise(errors: list[dict[str, np.ndarray]]) -> dict[str, float | int | None]:
    """MCD, F0 RMSE and V/UV error over the frames of one or more :func:`frame_errors`."""
    pooled = {k: np.concatenate([e[k] for e in errors]) for k in ("mcd", "vuv", "f0_sq")}
    f0_sq = pooled["f0_sq"]
    return {
        "mcd_db": float(pooled["mcd"].mean()),
        "f0_rmse_hz": float(np.sqrt(f0_sq.mean())) if len(f0_sq) else None,
        "f0_frames": len(f0_sq),
        "vuv_error": float(pooled["vuv"].mean()),
    }


def check_arguments(
    split: str,
    role: str,
    max_utterances: int | None,
    max_seconds: float | None,
    temperature: float,
    batch_size: int,
    seed: int = 0,
) -> None:
    """Raise `FeatprepError` for an `evaluate` argument it cannot work with (the sampling
    options as `generate_many` checks them)."""
    if split not in SPLITS:
        raise ArgumentError(f"split must be one of {list(SPLITS)}, found {split!r}")
    if role not in ROLES[:2]:
        raise ArgumentError(f"role must be one of {list(ROLES[:2])}, found {role!r}")
    if max_utterances is not None and (not isinstance(max_utterances, int) or max_utterances < 1):
        raise ArgumentError(f"max_utterances must be an integer >= 1, found {max_utterances!r}")
    if max_seconds is not None and not 0 < max_seconds < math.inf:
        raise ArgumentError(f"max_seconds must be a number > 0, found {max_seconds!r}")
    check_sampling(batch_size, temperature, seed)


def evaluate(
    run_folder: str | Path,
    *,
    split: str = "test",
    role: str = "modeling",
    max_utterances: int | None = None,
    max_seconds: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    dtype: torch.dtype | str = torch.float32,
    device: str = "auto",
    verify: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of a trained run on ``split`` of the speakers of ``role``: per utterance and
    over the split, also written to ``RUN/eval_<split>.json`` (``modeling``, the run's own
    speakers) or ``RUN/eval_adaptation_<split>.json`` (held-out ``adaptation`` speakers,
    from a seed recording; PASE speaker modes only). Strict JSON: an undefined figure is null.

    Utterances are generated ``batch_size`` at a time (see ``generate_many``) on
    ``device`` (auto: CUDA when present). The arguments and the run folder's
    writability are checked before anything is generated, then the split's shards (sha256
    of every file unless ``verify`` is False). ``progress``: a bar of the seconds of audio
    generated and compared, on stderr. `result_lines` gives the table of the result."""
    check_arguments(split, role, max_utterances, max_seconds, temperature, batch_size, seed)
    check_output_dir(run_folder, "run folder")
    run = Run(run_folder)
    dev = resolve_device(device)
    run.model.to(dev)
    info = run.info
    stream = info["features"]
    held_out = role == "adaptation"
    if held_out and info["train"]["speaker_mode"] not in ("pase_seed", "pase_trained"):
        raise FeatprepError(
            f"{run_folder}: held-out (adaptation) speakers are spoken from a seed recording, which needs "
            f"a PASE speaker mode (pase_seed, pase_trained); this run's is {info['train']['speaker_mode']!r}"
        )
    try:
        corpus = Corpus(info["corpus"], (split,), stream, verify=verify, roles=(role,))
    except FeatprepError as e:
        hint = " (prepare with split.modeling_per_gender and split.adaptation_per_gender)" * held_out
        raise FeatprepError(f"cannot evaluate on {split!r}: {e}{hint}") from None
    if not held_out and corpus.speakers != info["speakers"]:
        raise FeatprepError(
            f"{run_folder} was trained on other speakers than {info['corpus']}'s modeling speakers now: "
            "train it again on this corpus"
        )
    seeds = run.speaker_source(corpus.speakers)  # None for the lookup modes
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) // 80
    # the NLL's pass reads the utterances and frames that are generated and compared
    corpus.utterances = [
        u if limit is None else replace(u, n_frames=min(u.n_frames, limit))
        for u in corpus.utterances[: max_utterances or len(corpus.utterances)]
    ]
    utterances = corpus.utterances
    lengths = [u.n_frames for u in utterances]
    requests = (
        (
            corpus.frames(u, 0, n) if stream else None,
            torch.tensor([u.speaker]) if seeds is None else seeds.fixed(u.speaker)[None],
            n,
        )
        for u, n in zip(utterances, lengths, strict=True)
    )
    generated = generate_many(
        Generator(run.model, dtype=resolve_dtype(dtype)),
        requests,
        batch_size=batch_size,
        temperature=temperature,
        seed=seed,
    )
    batch = min(8, len(corpus.utterances))
    nll = evaluate_nll(run.model, TBPTTLoader(corpus, batch, info["train"]["seq_len"]), dev, seeds)
    rows, errors = [], []
    seconds = sum(lengths) * FRAME_SHIFT / SAMPLE_RATE
    with progress_bar(seconds, "s", enabled=progress, desc="evaluate") as bar:
        for u, n, audio in zip(utterances, lengths, generated, strict=True):
            errors.append(frame_errors(corpus.audio(u, 0, n * FRAME_SHIFT), audio))
            rows.append({"utterance": u.utterance, "speaker": corpus.speakers[u.speaker], "frames": n})
            rows[-1].update(summarise(errors[-1:]))
            bar.update(n * FRAME_SHIFT / SAMPLE_RATE)
    nll_bits = nll if math.isfinite(nll) else None  # a diverged model's
    result = {"split": split, "role": role, "nll_bits": nll_bits, "utterances": rows, **summarise(errors)}
    text = json.dumps(result, indent=1, allow_nan=False)  # strict JSON: undefined figures are null
    atomic_write_text(Path(run_folder) / f"eval_{'adaptation_' * held_out}{split}.json", text + "\n")
    return result


def result_lines(result: dict[str, Any]) -> list[str]:
    """The table `evaluate` results are shown as: one line per utterance, then the split's."""

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [f"{'utterance':<16} {'speaker':<10} {'frames':>7} {'MCD dB':>8} {'F0 RMSE':>8} {'V/UV err':>8}"]
    for r in result["utterances"]:
        metrics = f"{r['mcd_db']:8.2f} {number(r['f0_rmse_hz'], '8.1f'):>8} {r['vuv_error']:8.3f}"
        lines.append(f"{r['utterance']:<16} {r['speaker']:<10} {r['frames']:>7} {metrics}")
    lines.append(
        f"{result['split']}: NLL {number(result['nll_bits'], '.3f')} bits/sample, "
        f"MCD {result['mcd_db']:.2f} dB, "
        f"F0 RMSE {number(result['f0_rmse_hz'], '.1f')} Hz ({result['f0_frames']} frames voiced in both), "
        f"V/UV error {result['vuv_error']:.3f}"
    )
    return lines

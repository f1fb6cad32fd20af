"""``featprep experiment ssw2019``: the SSW 2019 paper's comparison of speaker modes in one call.

A lookup table of speakers (``embedding``) against PASE speaker vectors (``pase_seed``:
stored frames of a frozen encoder; ``pase_trained``: the encoder fine-tuned in the loop),
each trained on the same shards with the same budget (preset, steps, seed, options), then
evaluated (`featprep.samplernn.evaluate`: NLL, MCD, F0 RMSE, V/UV error) on two sets of
speakers: the ``seen`` ones (the run's own, their test split) and the ``held_out`` ones
(the recipe's ``adaptation`` speakers, which no run trains on: their test split, each
spoken from a seed recording of theirs). Only the PASE modes can speak as a speaker from a
recording; the lookup table's held-out row is n/a (JSON null), never a number.

``EXP/<mode>/`` is each model's run folder; ``EXP/<mode>/ssw2019.json`` records what was
done there with its fingerprint (the corpus manifest's sha256, the training options and
steps; for each evaluation the checkpoint's sha256 and the evaluation's options), so a
rerun of a killed experiment resumes an unfinished training exactly, skips what is done
for the same inputs, and redoes what is not. ``EXP/results.md`` and ``EXP/results.json``
(strict JSON) hold the table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArgumentError, FeatprepError
from .io import atomic_write_text, check_output_dir, json_digest, load_weights, sha256_file
from .manifest import read_manifest
from .workers import resolve_jobs

if TYPE_CHECKING:
    from .samplernn.train import TrainConfig

logger = logging.getLogger(__name__)

#: the speaker modes compared, in the table's order
MODES = ("embedding", "pase_seed", "pase_trained")
#: speaker set -> (the speaker role of `featprep.splits`, what the table calls it)
SPEAKER_SETS = {
    "seen": ("modeling", "seen (test)"),
    "held_out": ("adaptation", "held-out (test, from a seed)"),
}
#: the table's figures: key of `evaluate`'s result -> (column, format)
METRICS = {
    "nll_bits": ("NLL (bits/sample)", ".3f"),
    "mcd_db": ("MCD (dB)", ".2f"),
    "f0_rmse_hz": ("F0 RMSE (Hz)", ".1f"),
    "vuv_error": ("V/UV error", ".3f"),
}
#: what the experiment sets in every run itself
_OWN_OPTIONS = ("speaker_mode", "seed")
#: the test split of each speaker set is evaluated
_SPLIT = "test"
NOT_APPLICABLE = "a lookup table has no vector for a speaker it never trained on"


def ssw2019(
    directory: str | Path,
    out: str | Path,
    *,
    steps: int,
    preset: str = "paper",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    jobs: int = 1,
    max_utterances: int | None = None,
    max_seconds: float | None = None,
    temperature: float = 1.0,
    batch_size: int = 16,
    device: str = "auto",
    verify: bool = True,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train every speaker mode of `MODES` on ``directory`` for ``steps`` steps into
    ``out/<mode>/``, evaluate each on the seen and held-out speakers, and write
    ``out/results.md`` and ``out/results.json``; returns the JSON's content.

    ``directory`` must hold PASE frames and adaptation speakers with test utterances
    (prepare with ``split.modeling_per_gender``/``split.adaptation_per_gender``) and, with
    features, normstats' statistics. ``preset`` and ``overrides`` (training options, as
    ``featprep train --set``; not ``speaker_mode`` or ``seed``) make every mode's
    `TrainConfig`; ``pase_trained`` starts from the corpus's PASE encoder (its recipe's
    ``pase.arch``/``pase.checkpoint``) unless ``overrides`` names another. ``jobs``: modes
    trained and evaluated at once, each in its own process. The evaluation options are
    `evaluate`'s, the same for every run (``seed`` also seeds its sampling). Everything is
    checked before the first step.
    """
    from .samplernn.loop import check_bounds

    log = log or logger.info
    directory, out = Path(directory), Path(out)
    check_bounds(steps, None)
    jobs = resolve_jobs(jobs)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ArgumentError(f"seed must be an integer >= 0, found {seed!r}")
    overrides = dict(overrides or {})
    own = [k for k in _OWN_OPTIONS if k in overrides]
    if own:
        raise ArgumentError(f"training option {own[0]!r} is the experiment's to set (speaker modes, --seed)")
    evaluation = _evaluation_options(max_utterances, max_seconds, temperature, batch_size, seed, device)
    check_output_dir(out, "experiment folder")
    manifest = read_manifest(directory)
    _check_corpus(directory, manifest)
    configs = {mode: _config(mode, preset, seed, overrides, manifest) for mode in MODES}
    corpus_sha = sha256_file(directory / "manifest.json")
    out.mkdir(parents=True, exist_ok=True)
    tasks = [
        (mode, directory, out / mode, asdict(configs[mode]), steps, corpus_sha, evaluation, verify)
        for mode in MODES
    ]
    if jobs == 1:
        rows = [r for task in tasks for r in _run_mode(*task, log=log, progress=progress)]
    else:
        from joblib import Parallel, delayed

        log(f"experiment: {len(tasks)} speaker modes, {min(jobs, len(tasks))} at a time")
        done = Parallel(n_jobs=min(jobs, len(tasks)), backend="loky")(delayed(_run_mode)(*t) for t in tasks)
        rows = [r for mode_rows in done for r in mode_rows]
    result = {
        "experiment": "ssw2019",
        "corpus": str(directory.resolve()),
        "corpus_manifest_sha256": corpus_sha,
        "training": {"preset": preset, "steps": steps, "seed": seed, "overrides": overrides},
        "evaluation": {k: v for k, v in evaluation.items() if k != "device"},
        "metrics": list(METRICS),
        "rows": rows,
    }
    _write_json(out / "results.json", result)
    atomic_write_text(out / "results.md", "\n".join(table_lines(result)) + "\n")
    log(f"experiment: the table is in {out / 'results.md'} and {out / 'results.json'}")
    return result


def _evaluation_options(
    max_utterances: int | None,
    max_seconds: float | None,
    temperature: float,
    batch_size: int,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """`evaluate`'s options, checked as it checks them (before any training)."""
    from .device import resolve_device
    from .samplernn.evaluate import check_arguments

    check_arguments(_SPLIT, "adaptation", max_utterances, max_seconds, temperature, batch_size, seed)
    resolve_device(device)  # a missing CUDA device is one line now, not after training
    return {
        "split": _SPLIT,
        "max_utterances": max_utterances,
        "max_seconds": max_seconds,
        "temperature": temperature,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
    }


def _check_corpus(directory: Path, manifest: dict[str, Any]) -> None:
    """The corpus has PASE frames, and held-out speakers with test utterances."""
    if "pase" not in {f.get("name") for f in manifest.get("features", [])}:
        raise FeatprepError(
            f"{directory} has no PASE frames, which the PASE speaker modes train on: prepare it with "
            "pase.checkpoint (the official PASE+ weights; pase.random_init_seed only for a plumbing check)"
        )
    speakers = manifest.get("speakers", [])
    held_out = [s for s in speakers if s.get("role") == "adaptation"]
    if not held_out:
        raise FeatprepError(
            f"{directory} has no adaptation speakers to hold out: prepare it with "
            "split.modeling_per_gender=N and split.adaptation_per_gender=K (K > 0)"
        )
    if not any(s.get("utterances", {}).get(_SPLIT) for s in held_out):
        raise FeatprepError(
            f"{directory}: no adaptation speaker ({', '.join(s['id'] for s in held_out)}) has a test "
            "utterance: raise split.adaptation_test_seconds or split.max_heldout_fraction"
        )


def _config(
    mode: str, preset: str, seed: int, overrides: dict[str, Any], manifest: dict[str, Any]
) -> TrainConfig:
    """The `TrainConfig` of one speaker mode: the preset, the overrides, the mode and seed;
    pase_trained's encoder is the corpus's unless the overrides name one."""
    from .samplernn.train import TrainConfig

    own: dict[str, Any] = {"speaker_mode": mode, "seed": seed}
    if mode == "pase_trained":
        pase = manifest["recipe"]["pase"]
        own["pase_arch"] = overrides.get("pase_arch", pase["arch"])
        own["pase_checkpoint"] = overrides.get("pase_checkpoint", pase["checkpoint"] or "")
        if own["pase_checkpoint"] and not Path(own["pase_checkpoint"]).is_file():
            raise FeatprepError(
                f"pase_trained starts from the PASE weights {own['pase_checkpoint']!r}, not a file here "
                "(the corpus's pase.checkpoint, read from the current folder): --set pase_checkpoint=PATH"
            )
    return TrainConfig.from_preset(preset, {**overrides, **own})


def _run_mode(
    mode: str,
    directory: Path,
    run: Path,
    config: dict[str, Any],
    steps: int,
    corpus_sha: str,
    evaluation: dict[str, Any],
    verify: bool,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train (or resume, or skip) one mode's run, then evaluate it on each speaker set
    (or skip what its record says is done for the same inputs); its table rows."""
    from .device import resolve_device
    from .samplernn.evaluate import evaluate

    log = log or logger.info
    record_path = run / "ssw2019.json"
    record = _read_record(record_path)
    _train(
        mode, directory, run, config, steps, corpus_sha, record, evaluation["device"], verify, log, progress
    )
    _write_json(record_path, record)
    checkpoint_sha = record["trained"]["checkpoint_sha256"]
    rows = []
    for name, (role, _) in SPEAKER_SETS.items():
        row: dict[str, Any] = {"mode": mode, "speakers": name, "role": role, "split": _SPLIT}
        if role == "adaptation" and mode == "embedding":
            empty = dict.fromkeys(("utterances", "speaker_ids", *METRICS, "f0_frames"))
            rows.append({**row, **empty, "not_applicable": NOT_APPLICABLE})
            continue
        options = {k: v for k, v in evaluation.items() if k != "split"}
        # where it runs can change the figures (another device's arithmetic), what it is called cannot
        on = resolve_device(evaluation["device"]).type
        fingerprint = json_digest(
            {"checkpoint": checkpoint_sha, "corpus": corpus_sha, "role": role, **evaluation, "device": on}
        )
        done = record.get(name)
        if isinstance(done, dict) and done.get("fingerprint") == fingerprint:
            log(f"{mode}, {name} speakers: evaluated already for this checkpoint and these options")
            result = done["result"]
        else:
            log(f"{mode}: evaluating on the {name} speakers ({role}, {_SPLIT} split)")
            full = evaluate(run, split=_SPLIT, role=role, verify=verify, progress=progress, **options)
            result = {k: full[k] for k in (*METRICS, "f0_frames")}
            result["utterances"] = len(full["utterances"])
            result["speaker_ids"] = sorted({u["speaker"] for u in full["utterances"]})
            record[name] = {"fingerprint": fingerprint, "result": result}
            _write_json(record_path, record)
        rows.append({**row, **result, "not_applicable": None})
    return rows


def _read_record(path: Path) -> dict[str, Any]:
    """A run's ``ssw2019.json``; empty when missing or unreadable (its work is redone)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """``value`` as strict JSON (an undefined figure is null, never NaN), atomically."""
    atomic_write_text(path, json.dumps(value, indent=1, allow_nan=False) + "\n")


def _train(
    mode: str,
    directory: Path,
    run: Path,
    config: dict[str, Any],
    steps: int,
    corpus_sha: str,
    record: dict[str, Any],
    device: str,
    verify: bool,
    log: Callable[[str], None],
    progress: bool,
) -> None:
    """Bring ``run`` to ``steps`` steps of ``config`` on the corpus of ``corpus_sha``:
    skip a run whose record and checkpoint say it is there, resume one that stopped
    before, start one that never ran; a run of other options, corpus, or more steps is
    one line (the experiment never trains over another's run). Updates ``record``."""
    from .samplernn.train import TrainConfig, _compared, train

    checkpoint = run / "checkpoint.pt"
    fingerprint = json_digest({"corpus": corpus_sha, "config": _compared(config), "steps": steps})
    trained = record.get("trained")
    if (
        isinstance(trained, dict)
        and trained.get("fingerprint") == fingerprint
        and checkpoint.is_file()
        and sha256_file(checkpoint) == trained.get("checkpoint_sha256")
    ):
        log(f"{mode}: trained already ({steps} steps, these options and corpus): {checkpoint}")
        return
    started = checkpoint.is_file() or (run / "config.json").is_file()
    if checkpoint.is_file():
        saved = load_weights(checkpoint, "training checkpoint")
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise FeatprepError(f"{checkpoint} is not a featprep training checkpoint: another --out")
        if _compared(saved["config"]) != _compared(config):
            raise FeatprepError(
                f"{run} holds a run of other training options: give the experiment another --out"
            )
        if isinstance(trained, dict) and trained.get("corpus") not in (None, corpus_sha):
            raise FeatprepError(f"{run} was trained on another corpus (its manifest changed): another --out")
        if saved.get("step", 0) > steps:
            raise FeatprepError(f"{run} was trained {saved['step']} steps, more than {steps}: another --out")
    log(f"{mode}: {'resuming' if started else 'training'} {run} to step {steps}")
    cfg = TrainConfig(**config)
    train(
        directory,
        run,
        cfg,
        steps=steps,
        device=device,
        resume=started,
        verify=verify,
        log=log,
        progress=progress,
    )
    record["trained"] = {
        "fingerprint": fingerprint,
        "corpus": corpus_sha,
        "steps": steps,
        "checkpoint_sha256": sha256_file(checkpoint),
    }


def table_lines(result: dict[str, Any]) -> list[str]:
    """The Markdown table of an experiment's result: one row per speaker mode and set."""
    head = ["speaker mode", "speakers", "utterances", *(column for column, _ in METRICS.values())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in result["rows"]:
        if row["not_applicable"]:
            figures = ["n/a"] * (len(METRICS) + 1)
        else:
            figures = [str(row["utterances"])] + [
                "undefined" if row[key] is None else format(row[key], spec)
                for key, (_, spec) in METRICS.items()
            ]
        lines.append("| " + " | ".join([row["mode"], SPEAKER_SETS[row["speakers"]][1], *figures]) + " |")
    lines += [
        "",
        f"Preset {result['training']['preset']}, {result['training']['steps']} steps, seed "
        f"{result['training']['seed']}; corpus {result['corpus']}. n/a: {NOT_APPLICABLE}; undefined: "
        "no frame voiced in both the generated and the recorded speech (F0 RMSE) or a diverged model (NLL).",
    ]
    return lines

"""A run folder's checkpoint.pt: all a run needs to go on exactly where it stopped.

One dict, written by rank 0 to a temporary name and renamed, read back weights-only:
``model`` (its weights), ``optimizer`` and ``scheduler``, the per-rank parts gathered
from every rank (``loader``, each rank's data position; SampleRNN adds ``hidden``, its
carried TBPTT state), ``rng`` (torch's generator), ``step``, ``skipped`` and ``config``
(the training options, which a resumed run must share), then a model's extra parts
(SampleRNN's PASE ``encoder``). Any model's trainer saves its `loop.Task` with
`write_checkpoint` and resumes it with `resume_checkpoint` and `restore`, naming its own
per-rank and extra parts and restoring those itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import FeatprepError, OutputError
from ..io import atomic_path, check_output_dir, load_into, load_weights, remove_dead_temporaries
from .distributed import Group

if TYPE_CHECKING:
    from .loop import Task

#: the parts every checkpoint holds
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "scheduler", "loader", "rng", "step", "skipped", "config"})


def check_run_folder(out: Path) -> None:
    """``out`` can become a run folder (its files, where present, are files), cleared of the
    temporaries a killed run left."""
    check_output_dir(out, "run folder")
    for name in ("checkpoint.pt", "config.json", "log.jsonl"):  # each replaced by a file as training goes
        if (out / name).exists() and not (out / name).is_file():
            raise OutputError(f"run folder {out} is not writable: {out / name} is not a file")
    remove_dead_temporaries(out)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` to ``path``, replacing it only once whole."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def write_checkpoint(
    task: Task, config: dict[str, Any], per_rank: dict[str, Any], extra: dict[str, Any]
) -> None:
    """``task``'s checkpoint, by rank 0, with this rank's data position and each ``per_rank``
    part gathered from every rank into a list in rank order: every rank calls it at the
    same step."""
    group, optimisation = task.group, task.optimisation
    gathered = {"loader": group.gather(task.batches.state_dict())}
    gathered.update((name, group.gather(part)) for name, part in per_rank.items())
    if group.rank == 0:
        payload = {
            "model": task.model.state_dict(),
            **optimisation.state_dict(),
            **gathered,
            "rng": torch.random.get_rng_state(),
            "step": optimisation.step,
            "skipped": optimisation.skipped,
            "config": config,
            **extra,
        }
        save_checkpoint(task.checkpoint, payload)


def resume_checkpoint(
    out: Path,
    directory: Path,
    kind: str,
    resume: bool,
    config: dict[str, Any],
    compared: Callable[[dict[str, Any]], dict[str, Any]],
    group: Group,
    keys: frozenset[str],
    log: Callable[[str], Any],
) -> dict[str, Any] | None:
    """The checkpoint to go on from (read weights-only onto the group's device), or None
    for a run that starts afresh: a new one, or one killed before its first checkpoint.

    A checkpoint must hold ``keys`` and options equal to ``config`` where ``compared``
    keeps them, come from as many processes as ``group`` has, and go on with the model
    ``kind`` (config.json's ``kind``) on the corpus ``directory`` it started on. Without
    ``resume`` an existing checkpoint is an error, so that a finished run is never
    overwritten."""
    checkpoint = out / "checkpoint.pt"
    if not resume and checkpoint.is_file():
        raise FeatprepError(f"{out} holds a trained run: --resume to continue it, or another --out")
    if resume:
        _check_started(out, directory, kind)
    if resume and not checkpoint.is_file():
        # killed before its first checkpoint: nothing was kept, so the same run starts afresh
        started = _started_options(out)
        if started is None:
            raise FeatprepError(f"{checkpoint} does not exist: nothing to resume")
        if compared(started) != compared(config):
            raise FeatprepError(f"{out} was started with another configuration; resume with the same options")
        if group.rank == 0:
            log(f"{out} has no checkpoint yet (stopped before its first): starting it afresh")
        return None
    if not resume:
        return None
    saved = load_weights(checkpoint, "training checkpoint", map_location=group.device)
    if not isinstance(saved, dict) or not set(saved) >= keys:
        raise FeatprepError(f"{checkpoint} is not a featprep training checkpoint")
    if compared(saved["config"]) != compared(config):
        raise FeatprepError(
            f"{checkpoint} was trained with another configuration; resume with the same options"
        )
    if len(saved["loader"]) != group.world:
        raise FeatprepError(
            f"{checkpoint} was written by {len(saved['loader'])} processes, not {group.world}"
        )
    return saved


def restore(task: Task, saved: dict[str, Any]) -> None:
    """``task``'s model weights, optimisation state and counts, this rank's data position,
    and torch's generator from the checkpoint ``saved``; its own per-rank and extra parts
    are the task's to restore."""
    load_into(task.model, saved["model"], task.checkpoint, "the model of these options")
    task.optimisation.load_state_dict(saved)
    task.batches.load_state_dict(saved["loader"][task.group.rank])
    torch.random.set_rng_state(saved["rng"])


def _started_options(out: Path) -> dict[str, Any] | None:
    """The training options of the run started in ``out`` (its config.json), if any."""
    try:
        return json.loads((out / "config.json").read_text())["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_started(out: Path, directory: Path, kind: str) -> None:
    """The run in ``out`` goes on as the model ``kind`` on the corpus its config.json names,
    where it names them: on another corpus its checkpoint's data positions would index other
    utterances, silently."""
    try:
        info = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return  # none yet (stopped before it was written), or damaged: the checkpoint is checked
    if not isinstance(info, dict):
        return
    started, theirs = info.get("corpus"), info.get("kind", "samplernn")
    if theirs != kind:
        raise FeatprepError(
            f"{out} holds a {theirs} model run, not a {kind} one: train --model {theirs} to resume it, "
            "or give another --out"
        )
    if isinstance(started, str) and Path(started) != directory.resolve():
        raise FeatprepError(
            f"{out} was trained on the corpus {started}, not {directory.resolve()}: resume it on that "
            "corpus, or give another --out"
        )

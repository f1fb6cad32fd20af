"""The per-shard work of ``prepare``: run the stages on a shard's utterances and write it.

This is what a worker process of ``prepare --jobs N`` imports to run its tasks: the stages
and the shard writer, not the rest of `featprep.pipeline` (the manifest writer, the
aligner, pyarrow.compute, tqdm), so that a worker starts in a fraction of a second and
its first utterance does not wait on imports it never uses (pyarrow's conversion of
the index columns imports pandas all the same, 0.2 s at a worker's first shard).
PyTorch is imported only by the PASE stage, when it is on.

A shard is one task, written by the worker that ran it, the longest shards first; a
corpus of fewer shards than workers leaves some idle (cutting shards into pieces was
measured slower: their arrays travel back pickled and one process writes them all).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from .acoustic import AcousticStage
from .audio.stage import AudioStage
from .errors import Rejected
from .labels.stage import LabelStage, LinguisticStage
from .pase.stage import PaseStage
from .records import Rejection
from .shards import ShardPlan, write_shard
from .stage import ArraySpec, Item, Stage

#: the per-utterance stages of prepare, in order
STAGES: list[type[Stage]] = [LabelStage, AudioStage, LinguisticStage, AcousticStage, PaseStage]


def build_stages(recipe: dict[str, Any], root: str, genders: dict[str, str] | None = None) -> list[Stage]:
    return [cls(recipe, root, genders) for cls in STAGES]


def stage_outputs(stages: list[Stage]) -> tuple[list[ArraySpec], dict[str, pa.DataType]]:
    specs = [spec for s in stages for spec in s.outputs()]
    columns = {name: t for s in stages for name, t in s.columns.items()}
    return specs, columns


#: a worker thread's stages, ``.run``: (run token, stages built and set up on its first task
#: of that run); per thread, as the stages keep per-shard state and a Dask worker may run
#: several tasks at once in threads
_worker_stages = threading.local()


def _stages_of_worker(recipe: dict[str, Any], root: str, genders: dict[str, str], run: str) -> list[Stage]:
    """The stages of prepare run ``run`` in this worker thread, built and set up once per run
    (PASE weights read and hashed, question sets compiled once, not per shard)."""
    cached = getattr(_worker_stages, "run", None)
    if cached is None or cached[0] != run:
        stages = build_stages(recipe, root, genders)
        for stage in stages:
            stage.setup()
        _worker_stages.run = cached = (run, stages)
    return cached[1]


def process_shard(
    plan: ShardPlan,
    stages: list[Stage],
    out_dir: Path,
    fingerprint: str,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Run every stage (set up already) on every utterance of a shard and write it; returns
    shard.json.

    ``progress`` is called with 1 after each utterance (a bar's update, or a queue's put
    when the shard runs in a worker process).
    """
    for stage in stages:
        stage.begin_shard(plan.utterances)
    specs, columns = stage_outputs(stages)
    items, rejections = [], []
    for utt in plan.utterances:
        item = Item(utt, plan.split)
        current = stages[0].name
        try:
            for stage in stages:
                current = stage.name
                stage.process(item)
            items.append(item)
        except Rejected as r:
            rejections.append(Rejection(utt.id, utt.speaker, current, r.code, r.detail, utt.audio_path))
        if progress is not None:
            progress(1)
    for stage in stages:
        stage.finish_shard(items)
    return write_shard(out_dir, plan, items, specs, columns, rejections, fingerprint)


def shard_in_worker(
    plan: ShardPlan,
    recipe: dict[str, Any],
    root: str,
    genders: dict[str, str],
    run: str,
    out_dir: Path,
    fingerprint: str,
    progress: Callable[[int], Any] | None,
) -> dict[str, Any]:
    """A worker's task: one whole shard, processed and written; returns shard.json."""
    return process_shard(plan, _stages_of_worker(recipe, root, genders, run), out_dir, fingerprint, progress)

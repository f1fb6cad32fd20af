"""``prepare``: corpus directory -> checked, split, sharded, feature-bearing manifests.

discover -> check -> split -> plan shards -> per shard (in parallel): stages -> write.
A complete shard whose fingerprint matches is skipped, so a killed run resumes where it
stopped; ``manifest.json`` is written last, once every shard is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .check import check
from .corpora import discover
from .errors import ArgumentError, CorpusError, FeatprepError, NoValidUtterances, OutputError
from .io import check_output_dir, dead_temporary, remove_dead_temporaries
from .labels.xwaves import read_xwaves
from .manifest import write_manifest, write_rejected
from .recipe import load_corpus_recipe
from .records import Rejection, Utterance
from .shards import ShardPlan, plan_shards, read_shard_info
from .shardwork import build_stages, process_shard, shard_in_worker, stage_outputs
from .splits import assign_splits
from .stage import Stage
from .workers import check_backend, dask_client, parallel_config, resolve_jobs

logger = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """What a prepare run did; its ``ok`` becomes the exit code."""

    corpus: str
    out: Path
    kept: int = 0
    kept_seconds: float = 0.0
    raw_seconds: float = 0.0
    rejected: Counter = field(default_factory=Counter)
    unused: int = 0
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    shards_written: int = 0
    shards_skipped: int = 0
    shards_pending: int = 0

    @property
    def complete(self) -> bool:
        return self.shards_pending == 0

    def lines(self) -> list[str]:
        out = [
            f"{self.corpus}: kept {self.kept} utterances, {self.kept_seconds / 3600:.3f} h after trimming "
            f"({self.raw_seconds / 3600:.3f} h of raw audio read from headers)",
            f"shards: {self.shards_written} written, {self.shards_skipped} already complete"
            + (f", {self.shards_pending} left to other jobs" if self.shards_pending else ""),
        ]
        for split, s in self.splits.items():
            out.append(f"  {split:<5} {int(s['rows']):>7} utterances {s['seconds'] / 3600:8.3f} h")
        if self.unused:
            out.append(f"  unused (speaker role) {self.unused} utterances")
        total = sum(self.rejected.values())
        out.append(f"rejected {total} utterances" + (":" if total else ""))
        out += [f"  {code:<18} {n}" for code, n in sorted(self.rejected.items())]
        if self.complete:
            out.append(f"output: {self.out}/manifest.json, {self.out}/rejected.tsv")
        return out


def _check_arguments(
    jobs: int,
    shard_index: int | None,
    num_shards: int | None,
    backend: str,
    scheduler: str | None,
    finalize: bool,
) -> None:
    resolve_jobs(jobs)
    check_backend(backend, scheduler)
    if finalize and num_shards is not None:
        raise ArgumentError("finalize (--finalize) processes no shard: it takes no shard_index or num_shards")
    if (shard_index is None) != (num_shards is None):
        raise ArgumentError("shard_index and num_shards (--shard-index, --num-shards) go together")
    if num_shards is not None:
        if not isinstance(num_shards, int) or num_shards < 1:
            raise ArgumentError(f"num_shards must be an integer >= 1, found {num_shards!r}")
        if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
            raise ArgumentError(f"shard_index must be in [0, {num_shards}), found {shard_index!r}")


def _clean_stale(out: Path, plans: list[ShardPlan]) -> None:
    """Remove temporary shards of killed runs and shards no longer in the plan; a live
    writer's temporary (another job of a Slurm array on the same folder) stays."""
    wanted = {p.name for p in plans}
    shard_root = out / "shards"
    if not shard_root.is_dir():
        return
    for split_dir in shard_root.iterdir():
        for path in split_dir.iterdir():
            dead = dead_temporary(path)
            if dead is False:
                continue
            if dead or f"shards/{split_dir.name}/{path.name}" not in wanted:
                # another task of the array may be removing the same one
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def slurm_array_task(environ: dict[str, str] | os._Environ[str] = os.environ) -> tuple[int, int] | None:
    """``(shard_index, num_shards)`` of the Slurm array task this process is, from
    ``SLURM_ARRAY_TASK_ID``, ``_MIN``, ``_STEP`` and ``_COUNT``; None outside an array.

    Task ids start at ``SLURM_ARRAY_TASK_MIN`` (``--array=1-8`` gives 1..8) and advance by
    ``SLURM_ARRAY_TASK_STEP`` (``--array=0-14:2``): the index is (id - min) / step. An
    array whose ids are not evenly stepped (``--array=1,4,5``) cannot be numbered from its
    environment: one line, as for values that are not whole numbers.
    """
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return None
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT")
    defaults = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "1"}
    try:
        task, first, step, count = (int(environ.get(n, defaults.get(n, ""))) for n in names)
    except ValueError:
        found = ", ".join(f"{n}={environ.get(n)!r}" for n in names)
        raise ArgumentError(f"a Slurm array task needs whole numbers in {found}") from None
    index, off_step = divmod(task - first, step) if step > 0 else (-1, 0)
    if count < 1 or off_step or not 0 <= index < count:
        raise ArgumentError(
            f"SLURM_ARRAY_TASK_ID={task} is not one of the {count} tasks of an evenly stepped array "
            f"starting at SLURM_ARRAY_TASK_MIN={first} by SLURM_ARRAY_TASK_STEP={step}: submit "
            "--array=0-N (any start, any step), or give --shard-index and --num-shards"
        )
    return index, count


class _DaskTick:
    """Progress from a task on a Dask worker: an event on ``topic``, carried by the scheduler
    to the client (a manager queue of this process may not be reachable from a worker on
    another machine)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def __call__(self, n: int) -> None:
        from distributed import get_worker

        get_worker().log_event(self.topic, n)


@contextlib.contextmanager
def _progress(total: int, jobs: int, enabled: bool, client: Any = None) -> Iterator[Any]:
    """A per-utterance progress bar; with loky workers, fed through a manager queue; with
    the Dask workers of ``client``, through the scheduler's events."""
    if not enabled:
        yield None
        return
    bar = tqdm(total=total, unit="utt", file=sys.stderr, dynamic_ncols=True)
    if client is not None:
        topic = f"featprep-progress-{uuid.uuid4().hex}"
        client.subscribe_topic(topic, lambda event: bar.update(event[1]))
        try:
            yield _DaskTick(topic)
            # events travel apart from the results: give the last ones a moment to arrive
            deadline = time.monotonic() + 10
            while bar.n < total and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            client.unsubscribe_topic(topic)
            bar.close()
        return
    if jobs == 1:
        yield bar.update
        bar.close()
        return
    import multiprocessing

    with multiprocessing.Manager() as manager:
        queue = manager.Queue()

        def drain() -> None:
            while (n := queue.get()) is not None:
                bar.update(n)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        try:
            yield queue.put
        finally:
            queue.put(None)
            thread.join()
            bar.close()


def _run_shards(
    todo: list[tuple[ShardPlan, str]],
    stages: list[Stage],
    recipe: dict[str, Any],
    root: str,
    out: Path,
    genders: dict[str, str],
    jobs: int,
    progress: bool,
    backend: str = "loky",
    client: Any = None,
) -> list[dict[str, Any]]:
    """Process the shards of ``todo``: in this process with ``stages`` (set up here, once),
    or in ``jobs`` loky worker processes or the Dask workers of ``client`` (backend
    ``dask``), which build and set up their own once each."""
    total = sum(len(p.utterances) for p, _ in todo)
    if not todo:
        return []
    with _progress(total, jobs, progress, client if backend == "dask" else None) as tick:
        if jobs == 1 and backend == "loky":
            for stage in stages:
                stage.setup()
            # one BLAS/OpenMP thread, as in each worker of -j N: more only spin on the small
            # products of the stages (the mel-cepstrum's took 20x the CPU time with 2 threads)
            with threadpool_limits(limits=1):
                return [process_shard(p, stages, out, fp, tick) for p, fp in todo]
        # One BLAS/torch thread per worker: the parallelism is across shards, the longest
        # first (a corpus's train shard left for last kept one worker busy alone); no more
        # workers than shards (-j 1000 on 3 shards started 1000 processes, 100 s of imports)
        todo = sorted(todo, key=lambda item: -sum(u.raw_seconds for u in item[0].utterances))
        run = uuid.uuid4().hex
        with parallel_config(backend, client):
            shards = joblib.Parallel(n_jobs=min(jobs, len(todo)), return_as="generator_unordered")
            return list(
                shards(
                    joblib.delayed(shard_in_worker)(p, recipe, root, genders, run, out, fp, tick)
                    for p, fp in todo
                )
            )


def _align(
    utterances: list[Utterance],
    root: str,
    folder: Path,
    recipe: dict[str, Any],
    jobs: int,
    say: Callable[[str], None],
    *,
    backend: str = "loky",
    client: Any = None,
    run: bool = True,
) -> None:
    """Labels from featprep's aligner, into ``folder`` (OUT/align): for every checked
    utterance with the ``align`` source; with ``arctic``, for those without a usable lab/
    file (`_lab_problem`; the model still trains on the corpus). The label stage then
    reads that folder (``labels.dir`` is set to it) with the aligner's rejections. The speakers are aligned
    on ``backend``'s workers; ``run`` False only points the recipe at the folder (finalize:
    the shards hold the labels already)."""
    from .labels.align.corpus import align_utterances

    only = None
    if recipe["labels"]["source"] == "arctic":
        problems = {u.id: _lab_problem(u, root, recipe["labels"]["max_end_error"]) for u in utterances}
        only = {u for u, problem in problems.items() if problem}
        if not only:
            return
        if run:
            found = Counter(p for p in problems.values() if p)
            counts = ", ".join(f"{n} {p}" for p, n in sorted(found.items()))
            say(f"{len(only)} utterances have no usable lab/ phone labels ({counts}): aligning them")
    recipe["labels"]["dir"] = str(folder.resolve())
    recipe["labels"]["pattern"] = "{speaker}/{utterance}.lab"
    if not run:
        return
    try:
        result = align_utterances(
            utterances, root, folder, recipe, jobs=jobs, only=only, log=say, backend=backend, client=client
        )
    except CorpusError as e:
        if only is None:
            raise
        say(f"the aligner could not be trained ({e}): utterances without lab/ stay missing_label")
        return
    for line in result.lines():
        say(line)


def _lab_problem(utt: Utterance, root: str, max_end_error: float) -> str | None:
    """Why ``utt``'s CMU Arctic ``lab/`` file cannot give its phone boundaries ("missing",
    "unreadable", "empty", "longer than the audio"), or None when it can be tried."""
    if not utt.custom.get("lab") or not (Path(root) / utt.custom["lab"]).is_file():
        return "missing"
    try:
        segments = read_xwaves(Path(root) / utt.custom["lab"])
    except (FeatprepError, OSError, ValueError):
        return "unreadable"
    if not segments:
        return "empty"
    if segments[-1][1] - utt.raw_seconds > max_end_error:
        return "longer than the audio"
    return None


def prepare(
    corpus: str,
    root: str | Path,
    out: str | Path | None = None,
    *,
    recipe: str | Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    jobs: int = 1,
    shard_index: int | None = None,
    num_shards: int | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
    finalize: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Prepare a corpus: the library form of ``featprep prepare``.

    Parameters
    ----------
    corpus : ``vctk`` or ``cmu_arctic``.
    root : the corpus directory as downloaded.
    out : output directory (default ``manifests/<corpus>``).
    recipe, overrides : a recipe file and ``key=value`` overrides (see `load_recipe`).
    jobs : worker processes; shards are processed in parallel (with backend ``dask`` and
        no scheduler, the workers of the `LocalCluster` started for the run).
    shard_index, num_shards : process only shards ``i`` with ``i % num_shards ==
        shard_index`` (a Slurm array job); the run that finds every shard complete
        writes the manifest. The command ``featprep prepare`` takes them from a Slurm
        array's environment (`slurm_array_task`) when neither is given; this function
        never reads the environment (a notebook or a test inside an array job stays whole).
    backend : ``loky`` (processes on this machine) or ``dask`` (joblib's Dask backend:
        the cluster at ``scheduler``, or a `LocalCluster` of ``jobs`` single-threaded
        worker processes); the same shard tasks and the aligner's speakers run there,
        with byte-identical output. Dask workers on other machines need featprep
        installed and the corpus root and ``out`` at the same absolute paths.
    scheduler : a Dask scheduler address (``tcp://host:8786``); only with ``dask``.
    finalize : process no shard: write the manifest if every shard is complete, else
        raise `OutputError` naming the missing ones (after the jobs of a Slurm array).
    progress : show a per-utterance progress bar on stderr.

    Returns
    -------
    A `PrepareReport`. Raises `NoValidUtterances` when nothing survives. The arguments,
    the whole recipe (with the paths it names) and the output folder are checked before
    any file of the corpus is read; the output folder is made when there is something
    to write.
    """
    say = log or logger.info
    _check_arguments(jobs, shard_index, num_shards, backend, scheduler, finalize)
    resolved = load_corpus_recipe(corpus, root, recipe, overrides)
    out = Path(out) if out is not None else Path("manifests") / corpus
    check_output_dir(out)
    with contextlib.ExitStack() as stack:
        client = None
        if backend == "dask" and not finalize:  # started before any work: a bad address is one line now
            client = stack.enter_context(dask_client(resolve_jobs(jobs), scheduler))
            say(f"dask: {len(client.scheduler_info()['workers'])} workers at {client.scheduler.address}")
        return _prepare(
            corpus,
            root,
            out,
            resolved,
            resolve_jobs(jobs),
            shard_index,
            num_shards,
            backend,
            client,
            finalize,
            progress,
            say,
        )


def _prepare(
    corpus: str,
    root: str | Path,
    out: Path,
    resolved: dict[str, Any],
    jobs: int,
    shard_index: int | None,
    num_shards: int | None,
    backend: str,
    client: Any,
    finalize: bool,
    progress: bool,
    say: Callable[[str], None],
) -> PrepareReport:
    """`prepare` once its arguments, recipe and output folder are checked (and its Dask
    client started)."""
    remove_dead_temporaries(out)  # of manifest.json or rejected.tsv, by a killed run
    root = str(Path(root).resolve())

    found = discover(corpus, root, resolved)
    say(f"discovered {len(found.utterances)} utterances of {len(found.speakers)} speakers in {root}")
    unknown = [s.id for s in found.speakers if s.gender not in ("M", "F")]
    if unknown:  # not an error, but their F0 search is wider: say so, and where genders come from
        say(
            f"warning: {len(unknown)} speaker(s) of unknown gender ({', '.join(unknown[:10])}"
            f"{', ...' if len(unknown) > 10 else ''}): F0 is searched over 50-600 Hz, then an octave "
            "around each one's median; genders come from speaker-info.txt (VCTK) or speakers.gender "
            "(CMU Arctic)"
        )
    with tqdm(total=len(found.utterances), unit="hdr", disable=not progress, file=sys.stderr) as bar:
        utterances, rejections = check(found.utterances, root, resolved["clean"], lambda: bar.update())
    rejections = found.rejections + rejections
    if resolved["labels"]["source"] in ("align", "arctic") and utterances:
        _align(
            utterances,
            root,
            out / "align",
            resolved,
            jobs,
            say,
            backend=backend,
            client=client,
            run=not finalize,
        )
    report = PrepareReport(corpus, out)
    report.raw_seconds = sum(u.raw_seconds for u in found.utterances)

    roles, splits = assign_splits(found.speakers, utterances, resolved["split"])
    report.unused = sum(1 for u in utterances if u.id not in splits)
    plans = plan_shards(splits, utterances, resolved["shards"]["max_seconds"])
    if not plans:
        out.mkdir(parents=True, exist_ok=True)
        write_rejected(out / "rejected.tsv", rejections)
        raise NoValidUtterances(
            f"no valid utterance in {root}: {len(rejections)} rejected, see {out}/rejected.tsv"
        )
    _clean_stale(out, plans)

    genders = {s.id: s.gender for s in found.speakers}
    # built once here: versions and outputs may load a model (PASE) or hash its file
    stages = build_stages(resolved, root, genders)
    versions = {s.name: s.version() for s in stages}
    versions["genders"] = json.dumps(genders, sort_keys=True)
    infos: dict[str, dict[str, Any]] = {}
    todo: list[tuple[ShardPlan, str]] = []
    # OUT/align moves with OUT (its alignments are in the label stage's version): a moved
    # output folder keeps its shards
    portable = resolved
    if resolved["labels"]["dir"] == str((out / "align").resolve()):
        portable = {**resolved, "labels": {**resolved["labels"], "dir": "OUT/align"}}
    for i, plan in enumerate(plans):
        fp = plan.fingerprint(root, portable, versions)
        info = read_shard_info(out / plan.name)
        if info is not None and info.get("fingerprint") == fp:
            infos[plan.name] = info
            report.shards_skipped += 1
        elif not finalize and (num_shards is None or i % num_shards == shard_index):
            todo.append((plan, fp))
        else:
            report.shards_pending += 1
    if finalize and report.shards_pending:
        missing = [p.name for p in plans if p.name not in infos]
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise OutputError(
            f"cannot finalize {out}: {len(missing)} of {len(plans)} shards missing or out of date: {shown} "
            "(run the array jobs that own them, with the same recipe)"
        )
    say(f"{len(plans)} shards: {len(infos)} complete, {len(todo)} to do")
    # absolute: a Dask worker may run in another folder, or on another machine
    ran = _run_shards(todo, stages, resolved, root, out.resolve(), genders, jobs, progress, backend, client)
    for info in ran:
        infos[info["name"]] = info
        report.shards_written += 1

    for info in infos.values():
        rejections += [Rejection(**r) for r in info["rejected"]]
        s = report.splits.setdefault(info["split"], {"rows": 0, "seconds": 0.0})
        s["rows"] += info["rows"]
        s["seconds"] += info["seconds"]
        report.kept += info["rows"]
        report.kept_seconds += info["seconds"]
    report.rejected = Counter(r.code for r in rejections)
    if not report.complete:
        return report
    write_rejected(out / "rejected.tsv", rejections)
    if report.kept == 0:
        raise NoValidUtterances(
            f"no valid utterance in {root}: {len(rejections)} rejected, see {out}/rejected.tsv"
        )
    specs, columns = stage_outputs(stages)
    write_manifest(
        out / "manifest.json",
        corpus=corpus,
        root=root,
        recipe=resolved,
        layout=found.layout,
        speakers=found.speakers,
        roles=roles,
        utterances=utterances,
        shards=[infos[p.name] for p in plans],
        specs=specs,
        columns=columns,
        rejections=rejections,
    )
    return report

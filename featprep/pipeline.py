"""``prepare``: corpus directory -> checked, split, sharded, feature-bearing manifests.

discover -> check -> split -> plan shards -> per shard (in parallel): stages -> write.
A complete shard whose fingerprint matches is skipped, so a killed run resumes where it
stopped; ``manifest.json`` is written last, once every shard is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import pyarrow as pa
from tqdm import tqdm

from .acoustic import AcousticStage
from .audio.stage import AudioStage
from .check import check
from .corpora import discover
from .errors import ArgumentError, CorpusError, NoValidUtterances, Rejected
from .io import check_output_dir, dead_temporary, remove_dead_temporaries
from .labels.stage import LabelStage, LinguisticStage
from .manifest import write_manifest, write_rejected
from .pase.stage import PaseStage
from .recipe import load_corpus_recipe
from .records import Rejection, Utterance
from .shards import ShardPlan, plan_shards, read_shard_info, write_shard
from .splits import assign_splits
from .stage import ArraySpec, Item, Stage
from .workers import resolve_jobs

logger = logging.getLogger(__name__)

#: the per-utterance stages of prepare, in order
STAGES: list[type[Stage]] = [LabelStage, AudioStage, LinguisticStage, AcousticStage, PaseStage]


def build_stages(recipe: dict[str, Any], root: str, genders: dict[str, str] | None = None) -> list[Stage]:
    return [cls(recipe, root, genders) for cls in STAGES]


#: a worker process's stages: (run token, stages built and set up on its first shard of that run)
_worker_stages: tuple[str, list[Stage]] | None = None


def _stages_of_worker(recipe: dict[str, Any], root: str, genders: dict[str, str], run: str) -> list[Stage]:
    """The stages of prepare run ``run`` in this worker process, built and set up once per run
    (PASE weights read and hashed, question sets compiled once, not per shard)."""
    global _worker_stages
    if _worker_stages is None or _worker_stages[0] != run:
        stages = build_stages(recipe, root, genders)
        for stage in stages:
            stage.setup()
        _worker_stages = (run, stages)
    return _worker_stages[1]


def stage_outputs(stages: list[Stage]) -> tuple[list[ArraySpec], dict[str, pa.DataType]]:
    specs = [spec for s in stages for spec in s.outputs()]
    columns = {name: t for s in stages for name, t in s.columns.items()}
    return specs, columns


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


def _check_arguments(jobs: int, shard_index: int | None, num_shards: int | None) -> None:
    resolve_jobs(jobs)
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
                shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextlib.contextmanager
def _progress(total: int, jobs: int, enabled: bool) -> Iterator[Any]:
    """A per-utterance progress bar; with workers, fed through a manager queue."""
    if not enabled:
        yield None
        return
    bar = tqdm(total=total, unit="utt", file=sys.stderr, dynamic_ncols=True)
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


def _process_shard_in_worker(
    plan: ShardPlan,
    recipe: dict[str, Any],
    root: str,
    genders: dict[str, str],
    run: str,
    out_dir: Path,
    fingerprint: str,
    progress: Callable[[int], Any] | None,
) -> dict[str, Any]:
    return process_shard(plan, _stages_of_worker(recipe, root, genders, run), out_dir, fingerprint, progress)


def _run_shards(
    todo: list[tuple[ShardPlan, str]],
    stages: list[Stage],
    recipe: dict[str, Any],
    root: str,
    out: Path,
    genders: dict[str, str],
    jobs: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Process the shards of ``todo``: in this process with ``stages`` (set up here, once),
    or in ``jobs`` worker processes that build and set up their own once each."""
    total = sum(len(p.utterances) for p, _ in todo)
    with _progress(total, jobs, progress) as tick:
        if jobs == 1:
            for stage in stages:
                stage.setup()
            return [process_shard(p, stages, out, fp, tick) for p, fp in todo]
        # One BLAS/torch thread per worker (joblib sets the limits, torch's included, in
        # each worker it starts): the parallelism is across shards.
        run = uuid.uuid4().hex
        with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
            shards = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")
            return list(
                shards(
                    joblib.delayed(_process_shard_in_worker)(p, recipe, root, genders, run, out, fp, tick)
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
) -> None:
    """Labels from featprep's aligner, into ``folder`` (OUT/align): for every checked
    utterance with the ``align`` source; with ``arctic``, for those without a lab/ file
    (the model still trains on the corpus). The label stage then reads that folder
    (``labels.dir`` is set to it) with the aligner's rejections."""
    from .labels.align.corpus import align_utterances

    only = None
    if recipe["labels"]["source"] == "arctic":
        only = {
            u.id
            for u in utterances
            if not u.custom.get("lab") or not (Path(root) / u.custom["lab"]).is_file()
        }
        if not only:
            return
        say(f"{len(only)} utterances have no lab/ phone labels: featprep's aligner labels them")
    recipe["labels"]["dir"] = str(folder.resolve())
    recipe["labels"]["pattern"] = "{speaker}/{utterance}.lab"
    try:
        result = align_utterances(utterances, root, folder, recipe, jobs=jobs, only=only, log=say)
    except CorpusError as e:
        if only is None:
            raise
        say(f"the aligner could not be trained ({e}): utterances without lab/ stay missing_label")
        return
    for line in result.lines():
        say(line)


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
    jobs : worker processes; shards are processed in parallel.
    shard_index, num_shards : process only shards ``i`` with ``i % num_shards ==
        shard_index`` (a Slurm array job); the run that finds every shard complete
        writes the manifest.
    progress : show a per-utterance progress bar on stderr.

    Returns
    -------
    A `PrepareReport`. Raises `NoValidUtterances` when nothing survives. The arguments,
    the whole recipe (with the paths it names) and the output folder are checked before
    any file of the corpus is read; the output folder is made when there is something
    to write.
    """
    say = log or logger.info
    _check_arguments(jobs, shard_index, num_shards)
    resolved = load_corpus_recipe(corpus, root, recipe, overrides)
    out = Path(out) if out is not None else Path("manifests") / corpus
    check_output_dir(out)
    remove_dead_temporaries(out)  # of manifest.json or rejected.tsv, by a killed run
    root = str(Path(root).resolve())
    jobs = resolve_jobs(jobs)

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
        _align(utterances, root, out / "align", resolved, jobs, say)
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
    for i, plan in enumerate(plans):
        fp = plan.fingerprint(root, resolved, versions)
        info = read_shard_info(out / plan.name)
        if info is not None and info.get("fingerprint") == fp:
            infos[plan.name] = info
            report.shards_skipped += 1
        elif num_shards is None or i % num_shards == shard_index:
            todo.append((plan, fp))
        else:
            report.shards_pending += 1
    say(f"{len(plans)} shards: {len(infos)} complete, {len(todo)} to do")
    for info in _run_shards(todo, stages, resolved, root, out, genders, jobs, progress):
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

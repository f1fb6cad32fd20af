"""Aligning a whole corpus: ``featprep align`` (`align_corpus`) and prepare's ``align``
label source (`align_utterances`).

Into one folder: the trained model (``aligner.npz``), one state-aligned HTS label file per
utterance (``<speaker>/<utterance>.lab``, times from the start of the raw audio file, so
the folder is a ``dir`` label source), optionally Praat TextGrids beside them, and
``aligner.json``, the record that makes a rerun cheap: the model's fingerprint (the
training utterances' files, sizes, times and transcripts, the training keys of ``[align]``,
the front-end voice, this module's version) and, per speaker, the fingerprint of its
utterances (and of the whole ``[align]`` table) with their scores and rejections. A
matching model is not trained again and a matching speaker is not aligned again.

Training takes the first ``align.train_utterances_per_speaker`` utterances of each
speaker (in id order); every utterance is then aligned with its speaker's CMVN (over all
its utterances), one speaker per worker, so memory is bounded by one speaker's features.
An utterance whose per-frame score lies more than ``align.outlier_mads`` robust standard
deviations (1.4826 MAD), and more than ``align.outlier_min_drop``, below its speaker's
median is rejected (``align_outlier``): its
transcript, speaker or audio is probably not what the others are.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from ...audio.levels import check_levels
from ...errors import CorpusError, Rejected
from ...io import atomic_write_text, check_output_dir, json_digest, remove_dead_temporaries
from ...records import Rejection, Utterance
from ...workers import parallel_config, resolve_jobs
from ..frontend import frontend_labels, merlin_normalise
from ..hts import HTSLabel, write_hts
from ..textgrid import word_segments, write_textgrid
from ..xwaves import Segment
from .aligner import align_features
from .bootstrap import bootstrap_utterances
from .evaluate import phone_segments
from .features import apply_cmvn, cmvn_stats, mfcc_features
from .model import AlignerModel
from .train import TrainingConfig, TrainingUtterance, train_aligner, word_ends

logger = logging.getLogger(__name__)

#: bump when what this module writes changes: older records are then not reused (3: the
#: silence has context models)
VERSION = "3"
MODEL = "aligner.npz"
RECORD = "aligner.json"
#: held while a process trains into or aligns into the folder (see `_folder_lock`)
LOCK = ".aligner.lock"
#: 1.4826 MAD estimates the standard deviation of normally distributed scores
_MAD_TO_STD = 1.4826


@dataclass
class AlignResult:
    """What `align_utterances` did: rejections, per-utterance scores, and whether the model
    was trained (False: reused) and how many speakers were aligned again."""

    folder: Path
    rejections: list[Rejection] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    trained: bool = False
    speakers_aligned: int = 0
    speakers_reused: int = 0

    def lines(self) -> list[str]:
        out = [
            f"aligned {len(self.scores) - self._outliers()} utterances "
            f"({'model trained' if self.trained else 'model reused'}; speakers: "
            f"{self.speakers_aligned} aligned, {self.speakers_reused} reused)"
        ]
        counts = Counter(r.code for r in self.rejections)
        out.append(f"rejected {sum(counts.values())} utterances" + (":" if counts else ""))
        out += [f"  {code:<18} {n}" for code, n in sorted(counts.items())]
        return out

    def _outliers(self) -> int:
        return sum(1 for r in self.rejections if r.code == "align_outlier")


def training_config(cfg: dict[str, Any]) -> TrainingConfig:
    """The `TrainingConfig` of the recipe's ``[align]`` table."""
    return TrainingConfig(
        mixtures=cfg["mixtures"],
        iterations=cfg["iterations"],
        short_pause=cfg["short_pause"],
        contexts=cfg["contexts"],
    )


def training_subset(utterances: list[Utterance], per_speaker: int) -> list[Utterance]:
    """The first ``per_speaker`` utterances of each speaker in id order (0: all)."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utterances, key=lambda u: (u.speaker, u.id)):
        by_speaker[u.speaker].append(u)
    return [u for us in by_speaker.values() for u in (us[:per_speaker] if per_speaker else us)]


def _digest(value: Any) -> str:
    return json_digest(value)[:32]


def _file_keys(utterances: list[Utterance], root: str) -> list[list[Any]]:
    """What identifies each utterance's input: id, audio path, size, mtime, transcript."""
    keys = []
    for u in sorted(utterances, key=lambda u: u.id):
        try:
            st = os.stat(Path(root) / u.audio_path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        keys.append([u.id, u.audio_path, size, mtime, u.text])
    return keys


#: the ``[clean]`` keys of the level checks the aligner runs before it aligns
LEVEL_KEYS = ("near_silent_dbfs", "clip_level", "clipping_fraction")


def read_audio(utt: Utterance, root: str, clean: dict[str, Any] | None = None) -> tuple[np.ndarray, int]:
    """Mono audio of ``utt`` (channels averaged); `Rejected` when it cannot be decoded
    (``unreadable_audio``) or holds NaN or infinite samples (``nan_inf``), and, given the
    recipe's ``clean`` table, when prepare's level checks would refuse it (clipping,
    silence: `check_levels`), so that it is not aligned, scored or rejected as an
    outlier for what is a recording fault."""
    try:
        audio, sr = sf.read(Path(root) / utt.audio_path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise Rejected("unreadable_audio", f"cannot decode {utt.audio_path}: {e}") from None
    if not np.isfinite(audio).all():
        raise Rejected("nan_inf", f"{utt.audio_path} has NaN or infinite samples")
    if clean is not None:
        check_levels(audio, **{k: clean[k] for k in LEVEL_KEYS})
    return audio.mean(axis=1), sr


def read_record(folder: Path) -> dict[str, Any]:
    """``aligner.json`` of ``folder``, or {} when it is missing, damaged or of another version."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("version") == VERSION else {}


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_text(folder / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")


#: the ``[align]`` keys the model depends on (the others judge its scores)
TRAINING_KEYS = (
    "train_utterances_per_speaker",
    "mixtures",
    "iterations",
    "short_pause",
    "contexts",
    "bootstrap_voices",
    "bootstrap_texts",
)


def model_fingerprint(utterances: list[Utterance], root: str, recipe: dict[str, Any]) -> str:
    """What the trained model depends on: the training subset's files, the training keys of
    ``[align]``, the front-end's voice and text limit, this module's version."""
    cfg = recipe["align"]
    subset = training_subset(utterances, cfg["train_utterances_per_speaker"])
    training = {k: cfg[k] for k in TRAINING_KEYS}
    labels = {k: recipe["labels"][k] for k in ("voice", "max_text_chars")}
    levels = {k: recipe["clean"][k] for k in LEVEL_KEYS}
    return _digest([VERSION, training, labels, levels, _file_keys(subset, root)])


def _training_utterances(
    subset: list[Utterance],
    fronts: dict[str, HTSLabel | Rejected],
    root: str,
    clean: dict[str, Any],
    say: Callable[[str], None],
) -> Iterator[TrainingUtterance]:
    """The subset's audio and front-end labels, one utterance at a time (the trainer keeps
    features, not audio); utterances Festival or the decoder refuse are left out."""
    for u in subset:
        front = fronts[u.id]
        try:
            if isinstance(front, Rejected):
                raise front
            audio, sr = read_audio(u, root, clean)
        except Rejected as r:
            say(f"{u.id} left out of training: {r.code}: {r.detail}")
            continue
        yield TrainingUtterance(u.speaker, audio, sr, merlin_normalise(front))


def _train(
    utterances: list[Utterance], root: str, recipe: dict[str, Any], say: Callable[[str], None], threads: int
) -> AlignerModel:
    """The aligner trained in this process, ``threads`` at work: Festival's voices
    synthesise side by side, utterances are featurised and aligned side by side, each
    on one BLAS thread."""
    cfg = recipe["align"]
    subset = training_subset(utterances, cfg["train_utterances_per_speaker"])
    fronts = frontend_labels(subset, recipe["labels"])
    # only transcripts Festival's front-end took (in time, within labels.max_text_chars)
    said = [u.text for u in subset if not isinstance(fronts[u.id], Rejected)]
    texts = list(dict.fromkeys(said))[: cfg["bootstrap_texts"]]
    bootstrap = []
    if cfg["bootstrap_voices"] and texts:
        say(f"synthesising {len(texts)} transcripts with {', '.join(cfg['bootstrap_voices'])} (bootstrap)")
        bootstrap = bootstrap_utterances(texts, voices=cfg["bootstrap_voices"], threads=threads)
    say(f"training the aligner on {len(subset)} utterances")
    try:
        with threadpool_limits(limits=1):
            return train_aligner(
                _training_utterances(subset, fronts, root, recipe["clean"], say),
                training_config(cfg),
                say,
                bootstrap=bootstrap,
                threads=threads,
            )
    except ValueError:
        raise CorpusError(f"no utterance of {root} could be used to train the aligner") from None


def outliers(scores: dict[str, float], mads: float, min_drop: float, min_utterances: int) -> dict[str, str]:
    """Utterances of one speaker whose score lies below its median by more than ``mads``
    robust standard deviations and by more than ``min_drop``, with the detail; none when
    there are fewer than ``min_utterances`` scores.

    ``min_drop`` keeps a speaker whose utterances score almost alike (a tiny deviation)
    from losing good ones: on the demo, utterances with their own transcript scored at most
    1.3 per frame below their speaker's median, with another's transcript 4.4 to 10.2.
    """
    if len(scores) < min_utterances:
        return {}
    values = np.array(list(scores.values()))
    median = float(np.median(values))
    spread = _MAD_TO_STD * float(np.median(np.abs(values - median)))
    limit = median - max(mads * spread, min_drop)
    return {
        u: f"score {s:.2f} per frame, speaker median {median:.2f}, limit {limit:.2f} "
        f"(align.outlier_mads x {spread:.2f}, at least align.outlier_min_drop {min_drop:g} below)"
        for u, s in scores.items()
        if s < limit
    }


def _align_speaker(
    speaker: str,
    utterances: list[Utterance],
    root: str,
    folder: Path,
    recipe: dict[str, Any],
    fingerprint: str,
    textgrid: bool,
    only: set[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Align one speaker's utterances (those in ``only``, when given) and write their
    labels; its record entry. CMVN is over all of ``utterances``."""
    model = AlignerModel.load(folder / MODEL)
    cfg = recipe["align"]
    chosen = [u for u in utterances if only is None or u.id in only]
    fronts = frontend_labels(chosen, recipe["labels"])
    rejected: dict[str, tuple[str, str]] = {}
    features: dict[str, np.ndarray] = {}
    for u in utterances:
        try:
            if u.id in fronts and isinstance(fronts[u.id], Rejected):
                raise fronts[u.id]
            features[u.id] = mfcc_features(*read_audio(u, root, recipe["clean"]))
        except Rejected as r:
            if u.id in fronts:
                rejected[u.id] = (r.code, r.detail)
    stats = cmvn_stats(list(features.values()))
    labels: dict[str, HTSLabel] = {}
    scores: dict[str, float] = {}
    for u in chosen:
        if u.id not in features:
            continue
        try:
            labels[u.id], scores[u.id] = align_features(
                model, apply_cmvn(features.pop(u.id), stats), merlin_normalise(fronts[u.id])
            )
        except Rejected as r:
            rejected[u.id] = (r.code, r.detail)
    for u, detail in outliers(
        scores, cfg["outlier_mads"], cfg["outlier_min_drop"], cfg["outlier_min_utterances"]
    ).items():
        rejected[u] = ("align_outlier", detail)
    speaker_dir = folder / speaker
    speaker_dir.mkdir(parents=True, exist_ok=True)
    for u in chosen:
        lab, grid = speaker_dir / f"{u.id}.lab", speaker_dir / f"{u.id}.TextGrid"
        if u.id in rejected or u.id not in labels:
            lab.unlink(missing_ok=True)  # of an earlier run, when the utterance was not rejected
            grid.unlink(missing_ok=True)
            continue
        write_hts(lab, labels[u.id])
        if textgrid:
            write_textgrid(grid, _tiers(labels[u.id], merlin_normalise(fronts[u.id])))
        else:
            grid.unlink(missing_ok=True)  # of an earlier --textgrid run: it shows the old alignment
    return speaker, {
        "fingerprint": fingerprint,
        "scores": {u: round(s, 4) for u, s in scores.items()},
        "rejected": {u: list(r) for u, r in sorted(rejected.items())},
    }


def _tiers(aligned: HTSLabel, front: HTSLabel) -> dict[str, list[Segment]]:
    """The TextGrid tiers of an aligned utterance: words (when the front-end's labels
    spell them) and phones."""
    phones = phone_segments(aligned)
    if front.words is None:
        return {"phones": phones}
    return {"words": word_segments(phones, front.words, word_ends(front)), "phones": phones}


@contextlib.contextmanager
def _folder_lock(folder: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One writer of ``folder`` at a time: the jobs of a Slurm array preparing one output
    folder each start by aligning it; the first trains and aligns, the others wait here and
    then find its model and labels (their fingerprints match) instead of training the same
    model again. A POSIX lock (``fcntl.lockf``: kept by NFS's lock manager too), released
    when the holder exits, killed or not. On a file system without locks each job goes on
    alone: every file is written atomically and the same fingerprint means the same model.
    """
    with open(folder / LOCK, "a") as f:
        try:
            try:
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say(f"waiting for another process aligning into {folder} (it holds {folder / LOCK})")
                fcntl.lockf(f, fcntl.LOCK_EX)
        except OSError as e:  # ENOLCK, EOPNOTSUPP: no locks on this file system
            say(f"{folder / LOCK}: no lock ({e.strerror or e}): aligning without waiting for other processes")
        yield


def align_utterances(
    utterances: list[Utterance],
    root: str | Path,
    folder: str | Path,
    recipe: dict[str, Any],
    *,
    jobs: int = 1,
    textgrid: bool = False,
    only: set[str] | None = None,
    log: Callable[[str], None] | None = None,
    backend: str = "loky",
    client: Any = None,
) -> AlignResult:
    """Train (or reuse) the aligner on ``utterances`` (checked, of the corpus at ``root``)
    and align each into ``folder``; see the module docstring for what is written.

    ``recipe``: a resolved recipe (its ``[align]`` and ``[labels]`` tables). ``jobs``:
    worker processes, one speaker each. ``only``: align just these utterance ids (CMU
    Arctic's without lab/); CMVN is still over all of their speaker's utterances.
    ``backend``, ``client``: where the speakers are aligned (`featprep.workers.parallel_config`;
    prepare's ``--backend``). Rejections name the stage ``labels``. Processes aligning into
    one folder take turns (`_folder_lock`).
    """
    say = log or logger.info
    # absolute: a Dask worker may run in another folder, or on another machine
    root, folder = str(root), Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder, say):
        remove_dead_temporaries(folder)  # a killed writer's model or record, once no one else writes
        return _align_utterances(utterances, root, folder, recipe, jobs, textgrid, only, say, backend, client)


def _align_utterances(
    utterances: list[Utterance],
    root: str,
    folder: Path,
    recipe: dict[str, Any],
    jobs: int,
    textgrid: bool,
    only: set[str] | None,
    say: Callable[[str], None],
    backend: str,
    client: Any,
) -> AlignResult:
    result = AlignResult(folder)
    record = read_record(folder)
    model_fp = model_fingerprint(utterances, root, recipe)
    if record.get("model") == model_fp and (folder / MODEL).is_file():
        say(f"aligner model {folder / MODEL} reused (its fingerprint matches)")
    else:
        _train(utterances, root, recipe, say, jobs).save(folder / MODEL)
        result.trained = True
        record = {"version": VERSION, "model": model_fp, "speakers": {}}
        _write_record(folder, record)
        say(f"aligner model written to {folder / MODEL}")
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utterances, key=lambda u: u.id):
        by_speaker[u.speaker].append(u)
    if only is not None:
        by_speaker = {s: us for s, us in by_speaker.items() if any(u.id in only for u in us)}
    chosen = sorted(only) if only is not None else None
    todo = []
    for speaker, utts in sorted(by_speaker.items()):
        # model_fp holds the level keys too: a change there retrains, then re-aligns
        fp = _digest([model_fp, recipe["align"], textgrid, chosen, _file_keys(utts, root)])
        if record["speakers"].get(speaker, {}).get("fingerprint") == fp:
            result.speakers_reused += 1
        else:
            todo.append((speaker, utts, fp))
    count = sum(1 for _, us, _ in todo for u in us if only is None or u.id in only)
    say(f"aligning {count} utterances of {len(todo)} speakers")
    # one BLAS thread where the speakers are aligned in this process (-j 1), as in a worker
    with parallel_config(backend, client), threadpool_limits(limits=1):
        run = joblib.Parallel(n_jobs=max(1, min(jobs, len(todo))), return_as="generator_unordered")
        done = run(
            joblib.delayed(_align_speaker)(s, u, root, folder, recipe, fp, textgrid, only)
            for s, u, fp in todo
        )
        for speaker, entry in done:
            record["speakers"][speaker] = entry
            _write_record(folder, record)  # a killed run keeps the speakers it finished
            result.speakers_aligned += 1
    paths = {u.id: u.audio_path for u in utterances}
    for speaker in sorted(by_speaker):
        entry = record["speakers"][speaker]
        result.scores.update(entry["scores"])
        result.rejections += [
            Rejection(u, speaker, "labels", code, detail, paths[u])
            for u, (code, detail) in entry["rejected"].items()
        ]
    return result


def align_corpus(
    corpus: str,
    root: str | Path,
    out: str | Path,
    *,
    recipe: str | Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    jobs: int = 1,
    textgrid: bool = False,
    log: Callable[[str], None] | None = None,
) -> AlignResult:
    """``featprep align``: discover and check ``corpus`` at ``root`` as prepare does, then
    `align_utterances` into ``out``, and write ``out/rejected.tsv`` (every rejection:
    discover, check and alignment)."""
    from ...check import check
    from ...corpora import discover
    from ...manifest import write_rejected
    from ...recipe import load_corpus_recipe

    jobs = resolve_jobs(jobs)
    resolved = load_corpus_recipe(corpus, root, recipe, [*overrides, "labels.source=align"])
    check_output_dir(Path(out), "label folder")
    root = str(Path(root).resolve())
    found = discover(corpus, root, resolved)
    utterances, rejections = check(found.utterances, root, resolved["clean"])
    say = log or logger.info
    say(f"discovered {len(found.utterances)} utterances of {len(found.speakers)} speakers in {root}")
    if not utterances:
        raise CorpusError(f"no valid utterance in {root} to align")
    result = align_utterances(
        utterances,
        root,
        out,
        resolved,
        jobs=jobs,
        textgrid=textgrid,
        log=say,
    )
    result.rejections = found.rejections + rejections + result.rejections
    write_rejected(Path(out) / "rejected.tsv", result.rejections)
    return result

"""The ``featprep`` command: a thin shell of options over library calls."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .corpora import CORPORA
from .errors import FeatprepError


def _reports_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except FeatprepError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


jobs_option = click.option(
    "--jobs",
    "-j",
    type=int,
    default=-1,
    show_default=True,
    help="Worker processes (>= 1); -1 = one per core.",
)


class _Commands(click.Group):
    """The command group; Ctrl-C ends any command with one line and exit code 130 (the
    shell's code for SIGINT), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="featprep")
def main() -> None:
    """Speech corpora (VCTK, CMU Arctic) to training shards for multi-speaker SampleRNN."""


@main.command()
@click.argument("corpus", type=click.Choice(CORPORA))
@click.option("--root", required=True, type=click.Path(path_type=Path), help="The corpus as downloaded.")
@click.option("--out", type=click.Path(path_type=Path), help="Output directory [default: manifests/CORPUS].")
@click.option("--recipe", type=click.Path(path_type=Path), help="TOML file laid over the built-in recipe.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one recipe key (repeatable).",
)
@jobs_option
@click.option(
    "--shard-index",
    type=int,
    help="With --num-shards: process only shards i with i % N == INDEX "
    "[default in a Slurm array: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN].",
)
@click.option(
    "--num-shards",
    type=int,
    help="Number of jobs sharing the shards [default in a Slurm array: SLURM_ARRAY_TASK_COUNT].",
)
@click.option(
    "--finalize",
    is_flag=True,
    help="Process nothing: write the manifest once every shard exists (after a Slurm array).",
)
@click.option(
    "--backend",
    type=click.Choice(["loky", "dask"]),
    default="loky",
    show_default=True,
    help="Where shards run: loky processes here, or Dask (needs featprep[dask]).",
)
@click.option(
    "--scheduler",
    metavar="ADDR",
    help="Dask scheduler address (tcp://host:8786) [default: a local cluster of --jobs workers].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_reports_errors
def prepare(
    corpus: str,
    root: Path,
    out: Path | None,
    recipe: Path | None,
    overrides: tuple[str, ...],
    jobs: int,
    shard_index: int | None,
    num_shards: int | None,
    finalize: bool,
    backend: str,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Discover, clean, resample, trim, split and shard CORPUS found at --root.

    Writes OUT/manifest.json, OUT/rejected.tsv and OUT/shards/<split>/shard-NNNNNN/.
    A rerun skips complete shards (resume after a kill).

    \b
    On a cluster (README, "Cluster: Dask and Slurm"):
      featprep prepare vctk --root /data/VCTK-Corpus --backend dask --scheduler tcp://head:8786
      sbatch --array=0-15 --wrap 'featprep prepare vctk --root /data/VCTK-Corpus --out /shared/vctk'
      featprep prepare vctk --root /data/VCTK-Corpus --out /shared/vctk --finalize
    """
    from .pipeline import prepare as run

    report = run(
        corpus,
        root,
        out,
        recipe=recipe,
        overrides=overrides,
        jobs=jobs,
        shard_index=shard_index,
        num_shards=num_shards,
        backend=backend,
        scheduler=scheduler,
        finalize=finalize,
        progress=not quiet and sys.stderr.isatty(),
        log=None if quiet else _echo,
    )
    for line in report.lines():
        click.echo(line)


@main.command()
@click.argument("corpus", type=click.Choice(CORPORA))
@click.option("--root", required=True, type=click.Path(path_type=Path), help="The corpus as downloaded.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Label folder (LABDIR).")
@click.option("--recipe", type=click.Path(path_type=Path), help="TOML file laid over the built-in recipe.")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one recipe key (repeatable)."
)
@jobs_option
@click.option(
    "--textgrid", is_flag=True, help="Also write LABDIR/<speaker>/<utterance>.TextGrid (phones tier)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@_reports_errors
def align(
    corpus: str,
    root: Path,
    out: Path,
    recipe: Path | None,
    overrides: tuple[str, ...],
    jobs: int,
    textgrid: bool,
    quiet: bool,
) -> None:
    """Train featprep's forced aligner on CORPUS at --root and align every utterance.

    Writes state-aligned HTS labels LABDIR/<speaker>/<utterance>.lab (usable as
    labels.source = "dir"), LABDIR/rejected.tsv, the model LABDIR/aligner.npz and
    LABDIR/aligner.json; a rerun reuses the model and the speakers already aligned.
    """
    from .labels.align.corpus import align_corpus

    result = align_corpus(
        corpus,
        root,
        out,
        recipe=recipe,
        overrides=overrides,
        jobs=jobs,
        textgrid=textgrid,
        log=None if quiet else _echo,
    )
    for line in result.lines():
        click.echo(line)
    click.echo(f"output: {out}/<speaker>/<utterance>.lab, {out}/rejected.tsv")


_NO_VERIFY = click.option(
    "--no-verify",
    is_flag=True,
    help="Skip the sha256 of every shard file read (the layout and alignment checks still run; "
    "featprep validate does the full check).",
)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@_reports_errors
def validate(directory: Path) -> None:
    """Check a prepared corpus: checksums, alignment contract, finite values.

    Exits non-zero when anything is wrong, listing every problem.
    """
    from .validate import validate as run

    problems = run(directory)
    for p in problems:
        click.echo(p)
    if problems:
        raise click.ClickException(f"{directory}: {len(problems)} problem(s)")
    click.echo(f"{directory}: ok")


@main.group()
def export() -> None:
    """Hand a prepared corpus to another toolkit (Kaldi, lhotse)."""


@export.command("kaldi")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--streams",
    default=None,
    help="Comma-separated feature streams, the first as feats.scp [default: acoustic]; '' for none.",
)
@_reports_errors
def export_kaldi(directory: Path, out: Path, streams: str | None) -> None:
    """Kaldi data directories (OUT/<split>/: wav.scp, segments, text, utt2spk, spk2utt,
    spk2gender, feats.scp, cmvn.scp) of the prepared corpus DIRECTORY.

    Example: featprep export kaldi manifests/vctk data/vctk
    """
    from .export import export_kaldi as run

    chosen = None if streams is None else tuple(s.strip() for s in streams.split(",") if s.strip())
    for line in run(directory, out, streams=chosen).lines():
        click.echo(line)


@export.command("lhotse")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@_reports_errors
def export_lhotse(directory: Path, out: Path) -> None:
    """lhotse recordings, supervisions and cuts (OUT/<corpus>_<kind>_<split>.jsonl.gz) of the
    prepared corpus DIRECTORY.

    Example: featprep export lhotse manifests/vctk data/vctk-lhotse
    """
    from .export import export_lhotse as run

    for line in run(directory, out).lines():
        click.echo(line)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The HTML file to write.")
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Utterances drawn as waveform + spectrogram with trim points and phone boundaries.",
)
@_reports_errors
def report(directory: Path, out: Path, examples: int) -> None:
    """One self-contained HTML page about a prepared corpus (needs featprep[report]).

    Hours per speaker and split, durations, silence trimmed, rejections with the worst
    examples, F0 per speaker, feature statistics and example utterances.

    Example: featprep report manifests/vctk --out vctk-report.html
    """
    from .report import write_report

    click.echo(write_report(directory, out, examples=examples))


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Folder for the demo corpus (OUT/corpus) and its manifests (OUT/manifests).",
)
@click.option(
    "--utterances",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Good utterances per speaker.",
)
@jobs_option
@click.option("--seed", type=int, default=0, show_default=True)
@_reports_errors
def demo(out: Path, utterances: int, jobs: int, seed: int) -> None:
    """Synthesise a small multi-speaker corpus with Festival and prepare it.

    The corpus comes in three real layouts (VCTK 0.80, VCTK 0.92, CMU Arctic) with room
    noise, leading and trailing silence and deliberately broken utterances; Festival's
    phone boundaries are kept as ground truth under OUT/corpus/truth/.
    """
    from .demo import run_demo

    for line in run_demo(out, per_speaker=utterances, jobs=jobs, seed=seed, log=_echo):
        click.echo(line)


@main.command()
@click.argument("label", type=click.Path(path_type=Path))
@click.option(
    "--questions",
    default="featprep_hts",
    show_default=True,
    help="Question file (.hed) or a built-in set's name.",
)
@click.option(
    "--subphone-features",
    default="auto",
    show_default=True,
    type=click.Choice(
        [
            "auto",
            "full",
            "minimal_frame",
            "state_only",
            "frame_only",
            "uniform_state",
            "minimal_phoneme",
            "coarse_coding",
            "none",
        ]
    ),
    help="Merlin frame features; auto: full for state-aligned labels, coarse_coding for "
    "phone-aligned ones, phone-level rows for labels without times. Phone-aligned labels "
    "take minimal_phoneme, coarse_coding, none.",
)
@click.option(
    "--phone-level", is_flag=True, help="One row per phone, question columns only (duration model input)."
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Output .npy (float32, rows = frames)."
)
@_reports_errors
def linguistic(label: Path, questions: str, subphone_features: str, phone_level: bool, out: Path) -> None:
    """Merlin linguistic features of one HTS LABEL file, as a float32 .npy matrix."""
    import io

    import numpy as np

    from .io import atomic_write_bytes, check_output_file
    from .labels.hts import read_hts
    from .labels.linguistic import default_subphone_features, linguistic_features
    from .labels.matching import CompiledQuestions
    from .labels.questions import load_questions

    check_output_file(out)
    labels = read_hts(label)
    if subphone_features == "auto" and not phone_level:
        chosen = default_subphone_features(labels)
        kind = (
            "state-aligned"
            if labels.state_aligned
            else "phone-aligned"
            if labels.aligned
            else "without times"
        )
        phone_level = chosen is None
        _echo(
            f"{label}: labels {kind}: " + ("one row per phone" if phone_level else f"frame features {chosen}")
        )
    features = linguistic_features(
        labels,
        CompiledQuestions(load_questions(questions)),
        subphone_features=subphone_features,
        add_frame_features=not phone_level,
    )
    buf = io.BytesIO()
    np.save(buf, features)
    atomic_write_bytes(out, buf.getvalue())
    click.echo(f"{out}: {features.shape[0]} rows x {features.shape[1]} columns")


@main.command()
@click.option("--text", "texts", multiple=True, help="Text to label (repeatable).")
@click.option(
    "--utt",
    "utts",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Festival utterance file (.utt) to label with its own times (repeatable).",
)
@click.option(
    "--voice", default="cmu_us_slt_arctic_hts", show_default=True, help="Festival voice for --text."
)
@click.option(
    "--times/--no-times",
    default=False,
    show_default=True,
    help="With --text: keep Festival's predicted durations (not an alignment to any recording).",
)
@click.option(
    "--merlin/--festival",
    default=True,
    show_default=True,
    help="Merlin's normalisation (edge silences 'sil', no repeated pauses) or Festival's raw labels.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output .lab file, or a folder when several inputs are given.",
)
@_reports_errors
def frontend(
    texts: tuple[str, ...], utts: tuple[Path, ...], voice: str, times: bool, merlin: bool, out: Path
) -> None:
    """Full-context HTS labels from text or Festival utterances, with Festival."""
    from .io import check_output_dir, check_output_file
    from .labels.frontend import merlin_normalise, text_to_labels, utterance_to_labels
    from .labels.hts import HTSLabel, write_hts

    if bool(texts) == bool(utts):
        raise click.UsageError("give --text or --utt (one or more of either)")
    if len(texts) + len(utts) > 1:
        check_output_dir(out)
    else:
        check_output_file(out)
    labels = text_to_labels(texts, voice=voice) if texts else utterance_to_labels(utts)
    names = [f"{i:04d}.lab" for i in range(len(texts))] if texts else [f"{Path(u).stem}.lab" for u in utts]
    if texts and not times:
        labels = [HTSLabel(lab.contexts) for lab in labels]
    if merlin:
        labels = [merlin_normalise(lab) for lab in labels]
    if len(labels) > 1:
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / n for n in names]
    else:
        targets = [out]
    for target, label in zip(targets, labels, strict=True):
        write_hts(target, label)
        click.echo(f"{target}: {len(label)} phones")


@main.command()
@click.argument("wavs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--arch", type=click.Choice(["pase", "pase+", "pase_dense_qrnn"]), default="pase+", show_default=True
)
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), help="Official checkpoint file (FE_e*.ckpt, ...)."
)
@click.option(
    "--random-init", type=int, metavar="SEED", help="Random weights from SEED (plumbing and tests only)."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="bf16/fp16: CUDA autocast.",
)
@click.option("--batch-size", type=int, default=0, show_default=True, help="0 = 1 on the CPU, 16 on CUDA.")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Folder for one <stem>.npy per input."
)
@_reports_errors
def pase(
    wavs: tuple[Path, ...],
    arch: str,
    checkpoint: Path | None,
    random_init: int | None,
    device: str,
    precision: str,
    batch_size: int,
    out: Path,
) -> None:
    """PASE frames (frames x embedding, float32, 100 frames/s) of each audio file."""
    import io

    import numpy as np

    from .audio import downmix, read_audio, resample
    from .errors import FeatprepError, Rejected
    from .io import atomic_write_bytes, check_output_dir
    from .pase import load_encoder
    from .pase.extract import extract

    check_output_dir(out)
    encoder = load_encoder(arch, checkpoint=checkpoint, random_init_seed=random_init)
    waves = []
    for path in wavs:
        try:
            audio, sr = read_audio(path)
        except Rejected as r:
            raise FeatprepError(f"{path}: {r.code}: {r.detail}") from None
        waves.append(resample(downmix(audio), sr, 16000))
    frames = extract(encoder, waves, batch_size=batch_size, device=device, precision=precision)
    out.mkdir(parents=True, exist_ok=True)
    for path, f in zip(wavs, frames, strict=True):
        buf = io.BytesIO()
        np.save(buf, f)
        atomic_write_bytes(out / f"{Path(path).stem}.npy", buf.getvalue())
        click.echo(f"{out / (Path(path).stem + '.npy')}: {f.shape[0]} frames x {f.shape[1]}")


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--splits", default="train", show_default=True, help="Comma-separated splits to count.")
@click.option(
    "--recompute", is_flag=True, help="Rebuild from the arrays and check against the shards' statistics."
)
@click.option(
    "--min-frames",
    type=int,
    default=2000,
    show_default=True,
    help="Speakers with fewer rows use the global statistics.",
)
@click.option("--variance-floor", type=float, default=1e-8, show_default=True)
@_NO_VERIFY
@_reports_errors
def normstats(
    directory: Path, splits: str, recompute: bool, min_frames: int, variance_floor: float, no_verify: bool
) -> None:
    """Per-speaker and global normalisation statistics of a prepared corpus (DIR/stats/)."""
    from .normstats import normstats as run

    summary = run(
        directory,
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
        min_frames=min_frames,
        variance_floor=variance_floor,
        recompute=recompute,
        verify=not no_verify,
    )
    for stream, s in summary["streams"].items():
        click.echo(
            f"{stream:<9} {s['dim']:>4} columns, {len(s['speakers'])} speakers, {s['global_rows']} rows; "
            f"{s['binary_columns']} binary, {s['constant_columns']} constant columns"
        )
    for warning in summary["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"output: {directory}/stats/ (summary.json, <stream>.npz, cmvn_<stream>.ark)")


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder (checkpoints, logs).")
@click.option("--preset", type=click.Choice(["paper", "small"]), default="paper", show_default=True)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a training option, e.g. features=compact (ling, compact, compact_lf0, ling_lf0, "
    "acoustic, none, or streams joined by +), speaker_mode=pase_seed, tier_hidden=[512,1024].",
)
@click.option("--steps", type=int, help="Stop after this many steps (counted from the start of training).")
@click.option("--epochs", type=int, help="Stop after this many epochs.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt exactly where it stopped.")
@_NO_VERIFY
@_reports_errors
def train(
    directory: Path,
    out: Path,
    preset: str,
    overrides: tuple[str, ...],
    steps: int | None,
    epochs: int | None,
    device: str,
    resume: bool,
    no_verify: bool,
) -> None:
    """Train the multi-speaker SampleRNN on a prepared corpus (run featprep normstats first).

    Several processes: torchrun --nproc_per_node N --no-python featprep train ...
    """
    from .recipe import parse_override
    from .samplernn.loop import keep_freed_memory
    from .samplernn.train import TrainConfig
    from .samplernn.train import train as run

    cfg = TrainConfig.from_preset(preset, dict(parse_override(o) for o in overrides))
    keep_freed_memory()
    try:
        record = run(
            directory,
            out,
            cfg,
            steps=steps,
            epochs=epochs,
            device=device,
            resume=resume,
            verify=not no_verify,
            log=_echo,
        )
    except KeyboardInterrupt:  # every rank stopped at one step and the checkpoint is saved
        click.echo("interrupted", err=True)
        _leave_torchrun_rank(130)
        raise click.exceptions.Exit(130) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        click.echo(json.dumps(record))
    _leave_torchrun_rank(0)


def _leave_torchrun_rank(code: int) -> None:
    """Under torchrun, end this rank's process with ``code`` now, once training has ended and
    saved: in about one 2-process CPU run in ten, a rank aborted in the interpreter's
    teardown ("terminate called without an active exception", exit -6, in torch's C++
    teardown, the process group destroyed first) and torchrun reported the run failed.
    Everything is written and closed by then."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_GENERATION_DEVICE = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when present.",
)
_DTYPE = click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="Of the generation's matrix products: bfloat16 pays off for large models (hidden 1024) "
    "on GPUs and CPUs with AMX; small ones are fastest in float32.",
)


@main.command()
@click.argument("run_folder", type=click.Path(path_type=Path))
@click.option(
    "--labels",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Aligned HTS full-context labels (repeatable: one utterance each).",
)
@click.option(
    "--text",
    multiple=True,
    help="Text, through Festival's front-end with Festival's own predicted durations "
    "(no trained duration model yet). Repeatable.",
)
@click.option("--speaker", help="A speaker id of the training corpus.")
@click.option(
    "--seed-wav",
    type=click.Path(path_type=Path),
    help="pase_seed runs: take the speaker from this recording's PASE frames.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output .wav (16 kHz) for one utterance; a folder for several (LABELS-STEM.wav, text-N.wav).",
)
@click.option("--temperature", type=float, default=1.0, show_default=True, help="0: greedy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances generated at once.")
@_DTYPE
@_GENERATION_DEVICE
@_reports_errors
def generate(
    run_folder: Path,
    labels: tuple[Path, ...],
    text: tuple[str, ...],
    speaker: str | None,
    seed_wav: Path | None,
    out: Path,
    temperature: float,
    seed: int,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Generate speech for labels or text with a trained run, as a corpus speaker or, for
    pase_seed runs, as the speaker of a recording (--seed-wav). Several --labels/--text
    are generated in batches."""
    import torch

    from .samplernn.run import generate_to

    written = generate_to(
        run_folder,
        out,
        labels=labels,
        texts=text,
        speaker=speaker,
        seed_wav=seed_wav,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        dtype=getattr(torch, dtype),
        device=device,
    )
    for target, samples in written:
        click.echo(f"{target}: {len(samples) / 16000:.2f} s")


@main.command()
@click.argument("run_folder", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--max-utterances", type=int, help="Evaluate only the first N utterances.")
@click.option("--max-seconds", type=float, help="Generate only the first S seconds of each utterance.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances generated at once.")
@_DTYPE
@_GENERATION_DEVICE
@_reports_errors
def evaluate(
    run_folder: Path,
    split: str,
    max_utterances: int | None,
    max_seconds: float | None,
    temperature: float,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """NLL, MCD, F0 RMSE and V/UV error of a run on a split (table, and RUN/eval_<split>.json)."""
    import torch

    from .samplernn.evaluate import evaluate as run

    result = run(
        str(run_folder),
        split=split,
        max_utterances=max_utterances,
        max_seconds=max_seconds,
        temperature=temperature,
        batch_size=batch_size,
        dtype=getattr(torch, dtype),
        device=device,
    )

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    header = f"{'utterance':<16} {'speaker':<10} {'frames':>7} {'MCD dB':>8} {'F0 RMSE':>8} {'V/UV err':>8}"
    click.echo(header)
    for r in result["utterances"]:
        metrics = f"{r['mcd_db']:8.2f} {number(r['f0_rmse_hz'], '8.1f'):>8} {r['vuv_error']:8.3f}"
        click.echo(f"{r['utterance']:<16} {r['speaker']:<10} {r['frames']:>7} {metrics}")
    click.echo(
        f"{split}: NLL {number(result['nll_bits'], '.3f')} bits/sample, MCD {result['mcd_db']:.2f} dB, "
        f"F0 RMSE {number(result['f0_rmse_hz'], '.1f')} Hz ({result['f0_frames']} frames voiced in both), "
        f"V/UV error {result['vuv_error']:.3f}"
    )

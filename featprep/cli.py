"""The ``featprep`` command: a thin shell of options over library calls.

Every command takes the same conventions from `common_options` (apply it under
``@main.command()`` to a new command): ``-v``/``-q`` (featprep's loggers to stderr at
debug / warning level, and no progress bars with ``-q``), ``--config FILE`` (a TOML table
of the command's options; the command line wins) and library errors as one line with
exit code 1. Library code logs with ``logging.getLogger(__name__)``; only this module prints.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from . import __version__
from .corpora import CORPORA
from .errors import ArgumentError, FeatprepError

#: ctx.meta key of the verbosity: -1 (-q), 0, 1 (-v)
_VERBOSITY = "featprep.verbosity"


def _reports_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except FeatprepError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


class _Messages(logging.Formatter):
    """Library messages as the command shows them: information plain, anything else
    after its level (``warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def _log_to_stderr(verbosity: int) -> None:
    """featprep's loggers to the stderr of this call (click's test runner swaps it):
    warnings with -q, information by default, debug with -v."""
    logger = logging.getLogger("featprep")
    for handler in [h for h in logger.handlers if isinstance(h.formatter, _Messages)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Messages())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG)


def _bars() -> bool:
    """Progress bars: on a terminal, without -q."""
    return click.get_current_context().meta.get(_VERBOSITY, 0) >= 0 and sys.stderr.isatty()


def _count(sign: int) -> Callable[[click.Context, click.Parameter, int], None]:
    def store(ctx: click.Context, _param: click.Parameter, count: int) -> None:
        ctx.meta[_VERBOSITY] = ctx.meta.get(_VERBOSITY, 0) + sign * min(count, 1)

    return store


def config_keys(command: click.Command) -> dict[str, str]:
    """The keys a ``--config`` file may set for ``command``: each option's long name
    without its dashes (``-`` or ``_`` between words) -> the parameter's name."""
    keys = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "config":
            for opt in param.opts:
                if opt.startswith("--"):
                    keys[opt[2:].replace("-", "_")] = param.name
    return keys


#: TOML's names of the Python types tomllib reads (bool before int: a bool is an int)
_TOML_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (datetime.datetime, "date-time"),
    (datetime.date, "date"),
    (datetime.time, "time"),
)


def _toml_type(setting: object) -> str:
    """TOML's name of the type of a value tomllib read."""
    return next(name for kind, name in _TOML_TYPES if isinstance(setting, kind))


def _config_type(param: click.Parameter) -> tuple[tuple[type, ...], str]:
    """The Python types a ``--config`` value for ``param`` may have (each value, for a
    repeatable option) and what the error line says the option takes."""
    if getattr(param, "is_flag", False) or isinstance(param.type, click.types.BoolParamType):
        kinds, one, many = (bool,), "a boolean (true or false)", "booleans"
    elif getattr(param, "count", False) or isinstance(param.type, click.types.IntParamType):
        kinds, one, many = (int,), "an integer", "integers"
    elif isinstance(param.type, click.types.FloatParamType):
        kinds, one, many = (int, float), "a number", "numbers"
    elif (getattr(param, "help", None) or "").startswith("Comma-separated"):
        kinds, one, many = (str,), "a string (comma-separated)", "strings"
    else:
        kinds, one, many = (str,), "a string", "strings"
    return kinds, f"an array of {many} (or one)" if param.multiple else one


def _config_value(param: click.Parameter, setting: object) -> object | None:
    """``setting`` as ``param`` takes it (a repeatable option a list; one value is a list
    of one), or None where its TOML type does not match the option's: exact types, so a
    float or boolean is no integer and a list no string."""
    kinds, _ = _config_type(param)
    if param.multiple:
        values = setting if isinstance(setting, list) else [setting]
        return values if all(type(v) in kinds for v in values) else None
    return setting if type(setting) in kinds else None


def _read_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    """Lay the TOML file's keys under the command line (as defaults: the command line
    wins); an unreadable file, an unknown key, a key given twice (``-`` and ``_``) or a
    value of the wrong TOML type is one line."""
    if value is None:
        return
    try:
        table = tomllib.loads(value.read_text(encoding="utf-8"))
    except OSError as e:
        raise click.ClickException(f"--config {value}: cannot be read: {e.strerror or e}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise click.ClickException(f"--config {value}: not a TOML file: {e}") from None
    keys = config_keys(ctx.command)
    unknown = sorted(k for k in table if k.replace("-", "_") not in keys)
    if unknown:
        raise click.ClickException(
            f"--config {value}: unknown key(s) {', '.join(unknown)}; featprep {ctx.info_name} takes "
            f"{', '.join(sorted(keys))}"
        )
    params = {p.name: p for p in ctx.command.params}
    spelled: dict[str, str] = {}
    defaults = {}
    for key, setting in table.items():
        param = params[keys[key.replace("-", "_")]]
        option = next(o for o in param.opts if o.startswith("--"))
        if param.name in spelled:  # else the last spelling would silently win
            raise click.ClickException(
                f"--config {value}: {spelled[param.name]} and {key} both set {option}; give it once"
            )
        spelled[param.name] = key
        taken = _config_value(param, setting)
        if taken is None:
            kinds, expected = _config_type(param)
            found = f"a TOML {_toml_type(setting)}"
            if param.multiple and isinstance(setting, list):  # name the value that does not fit
                found = f"a TOML {_toml_type(next(v for v in setting if type(v) not in kinds))} in the array"
            raise click.ClickException(f"--config {value}: {key}: {found}, but {option} takes {expected}")
        try:  # here, to name the file: click's own message names the option only
            defaults[param.name] = param.type_cast_value(ctx, taken)
        except click.BadParameter as e:
            raise click.ClickException(f"--config {value}: {key}: {e.message}") from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What every featprep command has: ``-v``/``-q``, ``--config FILE`` and library
    errors as one line. Apply it right above the command's function."""
    options = [
        click.option(
            "--verbose",
            "-v",
            count=True,
            expose_value=False,
            callback=_count(+1),
            help="Debug messages too.",
        ),
        click.option(
            "--quiet",
            "-q",
            count=True,
            expose_value=False,
            callback=_count(-1),
            help="Warnings and errors only, no progress bars.",
        ),
        click.option(
            "--config",
            type=click.Path(path_type=Path, dir_okay=False),
            is_eager=True,
            expose_value=False,
            callback=_read_config,
            help="TOML file of this command's options (key = option name, e.g. jobs = 4); "
            "the command line wins.",
        ),
    ]

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        _log_to_stderr(click.get_current_context().meta.get(_VERBOSITY, 0))
        return f(*args, **kwargs)

    command = _reports_errors(run)
    for option in reversed(options):
        command = option(command)
    return command


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
    """Speech corpora (VCTK, CMU Arctic) to training shards for multi-speaker SampleRNN.

    Every command takes -v/-q and --config FILE; `featprep COMMAND --help` shows an
    example of each. Shell completion (bash; zsh and fish alike):

    \b
        eval "$(_FEATPREP_COMPLETE=bash_source featprep)"
    """


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
@common_options
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
) -> None:
    """Discover, clean, resample, trim, split and shard CORPUS found at --root.

    Writes OUT/manifest.json, OUT/rejected.tsv and OUT/shards/<split>/shard-NNNNNN/.
    A rerun skips complete shards (resume after a kill).

    Example:

    \b
        featprep prepare vctk --root /data/VCTK-Corpus --out manifests/vctk --jobs 8

    \b
    On a cluster (README, "Cluster: Dask and Slurm"):
        featprep prepare vctk --root /data/VCTK-Corpus --backend dask --scheduler tcp://head:8786
        sbatch --array=0-15 --wrap 'featprep prepare vctk --root /data/VCTK-Corpus --out /shared/vctk'
        featprep prepare vctk --root /data/VCTK-Corpus --out /shared/vctk --finalize
    """
    from .pipeline import prepare as run
    from .pipeline import slurm_array_task

    if shard_index is None and num_shards is None and not finalize and (task := slurm_array_task()):
        shard_index, num_shards = task
        logging.getLogger("featprep.pipeline").info(
            f"Slurm array task: shard index {shard_index} of {num_shards}"
        )
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
        progress=_bars(),
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
    "--textgrid", is_flag=True, help="Also write LABDIR/<speaker>/<utterance>.TextGrid (words, phones)."
)
@common_options
def align(
    corpus: str,
    root: Path,
    out: Path,
    recipe: Path | None,
    overrides: tuple[str, ...],
    jobs: int,
    textgrid: bool,
) -> None:
    """Train featprep's forced aligner on CORPUS at --root and align every utterance.

    Writes state-aligned HTS labels LABDIR/<speaker>/<utterance>.lab (usable as
    labels.source = "dir"), LABDIR/rejected.tsv, the model LABDIR/aligner.npz and
    LABDIR/aligner.json; a rerun reuses the model and the speakers already aligned.

    Example:

    \b
        featprep align vctk --root /data/VCTK-Corpus --out /data/vctk-lab --textgrid
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
@click.option(
    "--quick",
    is_flag=True,
    help="Only the files against manifest.json (names, presence, sha256, nothing unlisted, stats/): "
    "no index or array is read, so values (NaN/Inf), offsets, shapes and dtypes go unchecked.",
)
@common_options
def validate(directory: Path, quick: bool) -> None:
    """Check a prepared corpus: checksums, alignment contract, finite values, statistics.

    Lists every problem on stdout and exits 1 when there is any.

    Example:

    \b
        featprep validate manifests/vctk --quick
    """
    from .validate import validate as run

    problems = run(directory, quick=quick, progress=_bars())
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
@common_options
def export_kaldi(directory: Path, out: Path, streams: str | None) -> None:
    """Kaldi data directories (OUT/<split>/: wav.scp, segments, text, utt2spk, spk2utt,
    spk2gender, feats.scp, cmvn.scp) of the prepared corpus DIRECTORY.

    Example:

    \b
        featprep export kaldi manifests/vctk data/vctk
        featprep export kaldi manifests/vctk data/vctk-ling --streams acoustic,ling
    """
    from .export import export_kaldi as run

    chosen = None if streams is None else tuple(s.strip() for s in streams.split(",") if s.strip())
    for line in run(directory, out, streams=chosen).lines():
        click.echo(line)


@export.command("lhotse")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@common_options
def export_lhotse(directory: Path, out: Path) -> None:
    """lhotse recordings, supervisions and cuts (OUT/<corpus>_<kind>_<split>.jsonl.gz) of the
    prepared corpus DIRECTORY.

    Example:

    \b
        featprep export lhotse manifests/vctk data/vctk-lhotse
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
@common_options
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
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Of the room noise and the broken utterances."
)
@common_options
def demo(out: Path, utterances: int, jobs: int, seed: int) -> None:
    """Synthesise a small multi-speaker corpus with Festival and prepare it.

    The corpus comes in three real layouts (VCTK 0.80, VCTK 0.92, CMU Arctic) with room
    noise, leading and trailing silence and deliberately broken utterances; Festival's
    phone boundaries are kept as ground truth under OUT/corpus/truth/.

    Example:

    \b
        featprep demo --out demo --utterances 8
    """
    from .demo import run_demo

    for line in run_demo(out, per_speaker=utterances, jobs=jobs, seed=seed):
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
@common_options
def linguistic(label: Path, questions: str, subphone_features: str, phone_level: bool, out: Path) -> None:
    """Merlin linguistic features of one HTS LABEL file, as a float32 .npy matrix.

    Example:

    \b
        featprep linguistic demo/corpus/truth/full/p901/p901_001.lab --out p901_001.npy
    """
    from .labels.linguistic import write_label_file_features

    rows, columns = write_label_file_features(
        label, out, questions=questions, subphone_features=subphone_features, phone_level=phone_level
    )
    click.echo(f"{out}: {rows} rows x {columns} columns")


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
@common_options
def frontend(
    texts: tuple[str, ...], utts: tuple[Path, ...], voice: str, times: bool, merlin: bool, out: Path
) -> None:
    """Full-context HTS labels from text or Festival utterances, with Festival.

    Example:

    \b
        featprep frontend --text "He turned sharply, and faced Gregson." --out a0009.lab
    """
    from .labels.frontend import write_labels

    for target, label in write_labels(out, texts=texts, utts=utts, voice=voice, times=times, merlin=merlin):
        click.echo(f"{target}: {len(label)} phones")


@main.command()
@click.argument("wavs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--arch",
    type=click.Choice(["pase", "pase+", "pase_dense_qrnn"]),
    default="pase+",
    show_default=True,
    help="Encoder architecture of the checkpoint.",
)
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), help="Official checkpoint file (FE_e*.ckpt, ...)."
)
@click.option(
    "--random-init", type=int, metavar="SEED", help="Random weights from SEED (plumbing and tests only)."
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when present.",
)
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
@common_options
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
    """PASE frames (frames x embedding, float32, 100 frames/s) of each audio file.

    Example:

    \b
        featprep pase a.wav b.flac --arch pase+ --checkpoint FE_e199.ckpt --out pase/
    """
    from .pase.extract import embed_files

    written = embed_files(
        wavs,
        out,
        arch=arch,
        checkpoint=checkpoint,
        random_init_seed=random_init,
        batch_size=batch_size,
        device=device,
        precision=precision,
    )
    for target, frames in written:
        click.echo(f"{target}: {frames.shape[0]} frames x {frames.shape[1]}")


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
@click.option(
    "--variance-floor",
    type=float,
    default=1e-8,
    show_default=True,
    help="Smallest variance a standard deviation is taken from.",
)
@_NO_VERIFY
@common_options
def normstats(
    directory: Path, splits: str, recompute: bool, min_frames: int, variance_floor: float, no_verify: bool
) -> None:
    """Per-speaker and global normalisation statistics of a prepared corpus (DIR/stats/).

    Example:

    \b
        featprep normstats manifests/vctk --recompute
    """
    from .normstats import normstats as run

    summary = run(
        directory,
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
        min_frames=min_frames,
        variance_floor=variance_floor,
        recompute=recompute,
        verify=not no_verify,
        progress=_bars(),
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
@click.option(
    "--model",
    type=click.Choice(["samplernn", "duration"]),
    default="samplernn",
    show_default=True,
    help="samplernn: the voice; duration: phone (or state) durations for generate --duration-model.",
)
@click.option(
    "--preset",
    type=click.Choice(["paper", "small", "rnn", "merlin"]),
    help="Training configuration laid under --set. samplernn: paper (SSW 2019, a GPU run; the "
    "default) or small (CPU checks); duration: rnn (bidirectional GRU; the default) or merlin "
    "(Merlin's feed-forward 4 x 512 tanh).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a training option, e.g. features=compact (ling, compact, compact_lf0, ling_lf0, "
    "acoustic, none, or streams joined by +), speaker_mode=pase_seed, tier_hidden=[512,1024]; "
    "duration: model=ffn, hidden=512, layers=4, speaker_mode=embedding, batch_size=16, ...",
)
@click.option("--steps", type=int, help="Stop after this many steps (counted from the start of training).")
@click.option("--epochs", type=int, help="Stop after this many epochs.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when present.",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt exactly where it stopped.")
@_NO_VERIFY
@common_options
def train(
    directory: Path,
    out: Path,
    model: str,
    preset: str | None,
    overrides: tuple[str, ...],
    steps: int | None,
    epochs: int | None,
    device: str,
    resume: bool,
    no_verify: bool,
) -> None:
    """Train the multi-speaker SampleRNN, or a duration model (--model duration), on a
    prepared corpus (run featprep normstats first).

    Several processes: torchrun --nproc_per_node N --no-python featprep train ...

    Example:

    \b
        featprep train manifests/vctk --out runs/vctk --preset paper --epochs 20
        featprep train manifests/vctk --model duration --out runs/vctk-dur --epochs 50
    """
    from .duration.train import DurationConfig, train_duration
    from .recipe import parse_override
    from .samplernn.loop import keep_freed_memory
    from .samplernn.train import TrainConfig
    from .samplernn.train import train as train_samplernn

    options = dict(parse_override(o) for o in overrides)
    if model == "duration":
        cfg = DurationConfig.from_preset(preset or "rnn", options)
        run = train_duration
    else:
        cfg = TrainConfig.from_preset(preset or "paper", options)
        run = train_samplernn
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
            progress=_bars(),
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
    help="Text, through Festival's front-end, timed by --duration-model or else by Festival's own "
    "predicted durations. Repeatable.",
)
@click.option(
    "--duration-model",
    type=click.Path(path_type=Path),
    help="A duration run (featprep train --model duration) timing every utterance's phones for the "
    "speaker; without it --text uses Festival's durations and --labels their own times.",
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
@click.option("--seed", type=int, default=0, show_default=True, help="Of the sampling noise.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances generated at once.")
@_DTYPE
@_GENERATION_DEVICE
@common_options
def generate(
    run_folder: Path,
    labels: tuple[Path, ...],
    text: tuple[str, ...],
    speaker: str | None,
    seed_wav: Path | None,
    duration_model: Path | None,
    out: Path,
    temperature: float,
    seed: int,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Generate speech for labels or text with a trained run, as a corpus speaker or, for
    pase_seed runs, as the speaker of a recording (--seed-wav). Several --labels/--text
    are generated in batches.

    Example:

    \b
        featprep generate runs/vctk --text "Please call Stella." --speaker p225 --out stella.wav
        featprep generate runs/vctk --duration-model runs/vctk-dur --text "Please call Stella." \\
            --speaker p225 --out stella.wav
    """
    from .samplernn.run import generate_to

    written = generate_to(
        run_folder,
        out,
        labels=labels,
        texts=text,
        speaker=speaker,
        seed_wav=seed_wav,
        duration_model=duration_model,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        dtype=dtype,
        device=device,
        progress=_bars(),
    )
    for target, samples in written:
        click.echo(f"{target}: {len(samples) / 16000:.2f} s")


@main.command()
@click.argument("run_folder", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="Split evaluated: test, valid or train.")
@click.option(
    "--role",
    type=click.Choice(["modeling", "adaptation"]),
    default="modeling",
    show_default=True,
    help="Speakers evaluated: the run's own (modeling), or the held-out adaptation speakers, "
    "each spoken from a seed recording of theirs (PASE speaker modes only).",
)
@click.option("--max-utterances", type=int, help="Evaluate only the first N utterances.")
@click.option("--max-seconds", type=float, help="Generate only the first S seconds of each utterance.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="0: greedy.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances generated at once.")
@_DTYPE
@_GENERATION_DEVICE
@common_options
def evaluate(
    run_folder: Path,
    split: str,
    role: str,
    max_utterances: int | None,
    max_seconds: float | None,
    temperature: float,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """NLL, MCD, F0 RMSE and V/UV error of a run on a split (table, and RUN/eval_<split>.json,
    or RUN/eval_adaptation_<split>.json for --role adaptation);
    of a duration run, duration RMSE and correlation beside Festival's predictions (it takes
    --split only).

    Example:

    \b
        featprep evaluate runs/vctk --split test --max-utterances 20
        featprep evaluate runs/vctk-pase --role adaptation
        featprep evaluate runs/vctk-dur --split test
    """
    from .duration.run import run_kind
    from .samplernn.evaluate import evaluate as run
    from .samplernn.evaluate import result_lines

    if run_kind(run_folder) == "duration":
        from .duration.evaluate import evaluate_duration
        from .duration.evaluate import result_lines as duration_lines

        # generation options mean nothing to a duration run: refused, not silently dropped
        ctx = click.get_current_context()
        generation = ("max_utterances", "max_seconds", "temperature", "batch_size", "dtype", "device")
        given = [n for n in generation if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT]
        if given:
            raise ArgumentError(
                f"{run_folder} is a duration run: evaluate takes --split (and --role modeling) for it, "
                f"not --{given[0].replace('_', '-')}"
            )
        for line in duration_lines(evaluate_duration(run_folder, split=split, role=role, progress=_bars())):
            click.echo(line)
        return
    result = run(
        run_folder,
        split=split,
        role=role,
        max_utterances=max_utterances,
        max_seconds=max_seconds,
        temperature=temperature,
        batch_size=batch_size,
        dtype=dtype,
        device=device,
        progress=_bars(),
    )
    for line in result_lines(result):
        click.echo(line)


@main.group()
def experiment() -> None:
    """Experiments of the papers featprep reproduces, each one command."""


@experiment.command("ssw2019")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Experiment folder (EXP).")
@click.option(
    "--steps",
    required=True,
    type=int,
    help="Training steps of every speaker mode, the budget they share (required: no default is the paper's).",
)
@click.option(
    "--preset",
    type=click.Choice(["paper", "small"]),
    default="paper",
    show_default=True,
    help="Training configuration of every mode (paper: SSW 2019, a GPU run; small: CPU checks).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a training option of every mode, as featprep train --set (features=compact, the "
    "paper's; features=none for a corpus without labels); not speaker_mode or seed.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Of training and of the sampling noise.")
@click.option(
    "--jobs",
    "-j",
    type=int,
    default=1,
    show_default=True,
    help="Speaker modes trained and evaluated at once, each in its own process (-1 = one per core).",
)
@click.option("--max-utterances", type=int, help="Evaluate only the first N utterances of each speaker set.")
@click.option("--max-seconds", type=float, help="Generate only the first S seconds of each utterance.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Of generation; 0: greedy.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances generated at once.")
@_GENERATION_DEVICE
@_NO_VERIFY
@common_options
def experiment_ssw2019(
    directory: Path,
    out: Path,
    steps: int,
    preset: str,
    overrides: tuple[str, ...],
    seed: int,
    jobs: int,
    max_utterances: int | None,
    max_seconds: float | None,
    temperature: float,
    batch_size: int,
    device: str,
    no_verify: bool,
) -> None:
    """The SSW 2019 comparison: the embedding, pase_seed and pase_trained speaker modes trained
    on DIR with one budget, each evaluated (NLL, MCD, F0 RMSE, V/UV error) on the seen
    speakers and on held-out (adaptation) speakers spoken from a seed recording; the table
    on stdout, in EXP/results.md and EXP/results.json. A rerun resumes where it stopped.

    Example:

    \b
        featprep experiment ssw2019 manifests/vctk --out exp/ssw2019 --steps 100000 --set features=compact
    """
    from .experiment import ssw2019, table_lines
    from .recipe import parse_override
    from .samplernn.loop import keep_freed_memory

    keep_freed_memory()
    result = ssw2019(
        directory,
        out,
        steps=steps,
        preset=preset,
        seed=seed,
        overrides=dict(parse_override(o) for o in overrides),
        jobs=jobs,
        max_utterances=max_utterances,
        max_seconds=max_seconds,
        temperature=temperature,
        batch_size=batch_size,
        device=device,
        verify=not no_verify,
        progress=_bars(),
    )
    for line in table_lines(result):
        click.echo(line)

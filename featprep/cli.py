"""The ``featprep`` command: a thin shell of options over library calls."""

from __future__ import annotations

import functools
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
    help="Worker processes; -1 = one per core.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--shard-index", type=int, help="With --num-shards: process only shards i with i % N == INDEX.")
@click.option("--num-shards", type=int, help="Number of jobs sharing the shards (Slurm array size).")
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
    quiet: bool,
) -> None:
    """Discover, clean, resample, trim, split and shard CORPUS found at --root.

    Writes OUT/manifest.json, OUT/rejected.tsv and OUT/shards/<split>/shard-NNNNNN/.
    A rerun skips complete shards (resume after a kill).
    """
    from .pipeline import prepare as run

    if (shard_index is None) != (num_shards is None):
        raise click.UsageError("--shard-index and --num-shards go together")
    if num_shards is not None and not 0 <= shard_index < num_shards:
        raise click.UsageError(f"--shard-index must be in [0, {num_shards}), found {shard_index}")
    report = run(
        corpus,
        root,
        out,
        recipe=recipe,
        overrides=overrides,
        jobs=jobs,
        shard_index=shard_index,
        num_shards=num_shards,
        progress=not quiet and sys.stderr.isatty(),
        log=None if quiet else _echo,
    )
    for line in report.lines():
        click.echo(line)


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


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Folder for the demo corpus (OUT/corpus) and its manifests (OUT/manifests).",
)
@click.option("--utterances", type=int, default=8, show_default=True, help="Good utterances per speaker.")
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

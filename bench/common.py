"""What the benchmarks share: a work folder and the demo corpus in it."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from featprep.demo import build_corpus


def arguments(doc: str, **options: tuple[type, object]) -> argparse.Namespace:
    """Parse ``--workdir`` and the benchmark's own ``--name`` options (type, default)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (kind, default) in options.items():
        ap.add_argument(f"--{name}", type=kind, default=default)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="reuse a folder (the demo corpus is kept there)"
    )
    args = ap.parse_args()
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="featprep-bench-"))
    return args


def demo_corpus(workdir: Path) -> Path:
    """The Festival demo corpus under ``workdir`` (built on first use)."""
    return build_corpus(workdir / "demo", per_speaker=8, log=lambda _m: None)

"""Progress bars of long library calls: tqdm on stderr, with a rate and an ETA when the
total is known. The caller decides whether there is one (the CLI: a terminal and no
``-q``); a notebook call gets none unless it asks."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int | None, unit: str, *, enabled: bool, desc: str | None = None) -> tqdm:
    """A tqdm bar on stderr (a disabled one, whose ``update`` does nothing, when not
    ``enabled``); bytes are shown scaled (kB, MB, GB)."""
    return tqdm(
        total=total,
        unit=unit,
        desc=desc,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        unit_scale=unit == "B",
        unit_divisor=1024 if unit == "B" else 1000,
    )

"""``featprep validate``: re-read a prepared corpus and check it against its manifest.

Every file's sha256, the index against its arrays and the manifest (the alignment
contract), finite values, shard folders the manifest does not list and the
normalisation statistics: `featprep.integrity.check_corpus` with everything on, the
same checks ``train``, ``normstats`` and ``evaluate`` run before they read.
"""

from __future__ import annotations

from pathlib import Path

from .integrity import check_corpus


def validate(directory: str | Path) -> list[str]:
    """List the problems of the prepared corpus in ``directory`` (empty = valid)."""
    return check_corpus(directory, hashes=True, full=True)

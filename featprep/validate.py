"""``featprep validate``: re-read a prepared corpus and check it against its manifest.

The full check (default): every file's sha256, the index against its arrays and the
manifest (the alignment contract), finite values, shard folders the manifest does not
list and the normalisation statistics: `featprep.integrity.check_corpus` with everything
on, the same checks ``train``, ``normstats`` and ``evaluate`` run before they read.

``quick``: the files against the manifest only, no index or array opened: every shard
and file the manifest lists is there under its name with its sha256 (so its size and
every byte), nothing unlisted in a shard folder, no unlisted shard folder, ``stats/``
against ``stats/summary.json``. It cannot see what a manifest that was signed again over
the damage vouches for: values (NaN/Inf), offsets, shapes and dtypes of the arrays.
"""

from __future__ import annotations

from pathlib import Path

from .integrity import check_corpus, hashed_bytes
from .progress import progress_bar


def validate(directory: str | Path, *, quick: bool = False, progress: bool = False) -> list[str]:
    """List the problems of the prepared corpus in ``directory`` (empty = valid).

    Parameters
    ----------
    quick : the files against the manifest only (names, presence, sha256, nothing
        unlisted); no index or array is read.
    progress : a bar of the bytes hashed on stderr.
    """
    total = hashed_bytes(directory) if progress else None
    with progress_bar(total, "B", enabled=progress, desc="sha256") as bar:
        return check_corpus(directory, hashes=True, full=True, arrays=not quick, progress=bar.update)

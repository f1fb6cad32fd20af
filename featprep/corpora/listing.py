"""Folder listings for discovery that an odd entry cannot abort.

A corpus on a shared disk holds what people left there: a symbolic link that points at
itself, a FIFO, a folder where a file belongs, a file or folder without read permission.
Each comes back as a reason, turned into a rejection by the corpus module; only the
corpus root's own folders raise (`CorpusError`, one line).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import CorpusError


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def list_files(folder: Path) -> dict[str, str]:
    """name -> "" for each regular file of ``folder`` (links followed), else why it is not
    one ("Too many levels of symbolic links", "a FIFO", "a folder", ...).

    Raises `OSError` when ``folder`` itself cannot be listed.
    """
    out: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                mode = os.stat(entry.path).st_mode
            except OSError as e:
                out[entry.name] = _why(e)
                continue
            out[entry.name] = "" if stat.S_ISREG(mode) else f"not a regular file ({_kind(mode)})"
    return dict(sorted(out.items()))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device"


def list_folders(top: Path) -> dict[str, Path | str]:
    """name -> path for each sub-folder of the corpus folder ``top``, or why an entry that
    may be one cannot be entered; plain files are left out.

    Raises `CorpusError` (one line) when ``top`` cannot be listed.
    """
    out: dict[str, Path | str] = {}
    try:
        with os.scandir(top) as entries:
            for entry in entries:
                path = Path(entry.path)
                try:
                    mode = os.stat(path).st_mode
                except OSError as e:
                    out[entry.name] = _why(e)
                    continue
                if stat.S_ISDIR(mode):
                    out[entry.name] = path
    except OSError as e:
        raise CorpusError(f"cannot list the corpus folder {top}: {_why(e)}") from None
    return dict(sorted(out.items()))

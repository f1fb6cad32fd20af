"""File writing that never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import CorruptCorpus


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed into place when the block
    ends, removed if it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM WAV file of float ``samples`` in [-1, 1]."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inside(root: str | Path, relative: object, what: str = "path") -> Path:
    """``root / relative``, refused unless it stays inside ``root``.

    ``relative`` comes from a file (a manifest's shard name, a listed file name): it must
    be a relative POSIX path without ``..``, and once symbolic links are resolved it must
    still lie under ``root``. Raises `CorruptCorpus` naming ``what`` otherwise.
    """
    root = Path(root)
    rel = PurePosixPath(relative) if isinstance(relative, str) else None
    if rel is None or not relative or rel.is_absolute() or ".." in rel.parts or "\\" in relative:
        raise CorruptCorpus(f"{what} {relative!r} is not a relative path inside {root}")
    path = root.joinpath(*rel.parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise CorruptCorpus(f"{what} {relative!r} leads outside {root} (to {path.resolve()})")
    return path

"""File writing that never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import CorruptCorpus, FeatprepError, OutputError

#: temporaries of `atomic_path`: ``.<name>.tmp-<host>-<pid>``
_TEMPORARY = re.compile(r"^\..+\.tmp-(?P<host>.*)-(?P<pid>\d+)$")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed into place when the block
    ends, removed if it raises. The name holds the host and process id of the writer, so
    that `remove_dead_temporaries` can tell a killed writer's temporary from a live one's."""
    path = Path(path)
    tmp = path.with_name(temporary_name(path.name))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temporary_name(name: str) -> str:
    """The name this process writes ``name`` under until it is complete (a file of
    `atomic_path`, a shard folder): ``.<name>.tmp-<host>-<pid>``."""
    return f".{name}.tmp-{socket.gethostname()}-{os.getpid()}"


def dead_temporary(entry: Path) -> bool | None:
    """Whether ``entry`` is the temporary of a writer that no longer runs (a process of this
    host); False for a live writer's or another host's, None for a name that is no temporary."""
    m = _TEMPORARY.match(entry.name)
    if m is None:
        return None
    return m["host"] == socket.gethostname() and not _alive(int(m["pid"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_dead_temporaries(folder: str | Path) -> list[Path]:
    """Remove the `atomic_path` temporaries in ``folder`` whose writer (a process of this
    host) no longer runs, as a killed ``train`` or ``normstats`` leaves them (a whole
    checkpoint's size); returns what was removed. Another host's are left alone."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if dead_temporary(entry) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def read_npz(path: str | Path, hint: str, error: type = FeatprepError) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read now (no pickles). A damaged or truncated
    file is one line (``error``) ending in ``hint`` (what to do about it); a missing one
    raises `FileNotFoundError` for the caller to word."""
    import zipfile
    import zlib

    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise error(f"{path} is damaged or truncated ({type(e).__name__}): {hint}") from None


def load_weights(
    path: str | Path, what: str = "checkpoint", map_location: Any = "cpu", error: type = FeatprepError
) -> Any:
    """``torch.load(path, weights_only=True)``: no code in the file ever runs. A missing,
    damaged or truncated file, or one holding pickled objects, is one line (``error``)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except pickle.UnpicklingError:
        raise error(
            f"{path}: not a {what}: it holds Python objects that do not load with weights_only=True "
            "(featprep never runs code from a file)"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... for a damaged file
        raise error(
            f"{path}: not a PyTorch weights file that loads with weights_only=True: damaged or truncated "
            f"({type(e).__name__})"
        ) from None


def load_into(module: Any, state: Any, path: str | Path, what: str, error: type = FeatprepError) -> None:
    """``module.load_state_dict(state, strict=True)`` after checking every key and shape, so a
    file saved from another configuration is one line (``error``) naming the first key that
    differs instead of torch's list of every mismatch."""
    if not isinstance(state, dict):
        raise error(f"{path}: not a state dict for {what}")
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise error(f"{path}: missing key {key!r} (expected shape {tuple(tensor.shape)}) for {what}")
        found = getattr(state[key], "shape", None)
        if found != tensor.shape:
            shown = tuple(found) if found is not None else type(state[key]).__name__
            raise error(f"{path}: key {key!r} has shape {shown}, {what} expects {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        shape = tuple(getattr(state[extra[0]], "shape", ()))
        raise error(f"{path}: unexpected key {extra[0]!r} (shape {shape}) for {what}")
    module.load_state_dict(state, strict=True)


def check_output_dir(path: str | Path, what: str = "output directory") -> None:
    """Raise `OutputError` unless ``path`` is a writable folder or could be made one.

    Creates nothing that stays: a command checks where it will write before it does any
    work, and makes its folder only when it has something to put there. Writability is
    tried (a temporary file in ``path`` or in the nearest folder above it that exists), not
    inferred from permission bits, which say yes to root on a read-only file system.
    """
    path = Path(path)
    if path.is_dir():
        probe = path
    elif path.exists() or path.is_symlink():
        raise OutputError(f"{what} {path} is not writable: it exists and is not a folder")
    else:
        probe = next(p for p in path.absolute().parents if p.exists())
        if not probe.is_dir():
            raise OutputError(f"{what} {path} is not writable: {probe} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as e:
        where = "" if probe == path else f" (cannot create files in {probe})"
        raise OutputError(f"{what} {path} is not writable: {e.strerror or e}{where}") from None


def check_output_file(path: str | Path, what: str = "output file") -> None:
    """Raise `OutputError` unless a file can be written at ``path`` (see `check_output_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder")
    check_output_dir(path.parent, f"the folder of {what} {path}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npy(path: str | Path, array: np.ndarray) -> None:
    """`numpy.save` to a temporary name beside ``path``, then rename it into place."""
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM WAV file of float ``samples`` in [-1, 1]."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def json_digest(value: Any) -> str:
    """sha256 (hex) of ``value`` as canonical JSON (keys sorted): a fingerprint of options."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


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

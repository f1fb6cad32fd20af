"""Checks of a prepared corpus before anything reads it.

`check_corpus` is the one function behind ``featprep validate`` and the start of
``train``, ``normstats`` and ``evaluate`` (`verify_corpus`: the first problem as one
line). It checks, for the shards of the splits asked for:

- names: every shard name of the manifest and every file name it lists stays inside the
  corpus folder (`featprep.io.inside`);
- files: each listed file exists and nothing unlisted lies in a shard folder (the
  readers take every ``*.npy`` there); with ``hashes``, its sha256 against the manifest.
  Only a hash catches a flipped bit in an array, so readers hash by default (about 1 GB/s
  per core, see README: seconds per hour of labelled audio) and ``--no-verify`` skips it;
- the index: the manifest's columns, its row count and split, speakers of the manifest's
  speaker table, ids unique across shards, ``n_frames`` > 0, offsets running from 0
  without gap or overlap, ``audio_offset == 80 * frame_offset``, the same for streams
  with their own clock (PASE frames, phones);
- the arrays: readable, of the manifest's dtype and width, with exactly the rows the
  index adds up to (so every offset is in bounds); each utterance's ``durations`` rows
  add up to its ``n_frames``;
- ``utterances.parquet`` (the corpus-wide table, listed under the manifest's ``files``):
  present, its sha256; with ``full``, its rows equal to the shards' indexes;
- with ``full`` (validate): every float value finite, shard folders the manifest does
  not list, and the normalisation statistics (`statistics_problems`).

With ``arrays=False`` (``featprep validate --quick``) no index and no array is opened:
only the files against the manifest (names, presence, sha256, nothing unlisted) and,
with ``full``, unlisted shard folders and ``stats/`` against its ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import FRAME_SHIFT
from .errors import CorruptCorpus
from .io import inside, json_digest, sha256_file
from .manifest import read_manifest, utterance_table
from .stage import clock_columns

logger = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
#: files hashed at once (bounded: more threads than disks only add seeks)
HASH_THREADS = 8
#: rows per block when reading a whole array for non-finite values
_BLOCK_ROWS = 1 << 16


def check_corpus(
    directory: str | Path,
    *,
    splits: tuple[str, ...] | None = None,
    hashes: bool = True,
    full: bool = False,
    arrays: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> list[str]:
    """Every problem of the prepared corpus in ``directory`` (empty: none).

    Parameters
    ----------
    splits : check the shards of these splits only (None: every shard).
    hashes : compare every file's sha256 with the manifest.
    full : also read every value (finite floats), look for shard folders the manifest
        does not list and check ``stats/``.
    arrays : open the index and the arrays (the alignment contract); False: the files
        against the manifest only.
    progress : called with the bytes of each file hashed.

    Raises `OutputError` when there is no readable manifest at all.
    """
    directory = Path(directory)
    return _check(directory, read_manifest(directory), splits, hashes, full, progress, arrays)


def hashed_bytes(directory: str | Path) -> int:
    """Bytes `check_corpus` hashes (the total of its progress bar): the sizes of the shard
    files the manifest lists; 0 when its tables are damaged (`check_corpus` says how)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if _manifest_problems(manifest):
        return 0
    chosen = []
    for shard in manifest["shards"]:
        with contextlib.suppress(CorruptCorpus):  # a bad name: reported by check_corpus
            chosen.append((shard, inside(directory, shard["name"], "shard name")))
    return sum(f.stat().st_size for f in _listed_files(chosen))


def read_checked_manifest(directory: str | Path) -> dict[str, Any]:
    """`read_manifest` with the kinds of its tables checked (what every reader relies on):
    `CorruptCorpus` in one line otherwise."""
    manifest = read_manifest(directory)
    raise_first(directory, [f"manifest.json: {p}" for p in _manifest_problems(manifest)])
    return manifest


def verify_corpus(
    directory: str | Path, *, splits: tuple[str, ...] | None = None, hashes: bool = True
) -> dict[str, Any]:
    """`check_corpus` for a reader: the manifest checked, or `CorruptCorpus` with the
    first problem in one line."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    raise_first(directory, _check(directory, manifest, splits, hashes, False, None, True))
    return manifest


def _check(
    directory: Path,
    manifest: dict[str, Any],
    splits: tuple[str, ...] | None,
    hashes: bool,
    full: bool,
    progress: Callable[[int], Any] | None,
    arrays: bool,
) -> list[str]:
    problems = _manifest_problems(manifest)
    if problems:
        return [f"manifest.json: {p}" for p in problems]
    speakers = {s["id"] for s in manifest["speakers"]}
    chosen: list[tuple[dict[str, Any], Path]] = []
    for shard in manifest["shards"]:
        try:
            path = inside(directory, shard["name"], "shard name")
        except CorruptCorpus as e:
            problems.append(f"manifest.json: {e}")
            continue
        if splits is None or shard["split"] in splits:
            chosen.append((shard, path))
    digests = _digests(chosen, progress) if hashes else None
    seen: dict[str, str] = {}
    for shard, path in chosen:
        found = _shard_problems(path, shard, manifest, speakers, seen, digests, full, arrays)
        logger.debug("%s: %d file(s) checked, %d problem(s)", shard["name"], len(shard["files"]), len(found))
        problems += [f"{shard['name']}: {p}" for p in found]
    problems += _table_problems(directory, manifest, hashes, full and arrays and not problems)
    if full:
        problems += _unlisted_shards(directory, manifest)
        if (directory / "stats").exists():
            problems += statistics_problems(directory, manifest)
    return problems


def raise_first(directory: str | Path, problems: list[str]) -> None:
    """Raise `CorruptCorpus`: the first of ``problems`` in one line, and how many follow."""
    if problems:
        more = f" (and {len(problems) - 1} more: featprep validate {directory})" if len(problems) > 1 else ""
        raise CorruptCorpus(f"{directory}: {problems[0]}{more}")


def _digests(
    chosen: list[tuple[dict[str, Any], Path]], progress: Callable[[int], Any] | None
) -> dict[Path, str]:
    """sha256 of every plain file the chosen shards list, a few files at a time: hashlib
    lets go of the GIL, so the threads use as many cores (disks permitting)."""
    files = _listed_files(chosen)

    def one(file: Path) -> str:
        digest = sha256_file(file)
        if progress is not None:
            progress(file.stat().st_size)
        return digest

    with ThreadPoolExecutor(min(HASH_THREADS, os.cpu_count() or 1)) as pool:
        return dict(zip(files, pool.map(one, files), strict=True))


def _listed_files(chosen: list[tuple[dict[str, Any], Path]]) -> list[Path]:
    """The plain files the chosen shards list (a bad name or a missing file is reported
    by `_shard_problems`)."""
    files = []
    for shard, path in chosen:
        for name in shard["files"]:
            try:
                file = _shard_file(path, name)
            except CorruptCorpus:
                continue
            if file.is_file():
                files.append(file)
    return files


def _manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """What the rest of the checks rely on: the kinds of the manifest's tables."""
    out = []
    shards, features = manifest.get("shards"), manifest.get("features")
    speakers, columns = manifest.get("speakers"), manifest.get("index_columns")
    if not isinstance(shards, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("name"), str)
        and isinstance(s.get("split"), str)
        and isinstance(s.get("rows"), int)
        and isinstance(s.get("files"), dict)
        for s in shards
    ):
        out.append("shards is not a list of {name, split, rows, files}")
    if not isinstance(features, list) or not all(
        isinstance(f, dict)
        and isinstance(f.get("name"), str)
        and _NAME.match(f["name"])
        and f["name"] != "audio"
        and isinstance(f.get("dim"), int)
        and _is_dtype(f.get("dtype"))
        and isinstance(f.get("rate"), str)
        for f in features
    ):
        out.append("features is not a list of {name (letters, digits, _), dtype, dim, rate}")
    if not isinstance(speakers, list) or not all(isinstance(s, dict) and "id" in s for s in speakers):
        out.append("speakers is not a list of {id, ...}")
    if not isinstance(columns, dict):
        out.append("index_columns is not a table")
    audio = manifest.get("audio")
    if not isinstance(audio, dict) or not _is_dtype(audio.get("dtype")):
        out.append("audio has no dtype")
    files = manifest.get("files", {})  # manifests before utterances.parquet have none
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        out.append("files is not a table of file name -> sha256")
    return out


def _table_problems(directory: Path, manifest: dict[str, Any], hashes: bool, compare: bool) -> list[str]:
    """The files beside manifest.json that it lists (``utterances.parquet``): present, their
    sha256; with ``compare``, the table's rows against the shards' indexes."""
    listed = manifest.get("files", {})
    out, present = _check_listed(directory, listed, hashes, "", "manifest.json", "file name")
    for name, path in present:
        if compare and name == "utterances.parquet":
            names = [s["name"] for s in manifest["shards"]]
            try:
                table = pq.read_table(path)
                expected = utterance_table(
                    names,
                    [pq.read_table(inside(directory, n, "shard name") / "index.parquet") for n in names],
                )
            except (OSError, ValueError, pa.ArrowException, CorruptCorpus) as e:
                out.append(f"{name} cannot be read: {_one_line(e)}")
                continue
            if not table.equals(expected):
                out.append(f"{name}: its rows differ from the shards' index.parquet files")
    return out


def _check_listed(
    folder: Path, files: dict[str, str], hashes: bool, prefix: str, lister: str, what: str, advice: str = ""
) -> tuple[list[str], list[tuple[str, Path]]]:
    """Problems of the files that ``lister`` lists with their sha256 (``files``) in
    ``folder``: a name leading outside it, a file missing or with another sha256 (each
    problem followed by ``advice``); and the ``(name, path)`` of the files that passed."""
    problems, present = [], []
    then = f": {advice}" if advice else ""
    for name, digest in sorted(files.items()):
        try:
            path = inside(folder, name, what)
        except CorruptCorpus as e:
            problems.append(f"{lister}: {e}")
            continue
        if not path.is_file():
            problems.append(f"{prefix}{name}: missing{then}")
        elif hashes and sha256_file(path) != digest:
            problems.append(f"{prefix}{name}: sha256 differs from {lister}{then}")
        else:
            present.append((name, path))
    return problems, present


def _is_dtype(value: object) -> bool:
    try:
        return isinstance(value, str) and np.dtype(value).kind in "biuf"
    except TypeError:
        return False


def _shard_problems(
    path: Path,
    shard: dict[str, Any],
    manifest: dict[str, Any],
    speakers: set[str],
    seen: dict[str, str],
    digests: dict[Path, str] | None,
    full: bool,
    arrays: bool,
) -> list[str]:
    if not path.is_dir():
        return ["missing"]
    out, missing = [], False
    for name, digest in sorted(shard["files"].items()):
        try:
            file = _shard_file(path, name)
        except CorruptCorpus as e:
            out.append(str(e))
            continue
        if not file.is_file():
            out.append(f"{name}: missing")
            missing = True
        elif digests is not None and digests.get(file) != digest:
            out.append(f"{name}: sha256 differs from manifest.json")
    listed = set(shard["files"]) | {"shard.json"}
    out += [f"{p.name}: not listed in manifest.json" for p in sorted(path.iterdir()) if p.name not in listed]
    if missing or not arrays:  # the contract needs every file
        return out
    return out + _contract_problems(path, shard, manifest, speakers, seen, full)


def _shard_file(path: Path, name: str) -> Path:
    """The file ``name`` the manifest lists for the shard folder ``path``: a plain name,
    not ``shard.json`` (which the manifest does not vouch for), inside the folder."""
    if "/" in name or name == "shard.json":
        raise CorruptCorpus(f"file name {name!r} is not a file of the shard")
    return inside(path, name, "file name")


def _contract_problems(
    path: Path,
    shard: dict[str, Any],
    manifest: dict[str, Any],
    speakers: set[str],
    seen: dict[str, str],
    full: bool,
) -> list[str]:
    """The index against itself, the manifest and the arrays (the alignment contract)."""
    try:
        index = pd.read_parquet(path / "index.parquet")
    except (OSError, ValueError, pa.ArrowException) as e:
        return [f"index.parquet cannot be read: {_one_line(e)}"]
    rates = {f["rate"] for f in manifest["features"]} - {"frame", "utterance"}
    clocks = {clock_columns(rate) for rate in rates}
    needed = ["utterance", "speaker", "split", "n_frames", "audio_offset", "frame_offset"]
    needed += [c for pair in sorted(clocks) for c in pair]
    absent = [c for c in dict.fromkeys([*manifest["index_columns"], *needed]) if c not in index.columns]
    if absent:
        return [f"index.parquet lacks the column(s) {', '.join(absent)}"]
    wrong = [c for c in needed[3:] if not pd.api.types.is_integer_dtype(index[c])]
    if wrong:
        return [f"index.parquet column(s) {', '.join(wrong)} are not integers"]

    out = []
    if len(index) != shard["rows"]:
        out.append(f"index has {len(index)} rows, manifest.json says {shard['rows']}")
    other = sorted(set(index["split"]) - {shard["split"]}, key=str)
    if other:
        out.append(f"index has rows of split(s) {other} in a {shard['split']} shard")
    strangers = sorted(set(index["speaker"]) - speakers, key=str)
    if strangers:
        out.append(f"speaker(s) {', '.join(map(str, strangers[:5]))} not in the manifest's speaker table")
    for utt in index["utterance"]:
        if utt in seen:
            out.append(f"utterance {utt!r} also in {seen[utt]}")
        seen.setdefault(utt, shard["name"])
    frames = index["n_frames"].to_numpy()
    if (frames <= 0).any():
        out.append(f"utterance {index['utterance'].iloc[int(np.argmax(frames <= 0))]!r} has n_frames <= 0")
    for name, total in (("frames", int(frames.sum())), ("samples", FRAME_SHIFT * int(frames.sum()))):
        if name in shard and shard[name] != total:
            out.append(f"index adds up to {total} {name}, manifest.json says {shard[name]}")
    out += _offset_problems(index, "frame_offset", frames, 1)
    out += _offset_problems(index, "audio_offset", frames, FRAME_SHIFT)
    for count, offset in sorted(clocks):
        out += _offset_problems(index, offset, index[count].to_numpy(), 1)

    rows = {"frame": int(frames.sum()), "utterance": len(index)}
    expected = [("audio", manifest["audio"]["dtype"], None, FRAME_SHIFT * int(frames.sum()))]
    for f in manifest["features"]:
        count = rows.get(f["rate"])
        if count is None:
            count = int(index[clock_columns(f["rate"])[0]].sum())
        expected.append((f["name"], f["dtype"], f["dim"], count))
    for name, dtype, dim, count in expected:
        out += _array_problems(path / f"{name}.npy", dtype, dim, count, full)
    if not out and any(f["name"] == "durations" for f in manifest["features"]):
        out += _duration_problems(path / "durations.npy", index)
    return out


def _duration_problems(path: Path, index: pd.DataFrame) -> list[str]:
    """Each utterance's phone durations (frames per state or phone) against its
    ``n_frames``; the shapes and offsets are already checked."""
    per_phone = np.load(path, mmap_mode="r").sum(axis=1, dtype=np.float64)
    ends = np.concatenate([[0.0], np.cumsum(per_phone)])
    first, count = index["phone_offset"].to_numpy(), index["n_phones"].to_numpy()
    totals = ends[first + count] - ends[first]
    bad = np.flatnonzero(totals != index["n_frames"].to_numpy())
    if not len(bad):
        return []
    i = int(bad[0])
    return [
        f"durations.npy: the phones of {index['utterance'].iloc[i]!r} add up to {totals[i]:g} frames, "
        f"its n_frames is {int(index['n_frames'].iloc[i])} ({len(bad)} utterance(s) differ)"
    ]


def _offset_problems(index: pd.DataFrame, column: str, lengths: np.ndarray, scale: int) -> list[str]:
    """Offsets that do not run on from 0 without gap or overlap (scaled: audio samples)."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * scale if len(lengths) else lengths
    bad = np.flatnonzero(index[column].to_numpy() != starts)
    if not len(bad):
        return []
    i = int(bad[0])
    return [
        f"{column} of {index['utterance'].iloc[i]!r} is {int(index[column].iloc[i])}, expected "
        f"{int(starts[i])} (offsets run on from 0 without gap or overlap; {len(bad)} row(s) differ)"
    ]


def _array_problems(path: Path, dtype: str, dim: int | None, rows: int, full: bool) -> list[str]:
    name = path.name
    if not path.is_file():
        return [f"{name}: missing"]
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        return [f"{name} cannot be read: {_one_line(e)}"]
    shape = (rows,) if dim is None else (rows, dim)
    if arr.dtype != np.dtype(dtype) or arr.shape != shape:
        return [f"{name} is {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {shape}"]
    if full and arr.dtype.kind == "f":
        for start in range(0, len(arr), _BLOCK_ROWS):
            if not np.isfinite(arr[start : start + _BLOCK_ROWS]).all():
                return [f"{name} has non-finite values"]
    return []


def _unlisted_shards(directory: Path, manifest: dict[str, Any]) -> list[str]:
    listed = {s["name"] for s in manifest["shards"]}
    found = sorted(p for p in (directory / "shards").glob("*/*") if p.is_dir() or p.is_symlink())
    return [
        f"{p.relative_to(directory).as_posix()}: a shard folder manifest.json does not list"
        for p in found
        if p.relative_to(directory).as_posix() not in listed
    ]


def shards_digest(manifest: dict[str, Any], splits: tuple[str, ...] | list[str]) -> str:
    """sha256 of the names and file hashes of the manifest's shards of ``splits``: what
    normalisation statistics are tied to."""
    chosen = [[s["name"], s["files"]] for s in manifest["shards"] if s["split"] in splits]
    return json_digest(chosen)


def statistics_problems(
    directory: str | Path,
    manifest: dict[str, Any] | None = None,
    *,
    hashes: bool = True,
    needed: tuple[str, ...] = (),
) -> list[str]:
    """Problems of ``stats/``: none written, written from other shards than the manifest
    lists now (the corpus was prepared again), a file damaged or missing, a ``needed``
    file that the last normstats did not write."""
    directory = Path(directory)
    stats = directory / "stats"
    rerun = f"run featprep normstats {directory} again"
    try:
        summary = json.loads((stats / "summary.json").read_text())
    except FileNotFoundError:
        return [f"stats/summary.json does not exist: run featprep normstats {directory} first"]
    except (OSError, ValueError) as e:
        return [f"stats/summary.json cannot be read ({_one_line(e)}): {rerun}"]
    manifest = manifest if manifest is not None else read_manifest(directory)
    if not isinstance(summary, dict):
        summary = {}
    splits, files = summary.get("splits"), summary.get("files")
    if not isinstance(splits, list) or not isinstance(files, dict) or "shards_digest" not in summary:
        return [f"stats/summary.json does not say which shards it was computed from: {rerun}"]
    if summary["shards_digest"] != shards_digest(manifest, splits):
        return [f"stats/ was computed from other shards than manifest.json lists: {rerun}"]
    out = [
        f"stats/{name}: not written by the last normstats: {rerun}" for name in needed if name not in files
    ]
    out += _check_listed(stats, files, hashes, "stats/", "stats/summary.json", "statistics file", rerun)[0]
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())

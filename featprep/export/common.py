"""What the Kaldi and lhotse exports share: the checks before any work, the export folder
written under a temporary name and renamed when complete, and the shards' audio as WAV.

Each shard's ``audio.npy`` becomes one 16 kHz 16-bit WAV file holding exactly its samples
(``OUT/audio/<split>-shard-NNNNNN.wav``); an utterance is a span of it, ``audio_offset``
samples in, ``80 x n_frames`` long.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import SAMPLE_RATE
from ..errors import OutputError
from ..integrity import verify_corpus
from ..io import check_output_dir, dead_temporary, temporary_name
from ..manifest import check_outside_corpus, read_manifest, shard_paths
from ..shards import open_shard


@dataclass
class ShardAudio:
    """One shard of the corpus and the WAV file its audio is exported to."""

    name: str  # manifest name, shards/<split>/shard-NNNNNN
    split: str
    recording: str  # <split>-shard-NNNNNN: the Kaldi recording id / lhotse Recording id
    wav: Path  # its final path (absolute), OUT/audio/<recording>.wav
    index: pd.DataFrame
    arrays: dict[str, np.ndarray]  # memory-mapped

    @property
    def num_samples(self) -> int:
        return len(self.arrays["audio"])


def check_export(directory: str | Path, out: str | Path) -> tuple[Path, dict[str, Any]]:
    """Refuse what an export cannot work with, before any work: ``directory`` not a prepared
    corpus, ``out`` not writable, not empty, or a path Kaldi tables cannot hold (whitespace
    or control characters: ``wav.scp`` and ``feats.scp`` are split on whitespace). Then the
    whole corpus is checked as ``train`` checks it (`featprep.integrity.verify_corpus`,
    sha256 of every file). Returns the absolute export folder and the manifest."""
    directory, out = Path(directory), Path(out)
    read_manifest(directory)  # not a prepared corpus: the usual one line
    check_outside_corpus(directory, out, "export folder")
    check_output_dir(out, "export folder")
    final = out.resolve()  # a link to an empty folder: the export goes where it points
    if any(c.isspace() or not c.isprintable() for c in str(final)):
        raise OutputError(
            f"export folder {str(final)!r} has whitespace or control characters: Kaldi's wav.scp and "
            "feats.scp split lines on whitespace; choose another folder"
        )
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(f"export folder {out} is not empty: give a new or empty folder")
    return final, verify_corpus(directory)


@contextlib.contextmanager
def export_folder(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` to write the export into, renamed to ``final``
    when the block ends (an empty ``final`` is replaced), removed if it raises: a killed or
    failed export leaves nothing that looks complete. Temporaries of killed exports go first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for old in final.parent.iterdir():
        if old.name.startswith(f".{final.name}.tmp-") and dead_temporary(old) and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    tmp = final.with_name(temporary_name(final.name))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        try:
            if final.is_dir():
                final.rmdir()  # checked empty by check_export
            tmp.rename(final)
        except OSError as e:  # another export (or anything) filled it meanwhile
            raise OutputError(
                f"export folder {final} changed while this export ran ({e.strerror or e}): nothing written"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: the most 16-bit samples a WAV file holds (its sizes are 32-bit byte counts)
WAV_MAX_SAMPLES = (2**32 - 1 - 44) // 2


def shards_with_audio(directory: str | Path, manifest: dict[str, Any], final: Path) -> list[ShardAudio]:
    """The manifest's shards that hold utterances, opened (memory-mapped), in manifest order.

    Raises `OutputError` for a shard with more audio than a WAV file holds (37 hours)."""
    out = []
    for shard, path in shard_paths(directory, manifest):
        if not shard["rows"]:
            continue
        index, arrays = open_shard(path)
        if len(arrays["audio"]) > WAV_MAX_SAMPLES:
            raise OutputError(
                f"{shard['name']} holds {len(arrays['audio']) / SAMPLE_RATE / 3600:.1f} h of audio, more "
                "than a WAV file holds (37 h): prepare again with a smaller shards.max_seconds"
            )
        recording = shard["name"].removeprefix("shards/").replace("/", "-")
        out.append(
            ShardAudio(
                shard["name"], shard["split"], recording, final / "audio" / f"{recording}.wav", index, arrays
            )
        )
    return out


def write_wavs(shards: list[ShardAudio], tmp: Path, final: Path) -> None:
    """Each shard's audio as it is (int16 samples, no conversion) into ``tmp/audio/``, the
    export folder's temporary twin of ``final``."""
    import soundfile as sf

    (tmp / "audio").mkdir()
    for shard in shards:
        target = tmp / shard.wav.relative_to(final)
        sf.write(target, np.asarray(shard.arrays["audio"]), SAMPLE_RATE, subtype="PCM_16", format="WAV")


@dataclass
class Span:
    """One utterance of a shard: its index row, and samples [start, start + count) of the
    shard's audio."""

    shard: ShardAudio
    row: Any
    start: int
    count: int

    @property
    def id(self) -> str:
        return self.row.utterance

    @property
    def speaker(self) -> str:
        return self.row.speaker

    def frames(self, stream: str) -> np.ndarray:
        """The utterance's rows of a 5 ms frame stream."""
        first = int(self.row.frame_offset)
        return np.asarray(self.shard.arrays[stream][first : first + int(self.row.n_frames)])


def utterance_spans(shard: ShardAudio) -> list[Span]:
    """The utterances of the shard, in its order."""
    return [
        Span(shard, row, int(row.audio_offset), 80 * int(row.n_frames)) for row in shard.index.itertuples()
    ]


def one_line(text: str) -> str:
    """A transcript on one line (Kaldi's ``text`` is one utterance a line)."""
    return " ".join(str(text).split())


def genders(manifest: dict[str, Any]) -> dict[str, str]:
    """speaker -> ``M``, ``F`` or ``unknown``, from the manifest's speaker table."""
    return {s["id"]: s.get("gender", "unknown") for s in manifest["speakers"]}

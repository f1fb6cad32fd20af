"""``featprep export kaldi``: a prepared corpus as Kaldi data directories, one per split.

Kaldi's binary archive format is written here (no Kaldi library needed): an entry is the
key, a space, ``\\0B``, the matrix type (``FM `` float32, ``DM `` float64), and the row and
column counts as a size byte 4 and an int32, little-endian, then the values row by row; a
``.scp`` line is ``key path:offset`` with the offset of the ``\\0B``.

CMVN statistics are Kaldi's: per speaker of the split, a 2 x (D+1) float64 matrix of the
sums of every column over exactly the frames the split's ``feats.scp`` holds, the frame
count last, and the sums of squares (last column 0), so ``apply-cmvn`` gives every column of
the exported features mean 0 (and variance 1 with ``--norm-vars``) per speaker. ``lf0`` in
the features is interpolated through unvoiced frames, and these statistics count every
frame; featprep's own statistics (``featprep normstats``) count voiced frames only for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import SAMPLE_RATE
from ..errors import ArgumentError
from .common import (
    ShardAudio,
    Span,
    check_export,
    export_folder,
    genders,
    one_line,
    shards_with_audio,
    utterance_spans,
    write_wavs,
)

#: the frame shift of the exported feature streams, in seconds (Kaldi's ``frame_shift`` file)
FRAME_SHIFT_SECONDS = 0.005


@dataclass
class KaldiExport:
    """What `export_kaldi` wrote: the folder, utterances per split, the feature streams
    (the first is ``feats.scp``) and notes on what was left out."""

    out: Path
    utterances: dict[str, int] = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{split}: {n} utterances -> {self.out / split}" for split, n in self.utterances.items()]
        if self.streams:
            out.append(
                f"features: {', '.join(self.streams)} (feats.scp: {self.streams[0]}), CMVN per speaker"
            )
        return out + [f"note: {n}" for n in self.notes]


def exportable_streams(manifest: dict[str, Any]) -> list[str]:
    """Feature streams Kaldi can take as ``feats``: floats at the 5 ms frame rate (not the
    integer ``ling_cat``, nor PASE's 10 ms frames)."""
    return [
        f["name"] for f in manifest["features"] if f["rate"] == "frame" and np.dtype(f["dtype"]).kind == "f"
    ]


def export_kaldi(
    directory: str | Path, out: str | Path, *, streams: tuple[str, ...] | list[str] | None = None
) -> KaldiExport:
    """Write Kaldi data directories of the prepared corpus in ``directory`` to ``out``.

    Parameters
    ----------
    directory : a prepared corpus (checked first, with the sha256 of every file).
    out : a new or empty folder; written under a temporary name and renamed when complete.
    streams : feature streams to export (default ``acoustic`` when the corpus has it); the
        first is ``feats.scp`` / ``cmvn.scp``, each also ``feats_<stream>.scp`` /
        ``cmvn_<stream>.scp``. Empty: audio and tables only.

    Returns
    -------
    A `KaldiExport`. Per split, ``OUT/<split>/`` holds ``wav.scp`` (one line per shard: its
    WAV file in ``OUT/audio/``), ``segments`` (each utterance's span of it), ``text``,
    ``utt2spk``, ``spk2utt``, ``spk2gender`` (when every speaker's gender is known),
    ``utt2num_frames``, ``frame_shift`` and the feature tables; archives in ``OUT/<split>/data/``.
    """
    directory = Path(directory)
    final, manifest = check_export(directory, out)
    available = exportable_streams(manifest)
    explicit = streams is not None
    if streams is None:
        streams = [s for s in available if s == "acoustic"]
    streams = list(streams)
    unknown = [s for s in streams if s not in available]
    if unknown or len(set(streams)) != len(streams):
        raise ArgumentError(
            f"streams {streams} are not distinct streams Kaldi can take from this corpus; it has {available}"
        )
    result = KaldiExport(final, streams=streams)
    if not streams:
        result.notes.append(
            "no feats.scp: the corpus has no acoustic stream"
            if "acoustic" not in available and not explicit
            else "no feats.scp: no stream asked for (audio and tables only)"
        )
    gender_of = genders(manifest)
    shards = shards_with_audio(directory, manifest, final)
    with export_folder(final) as tmp:
        write_wavs(shards, tmp, final)
        for split in dict.fromkeys(s.split for s in shards):
            members = [s for s in shards if s.split == split]
            result.utterances[split] = sum(len(s.index) for s in members)
            _write_split(tmp / split, final / split, members, streams, gender_of, result.notes)
    return result


def _write_split(
    folder: Path,
    final: Path,
    shards: list[ShardAudio],
    streams: list[str],
    gender_of: dict[str, str],
    notes: list[str],
) -> None:
    """One Kaldi data directory (``folder``, renamed to ``final`` with the export)."""
    folder.mkdir()
    # Kaldi's tables are sorted by key in C order (ids are ASCII: featprep's bad_id)
    spans = sorted((span for shard in shards for span in utterance_spans(shard)), key=lambda u: u.id)
    speakers: dict[str, list[str]] = {}
    for u in spans:
        speakers.setdefault(u.speaker, []).append(u.id)
    tables = {
        "wav.scp": [f"{s.recording} {s.wav}" for s in sorted(shards, key=lambda s: s.recording)],
        "segments": [
            f"{u.id} {u.shard.recording} {segment_time(u.start)} {segment_time(u.start + u.count)}"
            for u in spans
        ],
        "text": [f"{u.id} {one_line(u.row.text)}" for u in spans],
        "utt2spk": [f"{u.id} {u.speaker}" for u in spans],
        "spk2utt": [f"{s} {' '.join(utts)}" for s, utts in sorted(speakers.items())],
        "utt2num_frames": [f"{u.id} {u.row.n_frames}" for u in spans],
    }
    unknown = [s for s in sorted(speakers) if gender_of.get(s) not in ("M", "F")]
    if unknown:  # Kaldi's validate_data_dir.sh wants spk2gender for every speaker or none
        notes.append(f"{final.name}: no spk2gender: speaker(s) {', '.join(unknown[:5])} of unknown gender")
    else:
        tables["spk2gender"] = [f"{s} {gender_of[s].lower()}" for s in sorted(speakers)]
    if streams:
        tables["frame_shift"] = [str(FRAME_SHIFT_SECONDS)]
        (folder / "data").mkdir()
    for i, stream in enumerate(streams):
        feats, cmvn = _write_stream(folder / "data", final / "data", spans, stream)
        for name, lines in ((f"feats_{stream}.scp", feats), (f"cmvn_{stream}.scp", cmvn)):
            tables[name] = lines
            if i == 0:  # the first stream is the data directory's features
                tables[name.replace(f"_{stream}", "")] = lines
    for name, lines in tables.items():
        (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _write_stream(data: Path, final: Path, spans: list[Span], stream: str) -> tuple[list[str], list[str]]:
    """``feats_<stream>.ark`` (float32 per utterance) and ``cmvn_<stream>.ark`` (per speaker,
    over exactly those frames) in ``data``; returns their ``.scp`` lines (paths in ``final``)."""
    stats: dict[str, np.ndarray] = {}
    feats = []
    with open(data / f"feats_{stream}.ark", "wb") as ark:
        for u in spans:
            x = u.frames(stream).astype(np.float32, copy=False)
            feats.append(f"{u.id} {final / f'feats_{stream}.ark'}:{write_matrix(ark, u.id, x)}")
            _accumulate_cmvn(stats.setdefault(u.speaker, np.zeros((2, x.shape[1] + 1))), x)
    with open(data / f"cmvn_{stream}.ark", "wb") as ark:
        cmvn = [f"{s} {final / f'cmvn_{stream}.ark'}:{write_matrix(ark, s, stats[s])}" for s in sorted(stats)]
    return feats, cmvn


def segment_time(sample: int) -> str:
    """The time of a 16 kHz sample for ``segments``: a quarter of a sample after it,
    written exactly (offsets are multiples of 80 samples, so 9 decimals hold it).

    Kaldi's ``extract-segments`` truncates ``time * 16000`` (in double) to a sample number,
    so the plain time of sample 16080, 1.005 s (the double just below), gives 16079; a
    quarter of a sample later truncates and rounds (lhotse) to the sample itself."""
    if sample % 80:
        raise ValueError(f"sample {sample} is not on the 5 ms grid")
    return f"{(sample + 0.25) / SAMPLE_RATE:.9f}"


def _accumulate_cmvn(acc: np.ndarray, x: np.ndarray) -> None:
    """Kaldi's AccCmvnStats over the rows of ``x`` (float64 accumulators)."""
    x = x.astype(np.float64)
    acc[0, :-1] += x.sum(axis=0)
    acc[1, :-1] += np.einsum("ij,ij->j", x, x)
    acc[0, -1] += len(x)


def write_matrix(ark: BinaryIO, key: str, matrix: np.ndarray) -> int:
    """Append ``key`` and ``matrix`` (float32 or float64) to a binary Kaldi archive; returns
    the offset of the matrix, for the ``.scp`` line ``key path:offset``."""
    kind = {np.dtype("float32"): b"FM ", np.dtype("float64"): b"DM "}[matrix.dtype]
    rows, cols = matrix.shape
    ark.write(key.encode("ascii") + b" ")
    offset = ark.tell()
    ark.write(b"\0B" + kind + struct.pack("<bibi", 4, rows, 4, cols))
    ark.write(np.ascontiguousarray(matrix, matrix.dtype.newbyteorder("<")).tobytes())
    return offset

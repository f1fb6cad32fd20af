"""``featprep export lhotse``: a prepared corpus as lhotse manifests (JSON lines, gzipped).

Written as the dictionaries lhotse's own ``to_dict`` makes (lhotse 1.x: ``Recording``,
``SupervisionSegment``, ``MonoCut``), without importing lhotse: per split,
``<corpus>_recordings_<split>.jsonl.gz`` (one recording per shard: its WAV file in
``OUT/audio/``), ``<corpus>_supervisions_<split>.jsonl.gz`` (one per utterance: its span of
the recording, text, speaker, gender) and ``<corpus>_cuts_<split>.jsonl.gz`` (one
``MonoCut`` per utterance, its supervision and recording inside), the names lhotse's
recipes give. The gzip streams carry no time stamp: the same corpus gives the same files.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import SAMPLE_RATE
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


@dataclass
class LhotseExport:
    """What `export_lhotse` wrote: the folder and, per split, the utterances and files."""

    out: Path
    utterances: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{split}: {self.utterances[split]} utterances -> {', '.join(names)}"
            for split, names in self.files.items()
        ]


def export_lhotse(directory: str | Path, out: str | Path) -> LhotseExport:
    """Write lhotse recordings, supervisions and cuts of the prepared corpus in ``directory``.

    Parameters
    ----------
    directory : a prepared corpus (checked first, with the sha256 of every file).
    out : a new or empty folder; written under a temporary name and renamed when complete.

    Returns
    -------
    An `LhotseExport`. Load with ``lhotse.load_manifest(path)`` or
    ``lhotse.CutSet.from_file(OUT/<corpus>_cuts_<split>.jsonl.gz)``.
    """
    directory = Path(directory)
    final, manifest = check_export(directory, out)
    prefix = manifest["corpus"]
    gender_of = genders(manifest)
    result = LhotseExport(final)
    shards = shards_with_audio(directory, manifest, final)
    with export_folder(final) as tmp:
        write_wavs(shards, tmp, final)
        for split in dict.fromkeys(s.split for s in shards):
            members = [s for s in shards if s.split == split]
            recordings = [_recording(s) for s in members]
            by_id = {r["id"]: r for r in recordings}
            supervisions = [_supervision(u, gender_of) for s in members for u in utterance_spans(s)]
            cuts = [_cut(sup, by_id[sup["recording_id"]]) for sup in supervisions]
            result.utterances[split] = len(supervisions)
            result.files[split] = []
            for kind, items in (("recordings", recordings), ("supervisions", supervisions), ("cuts", cuts)):
                name = f"{prefix}_{kind}_{split}.jsonl.gz"
                text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
                (tmp / name).write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
                result.files[split].append(name)
    return result


def _recording(shard: ShardAudio) -> dict[str, Any]:
    n = shard.num_samples
    return {
        "id": shard.recording,
        "sources": [{"type": "file", "channels": [0], "source": str(shard.wav)}],
        "sampling_rate": SAMPLE_RATE,
        "num_samples": n,
        "duration": n / SAMPLE_RATE,
        "channel_ids": [0],
    }


def _supervision(u: Span, gender_of: dict[str, str]) -> dict[str, Any]:
    gender = gender_of.get(u.speaker)
    return {
        "id": u.id,
        "recording_id": u.shard.recording,
        "start": u.start / SAMPLE_RATE,
        "duration": u.count / SAMPLE_RATE,
        "channel": 0,
        "text": one_line(u.row.text),
        "language": "English",
        "speaker": u.speaker,
        **({"gender": gender} if gender in ("M", "F") else {}),
        "custom": {"split": u.row.split, "shard": u.shard.name, "n_frames": int(u.row.n_frames)},
    }


def _cut(supervision: dict[str, Any], recording: dict[str, Any]) -> dict[str, Any]:
    """A MonoCut over exactly the supervision (its start moves to 0 inside the cut)."""
    return {
        "id": supervision["id"],
        "start": supervision["start"],
        "duration": supervision["duration"],
        "channel": 0,
        "supervisions": [{**supervision, "start": 0.0}],
        "recording": recording,
        "type": "MonoCut",
    }

"""VCTK: the CSTR VCTK Corpus, releases 0.80 and 0.92.

Citation: Yamagishi, Veaux, MacDonald, "CSTR VCTK Corpus: English Multi-speaker Corpus
for CSTR Voice Cloning Toolkit (version 0.92)", University of Edinburgh, 2019.
Licence: Creative Commons Attribution 4.0.

Layouts
- 0.80 ``VCTK-Corpus/``: ``wav48/pXXX/pXXX_NNN.wav`` (48 kHz 16-bit mono),
  ``txt/pXXX/pXXX_NNN.txt``, ``speaker-info.txt`` (ids without the ``p``).
- 0.92 ``VCTK-Corpus-0.92/``: ``wav48_silence_trimmed/pXXX/pXXX_NNN_mic{1,2}.flac``,
  the same ``txt/`` tree, ``speaker-info.txt`` with ``p`` ids and a COMMENTS column.

Known defects handled here: p315 has audio and no text (excluded by the recipe); about
170 wavs have no transcript (``missing_text``); p280 has no mic2 files (mic1 fallback,
recorded per utterance); some p362 audio is missing (``missing_audio``); numbering gaps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CorpusError, Rejected
from ..records import Rejection, Speaker, Utterance
from . import Discovery
from .transcripts import decode_transcript

_AUDIO_DIRS = {"0.80": "wav48", "0.92": "wav48_silence_trimmed"}


def detect_version(root: Path) -> str:
    """Tell the release from the layout: ``"0.80"`` or ``"0.92"``."""
    found = [v for v, d in _AUDIO_DIRS.items() if (root / d).is_dir()]
    if len(found) != 1 or not (root / "txt").is_dir():
        raise CorpusError(
            f"{root} does not look like VCTK: expected txt/ and one of wav48/ (0.80) or "
            f"wav48_silence_trimmed/ (0.92)"
        )
    return found[0]


def read_speaker_info(path: Path) -> dict[str, Speaker]:
    """Parse ``speaker-info.txt`` of either release (space-aligned columns, 4-6 fields)."""
    speakers: dict[str, Speaker] = {}
    if not path.is_file():
        return speakers
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] == "ID":
            continue
        spk = fields[0] if not fields[0].isdigit() else f"p{fields[0]}"
        gender = fields[2].upper() if fields[2].upper() in ("M", "F") else "unknown"
        age = int(fields[1]) if fields[1].isdigit() else None
        custom = {"accent": fields[3] if len(fields) > 3 else "", "region": " ".join(fields[4:])}
        speakers[spk] = Speaker(spk, gender=gender, age=age, custom=custom)
    return speakers


def _scan(directory: Path) -> dict[str, list[str]]:
    """speaker -> sorted file names, for the speaker folders of ``directory``."""
    out: dict[str, list[str]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir():
                out[entry.name] = sorted(e.name for e in os.scandir(entry.path) if e.is_file())
    return out


def _audio_files(root: Path, version: str, mic: str, fallback: bool) -> dict[str, tuple[str, str]]:
    """utterance id -> (path relative to root, mic or "")."""
    audio_dir = _AUDIO_DIRS[version]
    files: dict[str, tuple[str, str]] = {}
    for spk, names in _scan(root / audio_dir).items():
        if version == "0.80":
            for name in names:
                if name.endswith(".wav"):
                    files[name[:-4]] = (f"{audio_dir}/{spk}/{name}", "")
            continue
        by_mic: dict[str, dict[str, str]] = {"mic1": {}, "mic2": {}}
        for name in names:
            stem, _, ext = name.rpartition(".")
            utt, _, m = stem.rpartition("_")
            if ext == "flac" and m in by_mic:
                by_mic[m][utt] = f"{audio_dir}/{spk}/{name}"
        other = "mic2" if mic == "mic1" else "mic1"
        for utt in sorted(by_mic[mic].keys() | (by_mic[other].keys() if fallback else set())):
            m = mic if utt in by_mic[mic] else other
            files[utt] = (by_mic[m][utt], m)
    return files


def discover(root: Path, recipe: dict[str, Any]) -> Discovery:
    """Turn a VCTK directory (0.80 or 0.92) into speakers, utterances and rejections."""
    opts = recipe["discover"]
    version = detect_version(root) if opts["version"] == "auto" else opts["version"]
    if version not in _AUDIO_DIRS:
        raise CorpusError(f"discover.version must be auto, 0.80 or 0.92, found {version!r}")
    if not (root / _AUDIO_DIRS[version]).is_dir():
        raise CorpusError(f"{root} has no {_AUDIO_DIRS[version]}/ folder (VCTK {version})")
    if opts["mic"] not in ("mic1", "mic2"):
        raise CorpusError(f'discover.mic has to be "mic1" or "mic2", found {opts["mic"]!r}')
    excluded = set(opts["exclude_speakers"])
    info = read_speaker_info(root / "speaker-info.txt")
    audio = _audio_files(root, version, opts["mic"], opts["mic_fallback"])
    texts = {
        name[:-4]: f"txt/{spk}/{name}"
        for spk, names in _scan(root / "txt").items()
        for name in names
        if name.endswith(".txt")
    }

    utterances: list[Utterance] = []
    rejections: list[Rejection] = []
    for utt_id in sorted(audio.keys() | texts.keys()):
        spk = utt_id.split("_")[0]
        path, mic = audio.get(utt_id, ("", ""))

        def reject(code: str, detail: str, utt_id=utt_id, spk=spk, path=path) -> None:
            rejections.append(Rejection(utt_id, spk, "discover", code, detail, path))

        if spk in excluded:
            reject("excluded_speaker", f"{spk} is in discover.exclude_speakers")
        elif utt_id not in texts:
            reject("missing_text", f"no txt/{spk}/{utt_id}.txt")
        elif utt_id not in audio:
            reject("missing_audio", f"no audio for {texts[utt_id]}")
        else:
            try:
                text = decode_transcript((root / texts[utt_id]).read_bytes())
            except Rejected as r:
                reject(r.code, f"{texts[utt_id]}: {r.detail}")
                continue
            custom = {"mic": mic} if mic else {}
            utterances.append(Utterance(utt_id, spk, text, path, custom=custom))

    used = sorted({u.speaker for u in utterances})
    speakers = [info.get(s, Speaker(s)) for s in used]
    layout = {
        "release": version,
        "mic": opts["mic"] if version == "0.92" else "",
        "speaker_info": bool(info),
    }
    return Discovery(speakers, utterances, rejections, layout)

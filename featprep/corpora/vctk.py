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

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CorpusError, Rejected
from ..records import Rejection, Speaker, Utterance
from . import Discovery
from .listing import list_files, list_folders
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
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] == "ID":
            continue
        spk = fields[0] if not fields[0].isdigit() else f"p{fields[0]}"
        gender = fields[2].upper() if fields[2].upper() in ("M", "F") else "unknown"
        age = int(fields[1]) if fields[1].isdigit() else None
        custom = {"accent": fields[3] if len(fields) > 3 else "", "region": " ".join(fields[4:])}
        speakers[spk] = Speaker(spk, gender=gender, age=age, custom=custom)
    return speakers


#: (utterance id, path relative to the root, mic or "", why the file cannot be read or "")
_Entry = tuple[str, str, str, str]


def _audio_name(version: str, name: str) -> tuple[str, str] | None:
    """(utterance id, mic) of an audio file name of ``version``; None for other files."""
    if version == "0.80":
        return (name[:-4], "") if name.endswith(".wav") else None
    stem, _, ext = name.rpartition(".")
    utt, _, mic = stem.rpartition("_")
    return (utt, mic) if ext == "flac" and mic in ("mic1", "mic2") else None


def _text_name(name: str) -> tuple[str, str] | None:
    return (name[:-4], "") if name.endswith(".txt") else None


def _scan(
    root: Path, top: str, parse: Callable[[str], tuple[str, str] | None]
) -> tuple[dict[str, list[_Entry]], list[Rejection], dict[str, str]]:
    """The speaker folders of ``root/top``: speaker -> its files, sorted by name; the
    rejections of files named for another speaker (``misplaced_file``: which one is meant
    cannot be told, and keeping both would give two utterances one id); and speaker ->
    why its folder cannot be listed."""
    found: dict[str, list[_Entry]] = {}
    misplaced: list[Rejection] = []
    unlisted: dict[str, str] = {}
    for spk, folder in list_folders(root / top).items():
        try:
            names = list_files(folder) if isinstance(folder, Path) else None
        except OSError as e:
            names, folder = None, e.strerror or type(e).__name__
        if names is None:
            unlisted[spk] = str(folder)
            continue
        for name, problem in names.items():
            parsed = parse(name)
            if parsed is None:
                continue
            utt, mic = parsed
            path = f"{top}/{spk}/{name}"
            owner = utt.split("_")[0]
            if owner != spk:
                detail = f"{path} is named for speaker {owner} but lies in the folder of {spk}"
                misplaced.append(Rejection(utt, spk, "discover", "misplaced_file", detail, path))
            else:
                found.setdefault(spk, []).append((utt, path, mic, problem))
    return found, misplaced, unlisted


def _choose_mic(entries: list[_Entry], mic: str, fallback: bool) -> dict[str, _Entry]:
    """utterance id -> the file of ``mic``, or of the other mic when ``fallback`` and
    ``mic``'s is absent or unreadable; an unreadable file when nothing better exists."""
    by_mic: dict[str, dict[str, _Entry]] = {"mic1": {}, "mic2": {}, "": {}}
    for entry in entries:
        by_mic[entry[2]][entry[0]] = entry
    other = "mic2" if mic == "mic1" else "mic1"
    out: dict[str, _Entry] = {}
    for utt in sorted(by_mic[mic].keys() | by_mic[other].keys() | by_mic[""].keys()):
        ranked = [by_mic[mic].get(utt), by_mic[""].get(utt)] + ([by_mic[other].get(utt)] if fallback else [])
        present = [e for e in ranked if e is not None]
        if present:
            out[utt] = next((e for e in present if not e[3]), present[0])
    return out


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
    audio_dir = _AUDIO_DIRS[version]
    audio_found, rejections, audio_unlisted = _scan(root, audio_dir, lambda n: _audio_name(version, n))
    text_found, misplaced, text_unlisted = _scan(root, "txt", _text_name)
    rejections += misplaced
    audio = {
        utt: entry
        for entries in audio_found.values()
        for utt, entry in _choose_mic(entries, opts["mic"], opts["mic_fallback"]).items()
    }
    texts = {e[0]: e for entries in text_found.values() for e in entries}

    utterances: list[Utterance] = []
    unreadable_folders: set[str] = set()
    for utt_id in sorted(audio.keys() | texts.keys()):
        spk = utt_id.split("_")[0]
        _, path, mic, audio_problem = audio.get(utt_id, ("", "", "", ""))

        def reject(code: str, detail: str, utt_id=utt_id, spk=spk, path=path) -> None:
            rejections.append(Rejection(utt_id, spk, "discover", code, detail, path))

        if spk in excluded:
            reject("excluded_speaker", f"{spk} is in discover.exclude_speakers")
        elif utt_id not in texts and spk in text_unlisted:
            reject("unreadable_folder", f"txt/{spk} cannot be listed: {text_unlisted[spk]}")
            unreadable_folders.add(spk)
        elif utt_id not in texts:
            reject("missing_text", f"no txt/{spk}/{utt_id}.txt")
        elif utt_id not in audio and spk in audio_unlisted:
            reject("unreadable_folder", f"{audio_dir}/{spk} cannot be listed: {audio_unlisted[spk]}")
            unreadable_folders.add(spk)
        elif utt_id not in audio:
            reject("missing_audio", f"no audio for {texts[utt_id][1]}")
        elif audio_problem:
            reject("unreadable_audio", f"{path}: {audio_problem}")
        else:
            text_path, problem = texts[utt_id][1], texts[utt_id][3]
            raw = b""
            if not problem:
                try:
                    raw = (root / text_path).read_bytes()
                except OSError as e:
                    problem = e.strerror or type(e).__name__
            if problem:
                reject("unreadable_text", f"{text_path}: {problem}")
                continue
            try:
                text = decode_transcript(raw)
            except Rejected as r:
                reject(r.code, f"{text_path}: {r.detail}")
                continue
            custom = {"mic": mic} if mic else {}
            utterances.append(Utterance(utt_id, spk, text, path, custom=custom))
    # a folder that cannot be listed, with no file of its speaker elsewhere to name: one row
    for top, unlisted in ((audio_dir, audio_unlisted), ("txt", text_unlisted)):
        for spk, why in unlisted.items():
            if spk not in unreadable_folders | excluded:
                detail = f"{top}/{spk} cannot be listed: {why}"
                rejections.append(Rejection("", spk, "discover", "unreadable_folder", detail, f"{top}/{spk}"))
                unreadable_folders.add(spk)

    used = sorted({u.speaker for u in utterances})
    speakers = [info.get(s, Speaker(s)) for s in used]
    layout = {
        "release": version,
        "mic": opts["mic"] if version == "0.92" else "",
        "speaker_info": bool(info),
    }
    return Discovery(speakers, utterances, rejections, layout)

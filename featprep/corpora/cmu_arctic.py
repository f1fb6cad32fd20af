"""CMU Arctic: phonetically balanced US English, 18 speakers, 1132 prompts each.

Citation: Kominek and Black, "The CMU Arctic speech databases", 5th ISCA Speech
Synthesis Workshop, 2004. Licence: free use, modification and redistribution (CMU).

Layout: one tree per speaker, ``cmu_us_<spk>_arctic/`` (release suffixes such as
``-0.95-release`` allowed), with ``wav/arctic_[ab]NNNN.wav`` (16 kHz 16-bit mono),
``etc/txt.done.data`` (``( arctic_a0001 "Author of the danger trail..." )``) and
``lab/*.lab`` (xwaves phone labels). The root is either one such tree or a folder of them.

Known defects: some speakers miss a few recordings or prompts (``missing_text``,
``missing_audio``); two copies of a speaker's tree give ``duplicate_id`` in the check stage;
the corpus does not record gender (the recipe's ``speakers.gender`` table does).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from ..errors import CorpusError, Rejected
from ..records import Rejection, Speaker, Utterance
from . import Discovery
from .listing import list_files, list_folders
from .transcripts import decode_transcript

_TREE = re.compile(r"^cmu_us_([a-z0-9]+)_arctic")
_PROMPT = re.compile(rb'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def find_trees(root: Path) -> dict[str, Path | str]:
    """The speaker trees under ``root`` (or ``root`` itself) by name, sorted; a tree that
    cannot be entered (a link loop) maps to why."""
    if _TREE.match(root.name):
        return {root.name: root}
    trees = {name: tree for name, tree in list_folders(root).items() if _TREE.match(name)}
    if not trees:
        raise CorpusError(
            f"{root} does not look like CMU Arctic: expected cmu_us_<speaker>_arctic/ "
            f"folders with wav/ and etc/txt.done.data"
        )
    return trees


def read_prompts(path: Path) -> dict[str, str | Rejected]:
    """Parse ``etc/txt.done.data``: stem -> text, or the `Rejected` for a bad line."""
    prompts: dict[str, str | Rejected] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        m = _PROMPT.match(line.strip())
        if m is None:
            continue
        stem = m.group(1).decode("ascii", errors="replace")
        raw = m.group(2).replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        try:
            prompts[stem] = decode_transcript(raw)
        except Rejected as r:
            prompts[stem] = Rejected(r.code, f"{path.name} line {number}: {r.detail}")
    return prompts


def discover(root: Path, recipe: dict[str, Any]) -> Discovery:
    """Turn a CMU Arctic directory into speakers, utterances and rejections."""
    excluded = set(recipe["discover"]["exclude_speakers"])
    genders: dict[str, str] = recipe["speakers"]["gender"]
    bad = sorted(g for g in set(genders.values()) if g not in ("M", "F"))
    if bad:
        raise CorpusError(f"speakers.gender values must be M or F, found {bad}")
    trees = find_trees(root)
    utterances: list[Utterance] = []
    rejections: list[Rejection] = []
    for name, tree in trees.items():
        spk = _TREE.match(name).group(1)
        # paths are relative to the root: "." when the root is the speaker's tree itself
        rel = name if isinstance(tree, str) or tree != root else "."
        if isinstance(tree, str):
            detail = f"{rel} cannot be entered: {tree}"
            rejections.append(Rejection("", spk, "discover", "unreadable_folder", detail, rel))
            continue
        txt = tree / "etc" / "txt.done.data"
        if not txt.is_file() or not (tree / "wav").is_dir():
            raise CorpusError(f"{tree} is a CMU Arctic tree without etc/txt.done.data or wav/")
        prompts: dict[str, str | Rejected] = {}
        wavs: dict[str, str] = {}
        text_problem = wav_problem = ""
        try:
            prompts = read_prompts(txt)
        except OSError as e:
            text_problem = f"{rel}/etc/txt.done.data cannot be read: {e.strerror or type(e).__name__}"
        try:
            wavs = {n[:-4]: why for n, why in list_files(tree / "wav").items() if n.endswith(".wav")}
        except OSError as e:
            wav_problem = f"{rel}/wav cannot be listed: {e.strerror or type(e).__name__}"
        if text_problem and wav_problem:
            detail = f"{text_problem}; {wav_problem}"
            rejections.append(Rejection("", spk, "discover", "unreadable_folder", detail, rel))
            continue
        for stem in sorted(wavs.keys() | prompts.keys()):
            utt_id, path = f"{spk}_{stem}", posixpath.normpath(f"{rel}/wav/{stem}.wav")
            prompt = prompts.get(stem)
            code, detail = "", ""
            if spk in excluded:
                code, detail = "excluded_speaker", f"{spk} is in discover.exclude_speakers"
            elif text_problem:
                code, detail = "unreadable_text", text_problem
            elif prompt is None:
                code, detail = "missing_text", f"{stem} is not in {rel}/etc/txt.done.data"
            elif wav_problem:
                code, detail = "unreadable_folder", wav_problem
            elif stem not in wavs:
                code, detail = "missing_audio", f"no {path}"
            elif wavs[stem]:
                code, detail = "unreadable_audio", f"{path}: {wavs[stem]}"
            elif isinstance(prompt, Rejected):
                code, detail = prompt.code, prompt.detail
            if code:
                rejections.append(Rejection(utt_id, spk, "discover", code, detail, path))
                continue
            lab = tree / "lab" / f"{stem}.lab"
            lab_path = posixpath.normpath(f"{rel}/lab/{stem}.lab") if lab.is_file() else ""
            custom = {"tree": rel, "stem": stem, "lab": lab_path}
            utterances.append(Utterance(utt_id, spk, prompt, path, custom=custom))
    names = sorted({u.speaker for u in utterances})
    speakers = [Speaker(s, gender=genders.get(s, "unknown")) for s in names]
    return Discovery(speakers, utterances, rejections, {"trees": list(trees)})

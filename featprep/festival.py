"""Running Festival: safe quoting into Scheme, batch scripts, error detection.

Nothing from a corpus, recipe or option is pasted into a script as it is: text goes
through `scheme_string`, file paths through `scheme_path`, a voice through
`voice_command` (an installed voice's name only).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

from .errors import FeatprepError


class FestivalTimeout(FeatprepError):
    """Festival did not finish a script in its time."""


DEBIAN_PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"


def festival_binary() -> str:
    """Path of the ``festival`` program, or a `FeatprepError` saying how to install it."""
    path = shutil.which("festival")
    if path is None:
        raise FeatprepError(f"Festival is not installed: apt-get install {DEBIAN_PACKAGES}")
    return path


def scheme_string(text: str) -> str:
    """Quote ``text`` as a Scheme string literal Festival reads back unchanged.

    Festival's reader knows only ASCII: letters with diacritics are folded to their base
    letter, other non-ASCII characters become spaces. Backslashes and double quotes are
    escaped; newlines become spaces.
    """
    folded = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c if c.isascii() else " " for c in folded if not unicodedata.combining(c))
    ascii_text = " ".join(ascii_text.split())
    return '"' + ascii_text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scheme_path(path: str | Path) -> str:
    """Quote a file path as a Scheme string literal Festival opens as exactly that path.

    Festival's reader passes every byte of a string but backslash and double quote
    through unchanged (UTF-8 names, spaces and newlines included), so a path keeps its
    bytes; folding it like text would name another file.
    """
    raw = os.fsencode(path).replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return '"' + raw.decode("utf-8", "surrogateescape") + '"'


_VOICE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


@lru_cache(maxsize=1)
def installed_voices() -> tuple[str, ...]:
    """Names of the Festival voices installed here (asked once per process)."""
    with tempfile.TemporaryDirectory(prefix="featprep-festival-") as tmp:
        out = run_script("(print (voice.list))\n", Path(tmp), timeout=120.0)
    return tuple(re.findall(r"[a-z][a-z0-9_]*", out))


def voice_command(voice: str, *, setting: str = "Festival voice") -> str:
    """``(voice_NAME)`` for an installed voice; a `FeatprepError` for anything else.

    The name is checked against a strict pattern before Festival is asked which voices
    exist: it is pasted into the script, so nothing but a voice name may get there.
    """
    if not isinstance(voice, str) or not _VOICE_NAME.match(voice):
        raise FeatprepError(
            f"{setting} {voice!r} is not a voice name (lower-case letters, digits and _ only)"
        )
    voices = installed_voices()
    if voice not in voices:
        raise FeatprepError(f"{setting} {voice!r} is not installed; Festival has {', '.join(voices)}")
    return f"(voice_{voice})"


def run_script(script: str, workdir: Path, *, timeout: float = 600.0) -> str:
    """Run a Scheme script with ``festival -b``; return its stdout.

    Festival exits 0 after most errors and only prints ``SIOD ERROR``: this treats that
    text as a failure. A run longer than ``timeout`` seconds is killed and raises
    `FestivalTimeout`.
    """
    workdir = Path(workdir).resolve()  # Festival runs in workdir: no relative path may leak in
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "script.scm"
    # text is folded to ASCII by scheme_string; paths (scheme_path) keep their own bytes
    path.write_bytes(script.encode("utf-8", "surrogateescape"))
    try:
        proc = subprocess.run(
            # relative: Festival names its script in some errors, which end in rejected.tsv and
            # must read the same whatever temporary folder the run had
            [festival_binary(), "-b", path.name],
            cwd=workdir,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        # no path in the message: it ends in rejected.tsv, which must not name a temporary folder
        raise FestivalTimeout(f"festival did not finish within {timeout:g} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "SIOD ERROR" in output:
        first = next((ln for ln in output.splitlines() if "ERROR" in ln), output[-200:])
        raise FeatprepError(f"festival failed: {first.strip()}")  # no temporary path: see above
    return proc.stdout

"""Running Festival: safe quoting of text into Scheme, batch scripts, error detection."""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from pathlib import Path

from .errors import FeatprepError

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


def run_script(script: str, workdir: Path, *, timeout: float = 600.0) -> str:
    """Run a Scheme script with ``festival -b``; return its stdout.

    Festival exits 0 after most errors and only prints ``SIOD ERROR``: this treats that
    text as a failure.
    """
    workdir = Path(workdir).resolve()  # Festival runs in workdir: no relative path may leak in
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "script.scm"
    path.write_text(script, encoding="ascii")
    proc = subprocess.run(
        [festival_binary(), "-b", str(path)],
        cwd=workdir,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "SIOD ERROR" in output:
        first = next((ln for ln in output.splitlines() if "ERROR" in ln), output[-200:])
        raise FeatprepError(f"festival failed on {path}: {first.strip()}")
    return proc.stdout

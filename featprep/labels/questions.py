"""Merlin / HTS question sets (``.hed``), parsed with Merlin's exact rules.

- ``QS "name" {pat1,pat2,...}`` is one binary feature: 1 when any pattern matches.
- ``CQS "name" {regex-with-(\\d+)}`` is one numeric feature: the number captured by the
  first match in the context, -1 when there is none.
- Patterns are HTK wildcards turned into regular expressions as Merlin's
  ``wildcards2regex`` does: a pattern with a ``*`` is anchored at the start unless it
  begins with ``*`` and at the end unless it ends with ``*``; inner ``*`` is ``.*`` and
  ``?`` is ``.``; ``(\\d+)``, ``([\\d\\.]+)`` and ``([-\\d]+)`` stay groups. Matching is
  ``search``: a pattern without wildcards is a substring test.
- A QS whose name contains ``LL-`` is anchored at the start; a CQS pattern ending in
  ``(\\d+)`` gets ``$`` (nnmnkwii 0.1.3 omits this: its last column of Merlin's 416 set
  differs).
- Lines of 5 characters or fewer and ``#`` comments are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FeatprepError

_NUMBER_GROUPS = {
    re.escape(r"(\d+)"): r"(\d+)",
    re.escape(r"([\d\.]+)"): r"([\d\.]+)",
    re.escape(r"([-\d]+)"): r"([-\d]+)",
}


class QuestionError(FeatprepError):
    """A question file cannot be parsed; the message names the file and the line."""


def wildcards2regex(pattern: str, *, numbers: bool = False) -> str:
    """One HTK wildcard pattern as a regular expression (Merlin's rules)."""
    prefix = postfix = ""
    if "*" in pattern:
        if not pattern.startswith("*"):
            prefix = r"\A"
        if not pattern.endswith("*"):
            postfix = r"\Z"
    body = re.escape(pattern.strip("*")).replace(r"\*", ".*").replace(r"\?", ".")
    if numbers:
        for escaped, group in _NUMBER_GROUPS.items():
            body = body.replace(escaped, group)
    return prefix + body + postfix


@dataclass(frozen=True)
class Question:
    """One question: its kind (``QS`` or ``CQS``), name and regular expressions."""

    kind: str
    name: str
    patterns: tuple[str, ...]
    regexes: tuple[str, ...]


@dataclass(frozen=True)
class QuestionSet:
    """Binary questions first, then numeric ones: the column order of the features."""

    binary: tuple[Question, ...]
    numeric: tuple[Question, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.binary) + len(self.numeric)

    @property
    def names(self) -> list[str]:
        return [q.name for q in self.binary] + [q.name for q in self.numeric]


def parse_questions(text: str, source: str = "<questions>") -> QuestionSet:
    """Parse the text of a ``.hed`` question file."""
    binary: list[Question] = []
    numeric: list[Question] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.replace("\t", " ").strip()
        if len(line) <= 5 or line.startswith("#"):
            continue
        fields = line.split(None, 1)
        if fields[0] not in ("QS", "CQS") or "{" not in line or "}" not in line:
            raise QuestionError(
                f'{source} line {number}: expected QS or CQS "name" {{patterns}}, found {line[:60]!r}'
            )
        name = fields[1].split("{", 1)[0].strip().strip("\"'")
        patterns = tuple(p.strip() for p in line.split("{", 1)[1].split("}", 1)[0].strip().split(","))
        if fields[0] == "CQS":
            if len(patterns) != 1:
                raise QuestionError(
                    f"{source} line {number}: CQS {name!r} must have one pattern, found {len(patterns)}"
                )
            regex = wildcards2regex(patterns[0], numbers=True)
            if regex.endswith(r"(\d+)"):
                regex += "$"
            if re.compile(regex).groups < 1:
                raise QuestionError(f"{source} line {number}: CQS {name!r} has no (\\d+) group")
            numeric.append(Question("CQS", name, patterns, (regex,)))
        else:
            regexes = tuple(wildcards2regex(p) for p in patterns)
            if "LL-" in name:
                regexes = tuple(r if r.startswith("^") else "^" + r for r in regexes)
            binary.append(Question("QS", name, patterns, regexes))
    if not binary and not numeric:
        raise QuestionError(f"{source}: no QS or CQS question")
    return QuestionSet(tuple(binary), tuple(numeric), source)


def load_questions(path: str | Path) -> QuestionSet:
    """Read a question file, or a built-in set by name (``recipes/questions/<name>.hed``)."""
    path = Path(path)
    if not path.is_file() and path.suffix == "" and path.parent == Path("."):
        from importlib import resources

        path = Path(str(resources.files("featprep.recipes") / "questions" / f"{path}.hed"))
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise QuestionError(f"question file {path} does not exist") from None
    return parse_questions(text, str(path))

"""Fast, exact evaluation of a question set on full-context labels.

Merlin searches every pattern of every question in every context (about 1,000 regular
expression searches per phone for its 416 set). Here the questions are compiled once:

- plain literal patterns (the common case) go into a character trie, so one walk over a
  string finds every literal it contains, whatever their number;
- a context is cut at its ``/X:`` blocks into four chunks (phone, syllables, words,
  phrases) and each chunk's result is remembered: the syllable, word and phrase chunks
  repeat from phone to phone and from utterance to utterance, so most of a context is
  never searched twice;
- patterns that could span two blocks, and patterns with inner wildcards, are searched
  in the whole context as Merlin does.

The result equals Merlin's on every pattern: a literal found inside a block is found in
the context, and the locality rules below guarantee the converse.
"""

from __future__ import annotations

import re

import numpy as np

from .questions import QuestionSet

_END = ""  # trie key of "a literal ends here" (never a character)
_DIGITS = re.compile(r"\d+")
#: a numeric pattern ``lead(\d+)trail`` with literal lead and trail
_SIMPLE_CQS = re.compile(r"^([^*?()]*)\(\\d\+\)([^*?()]*)$")


def _is_local(literal: str) -> bool:
    """Whether every occurrence of ``literal`` lies inside one extended chunk.

    Chunks start at a ``/``; an extended chunk is a chunk plus the next block's header
    (``/X:``). A literal with no ``/``, with ``/`` only as its first character, or whose
    only ``/`` is followed by nothing but a header (``_1/A:``), cannot leave one.
    """
    slash = literal.find("/")
    if slash <= 0:
        return literal.count("/") <= 1
    rest = literal[slash + 1 :]
    return "/" not in rest and rest.endswith(":") and rest.count(":") == 1


def _anchored_at_end(regex: str) -> bool:
    """Whether a regex ends in an end anchor (``$`` or ``\\Z``), not an escaped ``\\$``."""
    if regex.endswith(r"\Z"):
        return True
    if not regex.endswith("$"):
        return False
    backslashes = len(regex[:-1]) - len(regex[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _add(trie: dict, literal: str, bits: int) -> None:
    node = trie
    for ch in literal:
        node = node.setdefault(ch, {})
    node[_END] = node.get(_END, 0) | bits


def _walk(trie: dict, s: str, starts: range) -> int:
    found = 0
    n = len(s)
    for i in starts:
        node = trie
        j = i
        while j < n:
            node = node.get(s[j])
            if node is None:
                break
            j += 1
            found |= node.get(_END, 0)
    return found


#: the eleven blocks of an HTS context (phone, A..J) grouped by how often they change:
#: phone | syllables (A-C) | words (D-F) | phrases and utterance (G-J)
_HTS_GROUPS = ((0, 1), (1, 4), (4, 7), (7, 11))


def _chunks(context: str) -> list[tuple[str, int]]:
    """Cut a context into extended chunks: ``(text, own)`` where ``text`` is a run of
    ``/``-blocks plus the next block's ``/X:`` header and ``own`` its length without it."""
    parts = context.split("/")
    groups = _HTS_GROUPS if len(parts) == 11 else tuple((i, i + 1) for i in range(len(parts)))
    out = []
    for a, b in groups:
        text = "/".join(parts[a:b])
        if a:
            text = "/" + text
        own = len(text)
        if b < len(parts):
            nxt = parts[b]
            colon = nxt.find(":")
            text += "/" + (nxt[: colon + 1] if colon >= 0 else nxt)
        out.append((text, own))
    return out


class CompiledQuestions:
    """A `QuestionSet` compiled for repeated evaluation; see the module notes."""

    def __init__(self, questions: QuestionSet) -> None:
        self.questions = questions
        self.n_binary = len(questions.binary)
        self.n_numeric = len(questions.numeric)
        self._substring: dict = {}
        self._prefix: dict = {}
        self._suffix: list[tuple[str, int]] = []
        self._whole: list[tuple[re.Pattern, int]] = []
        for q_index, q in enumerate(questions.binary):
            bit = 1 << q_index
            for pattern, regex in zip(q.patterns, q.regexes, strict=True):
                core = pattern.strip("*")
                has_star = "*" in pattern
                start = regex.startswith("^") or (has_star and not pattern.startswith("*"))
                end = has_star and not pattern.endswith("*")
                if "*" in core or "?" in core or (start and end) or not _is_local(core) or not core:
                    self._whole.append((re.compile(regex), bit))
                elif start:
                    if "/" in core:
                        self._whole.append((re.compile(regex), bit))
                    else:
                        _add(self._prefix, core, bit)
                elif end:
                    if "/" in core:
                        self._whole.append((re.compile(regex), bit))
                    else:
                        self._suffix.append((core, bit))
                else:
                    _add(self._substring, core, bit)
        # numeric questions: block-local ones are evaluated per block (first match wins)
        self._local_numeric: list[tuple[int, re.Pattern, bool]] = []
        # lead(\d+)trail questions with literal lead and trail, indexed by the characters
        # that must stand right before and right after the digit run (None: anything after)
        self._by_neighbours: dict[tuple[str, str | None], list[tuple[int, str, str, bool]]] = {}
        self._whole_numeric: list[tuple[int, re.Pattern]] = []
        for j, q in enumerate(questions.numeric):
            pattern, regex = q.patterns[0], q.regexes[0]
            core = pattern.strip("*")
            literal = re.sub(r"\((?:\\d\+|\[\\d\\\.\]\+|\[-\\d\]\+)\)", "0", core)
            anchored_start = "*" in pattern and not pattern.startswith("*")
            if "*" in core or "?" in literal or anchored_start or not _is_local(literal):
                self._whole_numeric.append((j, re.compile(regex)))
            else:
                at_end = _anchored_at_end(regex)
                simple = _SIMPLE_CQS.match(core)
                if (
                    simple
                    and simple.group(1)
                    and not simple.group(1)[-1].isdigit()
                    and not simple.group(2)[:1].isdigit()
                ):
                    lead, trail = simple.group(1), simple.group(2)
                    key = (lead[-1], trail[:1]) if trail or at_end else (lead[-1], None)
                    self._by_neighbours.setdefault(key, []).append((j, lead, trail, at_end))
                else:
                    self._local_numeric.append((j, re.compile(regex), at_end))
        self._memo: dict[tuple[int, str], tuple[int, np.ndarray]] = {}

    def _block(self, kind: int, block: str, own: int) -> tuple[int, np.ndarray]:
        """Binary bits and numeric first matches (NaN: none) of one extended chunk.

        ``kind`` bit 1 = first chunk (prefix patterns apply), bit 2 = last chunk (suffix
        and end-anchored patterns apply); ``own`` = length of the chunk without the next
        block's header: a numeric match must start there to belong to this chunk.
        """
        bits = _walk(self._substring, block, range(own))
        if kind & 1:
            bits |= _walk(self._prefix, block, range(1))
        if kind & 2:
            for literal, bit in self._suffix:
                if block.endswith(literal):
                    bits |= bit
        found: dict[int, float] = {}
        # A question lead(\d+)trail matches at a maximal digit run preceded by its lead and
        # followed by its trail; the leftmost such run is the regex's first match.
        runs: dict[tuple[str, str | None], list[tuple[int, int]]] = {}
        for m in _DIGITS.finditer(block):
            a, b = m.span()
            runs.setdefault((block[a - 1 : a], block[b : b + 1]), []).append((a, b))
            runs.setdefault((block[a - 1 : a], None), []).append((a, b))
        n = len(block)
        for key, spans in runs.items():
            for j, lead, trail, at_end in self._by_neighbours.get(key, ()):
                if j in found or (at_end and not kind & 2):
                    continue
                for a, b in spans:
                    if (
                        a - len(lead) < own
                        and block.startswith(lead, a - len(lead))
                        and block.startswith(trail, b)
                        and (not at_end or b + len(trail) == n)
                    ):
                        found[j] = float(block[a:b])
                        break
        for j, regex, at_end in self._local_numeric:
            if at_end and not kind & 2:
                continue
            m = regex.search(block)
            if m is not None and m.start() < own:
                found.setdefault(j, float(m.group(1)))
        numbers = np.full(self.n_numeric, np.nan)
        if found:
            numbers[list(found)] = list(found.values())
        hit = (bits, numbers)
        if len(self._memo) > 1_000_000:
            self._memo.clear()
        self._memo[(kind, block)] = hit
        return hit

    def evaluate(self, contexts: list[str]) -> np.ndarray:
        """Question features of each context: float32 (len(contexts), n_binary + n_numeric).

        Binary columns are 0/1; numeric columns hold the captured number or -1.
        """
        n = len(contexts)
        nbytes = (self.n_binary + 7) // 8
        memo, block = self._memo, self._block
        rows: dict[str, int] = {}
        order = np.empty(n, np.int64)
        masks: list[bytes] = []
        chunk_numbers: list[list[np.ndarray]] = []
        whole: list[tuple[int, int, float]] = []
        for i, context in enumerate(contexts):
            row = rows.get(context)
            if row is None:
                row = rows[context] = len(masks)
                chunks = _chunks(context)
                last = len(chunks) - 1
                bits = 0
                numbers = []
                for c, (text, own) in enumerate(chunks):
                    kind = (c == 0) | (c == last) << 1
                    hit = memo.get((kind, text)) or block(kind, text, own)
                    bits |= hit[0]
                    numbers.append(hit[1])
                for regex, bit in self._whole:
                    if regex.search(context):
                        bits |= bit
                for j, regex in self._whole_numeric:
                    m = regex.search(context)
                    if m is not None:
                        whole.append((row, j, float(m.group(1))))
                masks.append(bits.to_bytes(nbytes, "little"))
                chunk_numbers.append(numbers)
            order[i] = row
        flags = np.unpackbits(
            np.frombuffer(b"".join(masks), np.uint8).reshape(-1, nbytes), axis=1, bitorder="little"
        )
        # numeric: the first chunk (in context order) with a match wins
        width = max(len(c) for c in chunk_numbers)
        stacked = np.full((len(masks), width, self.n_numeric), np.nan)
        for r, numbers in enumerate(chunk_numbers):
            stacked[r, : len(numbers)] = numbers
        first = np.argmax(~np.isnan(stacked), axis=1)
        numeric = np.take_along_axis(stacked, first[:, None, :], axis=1)[:, 0, :]
        numeric[np.isnan(numeric)] = -1.0
        for r, j, value in whole:
            numeric[r, j] = value
        out = np.empty((len(masks), self.n_binary + self.n_numeric), np.float32)
        out[:, : self.n_binary] = flags[:, : self.n_binary]
        out[:, self.n_binary :] = numeric
        return out[order]

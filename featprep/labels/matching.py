"""Fast, exact evaluation of a question set on full-context labels.

Merlin searches every pattern of every question in every context (about 1,000 regular
expression searches per phone for its 416 set). Here the question set is compiled once
and applied to all the distinct contexts of a call at once, array-wise:

- every wildcard-free pattern is a literal; all of them go into one Aho-Corasick
  automaton (a state x byte-class table), run over the contexts as the columns of a byte
  matrix, one table look-up per character for all contexts together. Anchors become
  sentinel bytes framing each context (``\\x02context\\x03``), so ``aa^*`` is the literal
  ``\\x02aa^`` and a pattern anchored at both ends an exact match;
- a numeric question ``lead(\\d+)trail`` (literal lead and trail, the usual form) matches
  at a maximal digit run with ``lead`` right before it and ``trail`` right after (and the
  end sentinel after that when the regex ends in ``$``); the runs of all contexts are
  found once and checked against all such questions at once; the leftmost wins, as
  ``re.search`` has it;
- anything else (inner ``*`` or ``?``, other number groups, contexts or patterns holding
  the sentinel bytes, non-ASCII contexts for the numbers) is searched with its regular
  expression in each distinct context, as Merlin does.

The result equals Merlin's on every pattern: a literal occurs in a context exactly when
the automaton passes a state that accepts it.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

from .questions import QuestionSet

#: context framing: start sentinel, end sentinel; byte 0 pads the byte matrix
_START, _END = b"\x02", b"\x03"
_MARGIN = bytes(8)
_RESERVED = ("\x00", "\x02", "\x03")
#: distinct contexts answered together
_BLOCK = 1024
#: a numeric pattern ``lead(\d+)trail`` with literal lead and trail
_SIMPLE_CQS = re.compile(r"^([^*?()]*)\(\\d\+\)([^*?()]*)$")


def _anchored_at_end(regex: str) -> bool:
    """Whether a regex ends in an end anchor (``$`` or ``\\Z``), not an escaped ``\\$``."""
    if regex.endswith(r"\Z"):
        return True
    if not regex.endswith("$"):
        return False
    backslashes = len(regex[:-1]) - len(regex[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _reserved(text: str) -> bool:
    return any(c in text for c in _RESERVED)


class _Automaton:
    """Aho-Corasick automaton of byte literals, each accepting a set of question columns.

    ``delta[state, byte_class]`` is the full transition table (failure links folded in);
    bytes that occur in no literal share class 0, which leads back to the root.
    """

    def __init__(self, literals: dict[bytes, set[int]]) -> None:
        alphabet = sorted({b for literal in literals for b in literal})
        self.byte_class = np.zeros(256, np.int32)
        self.byte_class[alphabet] = np.arange(1, len(alphabet) + 1)
        children: list[dict[int, int]] = [{}]
        accepts: list[set[int]] = [set()]
        for literal, columns in literals.items():
            state = 0
            for b in literal:
                nxt = children[state].get(b)
                if nxt is None:
                    nxt = children[state][b] = len(children)
                    children.append({})
                    accepts.append(set())
                state = nxt
            accepts[state] |= columns
        delta = np.zeros((len(children), len(alphabet) + 1), np.intp)
        for b, child in children[0].items():
            delta[0, self.byte_class[b]] = child
        # breadth first: a state's failure target is shallower, so its row is already final
        fail = [0] * len(children)
        queue = list(children[0].values())
        head = 0
        while head < len(queue):
            state = queue[head]
            head += 1
            for b, child in children[state].items():
                fail[child] = delta[fail[state], self.byte_class[b]]
                queue.append(child)
            delta[state] = delta[fail[state]]
            for b, child in children[state].items():
                delta[state, self.byte_class[b]] = child
            accepts[state] |= accepts[fail[state]]
        self.n_classes = delta.shape[1]
        self.longest = max(map(len, literals), default=1)
        # table[state * n_classes + byte class] = next state * n_classes: one look-up a step
        # int32: the scan below runs many times faster on it than on int64
        self.scaled = (delta * self.n_classes).ravel().astype(np.int32)
        # accepted columns as a CSR table, for the states that accept any
        counts = np.array([len(a) for a in accepts], np.intp)
        self.accepting = np.repeat(counts > 0, self.n_classes)  # indexed by scaled state
        self.ptr = np.concatenate([[0], np.cumsum(counts)])
        self.columns = np.array([c for a in accepts for c in sorted(a)], np.intp)

    def hits(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of every accepted literal in the byte matrix ``codes`` (rows x width).

        The table is read once per byte column for all rows together; short calls cut each
        row into overlapping pieces (overlap: the longest literal less one, so that every
        occurrence lies whole in some piece) to take fewer, wider steps.
        """
        n_rows, width = codes.shape
        overlap = self.longest - 1
        pieces = max(1, min(width // self.longest, -(-2048 // n_rows)))
        step = -(-(width - overlap) // pieces)
        length = step + overlap
        padded = np.zeros((n_rows, (pieces - 1) * step + length), np.uint8)
        padded[:, :width] = codes
        cut = np.lib.stride_tricks.as_strided(
            padded, (pieces, length, n_rows), (step, 1, padded.strides[0]), writeable=False
        )
        classes = self.byte_class[cut.transpose(1, 2, 0).reshape(length, n_rows * pieces)]
        states = np.empty(classes.shape, np.int32)
        table, state = self.scaled, np.zeros(classes.shape[1], np.int32)
        for t in range(length):
            state = states[t] = table[state + classes[t]]
        place = np.flatnonzero(self.accepting[states])
        accepted = states.ravel()[place] // self.n_classes
        start, stop = self.ptr[accepted], self.ptr[accepted + 1]
        n = stop - start
        offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        row = place % classes.shape[1] // pieces
        return np.repeat(row, n), self.columns[np.repeat(start, n) + offsets]


class CompiledQuestions:
    """A `QuestionSet` compiled for repeated evaluation; see the module notes."""

    def __init__(self, questions: QuestionSet) -> None:
        self.questions = questions
        self.n_binary = len(questions.binary)
        self.n_numeric = len(questions.numeric)
        literals: dict[bytes, set[int]] = {}
        self._regex_binary: list[tuple[re.Pattern, int]] = []
        for column, q in enumerate(questions.binary):
            for pattern, regex in zip(q.patterns, q.regexes, strict=True):
                core = pattern.strip("*")
                has_star = "*" in pattern
                start = regex.startswith("^") or (has_star and not pattern.startswith("*"))
                end = has_star and not pattern.endswith("*")
                if "*" in core or "?" in core or not core or _reserved(core):
                    self._regex_binary.append((re.compile(regex), column))
                    continue
                literal = (_START if start else b"") + _encode(core) + (_END if end else b"")
                literals.setdefault(literal, set()).add(column)
        self._automaton = _Automaton(literals)
        # numeric: (column, lead, trail) of the lead(\d+)trail questions, the rest by regex
        simple: list[tuple[int, bytes, bytes]] = []
        self._regex_numeric: list[tuple[re.Pattern, int]] = []
        for j, q in enumerate(questions.numeric):
            pattern, regex = q.patterns[0], q.regexes[0]
            core = pattern.strip("*")
            m = _SIMPLE_CQS.match(core)
            anchored_start = "*" in pattern and not pattern.startswith("*")
            if (
                m is None
                or anchored_start
                or not m.group(1)
                or m.group(1)[-1].isdigit()
                or m.group(2)[:1].isdigit()
                or _reserved(core)
            ):
                self._regex_numeric.append((re.compile(regex), j))
                continue
            lead = _encode(m.group(1))
            trail = _encode(m.group(2)) + (_END if _anchored_at_end(regex) else b"")
            if _NumericQuestions.fits(lead, trail):
                simple.append((j, lead, trail))
            else:
                self._regex_numeric.append((re.compile(regex), j))
        self._numeric = _NumericQuestions(simple)

    def evaluate(self, contexts: list[str]) -> np.ndarray:
        """Question features of each context: float32 (len(contexts), n_binary + n_numeric).

        Binary columns are 0/1; numeric columns hold the captured number or -1.
        """
        rows: dict[str, int] = {}
        order = np.fromiter((rows.setdefault(c, len(rows)) for c in contexts), np.intp, len(contexts))
        unique = list(rows)
        out = np.zeros((len(unique), self.n_binary + self.n_numeric), np.float32)
        out[:, self.n_binary :] = -1.0
        # blocks of contexts: the working arrays stay in cache and memory stays bounded
        for i in range(0, len(unique), _BLOCK):
            self._answer(unique[i : i + _BLOCK], out[i : i + _BLOCK])
        return out[order]

    def _answer(self, contexts: list[str], out: np.ndarray) -> None:
        """Fill ``out`` (rows = the distinct ``contexts``, numeric columns at -1)."""
        numeric = out[:, self.n_binary :]
        text = "\n".join(contexts)
        if _reserved(text):
            # a context holding a sentinel byte could fake an anchor: Merlin's way for all
            self._search(contexts, out, self._merlin[0], [])
            self._search(contexts, numeric, [], self._merlin[1])
            return
        # 8 zero bytes before and after each context: the numbers' windows
        encoded = [_MARGIN + _START + _encode(c) + _END for c in contexts]
        padded = np.array(encoded, dtype=f"S{max(map(len, encoded)) + 8}")
        padded = padded.view(np.uint8).reshape(len(encoded), -1)
        row, column = self._automaton.hits(padded[:, 8:-8])
        out[row, column] = 1.0
        self._search(contexts, out, self._regex_binary, [])
        if text.isascii():
            self._numeric.answer(padded, numeric)
            self._search(contexts, numeric, [], self._regex_numeric)
        else:
            # \d also matches non-ASCII digits: leave the numbers to the regexes
            self._search(contexts, numeric, [], self._merlin[1])

    @cached_property
    def _merlin(self) -> tuple[list[tuple[re.Pattern, int]], list[tuple[re.Pattern, int]]]:
        """Every binary and numeric regex with its column (Merlin's way, for odd contexts)."""
        binary = [(re.compile(r), c) for c, q in enumerate(self.questions.binary) for r in q.regexes]
        numeric = [(re.compile(q.regexes[0]), j) for j, q in enumerate(self.questions.numeric)]
        return binary, numeric

    @staticmethod
    def _search(
        contexts: list[str],
        out: np.ndarray,
        binary: list[tuple[re.Pattern, int]],
        numeric: list[tuple[re.Pattern, int]],
    ) -> None:
        """Merlin's way: each regex searched in each context (binary: 1 on a match;
        numeric: the first match's number)."""
        for r, context in enumerate(contexts):
            for regex, column in binary:
                if regex.search(context):
                    out[r, column] = 1.0
            for regex, column in numeric:
                m = regex.search(context)
                out[r, column] = float(m.group(1)) if m is not None else -1.0


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class _NumericQuestions:
    """``lead(\\d+)trail`` questions (lead and trail 7 bytes at most together) answered on
    the byte matrix of ASCII contexts.

    Each maximal digit run is read with the 8 bytes before and after it as two integers;
    a question of lead length ``L`` and trail length ``T`` matches a run whose last ``L``
    bytes before and first ``T`` bytes after, packed into one integer with the shape's
    number in the top byte, equal its own.
    """

    def __init__(self, questions: list[tuple[int, bytes, bytes]]) -> None:
        shapes = sorted({(len(lead), len(trail)) for _, lead, trail in questions})
        self.lead_shift = np.array([64 - 8 * lead for lead, _ in shapes], np.uint64)
        self.trail_shift = np.array([8 * trail for _, trail in shapes], np.uint64)
        self.trail_mask = np.array([(1 << (8 * trail)) - 1 for _, trail in shapes], np.uint64)
        self.shape_tag = np.array([g << 56 for g in range(len(shapes))], np.uint64)
        column_of: dict[int, int] = {}
        #: (column, twin): questions of one lead and trail have one answer
        self.twins: list[tuple[int, int]] = []
        for j, lead, trail in questions:
            key = (
                shapes.index((len(lead), len(trail))) << 56
                | int.from_bytes(lead, "little") << (8 * len(trail))
                | int.from_bytes(trail, "little")
            )
            if key in column_of:
                self.twins.append((column_of[key], j))
            else:
                column_of[key] = j
        keys = sorted(column_of)
        # one key past the end, which no run can have (shape numbers stay below 255)
        self.keys = np.array([*keys, 2**64 - 1], np.uint64)
        self.columns = np.array([column_of[k] for k in keys], np.intp)
        self.n_columns = max((j for j, _, _ in questions), default=0) + 1

    @staticmethod
    def fits(lead: bytes, trail: bytes) -> bool:
        return len(lead) + len(trail) <= 7

    def answer(self, padded: np.ndarray, out: np.ndarray) -> None:
        """Write each question's number (leftmost match) into ``out``.

        ``padded``: the byte matrix of the contexts (rows of ``out``) with 8 zero bytes
        before and at least 8 after each row.
        """
        if len(self.keys) == 1:  # the end key alone: no such question
            return
        n_rows, width = padded.shape
        digit = (padded - np.uint8(ord("0"))) < 10
        # every row begins and ends with non-digits: its changes alternate start, end
        row, change = np.nonzero(digit[:, 1:] != digit[:, :-1])
        row, start, end = row[::2], change[::2] + 1, change[1::2] + 1
        # 8 bytes from each column, as little-endian integers (an unaligned view)
        window = np.ndarray((n_rows, width - 7), "<u8", padded, 0, (padded.strides[0], 1))
        before = window[row, start - 8]  # byte start - 1 is the highest
        after = window[row, end]  # byte end is the lowest
        key = (before[:, None] >> self.lead_shift) << self.trail_shift
        key |= (after[:, None] & self.trail_mask) | self.shape_tag
        key = key.ravel()
        at = np.searchsorted(self.keys, key)
        hit = np.flatnonzero(self.keys[at] == key)
        run, column = hit // len(self.shape_tag), self.columns[at[hit]]
        # runs are in (row, start) order, so (row, column) pairs nearly sorted already: a
        # stable sort keeps each pair's leftmost match first
        pair = row[run] * self.n_columns + column
        by_pair = np.argsort(pair, kind="stable")
        pair = pair[by_pair]
        first = by_pair[np.concatenate([[True], pair[1:] != pair[:-1]])]
        run, column = run[first], column[first]
        r, a, length = row[run], start[run], end[run] - start[run]
        value = _parse_digits(window[r, a], np.minimum(length, 8)).astype(np.float64)
        for i in np.flatnonzero(length > 8):  # longer numbers: Merlin's own parse
            value[i] = float(padded[r[i], a[i] : a[i] + length[i]].tobytes().decode())
        out[r, column] = value
        for column, twin in self.twins:
            out[:, twin] = out[:, column]


def _parse_digits(window: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The numbers written by the first ``length`` (1..8) bytes, all ASCII digits, of each
    little-endian ``window``: eight digits at a time in integer arithmetic (Lemire's)."""
    digits = window - np.uint64(0x3030303030303030)  # a borrow only moves to later bytes
    # the number's bytes to the top, zeros (leading zero digits) below
    x = digits << (np.uint64(8) * (np.uint64(8) - length.astype(np.uint64)))
    x = x * np.uint64(10) + (x >> np.uint64(8))
    low = (x & np.uint64(0x000000FF000000FF)) * np.uint64(100 + (1000000 << 32))
    high = ((x >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(1 + (10000 << 32))
    return (low + high) >> np.uint64(32)

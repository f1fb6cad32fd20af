"""Merlin's linguistic features: question answers per phone, expanded to 5 ms frames.

Every ``subphone_feats`` mode of Merlin's ``label_normalisation.py`` is reproduced, with
the frame expansion done by array arithmetic instead of a loop per frame. Row layout:
``[binary questions..., numeric questions..., frame features...]``.

State-aligned labels (five states per phone), frame features of frame ``i`` (0-based)
of a state of ``n`` frames, state ``s`` (1..5), phone of ``P`` frames, ``B`` frames in the
phone's earlier states:

- ``full`` (9): (i+1)/n, (n-i)/n, n, s, 6-s, P, n/P, (P-i-B)/P, (B+i+1)/P
- ``minimal_frame`` (2): (i+1)/n, s
- ``state_only`` (1): s
- ``frame_only`` (1): (B+i+1)/P
- ``uniform_state`` (2): (B+i+1)/P, max(1, round(5 (B+i+1)/P))
- ``coarse_coding`` (4): three Gaussians read at the frame's place in the phone, P
- ``none`` (0)

Phone-aligned labels support ``minimal_phoneme`` (3: (i+1)/P, (P-i)/P, P),
``coarse_coding`` and ``none``. Frames of a line are ``end // 50000 - start // 50000``
(the alignment contract; Merlin's state-aligned code divides the duration instead, which
differs only for times off the 5 ms grid).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import FeatprepError
from ..io import atomic_path, atomic_write_npy, check_output_file
from .hts import HTSLabel, read_hts
from .matching import CompiledQuestions
from .questions import load_questions

logger = logging.getLogger(__name__)

FRAME_FEATURES = {
    "full": 9,
    "minimal_frame": 2,
    "state_only": 1,
    "frame_only": 1,
    "uniform_state": 2,
    "minimal_phoneme": 3,
    "coarse_coding": 4,
    "none": 0,
}
#: ``linguistic.duration_unit`` choices (``auto``: ``state`` for the align source, else ``phone``)
DURATION_UNITS = ("auto", "state", "phone")
#: HMM states per phone of state-aligned labels (Merlin's and featprep's aligner's five)
STATES_PER_PHONE = 5
STATE_MODES = ("full", "minimal_frame", "state_only", "frame_only", "uniform_state", "coarse_coding", "none")
PHONE_MODES = ("minimal_phoneme", "coarse_coding", "none")

FRAME_FEATURE_NAMES = {
    "full": [
        "state_fw",
        "state_bw",
        "state_frames",
        "state_index",
        "state_index_bw",
        "phone_frames",
        "state_share",
        "phone_bw",
        "phone_fw",
    ],
    "minimal_frame": ["state_fw", "state_index"],
    "state_only": ["state_index"],
    "frame_only": ["phone_fw"],
    "uniform_state": ["phone_fw", "uniform_state_index"],
    "minimal_phoneme": ["phone_fw", "phone_bw", "phone_frames"],
    "coarse_coding": ["coarse_0", "coarse_1", "coarse_2", "phone_frames"],
    "none": [],
}


@lru_cache(maxsize=1)
def _coarse_curves() -> np.ndarray:
    """Merlin's three coarse-coding Gaussians (sigma 0.4) sampled on 600 points.

    ``scipy.stats.norm(mu, 0.4).pdf`` as scipy computes it, step by step (same float64
    results), without importing scipy.stats (a third of a second at each command start).
    """
    sigma = 0.4
    curves = np.zeros((3, 600))
    for k, (lo, mu) in enumerate(((-1.5, 0.0), (-1.0, 0.5), (-0.5, 1.0))):
        z = (np.linspace(lo, lo + 3.0, 600) - mu) / sigma
        curves[k] = np.exp(-(z**2) / 2.0) / np.sqrt(2 * np.pi) / sigma
    return curves


def _coarse(position: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """Coarse coding of frame ``position`` (0-based) in a phone of ``duration`` frames."""
    rel = ((200.0 / duration) * position).astype(np.int64)
    curves = _coarse_curves()
    return np.stack([curves[0, 300 + rel], curves[1, 200 + rel], curves[2, 100 + rel]], axis=1)


def _check_mode(label: HTSLabel, mode: str) -> None:
    if mode not in FRAME_FEATURES:
        raise FeatprepError(f"unknown subphone_features {mode!r}; expected one of {sorted(FRAME_FEATURES)}")
    allowed = STATE_MODES if label.state_aligned else PHONE_MODES
    if mode not in allowed:
        kind = "state-aligned" if label.state_aligned else "phone-aligned"
        raise FeatprepError(
            f"subphone_features {mode!r} needs state-aligned labels; {kind} labels take {list(allowed)}"
        )


def default_subphone_features(label: HTSLabel) -> str | None:
    """The frame features Merlin would use for ``label``.

    ``full`` for state-aligned labels (Merlin's default), ``coarse_coding`` for
    phone-aligned ones (what Merlin's phone-alignment recipes use), None for labels
    without times: those give phone-level rows only.
    """
    if not label.aligned:
        return None
    return "full" if label.state_aligned else "coarse_coding"


def label_file_features(
    label: str | Path,
    *,
    questions: str = "featprep_hts",
    subphone_features: str = "auto",
    phone_level: bool = False,
) -> np.ndarray:
    """Merlin's feature matrix of one HTS label file (``featprep linguistic``): float32,
    one row per frame, or per phone with ``phone_level`` (question columns only).

    ``questions`` is a ``.hed`` file or a built-in set's name. ``auto`` frame features
    follow the file as Merlin would use it (`default_subphone_features`; labels without
    times give phone-level rows); the choice is logged.
    """
    labels = read_hts(label)
    phone_level = _file_phone_level(label, labels, subphone_features, phone_level)
    return linguistic_features(
        labels,
        CompiledQuestions(load_questions(questions)),
        subphone_features=subphone_features,
        add_frame_features=not phone_level,
    )


def _file_phone_level(label: str | Path, labels: HTSLabel, subphone_features: str, phone_level: bool) -> bool:
    """Whether ``auto`` gives phone-level rows for this file (no times); logs the choice."""
    if subphone_features != "auto" or phone_level:
        return phone_level
    chosen = default_subphone_features(labels)
    kind = "state-aligned" if labels.state_aligned else "phone-aligned" if labels.aligned else "without times"
    logger.info(
        "%s: labels %s: %s",
        label,
        kind,
        "one row per phone" if chosen is None else f"frame features {chosen}",
    )
    return chosen is None


def write_label_file_features(
    label: str | Path,
    out: str | Path,
    *,
    questions: str = "featprep_hts",
    subphone_features: str = "auto",
    phone_level: bool = False,
    block_frames: int = 8192,
) -> tuple[int, int]:
    """`label_file_features` of ``label`` written to the ``.npy`` file ``out`` (checked
    writable before any work); returns the matrix's shape.

    The questions are answered once for all phones; the frame rows are then written
    ``block_frames`` at a time from one reused buffer, so a long label file never holds
    its whole frame matrix in memory. The file equals ``numpy.save`` of the matrix.
    """
    check_output_file(out)
    labels = read_hts(label)
    phone_level = _file_phone_level(label, labels, subphone_features, phone_level)
    phone_rows = linguistic_features(
        labels, CompiledQuestions(load_questions(questions)), add_frame_features=False
    )
    if phone_level:
        atomic_write_npy(out, phone_rows)
        return phone_rows.shape
    plan = _FramePlan(labels, phone_rows, subphone_features)
    shape = (plan.total, plan.width)
    buffer = np.empty((min(block_frames, plan.total), plan.width), np.float32)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for first in range(0, plan.total, len(buffer)):
            last = min(first + len(buffer), plan.total)
            plan.fill(buffer[: last - first], first, last)
            f.write(buffer[: last - first].data)
    return shape


def phone_contexts(label: HTSLabel) -> list[str]:
    """One context per phone (the first state's, for state-aligned labels)."""
    if not label.state_aligned:
        return list(label.contexts)
    n = _states_per_phone(label)
    return label.contexts[::n]


def _states_per_phone(label: HTSLabel) -> int:
    return int(label.states.max() - label.states.min() + 1)


def linguistic_features(
    label: HTSLabel,
    questions: CompiledQuestions,
    *,
    subphone_features: str = "auto",
    add_frame_features: bool = True,
) -> np.ndarray:
    """Merlin's linguistic feature matrix of one utterance, float32.

    Parameters
    ----------
    label : labels; frame rows need times (state- or phone-aligned).
    questions : a compiled question set.
    subphone_features : a Merlin ``subphone_feats`` mode (see the module notes), or
        ``"auto"``: `default_subphone_features` of the labels.
    add_frame_features : rows per 5 ms frame (True) or one row per phone (False; the
        duration model's input, question columns only).

    Returns
    -------
    ``(frames, n_questions + frame features)`` or ``(phones, n_questions)``.
    """
    phone_rows = questions.evaluate(phone_contexts(label))
    if not add_frame_features:
        return phone_rows
    return frame_features(label, phone_rows, subphone_features)


def frame_features(label: HTSLabel, phone_rows: np.ndarray, subphone_features: str = "auto") -> np.ndarray:
    """The phone rows of `linguistic_features` (``add_frame_features=False``) expanded to
    5 ms frames, with the frame features of ``subphone_features`` appended.

    Split out so that a caller wanting both the phone rows and the frame rows (prepare's
    ``linguistic`` stage) answers the questions once.
    """
    plan = _FramePlan(label, phone_rows, subphone_features)
    out = np.empty((plan.total, plan.width), np.float32)
    plan.fill(out, 0, plan.total)
    return out


class _FramePlan:
    """Where each 5 ms frame of a label falls (line, phone), to write any run of frame rows."""

    def __init__(self, label: HTSLabel, phone_rows: np.ndarray, subphone_features: str) -> None:
        if not label.aligned:
            raise FeatprepError(
                "frame features need aligned labels (start and end times); these have none: "
                "ask for phone-level rows (question columns only)"
            )
        if subphone_features == "auto":
            subphone_features = default_subphone_features(label)
        _check_mode(label, subphone_features)
        frames = label.frames()
        if np.any(frames < 0):
            raise FeatprepError("labels with negative durations")
        self.mode = subphone_features
        self.n_states = _states_per_phone(label) if label.state_aligned else 1
        self.line_frames = frames
        self.phone_frames = frames.reshape(-1, self.n_states).sum(axis=1)
        self.line_end = np.cumsum(frames)
        self.phone_end = np.cumsum(self.phone_frames)
        self.total = int(self.phone_end[-1]) if len(self.phone_end) else 0
        self.n_questions = phone_rows.shape[1]
        self.width = self.n_questions + FRAME_FEATURES[subphone_features]
        # the phone rows with the frame columns still empty: each frame row is one copy
        self.widened = np.zeros((len(phone_rows), self.width), np.float32)
        self.widened[:, : self.n_questions] = phone_rows

    def fill(self, out: np.ndarray, first: int, last: int) -> None:
        """Write frame rows ``first:last`` into ``out`` (``last - first`` rows)."""
        g = np.arange(first, last)
        phone = np.searchsorted(self.phone_end, g, side="right")
        np.take(self.widened, phone, axis=0, out=out, mode="clip")  # clip: unbuffered
        if self.width == self.n_questions:
            return
        line = np.searchsorted(self.line_end, g, side="right")
        i = g - (self.line_end - self.line_frames)[line]  # frame in state (or phone)
        k = g - (self.phone_end - self.phone_frames)[phone]  # frame in phone
        n = self.line_frames[line].astype(np.float64)
        P = self.phone_frames[phone].astype(np.float64)
        s = (line % self.n_states + 1).astype(np.float64)
        B = (k - i).astype(np.float64)
        n_states = self.n_states
        cols = {
            "state_fw": lambda: (i + 1) / n,
            "state_bw": lambda: (n - i) / n,
            "state_frames": lambda: n,
            "state_index": lambda: s,
            "state_index_bw": lambda: n_states + 1 - s,
            "phone_frames": lambda: P,
            "state_share": lambda: n / P,
            "phone_bw": lambda: (P - i - B) / P,
            "phone_fw": lambda: (B + i + 1) / P,
            "uniform_state_index": lambda: np.maximum(1.0, np.round((B + i + 1) / P * n_states)),
        }
        if self.mode == "coarse_coding":
            cc = _coarse(k, P)
            cols.update({f"coarse_{c}": (lambda c=c: cc[:, c]) for c in range(3)})
        for c, name in enumerate(FRAME_FEATURE_NAMES[self.mode]):
            out[:, self.n_questions + c] = cols[name]()


def duration_targets(label: HTSLabel) -> np.ndarray:
    """Frames per state (phones x states) or per phone (phones x 1), float32."""
    frames = label.frames()
    n = _states_per_phone(label) if label.state_aligned else 1
    return frames.reshape(-1, n).astype(np.float32)


def feature_names(questions: CompiledQuestions, subphone_features: str) -> list[str]:
    return questions.questions.names + FRAME_FEATURE_NAMES[subphone_features]

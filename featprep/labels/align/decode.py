"""Forced alignment of a known phone sequence: Viterbi over the concatenated phone HMMs.

The utterance's states form a chain (five per phone). Each state can be reached from at
most four predecessors, held in an ``(states, 4)`` table; the recursion over it is
compiled (numba). Slot 0 is
the state itself (stay), 1 the state before it (move on), 2 the last state of the unit
before a skippable one (a silence or short pause skipped) and 3 the silence model's own
last state (a silence looping back to its first state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ...errors import Rejected
from .model import N_STATES, SILENCE, AlignerModel


@dataclass
class Graph:
    """The states of one utterance.

    ``states[j]``: the flat model state of chain state j; ``line[j]``: the label line
    (phone * 5 + state) its frames count for; ``chain[i]``: the chain state of label line
    i. A short pause between words is a chain state of its own whose frames count for
    the last state of the phone before it.
    """

    phones: np.ndarray
    states: np.ndarray
    line: np.ndarray
    chain: np.ndarray
    pred: np.ndarray
    log_trans: np.ndarray
    log_init: np.ndarray
    finals: np.ndarray
    min_frames: int


def build_graph(model: AlignerModel, phones: np.ndarray, pauses: np.ndarray | None = None) -> Graph:
    """The state chain of model phone indices ``phones`` with its transitions.

    ``pauses[k]``: an optional short pause (one skippable state, the silence model's
    ``pause_state``) follows phone ``k``; only between two phones that are not silences.
    """
    S = N_STATES
    n = len(phones)
    silent_model = model.phones.index(SILENCE)
    silence = model.parents()[phones] == silent_model  # the silence or one of its context models
    if pauses is None:
        pauses = np.zeros(n, bool)
    pauses = pauses & ~silence & ~np.r_[silence[1:], True]
    # units in order: each phone's five states, then its short pause if any
    unit_phone = np.repeat(np.arange(n), 1 + pauses)
    is_pause = np.zeros(len(unit_phone), bool)
    is_pause[np.cumsum(1 + pauses) - 1] = pauses
    sizes = np.where(is_pause, 1, S)
    skippable = is_pause | silence[unit_phone]
    loops = silence[unit_phone] & ~is_pause
    firsts = np.cumsum(sizes) - sizes
    lasts = firsts + sizes - 1
    N = int(sizes.sum())
    unit_of = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.arange(N) - firsts[unit_of]
    states = np.where(
        is_pause[unit_of], silent_model * S + model.pause_state, phones[unit_phone[unit_of]] * S + offset
    )
    line = unit_phone[unit_of] * S + np.where(is_pause[unit_of], S - 1, offset)
    chain = np.flatnonzero(~is_pause[unit_of])
    log_stay = model.log_stay.reshape(-1)[states]
    with np.errstate(divide="ignore"):
        log_exit = np.log1p(-np.exp(log_stay))
    log_skip, log_keep = np.log(model.skip_prob), np.log1p(-model.skip_prob)
    log_loop, log_leave = np.log(model.loop_prob), np.log1p(-model.loop_prob)
    pred = np.full((N, 4), N, np.int64)  # N: a dummy state that is never reachable
    log_trans = np.zeros((N, 4))
    j = np.arange(N)
    pred[:, 0] = j
    log_trans[:, 0] = log_stay
    pred[1:, 1] = j[:-1]
    log_trans[1:, 1] = log_exit[:-1]
    # leaving a looping silence's last state: loop back or go on
    log_trans[firsts[1:], 1] += np.where(loops[:-1], log_leave, 0.0)
    # entering a unit that could have been skipped
    log_trans[firsts[1:], 1] += np.where(skippable[1:], log_keep, 0.0)
    U = len(sizes)
    for u in np.flatnonzero(skippable):
        if 1 <= u < U - 1:
            pred[firsts[u + 1], 2] = lasts[u - 1]
            log_trans[firsts[u + 1], 2] = log_exit[lasts[u - 1]] + log_skip
    for u in np.flatnonzero(loops):
        pred[firsts[u], 3] = lasts[u]
        log_trans[firsts[u], 3] = log_exit[lasts[u]] + log_loop
    log_init = np.full(N, -np.inf)
    log_init[0] = log_keep if skippable[0] else 0.0
    finals = [N - 1]
    if skippable[0] and U > 1:
        log_init[firsts[1]] = log_skip
    if skippable[-1] and U > 1:
        finals.append(lasts[-2])
    min_frames = int(sizes[~skippable].sum()) if not skippable.all() else int(sizes[0])
    return Graph(phones, states, line, chain, pred, log_trans, log_init, np.array(finals), min_frames)


def check_fits(graph: Graph, n_frames: int) -> None:
    """Raise `Rejected` (``label_mismatch``) when the frames cannot hold the phones' states."""
    if n_frames < graph.min_frames:
        raise Rejected(
            "label_mismatch",
            f"{n_frames} frames cannot hold the {graph.min_frames} states of its phones (5 ms each at least)",
        )


def viterbi(graph: Graph, log_lik: np.ndarray) -> tuple[np.ndarray, float]:
    """Best chain state of every frame and the path's log probability.

    ``log_lik``: ``(frames, chain states)`` emission log-likelihoods. Raises `Rejected`
    (``label_mismatch``) when the frames cannot hold every phone's five states.
    """
    n_frames, N = log_lik.shape
    check_fits(graph, n_frames)
    path = np.empty(n_frames, np.int64)
    score = _best_path(
        graph.pred, graph.log_trans, graph.log_init, graph.finals, np.asarray(log_lik, np.float64), path
    )
    if not np.isfinite(score):
        raise Rejected("label_mismatch", "no path through the phone models fits the audio")
    return path, score


@numba.njit(cache=True, nogil=True)
def _best_path(pred, log_trans, log_init, finals, log_lik, path):  # noqa: ANN001, ANN202
    """The Viterbi recursion and its traceback into ``path``; returns the best final
    score. Compiled: per frame, four candidates for each of ~150 states is far less work
    than the numpy calls it would take (3.5 s of a 12-minute corpus's 15 s training).
    Ties go to the first candidate (stay before move on), as numpy's argmax would."""
    T, N = log_lik.shape
    K = pred.shape[1]
    back = np.empty((T, N), np.int8)
    delta = np.full(N + 1, -np.inf)  # slot N: the unreachable dummy predecessor
    fresh = np.full(N + 1, -np.inf)
    for j in range(N):
        delta[j] = log_init[j] + log_lik[0, j]
    for t in range(1, T):
        for j in range(N):
            best = delta[pred[j, 0]] + log_trans[j, 0]
            arg = 0
            for k in range(1, K):
                v = delta[pred[j, k]] + log_trans[j, k]
                if v > best:
                    best = v
                    arg = k
            back[t, j] = arg
            fresh[j] = best + log_lik[t, j]
        delta, fresh = fresh, delta
    end = finals[0]
    for f in finals:
        if delta[f] > delta[end]:
            end = f
    j = end
    for t in range(T - 1, 0, -1):
        path[t] = j
        j = pred[j, back[t, j]]
    path[0] = j
    return delta[end]


def state_frames(path: np.ndarray, graph: Graph) -> np.ndarray:
    """Frames per label line, ``(phones, 5)``: a looping silence reports each state's
    total, laid out in state order (its frames stay within the silence); a short pause's
    frames go to the last state of the phone before it."""
    return np.bincount(graph.line[path], minlength=len(graph.phones) * N_STATES).reshape(-1, N_STATES)

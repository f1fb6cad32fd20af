"""Forced alignment of a known phone sequence: Viterbi over the concatenated phone HMMs.

The utterance's states form a chain (five per phone). Each state can be reached from at
most four predecessors, so one frame of the Viterbi recursion is a gather of an
``(states, 4)`` table, an ``argmax`` and an add: time is the only Python loop. Slot 0 is
the state itself (stay), 1 the state before it (move on), 2 the last state of the phone
before a skippable silence (the silence is skipped) and 3 the silence model's own last
state (a silence looping back to its first state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import Rejected
from .model import N_STATES, SILENCE, AlignerModel


@dataclass
class Graph:
    """The states of one utterance: ``states[j]`` is the flat model state of chain state j."""

    phones: np.ndarray
    states: np.ndarray
    pred: np.ndarray
    log_trans: np.ndarray
    log_init: np.ndarray
    finals: np.ndarray
    min_frames: int


def build_graph(model: AlignerModel, phones: np.ndarray) -> Graph:
    """The state chain of model phone indices ``phones`` with its transitions."""
    S = N_STATES
    n = len(phones)
    N = n * S
    states = (phones[:, None] * S + np.arange(S)).ravel()
    log_stay = model.log_stay.reshape(-1)[states]
    with np.errstate(divide="ignore"):
        log_exit = np.log1p(-np.exp(log_stay))
    silence = phones == model.phones.index(SILENCE)
    log_skip, log_keep = np.log(model.skip_prob), np.log1p(-model.skip_prob)
    log_loop, log_leave = np.log(model.loop_prob), np.log1p(-model.loop_prob)
    pred = np.full((N, 4), N, np.int64)  # N: a dummy state that is never reachable
    log_trans = np.zeros((N, 4))
    j = np.arange(N)
    pred[:, 0] = j
    log_trans[:, 0] = log_stay
    pred[1:, 1] = j[:-1]
    log_trans[1:, 1] = log_exit[:-1]
    firsts = np.arange(n) * S
    lasts = firsts + S - 1
    # leaving a silence's last state: loop back or go on
    log_trans[firsts[1:], 1] += np.where(silence[:-1], log_leave, 0.0)
    # entering a silence that could have been skipped
    log_trans[firsts[1:], 1] += np.where(silence[1:], log_keep, 0.0)
    for k in np.flatnonzero(silence):
        if k + 1 < n and k >= 1:
            pred[firsts[k + 1], 2] = lasts[k - 1]
            log_trans[firsts[k + 1], 2] = log_exit[lasts[k - 1]] + log_skip
        pred[firsts[k], 3] = lasts[k]
        log_trans[firsts[k], 3] = log_exit[lasts[k]] + log_loop
    log_init = np.full(N, -np.inf)
    log_init[0] = log_keep if silence[0] else 0.0
    finals = [N - 1]
    if silence[0] and n > 1:
        log_init[S] = log_skip
    if silence[-1] and n > 1:
        finals.append(N - 1 - S)
    min_frames = S * int(np.count_nonzero(~silence)) + (S if silence.all() else 0)
    return Graph(phones, states, pred, log_trans, log_init, np.array(finals), min_frames)


def viterbi(graph: Graph, log_lik: np.ndarray) -> tuple[np.ndarray, float]:
    """Best chain state of every frame and the path's log probability.

    ``log_lik``: ``(frames, chain states)`` emission log-likelihoods. Raises `Rejected`
    (``label_mismatch``) when the frames cannot hold every phone's five states.
    """
    n_frames, N = log_lik.shape
    if n_frames < graph.min_frames:
        raise Rejected(
            "label_mismatch",
            f"{n_frames} frames cannot hold {graph.min_frames // N_STATES} phones of five 5 ms states each",
        )
    pred, log_trans = graph.pred, graph.log_trans
    rows = np.arange(N)
    back = np.empty((n_frames, N), np.int8)
    delta = np.full(N + 1, -np.inf)
    delta[:N] = graph.log_init + log_lik[0]
    for t in range(1, n_frames):
        cand = delta[pred] + log_trans
        best = cand.argmax(axis=1)
        back[t] = best
        delta[:N] = cand[rows, best] + log_lik[t]
    end = graph.finals[np.argmax(delta[graph.finals])]
    score = float(delta[end])
    if not np.isfinite(score):
        raise Rejected("label_mismatch", "no path through the phone models fits the audio")
    path = np.empty(n_frames, np.int64)
    j = int(end)
    for t in range(n_frames - 1, 0, -1):
        path[t] = j
        j = int(pred[j, back[t, j]])
    path[0] = j
    return path, score


def state_frames(path: np.ndarray, n_chain: int) -> np.ndarray:
    """Frames per chain state, ``(phones, 5)``: a looping silence reports each state's total,
    laid out in state order (its frames stay within the silence)."""
    return np.bincount(path, minlength=n_chain).reshape(-1, N_STATES)

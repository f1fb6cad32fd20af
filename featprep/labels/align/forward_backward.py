"""State posteriors of one utterance (forward-backward in logs) for Baum-Welch training.

Uses the same chain as `decode.viterbi`: the forward pass gathers each state's (at most
four) predecessors, the backward pass each state's successors, a table built once per
utterance from the predecessor table.
"""

from __future__ import annotations

import numpy as np

from ...errors import Rejected
from .decode import Graph, check_fits
from .model import logsumexp


def _successors(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """``(states, k)`` successor indices (N = none) and their log transition probabilities."""
    N, K = graph.pred.shape
    src = graph.pred.ravel()
    dst = np.repeat(np.arange(N), K)
    logp = graph.log_trans.ravel()
    keep = src < N
    src, dst, logp = src[keep], dst[keep], logp[keep]
    order = np.argsort(src, kind="stable")
    src, dst, logp = src[order], dst[order], logp[order]
    slot = np.arange(len(src)) - np.searchsorted(src, src)
    succ = np.full((N, int(slot.max()) + 1), N, np.int64)
    log_succ = np.full(succ.shape, -np.inf)
    succ[src, slot] = dst
    log_succ[src, slot] = logp
    return succ, log_succ


def posteriors(graph: Graph, log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(frames, states)`` occupation probabilities, the expected number of self-loops of
    each chain state, and the utterance's total log-likelihood.

    Raises `Rejected` (``label_mismatch``) when no path fits, as `decode.viterbi` does.
    """
    T, N = log_lik.shape
    check_fits(graph, T)
    alpha = np.empty((T, N))
    a = np.full(N + 1, -np.inf)
    a[:N] = graph.log_init + log_lik[0]
    alpha[0] = a[:N]
    for t in range(1, T):
        a[:N] = logsumexp(a[graph.pred] + graph.log_trans, axis=1) + log_lik[t]
        alpha[t] = a[:N]
    log_z = float(logsumexp(alpha[T - 1, graph.finals], axis=0))
    if not np.isfinite(log_z):
        raise Rejected("label_mismatch", "no path through the phone models fits the audio")
    succ, log_succ = _successors(graph)
    beta = np.empty((T, N))
    b = np.full(N + 1, -np.inf)
    b[graph.finals] = 0.0
    beta[T - 1] = b[:N]
    for t in range(T - 2, -1, -1):
        v = np.full(N + 1, -np.inf)
        v[:N] = log_lik[t + 1] + b[:N]
        b[:N] = logsumexp(v[succ] + log_succ, axis=1)
        beta[t] = b[:N]
    gamma = np.exp(alpha + beta - log_z)
    log_stay = graph.log_trans[:, 0]
    stays = np.exp(alpha[:-1] + log_stay + log_lik[1:] + beta[1:] - log_z).sum(axis=0)
    return gamma, stays, log_z

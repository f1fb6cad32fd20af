"""Training the aligner's phone HMMs from the corpus itself (Viterbi or Baum-Welch).

Start: either the bootstrap (`bootstrap` module: speech Festival synthesised, true phone
boundaries) or the flat start: every state begins as the global Gaussian of the
(CMVN-normalised) corpus, and each utterance's frames are shared out, the edge silences
taking the low-energy frames before and after the speech (found on c0), the phones
between taking shares proportional to the label's own (Festival-predicted) durations.
Then, for each mixture count 1, 2, 4, .. up to the target (components split in two,
means moved by +-0.2 standard deviations), ``iterations`` rounds of: align every
utterance with the current models (best path, or state posteriors for Baum-Welch),
then re-estimate Gaussians, mixture weights and self-loop probabilities. All speakers
are pooled; CMVN per speaker does the speaker normalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ...errors import FeatprepError, Rejected
from ...workers import ordered_threads
from ..context import parse_context
from ..hts import HTSLabel, phone_of
from .decode import Graph, build_graph, viterbi
from .features import DIM, apply_cmvn, cmvn_stats, mfcc_features
from .forward_backward import posteriors
from .model import (
    N_STATES,
    SILENCE,
    SILENCES,
    AlignerModel,
    component_log_likelihoods,
    context_names,
    logsumexp,
)

logger = logging.getLogger(__name__)

#: self-loop probabilities stay inside this range (a state of one frame must still be
#: allowed to stay, a long one to leave)
_STAY = (0.05, 0.95)
#: a mixture component (or a state) seen on fewer frames keeps its previous parameters
_MIN_FRAMES = 8


@dataclass(frozen=True)
class TrainingConfig:
    """How the aligner trains.

    ``mixtures``: final Gaussians per state; ``iterations``: re-estimation rounds per
    mixture count; ``var_floor``: variance floor, a fraction of the global variance;
    ``skip_prob`` / ``loop_prob``: the silence model's fixed transitions;
    ``predicted_durations``: the flat start shares the speech by the label's own phone
    durations (Festival's predictions) instead of evenly; ``keep_bootstrap``: the
    bootstrap utterances (true boundaries) stay in every re-estimation, anchoring the
    models against drifting to a self-consistent but shifted segmentation;
    ``short_pause``: an optional pause (one state tied to a silence state) between words,
    its frames counted in the word's last phone; ``contexts``: after the monophones, each
    phone and the silence get a model per neighbour-class context (`context_names`),
    re-estimated for ``iterations`` rounds with MAP estimates that lean on the monophone
    as if it had been seen on ``context_prior`` frames (a rare context stays near its
    monophone).
    """

    mixtures: int = 2
    iterations: int = 4
    var_floor: float = 0.01
    skip_prob: float = 0.3
    loop_prob: float = 0.3
    predicted_durations: bool = True
    short_pause: bool = False
    keep_bootstrap: bool = True
    baum_welch: bool = False
    contexts: bool = True
    context_prior: float = 10.0


@dataclass
class TrainingUtterance:
    """One utterance to learn from: its speaker (for CMVN), mono audio and labels whose
    phone sequence is what was said (times, if any, are ignored)."""

    speaker: str
    audio: np.ndarray
    sr: int
    label: HTSLabel


def phone_step(label: HTSLabel) -> int:
    """Lines per phone of ``label``: its number of states when state-aligned, else 1."""
    return int(label.states.max() - label.states.min() + 1) if label.state_aligned else 1


def label_phones(label: HTSLabel) -> list[str]:
    """The phone of each phone of ``label`` (one per five lines when state-aligned)."""
    return [phone_of(c) for c in label.contexts[:: phone_step(label)]]


def word_ends(label: HTSLabel) -> np.ndarray:
    """Whether each phone of ``label`` ends its word (last phone of the syllable, p7 = 1,
    and last syllable of the word, b5 = 1); all False for labels without full contexts."""
    contexts = label.contexts[:: phone_step(label)]
    try:
        fields = [parse_context(c) for c in contexts]
    except FeatprepError:
        return np.zeros(len(contexts), bool)
    return np.array([f["p7"] == "1" and f["b5"] == "1" for f in fields], bool)


def _durations(label: HTSLabel) -> np.ndarray | None:
    """Each phone's duration in ``label`` (Festival's prediction), None when unaligned."""
    if not label.aligned:
        return None
    step = phone_step(label)
    return (label.end[step - 1 :: step] - label.start[::step]).astype(np.float64)


def train_aligner(
    utterances: Iterable[TrainingUtterance],
    config: TrainingConfig = TrainingConfig(),
    log: Callable[[str], None] | None = None,
    *,
    bootstrap: Sequence[TrainingUtterance] = (),
    threads: int = 1,
) -> AlignerModel:
    """Phone HMMs trained on ``utterances`` (their features are kept, their audio is not).

    ``bootstrap``: utterances whose label times are true phone boundaries (`bootstrap`
    module); when given, the first models are estimated from them instead of the flat
    start. An utterance that no model sequence fits (fewer frames than its phones need) is
    left out of the round that finds it so; ``log`` hears about it and about each round's
    mean per-frame log-likelihood. ``threads``: utterances featurised and aligned at once
    (the model does not depend on it).
    """
    say = log or logger.info
    feats, phone_lists, durations, word_final = _prepare(utterances, threads)
    if not feats:
        raise ValueError("train_aligner needs at least one utterance")
    boot_feats, boot_phones, _, _ = _prepare(bootstrap, threads)
    names = sorted(
        {SILENCE if p in SILENCES else p for ps in phone_lists + boot_phones for p in ps} | {SILENCE}
    )
    everything = np.concatenate(feats)
    g_mean = everything.mean(axis=0, dtype=np.float64)
    g_var = everything.var(axis=0, dtype=np.float64)
    del everything
    P = len(names)
    model = AlignerModel(
        phones=tuple(names),
        means=np.broadcast_to(g_mean, (P, N_STATES, 1, DIM)).copy(),
        variances=np.broadcast_to(g_var, (P, N_STATES, 1, DIM)).copy(),
        log_weights=np.zeros((P, N_STATES, 1)),
        log_stay=np.full((P, N_STATES), np.log(0.5)),
        skip_prob=config.skip_prob,
        loop_prob=config.loop_prob,
        short_pause=config.short_pause,
    )
    floor = config.var_floor * g_var
    graphs = _graphs(model, phone_lists, word_final, config.short_pause)
    anchors: list[tuple[np.ndarray, Graph, np.ndarray]] = []
    stats = _Stats(model)
    if boot_feats:
        boot_graphs = [build_graph(model, model.phone_index(ps)) for ps in boot_phones]
        known = [
            gr.chain[_known_path(len(x), u.label)]
            for x, u, gr in zip(boot_feats, bootstrap, boot_graphs, strict=True)
        ]
        for x, gr, path in zip(boot_feats, boot_graphs, known, strict=True):
            stats.add_path(x, gr, path)
        if config.keep_bootstrap:
            anchors = list(zip(boot_feats, boot_graphs, known, strict=True))
    else:
        for x, gr, d in zip(feats, graphs, durations, strict=True):
            stats.add_path(
                x, gr, gr.chain[_flat_path(x, gr, model, d if config.predicted_durations else None)]
            )
    model = stats.maximise(floor)
    schedule = [1]
    while schedule[-1] < config.mixtures:
        schedule.append(min(2 * schedule[-1], config.mixtures))
    for m in schedule:
        if m > model.mixtures:
            model = _split(model, m)
        model = _reestimate(model, feats, graphs, anchors, config, floor, say, f"{m} mixture(s)", threads)
    if config.contexts:
        model = _with_contexts(model, phone_lists + boot_phones)
        graphs = _graphs(model, phone_lists, word_final, config.short_pause)
        if anchors:
            anchors = [
                (x, build_graph(model, model.phone_index(ps)), path)
                for (x, _, path), ps in zip(anchors, boot_phones, strict=True)
            ]
        model = _reestimate(
            model, feats, graphs, anchors, config, floor, say, "contexts", threads, config.context_prior
        )
    return model


def _graphs(
    model: AlignerModel, phone_lists: list[list[str]], word_final: list[np.ndarray], short_pause: bool
) -> list[Graph]:
    return [
        build_graph(model, model.phone_index(ps), ends if short_pause else None)
        for ps, ends in zip(phone_lists, word_final, strict=True)
    ]


def _reestimate(
    model: AlignerModel,
    feats: list[np.ndarray],
    graphs: list[Graph],
    anchors: list[tuple[np.ndarray, Graph, np.ndarray]],
    config: TrainingConfig,
    floor: np.ndarray,
    say: Callable[[str], None],
    stage: str,
    threads: int,
    prior: float = 0.0,
) -> AlignerModel:
    """``config.iterations`` rounds of aligning every utterance and re-estimating
    (``prior``: see `_Stats.maximise`). Utterances are aligned on ``threads`` threads and
    counted in their order, so the sums are the same whatever the thread count."""
    for it in range(config.iterations):
        stats = _Stats(model)
        for x, gr, path in anchors:
            stats.add_path(x, gr, path)
        scores = []

        def expect(pair: tuple[np.ndarray, Graph], model: AlignerModel = model) -> tuple | Rejected:
            x, gr = pair
            log_lik = model.log_likelihoods(x, gr.states)
            try:
                return posteriors(gr, log_lik) if config.baum_welch else viterbi(gr, log_lik)
            except Rejected as e:
                return e

        found = ordered_threads(expect, zip(feats, graphs, strict=True), threads)
        for i, (x, gr, result) in enumerate(zip(feats, graphs, found, strict=True)):
            if isinstance(result, Rejected):
                say(f"utterance {i} left out: {result.detail}")
                continue
            if config.baum_welch:
                gamma, stays, score = result
                stats.add(x, gr, gamma, stays)
            else:
                path, score = result
                stats.add_path(x, gr, path)
            scores.append(score / len(x))
        model = stats.maximise(floor, prior)
        say(f"{stage}, round {it + 1}: mean log-likelihood per frame {np.mean(scores):.3f}")
    return model


def _with_contexts(model: AlignerModel, phone_lists: list[list[str]]) -> AlignerModel:
    """``model`` plus a copy of the monophone for every context of ``phone_lists`` it has
    no model of (`context_names`)."""
    known = set(model.phones)
    new = sorted(
        {c for ps in phone_lists for c in context_names(ps) if c not in known and c.split("@")[0] in known}
    )
    parent = np.array([model.phones.index(c.split("@")[0]) for c in new], np.int64)
    return replace(
        model,
        phones=model.phones + tuple(new),
        means=np.concatenate([model.means, model.means[parent]]),
        variances=np.concatenate([model.variances, model.variances[parent]]),
        log_weights=np.concatenate([model.log_weights, model.log_weights[parent]]),
        log_stay=np.concatenate([model.log_stay, model.log_stay[parent]]),
    )


def _prepare(
    utterances: Iterable[TrainingUtterance], threads: int = 1
) -> tuple[list[np.ndarray], list[list[str]], list[np.ndarray | None], list[np.ndarray]]:
    """CMVN-normalised features (per speaker), phones, label durations and word ends of
    each utterance (features computed on ``threads`` threads)."""
    speakers, phone_lists, durations, word_final = [], [], [], []

    def describe(u: TrainingUtterance) -> TrainingUtterance:
        speakers.append(u.speaker)
        phone_lists.append(label_phones(u.label))
        durations.append(_durations(u.label))
        word_final.append(word_ends(u.label))
        return u

    raw = list(ordered_threads(lambda u: mfcc_features(u.audio, u.sr), map(describe, utterances), threads))
    stats = {s: cmvn_stats([f for f, t in zip(raw, speakers, strict=True) if t == s]) for s in set(speakers)}
    feats = [apply_cmvn(f, stats[s]) for f, s in zip(raw, speakers, strict=True)]
    return feats, phone_lists, durations, word_final


def _known_path(n_frames: int, label: HTSLabel) -> np.ndarray:
    """The state sequence of true phone boundaries: each phone's frames split evenly
    among its five states (the last phone runs to the end of the features)."""
    frames = label.frames()
    frames[-1] = max(n_frames - int(frames[:-1].sum()), 0)
    starts = np.cumsum(frames) - frames
    within = np.round(frames[:, None] * np.arange(N_STATES + 1) / N_STATES).astype(np.int64)
    edges = (starts[:, None] + within[:, :-1]).ravel()
    counts = np.diff(np.r_[edges, starts[-1] + frames[-1]])
    return np.repeat(np.arange(len(frames) * N_STATES), counts)[:n_frames]


def _flat_path(x: np.ndarray, graph: Graph, model: AlignerModel, durations: np.ndarray | None) -> np.ndarray:
    """The flat-start state sequence: edge silences on the low-energy ends, the phones
    between in shares proportional to ``durations`` (even shares without them)."""
    T = len(x)
    silence = graph.phones == model.phones.index(SILENCE)
    n = len(graph.phones)
    # c0 smoothed over 50 ms; speech is where it rises above 30% of its 5-95% range
    energy = np.convolve(x[:, 0], np.full(10, 0.1), mode="same")
    lo, hi = np.percentile(energy, [5, 95])
    loud = np.flatnonzero(energy > lo + 0.3 * (hi - lo))
    a, b = (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, T)
    first = 1 if silence[0] and n > 1 else 0
    last = n - 1 if silence[-1] and n > 1 else n
    regions = [(first * N_STATES, last * N_STATES, a if first else 0, b if last < n else T)]
    if first:
        regions.append((0, N_STATES, 0, a))
    if last < n:
        regions.append((last * N_STATES, n * N_STATES, b, T))
    path = np.empty(T, np.int64)
    for s0, s1, t0, t1 in regions:
        share = np.ones(s1 - s0)
        if durations is not None:
            share = np.repeat(np.maximum(durations[s0 // N_STATES : s1 // N_STATES], 1.0), N_STATES)
        edges = np.round(t0 + (t1 - t0) * np.r_[0.0, np.cumsum(share)] / share.sum()).astype(np.int64)
        path[t0:t1] = np.repeat(np.arange(s0, s1), np.diff(edges))
    return path


def _split(model: AlignerModel, target: int) -> AlignerModel:
    """Up to ``target`` components per state: the heaviest ones split in two."""
    m = model.mixtures
    P, S, _, D = model.means.shape
    means = np.concatenate([model.means, np.zeros((P, S, target - m, D))], axis=2)
    variances = np.concatenate([model.variances, np.ones((P, S, target - m, D))], axis=2)
    logw = np.concatenate([model.log_weights, np.full((P, S, target - m), -np.inf)], axis=2)
    heavy = np.argsort(-model.log_weights, axis=2, kind="stable")[:, :, : target - m]
    p, s = np.meshgrid(np.arange(P), np.arange(S), indexing="ij")
    for k in range(target - m):
        src = heavy[:, :, k]
        mu = means[p, s, src]
        shift = 0.2 * np.sqrt(variances[p, s, src])
        means[p, s, src] = mu - shift
        means[:, :, m + k] = mu + shift
        variances[:, :, m + k] = variances[p, s, src]
        logw[p, s, src] -= np.log(2.0)
        logw[:, :, m + k] = logw[p, s, src]
    return replace(model, means=means, variances=variances, log_weights=logw)


class _Stats:
    """Sufficient statistics per model state and mixture component (counts may be soft)."""

    def __init__(self, model: AlignerModel) -> None:
        P, S, M, D = model.means.shape
        self.model = model
        self.count = np.zeros((P * S, M))
        self.sum = np.zeros((P * S, M, D))
        self.square = np.zeros((P * S, M, D))
        self.occupancy = np.zeros(P * S)
        self.stays = np.zeros(P * S)

    def add(self, x: np.ndarray, graph: Graph, weights: np.ndarray, stays: np.ndarray) -> None:
        """One utterance by state posteriors: ``weights`` ``(frames, chain states)`` and the
        expected self-loops of each chain state; components share by their posteriors."""
        model = self.model
        M, D = model.mixtures, model.means.shape[-1]
        unique, inverse = np.unique(graph.states, return_inverse=True)
        fold = np.zeros((len(graph.states), len(unique)))
        fold[np.arange(len(graph.states)), inverse] = 1.0
        w = weights @ fold
        comp = component_log_likelihoods(
            x,
            model.means.reshape(-1, M, D)[unique].reshape(-1, D),
            model.variances.reshape(-1, M, D)[unique].reshape(-1, D),
            model.log_weights.reshape(-1, M)[unique].reshape(-1),
        ).reshape(len(x), len(unique), M)
        r = np.exp(comp - logsumexp(comp, axis=2)[:, :, None]) * w[:, :, None]
        x64 = x.astype(np.float64)
        self.count[unique] += r.sum(axis=0)
        self.sum[unique] += np.einsum("tum,td->umd", r, x64)
        self.square[unique] += np.einsum("tum,td->umd", r, np.square(x64))
        self.occupancy[unique] += w.sum(axis=0)
        self.stays[unique] += stays @ fold

    def add_path(self, x: np.ndarray, graph: Graph, path: np.ndarray) -> None:
        """One utterance aligned to ``path`` (a chain state per frame); each frame goes to
        its state's best component, the only Gaussians evaluated."""
        M, D = self.model.mixtures, self.model.means.shape[-1]
        states = graph.states[path]
        key = states * M + self.model.frame_components(x, states).argmax(axis=1)
        # frames grouped by (state, component): one sum per group, not a product with a
        # (frames, states, components) one-hot array
        order = np.argsort(key, kind="stable")
        key, x64 = key[order], x[order].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        at = key[starts]
        self.count.reshape(-1)[at] += np.diff(np.r_[starts, len(key)])
        self.sum.reshape(-1, D)[at] += np.add.reduceat(x64, starts, axis=0)
        self.square.reshape(-1, D)[at] += np.add.reduceat(np.square(x64), starts, axis=0)
        self.occupancy += np.bincount(states, minlength=len(self.occupancy))
        self.stays += np.bincount(states[1:][path[1:] == path[:-1]], minlength=len(self.stays))

    def maximise(self, floor: np.ndarray, prior: float = 0.0) -> AlignerModel:
        """New Gaussians, weights and self-loops; states and components seen on fewer than
        ``_MIN_FRAMES`` frames keep their previous parameters. With ``prior`` > 0, a
        context model's states are MAP estimates: its monophone's parameters count as
        ``prior`` frames of evidence beside its own frames."""
        model = self.model
        P, S, M, D = model.means.shape
        means = model.means.reshape(-1, M, D).copy()
        variances = model.variances.reshape(-1, M, D).copy()
        logw = model.log_weights.reshape(-1, M).copy()
        ok = self.count >= _MIN_FRAMES
        n = np.where(ok, self.count, 1.0)[:, :, None]
        mu = self.sum / n
        var = np.maximum(self.square / n - np.square(mu), floor)
        means[ok], variances[ok] = mu[ok], var[ok]
        states = ok.any(axis=1)
        with np.errstate(divide="ignore"):
            share = (
                np.where(ok, self.count, 0.0)
                / np.maximum(np.where(ok, self.count, 0.0).sum(1), 1e-12)[:, None]
            )
            logw[states] = np.log(share[states])
        log_stay = model.log_stay.reshape(-1).copy()
        seen = self.occupancy >= 1.0
        log_stay[seen] = np.log(np.clip(self.stays[seen] / self.occupancy[seen], *_STAY))
        if prior > 0:
            self._towards_monophones(prior, floor, means, variances, logw, log_stay)
        # every silence model's frames (its context models hold them once there are any)
        silences = model.parents() == model.phones.index(SILENCE)
        return replace(
            model,
            pause_state=int(np.argmax(self.occupancy.reshape(P, S)[silences].sum(axis=0))),
            means=means.reshape(P, S, M, D),
            variances=variances.reshape(P, S, M, D),
            log_weights=logw.reshape(P, S, M),
            log_stay=log_stay.reshape(P, S),
        )

    def _towards_monophones(
        self,
        prior: float,
        floor: np.ndarray,
        means: np.ndarray,
        variances: np.ndarray,
        logw: np.ndarray,
        log_stay: np.ndarray,
    ) -> None:
        """MAP estimates (in place, flat state arrays) of every context model's states,
        the monophone's current parameters as the prior worth ``prior`` frames."""
        model = self.model
        P, S, M, D = model.means.shape
        parents = model.parents()
        own = np.flatnonzero(np.repeat(parents != np.arange(P), S))
        if not len(own):
            return
        src = (parents[:, None] * S + np.arange(S)).ravel()[own]
        mu0 = model.means.reshape(-1, M, D)[src]
        var0 = model.variances.reshape(-1, M, D)[src]
        w0 = np.exp(model.log_weights.reshape(-1, M)[src])
        count = self.count[own]
        n = count[:, :, None] + prior
        mu = (self.sum[own] + prior * mu0) / n
        second = (self.square[own] + prior * (var0 + np.square(mu0))) / n
        means[own] = mu
        variances[own] = np.maximum(second - np.square(mu), floor)
        with np.errstate(divide="ignore"):
            logw[own] = np.log((count + prior * w0) / (count.sum(axis=1, keepdims=True) + prior))
        stay0 = np.exp(model.log_stay.reshape(-1)[src])
        stay = (self.stays[own] + prior * stay0) / (self.occupancy[own] + prior)
        log_stay[own] = np.log(np.clip(stay, *_STAY))

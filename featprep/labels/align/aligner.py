"""Aligning one utterance: audio + the phone sequence of its labels -> state-aligned labels."""

from __future__ import annotations

import numpy as np

from ...errors import Rejected
from ..hts import FRAME_UNITS, HTSLabel
from .decode import build_graph, state_frames, viterbi
from .features import apply_cmvn, cmvn_stats, mfcc_features
from .model import N_STATES, AlignerModel
from .train import label_phones, phone_step, word_ends


def align(
    model: AlignerModel,
    audio: np.ndarray,
    sr: int,
    label: HTSLabel,
    *,
    cmvn: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[HTSLabel, float]:
    """State-aligned labels of ``audio`` and the path's mean log-likelihood per frame.

    ``label`` gives the contexts, in order (Festival's front-end after `merlin_normalise`);
    its times, if any, are ignored. ``cmvn``: the speaker's `cmvn_stats`; without it the
    utterance is normalised by its own mean and deviation. Times in the result count from
    the start of ``audio`` on the 5 ms grid and end at its last whole frame. Raises
    `Rejected` (``label_mismatch``) when the audio is too short for the phones or a phone
    has no model.
    """
    feats = mfcc_features(audio, sr)
    return align_features(model, apply_cmvn(feats, cmvn if cmvn is not None else cmvn_stats([feats])), label)


def align_features(model: AlignerModel, features: np.ndarray, label: HTSLabel) -> tuple[HTSLabel, float]:
    """`align` on CMVN-normalised `mfcc_features`."""
    contexts = label.contexts[:: phone_step(label)]
    try:
        phones = model.phone_index(label_phones(label))
    except KeyError as e:
        raise Rejected("label_mismatch", f"the aligner has no model of phone(s) {e.args[0]}") from None
    graph = build_graph(model, phones, word_ends(label) if model.short_pause else None)
    path, score = viterbi(graph, model.log_likelihoods(features, graph.states))
    frames = state_frames(path, graph).ravel()
    end = np.cumsum(frames) * FRAME_UNITS
    aligned = HTSLabel(
        [c for c in contexts for _ in range(N_STATES)],
        (end - frames * FRAME_UNITS).astype(np.int64),
        end.astype(np.int64),
        np.tile(np.arange(2, N_STATES + 2), len(contexts)).astype(np.int64),
    )
    return aligned, score / len(features)

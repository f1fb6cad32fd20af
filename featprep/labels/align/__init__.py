"""featprep's own forced aligner: HMM state alignment of Festival's phone sequence.

`train_aligner` learns five-state phone HMMs (MFCC + deltas, per-speaker CMVN, Gaussian
mixtures, a start from `bootstrap_utterances` (Festival speech with known boundaries) or
a flat start, Viterbi or Baum-Welch re-estimation) from the corpus itself; `align` puts
one utterance's full contexts on its audio as Merlin-style state-aligned labels, with its
mean log-likelihood per frame.

    model = train_aligner(utterances, bootstrap=bootstrap_utterances(texts))
    model.save("aligner.npz")
    label, score = align(AlignerModel.load("aligner.npz"), audio, sr, merlin_normalise(frontend_label))
"""

from .aligner import align, align_features
from .bootstrap import DEFAULT_BOOTSTRAP_VOICES, bootstrap_utterances
from .evaluate import boundary_errors, phone_segments
from .features import apply_cmvn, cmvn_stats, mfcc_features
from .model import AlignerModel, AlignerModelError
from .train import TrainingConfig, TrainingUtterance, train_aligner

__all__ = [
    "AlignerModel",
    "AlignerModelError",
    "DEFAULT_BOOTSTRAP_VOICES",
    "TrainingConfig",
    "TrainingUtterance",
    "align",
    "align_features",
    "apply_cmvn",
    "boundary_errors",
    "bootstrap_utterances",
    "cmvn_stats",
    "mfcc_features",
    "phone_segments",
    "train_aligner",
]

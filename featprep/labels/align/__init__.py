"""featprep's own forced aligner: HMM state alignment of Festival's phone sequence.

`train_aligner` learns five-state phone HMMs (MFCC + deltas, per-speaker CMVN, Gaussian
mixtures, flat start, Viterbi re-estimation) from the corpus itself; `align` puts one
utterance's full contexts on its audio as Merlin-style state-aligned labels.
"""

from .aligner import align, align_features
from .evaluate import boundary_errors, phone_segments
from .features import apply_cmvn, cmvn_stats, mfcc_features
from .model import AlignerModel, AlignerModelError
from .train import TrainingConfig, TrainingUtterance, train_aligner

__all__ = [
    "AlignerModel",
    "AlignerModelError",
    "TrainingConfig",
    "TrainingUtterance",
    "align",
    "align_features",
    "apply_cmvn",
    "boundary_errors",
    "cmvn_stats",
    "mfcc_features",
    "phone_segments",
    "train_aligner",
]

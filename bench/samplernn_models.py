"""What the SampleRNN benchmarks share: the models of the two presets and peak RSS."""

from __future__ import annotations

import resource

import torch

from featprep.samplernn.model import ModelConfig, SampleRNN
from featprep.samplernn.train import TrainConfig

PRESETS = ("small", "paper")


def preset_model(preset: str) -> SampleRNN:
    """A randomly initialised model of the preset's sizes: 50 features, 4 speakers."""
    cfg = TrainConfig.from_preset(preset)
    torch.manual_seed(0)
    return SampleRNN(ModelConfig(hidden=cfg.hidden, embedding=cfg.embedding, feature_dim=50, speakers=4))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

"""SampleRNN's loss: NLL of the quantised samples, in nats over real (unpadded) targets,
reported in bits per sample.

`chunk_loss` is what the training loop minimises on a TBPTT chunk; `evaluate_nll` is the
teacher-forced figure over one pass of a split (validation, ``featprep evaluate``). A
duration model has its own loss module; the loop (`loop.py`) only sees a summed loss and
its count of targets.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .data import TBPTTLoader
from .model import SampleRNN, quantise
from .speakers import SpeakerSource


def chunk_loss(
    model: SampleRNN, batch, state, device, speakers=None, forward=None
) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
    """Summed NLL (nats) over the batch's real targets, their number, the new state.

    ``speakers`` replaces the batch's speaker indices (PASE vectors, say)."""
    state = model.reset_state(state, batch.reset.to(device))
    samples = batch.samples.to(device)
    features = None if batch.features is None else batch.features.to(device)
    who = batch.speakers if speakers is None else speakers
    logits, state = (forward or model)(samples, features, who.to(device), state)
    targets = quantise(samples[:, model.top_frame :], model.cfg)
    mask = batch.mask.to(device)
    nll = F.cross_entropy(logits[mask], targets[mask], reduction="sum")
    return nll, int(mask.sum()), state


@torch.no_grad()
def evaluate_nll(model: SampleRNN, loader: TBPTTLoader, device, seeds: SpeakerSource | None = None) -> float:
    """Mean NLL in bits per sample over one pass of ``loader`` (PASE speakers: fixed seeds)."""
    model.eval()
    state = model.initial_state(loader.batch_size)
    state = [s.to(device) for s in state]
    total, count = 0.0, 0
    fixed = (
        None if seeds is None else torch.stack([seeds.fixed(i) for i in range(len(seeds.windows.utterances))])
    )
    for batch in loader:
        vectors = None if fixed is None else fixed[batch.speakers]
        nll, n, state = chunk_loss(model, batch, state, device, vectors)
        total, count = total + float(nll), count + n
    model.train()
    return total / max(count, 1) / math.log(2)

"""The duration network: per phone, normalised frames of each state (or of the phone).

Two bodies over the phone rows (question answers, normalised) with the speaker's vector
appended to each: ``rnn``, a bidirectional GRU over the utterance's phones (a phone's
length depends on its neighbours and its place in the phrase), and ``ffn``, Merlin's
duration baseline, a feed-forward stack of tanh layers (4 x 512) that sees one phone at a
time. The speaker is an index into a lookup table (``speakers`` > 0) or a given vector
(``speaker_input`` > 0, PASE), projected to ``speaker_dim``; with neither, no speaker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

KINDS = ("rnn", "ffn")


@dataclass
class DurationModelConfig:
    kind: str = "rnn"
    inputs: int = 1  # question columns
    outputs: int = 1  # durations per phone: 5 states, or 1 phone
    hidden: int = 256
    layers: int = 2
    speakers: int = 0  # lookup table rows (0: none)
    speaker_input: int = 0  # width of given speaker vectors (0: none)
    speaker_dim: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


class DurationModel(nn.Module):
    """``(phones (B, T, inputs), lengths (B,), speakers) -> (B, T, outputs)``."""

    def __init__(self, cfg: DurationModelConfig) -> None:
        super().__init__()
        if cfg.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, found {cfg.kind!r}")
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.speakers, cfg.speaker_dim) if cfg.speakers else None
        self.project = nn.Linear(cfg.speaker_input, cfg.speaker_dim) if cfg.speaker_input else None
        width = cfg.inputs + (cfg.speaker_dim if cfg.speakers or cfg.speaker_input else 0)
        if cfg.kind == "rnn":
            self.body = nn.GRU(width, cfg.hidden, cfg.layers, batch_first=True, bidirectional=True)
            out = 2 * cfg.hidden
        else:
            stack: list[nn.Module] = []
            for i in range(cfg.layers):
                stack += [nn.Linear(width if i == 0 else cfg.hidden, cfg.hidden), nn.Tanh()]
            self.body = nn.Sequential(*stack)
            out = cfg.hidden
        self.out = nn.Linear(out, cfg.outputs)

    def forward(self, phones: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        """``speakers``: (B,) indices for a lookup table, (B, E) vectors for given ones."""
        if self.embedding is not None:
            who = self.embedding(speakers)
        elif self.project is not None:
            who = self.project(speakers.to(phones.dtype))
        else:
            who = None
        if who is not None:
            phones = torch.cat([phones, who[:, None, :].expand(-1, phones.shape[1], -1)], dim=2)
        if self.cfg.kind == "ffn":
            return self.out(self.body(phones))
        packed = pack_padded_sequence(phones, lengths.cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.body(packed)[0], batch_first=True, total_length=phones.shape[1])
        return self.out(hidden)

"""The PASE family's configurations (no PyTorch needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    name: str
    emb_dim: int
    rnn_dim: int | None  # QRNN hidden size, None = no RNN
    dense_skips: bool


ARCHITECTURES = {
    "pase": Architecture("pase", 100, None, False),
    "pase+": Architecture("pase+", 256, 512, True),
    "pase_dense_qrnn": Architecture("pase_dense_qrnn", 100, 100, True),
}

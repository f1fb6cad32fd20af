"""PASE (Pascual et al., 2019), PASE+ (Ravanelli et al., 2020) and PASE_dense_QRNN.

Module names and shapes follow the official implementation (santi-pdp/pase, MIT), so its
checkpoint files load with ``strict=True``. Written from the published architecture:

- ``blocks.0``: SincNet convolution (64 band-pass filters of 251 taps, reflect padding
  to keep the length), BatchNorm, PReLU;
- ``blocks.1..7``: Conv1d with reflect padding, BatchNorm, PReLU; strides 10, 2, 1, 2, 1,
  2, 2 give one frame per 160 samples (100 frames/s at 16 kHz);
- PASE+ and PASE_dense_QRNN: ``denseskips`` (1x1 convolutions of blocks 0-6, average
  pooled to the output rate and added after ``W``) and a one-layer causal QRNN
  (``rnn``, window 2) written as a plain PyTorch loop, so it runs on any device;
- ``W``: 1x1 convolution to the embedding, ``norm_out``: BatchNorm without affine.

Input (B, 1, T) float at 16 kHz in [-1, 1]; output (B, E, floor(ceil(T / 10) / 16)).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .architectures import ARCHITECTURES, Architecture

KERNELS = (251, 20, 11, 11, 11, 11, 11, 11)
STRIDES = (1, 10, 2, 1, 2, 1, 2, 2)
CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)
HOP = 160  # input samples per output frame
MIN_SAMPLES = 471  # shortest input whose reflect paddings all fit


class SincConv(nn.Module):
    """SincNet's parametrised band-pass filters (low cut-off and band width per filter)."""

    def __init__(
        self,
        out_channels: int = 64,
        kernel_size: int = 251,
        sample_rate: int = 16000,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
    ) -> None:
        super().__init__()
        self.kernel_size, self.sample_rate = kernel_size, sample_rate
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        high = sample_rate / 2 - (min_low_hz + min_band_hz)
        mel = np.linspace(self.to_mel(30.0), self.to_mel(high), out_channels + 1)
        hz = self.to_hz(mel)
        self.low_hz_ = nn.Parameter(torch.tensor(hz[:-1], dtype=torch.float32).view(-1, 1))
        self.band_hz_ = nn.Parameter(torch.tensor(np.diff(hz), dtype=torch.float32).view(-1, 1))
        half = kernel_size // 2
        # derived from kernel size and rate alone: buffers that are not saved
        t = torch.linspace(0, kernel_size / 2 - 1, steps=half)
        self.register_buffer(
            "window_", 0.54 - 0.46 * torch.cos(2 * math.pi * t / kernel_size), persistent=False
        )
        n = 2 * math.pi * torch.arange(-half, 0, dtype=torch.float32).view(1, -1) / sample_rate
        self.register_buffer("n_", n, persistent=False)

    @staticmethod
    def to_mel(hz: float | np.ndarray) -> float | np.ndarray:
        return 2595 * np.log10(1 + hz / 700)

    @staticmethod
    def to_hz(mel: float | np.ndarray) -> float | np.ndarray:
        return 700 * (10 ** (mel / 2595) - 1)

    def filters(self) -> torch.Tensor:
        """The (out_channels, 1, kernel_size) band-pass filters."""
        low = self.min_low_hz + torch.abs(self.low_hz_)
        high = torch.clamp(
            low + self.min_band_hz + torch.abs(self.band_hz_), self.min_low_hz, self.sample_rate / 2
        )
        band = (high - low)[:, 0]
        left = (torch.sin(high @ self.n_) - torch.sin(low @ self.n_)) / (self.n_ / 2) * self.window_
        centre = 2 * band.view(-1, 1)
        full = torch.cat([left, centre, torch.flip(left, dims=[1])], dim=1) / (2 * band[:, None])
        return full.view(-1, 1, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filters().to(x.dtype))


class Block(nn.Module):
    """Convolution (reflect-padded), BatchNorm, PReLU."""

    def __init__(self, conv: nn.Module, channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm1d(channels)
        self.act = nn.PReLU(channels)
        if kernel == KERNELS[0] and stride == 1 and isinstance(conv, SincConv):
            self.pad = (kernel // 2, kernel // 2)
        elif stride > 1 or kernel % 2 == 0:
            self.pad = (kernel // 2 - 1, kernel // 2)
        else:
            self.pad = (kernel // 2, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(F.pad(x, self.pad, mode="reflect"))))


class QRNNLayer(nn.Module):
    """One causal QRNN layer with a window of 2 (torchqrnn's weights, a PyTorch loop)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(2 * input_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, B, input) -> (T, B, hidden)."""
        previous = torch.cat([torch.zeros_like(x[:1]), x[:-1]], dim=0)
        z, f, o = self.linear(torch.cat([x, previous], dim=2)).chunk(3, dim=2)
        z, f = torch.tanh(z), torch.sigmoid(f)
        c = torch.zeros_like(z[0])
        cells = []
        for t in range(x.shape[0]):
            c = f[t] * z[t] + (1 - f[t]) * c
            cells.append(c)
        return torch.sigmoid(o) * torch.stack(cells)


class QRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([QRNNLayer(input_size, hidden_size)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class PaseEncoder(nn.Module):
    """A PASE-family encoder; see the module notes. Always use it in eval mode."""

    def __init__(self, arch: str | Architecture = "pase") -> None:
        super().__init__()
        self.arch = ARCHITECTURES[arch] if isinstance(arch, str) else arch
        emb = self.arch.emb_dim
        # registration order of the official model: denseskips, blocks, rnn, W, norm_out
        if self.arch.dense_skips:
            self.denseskips = nn.ModuleList([nn.Conv1d(c, emb, 1, bias=False) for c in CHANNELS[:-1]])
        blocks = [Block(SincConv(CHANNELS[0], KERNELS[0]), CHANNELS[0], KERNELS[0], STRIDES[0])]
        for i in range(1, len(KERNELS)):
            conv = nn.Conv1d(CHANNELS[i - 1], CHANNELS[i], KERNELS[i], STRIDES[i])
            blocks.append(Block(conv, CHANNELS[i], KERNELS[i], STRIDES[i]))
        self.blocks = nn.ModuleList(blocks)
        last = CHANNELS[-1]
        if self.arch.rnn_dim is not None:
            self.rnn = QRNN(last, self.arch.rnn_dim)
            last = self.arch.rnn_dim
        self.W = nn.Conv1d(last, emb, 1)
        self.norm_out = nn.BatchNorm1d(emb, affine=False)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return (-(-num_samples // 10)) // 16

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, E, floor(ceil(T / 10) / 16)); T >= 471."""
        if wav.shape[-1] < MIN_SAMPLES:
            raise ValueError(f"PASE needs at least {MIN_SAMPLES} samples, found {wav.shape[-1]}")
        h = wav
        skips = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if self.arch.dense_skips and i < len(self.blocks) - 1:
                skips.append(h)
        if self.arch.rnn_dim is not None:
            h = self.rnn(h.permute(2, 0, 1)).permute(1, 2, 0)
        y = self.W(h)
        for conv, skip in zip(getattr(self, "denseskips", ()), skips, strict=False):
            y = y + _pool(conv(skip), y.shape[2])
        return self.norm_out(y)


def _pool(skip: torch.Tensor, frames: int) -> torch.Tensor:
    """Average a skip connection down to ``frames`` steps (PASE's dense-skip pooling)."""
    d = skip.shape[2] // frames
    if d > 1:
        b, e, _ = skip.shape
        skip = skip[:, :, : frames * d].reshape(b, e, frames, d).mean(dim=3)
    return skip

"""Multi-tier SampleRNN with frame-level conditioning and a speaker vector.

Tier sizes come from ``ratios`` (bottom-up): with the default [20, 4] the middle tier
reads 20-sample frames and the top tier 80-sample frames, one 5 ms conditioning frame.
Each frame tier reads the previous frame's samples, adds the upper tier's upsampled
output and the conditioning (features and speaker mixed to ``cond_dim``, repeated to the
tier's rate), runs an RNN and upsamples its output to the tier below (a weight-normed
transposed convolution). The sample-level MLP reads the embeddings of the previous
``ratios[0]`` samples (a convolution over the window) and predicts 256 logits.

Causality: frame j of a tier sees only samples before the frame; sample t sees samples
before t. Hidden states are carried between chunks and reset to the learned initial
state (``h0``) where a batch slot starts a new utterance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.autograd.function import FunctionCtx
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from ..errors import FeatprepError


@dataclass
class ModelConfig:
    ratios: list[int] = field(default_factory=lambda: [20, 4])
    hidden: int = 1024  # the sample-level MLP's, and every frame tier's unless tier_hidden
    layers: int = 1  # of every frame tier's RNN unless tier_layers
    tier_hidden: list[int] = field(default_factory=list)  # per frame tier, bottom-up
    tier_layers: list[int] = field(default_factory=list)  # per frame tier, bottom-up
    rnn: str = "gru"  # gru | lstm
    levels: int = 256
    quantisation: str = "mu-law"  # mu-law | linear
    embedding: int = 256
    cond_dim: int = 50
    feature_dim: int = 0  # conditioning features per 5 ms frame (0: none)
    categorical: list[int] = field(default_factory=list)  # vocabulary sizes of the leading feature columns
    category_dim: int = 8  # embedding size of each categorical column
    speakers: int = 0  # speaker lookup table size (0: no lookup table)
    speaker_input: int = 0  # size of a given speaker vector (PASE), projected (0: none)
    speaker_dim: int = 64

    @property
    def frame_sizes(self) -> list[int]:
        """Frame size of each frame tier, bottom-up: [20, 80] for ratios [20, 4]."""
        sizes = [self.ratios[0]]
        for r in self.ratios[1:]:
            sizes.append(sizes[-1] * r)
        return sizes

    def __post_init__(self) -> None:
        for name in ("tier_hidden", "tier_layers"):
            given = getattr(self, name)
            if given and len(given) != len(self.ratios):
                raise FeatprepError(f"{name} has {len(given)} values for {len(self.ratios)} frame tiers")

    @property
    def tier_sizes(self) -> list[int]:
        """Hidden size of each frame tier, bottom-up."""
        return list(self.tier_hidden) or [self.hidden] * len(self.ratios)

    @property
    def tier_depths(self) -> list[int]:
        """RNN layers of each frame tier, bottom-up."""
        return list(self.tier_layers) or [self.layers] * len(self.ratios)

    def to_dict(self) -> dict:
        return asdict(self)


def mu_law_encode(x: torch.Tensor, levels: int = 256) -> torch.Tensor:
    mu = levels - 1
    y = torch.sign(x) * torch.log1p(mu * torch.abs(x).clamp(max=1.0)) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).long().clamp(0, mu)


def mu_law_decode(q: torch.Tensor, levels: int = 256) -> torch.Tensor:
    mu = levels - 1
    y = q.float() / mu * 2 - 1
    return torch.sign(y) * ((1 + mu) ** torch.abs(y) - 1) / mu


def quantise(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Float samples in [-1, 1] to class indices."""
    if cfg.quantisation == "mu-law":
        return mu_law_encode(x, cfg.levels)
    return ((x.clamp(-1, 1) + 1) / 2 * (cfg.levels - 1) + 0.5).long()


def dequantise(q: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    if cfg.quantisation == "mu-law":
        return mu_law_decode(q, cfg.levels)
    return q.float() / (cfg.levels - 1) * 2 - 1


class FrameTier(nn.Module):
    """One frame tier: ``hidden`` units in ``layers`` RNN layers, upsampled by ``ratio``
    to ``out`` channels (the tier below's hidden size, or the sample MLP's)."""

    def __init__(self, frame: int, ratio: int, cfg: ModelConfig, hidden: int, layers: int, out: int) -> None:
        super().__init__()
        self.frame, self.ratio = frame, ratio
        self.expand = weight_norm(nn.Conv1d(frame, hidden, 1))
        self.cond = nn.Linear(cfg.cond_dim, hidden) if cfg.cond_dim else None
        rnn = nn.GRU if cfg.rnn == "gru" else nn.LSTM
        self.rnn = rnn(hidden, hidden, layers, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(layers * (2 if cfg.rnn == "lstm" else 1), 1, hidden))
        self.upsample = weight_norm(nn.ConvTranspose1d(hidden, out, ratio, stride=ratio))
        for name, p in self.rnn.named_parameters():
            if "weight_hh" in name:
                for chunk in p.data.chunk(3 if cfg.rnn == "gru" else 4, 0):
                    nn.init.orthogonal_(chunk)
            elif "weight_ih" in name:
                nn.init.kaiming_uniform_(p, nonlinearity="linear")  # lecun-like
            elif "bias" in name:
                nn.init.zeros_(p)

    def initial(self, batch: int) -> torch.Tensor:
        return self.h0.expand(-1, batch, -1).contiguous()

    def expand_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame-to-hidden projection (a 1x1 convolution) as (hidden, frame) and bias."""
        return self.expand.weight[:, :, 0], self.expand.bias

    def upsample_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The transposed convolution (stride = kernel = ratio) as one linear map whose
        output row ``k * hidden + o`` is channel o of upsampled step k. PyTorch's CPU
        conv_transpose1d takes ~50 ms for one step at hidden 1024; this matrix product
        does the same arithmetic in ~1 ms."""
        w = self.upsample.weight  # (in, out, ratio)
        return w.permute(2, 1, 0).reshape(-1, w.shape[0]), self.upsample.bias.repeat(self.ratio)

    def forward(
        self, prev: torch.Tensor, upper: torch.Tensor | None, cond: torch.Tensor | None, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """prev: (B, steps, frame) samples in [-1, 1]; upper, cond: (B, steps, hidden/cond)."""
        x = F.linear(prev, *self.expand_weight())
        if upper is not None:
            x = x + upper
        if cond is not None and self.cond is not None:
            x = x + self.cond(cond)
        if isinstance(self.rnn, nn.LSTM):
            h, c = hidden.chunk(2, dim=0)
            out, (h, c) = self.rnn(x, (h.contiguous(), c.contiguous()))
            hidden = torch.cat([h, c], dim=0)
        else:
            out, hidden = self.rnn(x, hidden)
        b, steps, _ = out.shape
        w = self.upsample.weight  # (hidden, out, ratio)
        # x (in, ratio * out): permuting only the last two axes copies 2x faster (and
        # its gradient back) than the (ratio * out, in) matrix F.linear would take
        up = out @ w.permute(0, 2, 1).reshape(w.shape[0], -1)
        return up.view(b, steps * self.ratio, -1) + self.upsample.bias, hidden


class _TapSum(torch.autograd.Function):
    """``embedding_bag`` sums of table rows, one row per tap, with a backward that adds
    each tap's gradient rows with one ``index_add_`` (the rows of a tap all lie in its own
    block of the table). PyTorch's embedding_bag backward sorts every index first: 4.6x
    slower at hidden 64, 2.5x at hidden 1024 (bench/train.py measures the whole step)."""

    @staticmethod
    def forward(ctx: FunctionCtx, rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.table_shape = table.shape
        return F.embedding_bag(rows, table, mode="sum")

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (rows,) = ctx.saved_tensors
        table_grad = grad.new_zeros(ctx.table_shape)
        for tap in rows.t():
            table_grad.index_add_(0, tap, grad)
        return None, table_grad


class SampleMLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.window = cfg.ratios[0]
        self.embed = nn.Embedding(cfg.levels, cfg.embedding)
        self.conv = nn.Conv1d(cfg.embedding, cfg.hidden, self.window, bias=False)
        self.cond = nn.Linear(cfg.cond_dim, cfg.hidden) if cfg.cond_dim else None
        h = cfg.hidden
        self.mlp = nn.Sequential(
            nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, cfg.levels)
        )

    def tables(self) -> torch.Tensor:
        """(window, levels, hidden): the window convolution over embeddings as one table
        per tap, ``conv(embed(w)) = sum_i tables[i, w_i]``."""
        return torch.einsum("le,hei->ilh", self.embed.weight, self.conv.weight)

    def forward(self, q_window: torch.Tensor, upper: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """q_window: (B, S + window - 1) class indices ending just before the last target;
        upper, cond: per sample (B, S, ...). Returns logits (B, S, levels).

        The first layer sums one table row per tap (:class:`_TapSum`) instead of
        convolving embeddings: at hidden 1024 that is 20 x 1024 additions a sample in
        place of 20 x 256 x 1024 multiply-adds (the tables cost the latter once a chunk)."""
        b, total = q_window.shape
        steps = total - self.window + 1
        tables = self.tables()
        levels = tables.shape[1]
        taps = torch.arange(self.window, device=q_window.device) * levels
        rows = (q_window.unfold(1, self.window, 1) + taps).reshape(b * steps, self.window)
        x = _TapSum.apply(rows, tables.reshape(-1, tables.shape[2])).view(b, steps, -1) + upper
        if cond is not None and self.cond is not None:
            x = x + self.cond(cond)
        return self.mlp(x)


class SampleRNN(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sizes = cfg.frame_sizes
        ratios = [cfg.ratios[0]] + cfg.ratios[1:]  # tier i upsamples by ratios[i]
        hidden, depths = cfg.tier_sizes, cfg.tier_depths
        outs = [cfg.hidden, *hidden[:-1]]  # each tier feeds the one below it
        self.tiers = nn.ModuleList(
            FrameTier(sizes[i], ratios[i], cfg, hidden[i], depths[i], outs[i]) for i in range(len(sizes))
        )
        self.sample = SampleMLP(cfg)
        # categorical feature columns (vocabulary indices, first) go through embeddings
        self.categories = nn.ModuleList(nn.Embedding(n, cfg.category_dim) for n in cfg.categorical)
        features = cfg.feature_dim + len(cfg.categorical) * (cfg.category_dim - 1)
        inputs = features + (cfg.speaker_dim if cfg.speakers or cfg.speaker_input else 0)
        if cfg.speakers:
            self.speaker = nn.Embedding(cfg.speakers, cfg.speaker_dim)
        elif cfg.speaker_input:
            self.speaker = nn.Linear(cfg.speaker_input, cfg.speaker_dim)
        else:
            self.speaker = None
        self.mix = nn.Linear(inputs, cfg.cond_dim) if inputs and cfg.cond_dim else None

    @property
    def top_frame(self) -> int:
        return self.cfg.frame_sizes[-1]

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        return [t.initial(batch) for t in self.tiers]

    def reset_state(self, state: list[torch.Tensor], reset: torch.Tensor) -> list[torch.Tensor]:
        """Slots with ``reset`` start from the learned h0; the others keep their state."""
        r = reset.view(1, -1, 1)
        return [torch.where(r, t.initial(reset.numel()), h) for t, h in zip(self.tiers, state, strict=True)]

    def conditioning(
        self, features: torch.Tensor | None, speakers: torch.Tensor | None, frames: int
    ) -> torch.Tensor | None:
        """(B, frames, cond_dim) or None. ``speakers``: indices (B,) for the lookup table,
        or vectors (B, speaker_input) for a projected speaker vector."""
        parts = []
        if features is not None and self.cfg.feature_dim:
            n = len(self.categories)
            index = features[..., :n].long()
            parts += [table(index[..., i]) for i, table in enumerate(self.categories)]
            parts.append(features[..., n:])
        if self.speaker is not None and speakers is not None:
            parts.append(self.speaker(speakers)[:, None, :].expand(-1, frames, -1))
        if not parts or self.mix is None:
            return None
        return self.mix(torch.cat(parts, dim=2))

    def forward(
        self,
        samples: torch.Tensor,
        features: torch.Tensor | None,
        speakers: torch.Tensor | None,
        state: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits of a chunk.

        samples: (B, top + L) float in [-1, 1]: one top frame of context, then the L
        samples to predict (L a multiple of the top frame); features: (B, L / top, D).
        Returns logits (B, L, levels) for samples[:, top:], and the new state.
        """
        top = self.top_frame
        b, total = samples.shape
        length = total - top
        frames = length // top
        cond = self.conditioning(features, speakers, frames)
        q = quantise(samples, self.cfg)
        x = dequantise(q, self.cfg)
        upper = None
        new_state = []
        for i in reversed(range(len(self.tiers))):
            tier = self.tiers[i]
            size = tier.frame
            steps = length // size
            prev = x[:, top - size : top - size + steps * size].reshape(b, steps, size)
            c = None if cond is None else cond.repeat_interleave(top // size, dim=1)
            upper, h = tier(prev, upper, c, state[i])
            new_state.insert(0, h)
        window = self.cfg.ratios[0]
        q_window = q[:, top - window : top + length - 1]
        c = None if cond is None else cond.repeat_interleave(top, dim=1)
        return self.sample(q_window, upper, c), new_state

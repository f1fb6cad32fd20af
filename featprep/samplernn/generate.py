"""Autoregressive generation: frame tiers run only at their frame boundaries.

A :class:`Generator` unrolls a trained model once into plain matrices: each frame tier's
step is two matrix products around one RNN cell, and the sample level, the only
work done for every sample, is its first layer, three small matrix products and an
argmax. The window convolution over embeddings becomes one table per tap
(``conv(embed(w)) = sum_i T_i[w_i]``): for small batches a drawn sample adds its row of
every tap to accumulators of the ``window`` samples that will read it (one gather a
step, :class:`_PushedTaps`); for large ones each step sums its window's rows in one
``embedding_bag`` call (:class:`_PulledTaps`). The upper tier and the conditioning are
added once per bottom frame. Sampling uses the Gumbel-max trick with the noise drawn
once per top frame; ``argmax(l / T + g) = argmax(l + T g)``, so the temperature scales
the noise and ``T = 0`` is greedy decoding.

On the CPU, small models and batch 1 run in numpy (a PyTorch call costs more than a
small product's arithmetic, and at batch 1 every product is a matrix times a vector,
which streams the matrix fastest); large batches of large models and GPUs run in
PyTorch, in float32 or bfloat16 (on CPUs with AMX and on GPUs, bfloat16 matrix products
are several times faster). In numpy, a bottom frame's samples are one compiled call
(kernels.py, when numba imports) doing the numpy step's arithmetic: 2.6-2.9x faster at the
small preset's batch 1, where the step's Python and numpy calls cost more than its
products. Batched: many utterances at once, each row with its own conditioning.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.utils.parametrize
from threadpoolctl import threadpool_limits
from torch.nn import functional as F

from ..errors import FeatprepError
from .model import FrameTier, SampleRNN, dequantise, quantise

NUMPY_UP_TO = 256  # hidden size up to which the CPU sample step runs in numpy (2 CPU threads)


_Array = np.ndarray | torch.Tensor


class _Math(NamedTuple):
    """The arithmetic of a tier step: ``affine(x, w, b)`` is x (B, in) times w (out, in)
    transposed plus b."""

    affine: Callable
    sigmoid: Callable
    tanh: Callable


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # at batch 1, a matrix times a vector: ``F.linear`` on a one-row matrix streams a
    # (3072, 1024) matrix 2.3x slower on the CPU
    return torch.addmv(b, w, x[0])[None] if x.shape[0] == 1 else F.linear(x, w, b)


def _affine(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = np.dot(w, x[0])[None] if len(x) == 1 else np.dot(x, w.T)  # a vector at batch 1, as _linear
    y += b
    return y


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.tanh(x * np.float32(0.5)) * np.float32(0.5) + np.float32(0.5)


_NUMPY = _Math(_affine, _sigmoid, np.tanh)
_TORCH = _Math(_linear, torch.sigmoid, torch.tanh)


@dataclass
class _Tier:
    """One frame tier as plain tensors, or numpy views of them (:meth:`numpy`): (out, in)
    matrices, as ``F.linear`` takes them. In PyTorch from batch 2 a step runs PyTorch's
    fused RNN cells; otherwise the cells written out below, on ``math``."""

    size: int
    ratio: int
    expand: tuple[torch.Tensor, torch.Tensor]
    cells: list[tuple[torch.Tensor, ...]]  # per layer: w_ih, w_hh, b_ih, b_hh
    lstm: bool
    h0: torch.Tensor  # (layers or 2 * layers, hidden): LSTM cell states after the hidden ones
    upsample: tuple[torch.Tensor, torch.Tensor]
    math: _Math = _TORCH

    @classmethod
    def of(cls, tier: FrameTier, dtype: torch.dtype) -> _Tier:
        def mat(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return w.detach().contiguous().to(dtype), b.detach().to(dtype)

        rnn = tier.rnn
        cells = [
            tuple(
                getattr(rnn, f"{n}_l{k}").detach().to(dtype)
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            for k in range(rnn.num_layers)
        ]
        return cls(
            size=tier.frame,
            ratio=tier.ratio,
            expand=mat(*tier.expand_weight()),
            cells=cells,
            lstm=isinstance(rnn, torch.nn.LSTM),
            h0=tier.h0.detach()[:, 0].to(dtype),
            upsample=mat(*tier.upsample_weight()),
        )

    def numpy(self) -> _Tier:
        """The same tier on numpy views of its (float32, CPU) tensors."""

        def views(ts: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
            return tuple(t.numpy() for t in ts)

        return replace(
            self,
            expand=views(self.expand),
            cells=[views(c) for c in self.cells],
            h0=self.h0.numpy(),
            upsample=views(self.upsample),
            math=_NUMPY,
        )

    def initial(self, batch: int) -> list[_Array]:
        if self.math is _NUMPY:
            return [np.repeat(h[None], batch, axis=0) for h in self.h0]
        return [h.expand(batch, -1).contiguous() for h in self.h0]

    def step(self, prev: _Array, upper: _Array | None, cond: _Array | None, state: list[_Array]) -> _Array:
        """One frame: prev (B, size) samples -> (B, ratio, hidden); ``state`` is updated."""
        m = self.math
        x = m.affine(prev, *self.expand)
        if upper is not None:
            x += upper
        if cond is not None:
            x += cond
        layers = len(self.cells)
        fused = m is _TORCH and len(x) > 1
        for k, cell in enumerate(self.cells):
            if self.lstm:
                h, c = state[k], state[layers + k]
                new = torch.lstm_cell(x, (h, c), *cell) if fused else _lstm_cell(m, x, h, c, cell)
                state[k], state[layers + k] = new
            else:
                state[k] = torch.gru_cell(x, state[k], *cell) if fused else _gru_cell(m, x, state[k], cell)
            x = state[k]
        return m.affine(x, *self.upsample).reshape(x.shape[0], self.ratio, -1)


def _gru_cell(m: _Math, x: _Array, h: _Array, cell: tuple[_Array, ...]) -> _Array:
    """PyTorch's GRU cell (gates r, z, n) in ``m``'s arithmetic."""
    gates, hidden, n = m.affine(x, cell[0], cell[2]), m.affine(h, cell[1], cell[3]), h.shape[1]
    rz = m.sigmoid(gates[:, : 2 * n] + hidden[:, : 2 * n])
    new = m.tanh(gates[:, 2 * n :] + rz[:, :n] * hidden[:, 2 * n :])
    return new + rz[:, n:] * (h - new)


def _lstm_cell(m: _Math, x: _Array, h: _Array, c: _Array, cell: tuple[_Array, ...]) -> tuple[_Array, _Array]:
    """PyTorch's LSTM cell (gates i, f, g, o) in ``m``'s arithmetic: (hidden, cell state)."""
    gates, n = m.affine(x, cell[0], cell[2]), h.shape[1]
    gates += m.affine(h, cell[1], cell[3])
    i, f, g, o = (gates[:, j * n : (j + 1) * n] for j in range(4))
    c = m.sigmoid(f) * c + m.sigmoid(i) * m.tanh(g)
    return m.sigmoid(o) * m.tanh(c), c


class _PushedTaps:
    """The sample MLP's first layer as accumulators: ``acc[k]`` is that of sample k of
    the current bottom frame (k < window) and of the next one (k >= window), and a drawn
    sample adds its row of every tap to the ``window`` samples that will read it: one
    gather and one add a step. The context before the first sample is silence, whose
    share in step k is the sum of taps k and above. On numpy, a last column of ones
    carries _NumpyMLP's biases."""

    def __init__(self, taps: torch.Tensor, silence: int, batch: int, hidden: int, numpy: bool) -> None:
        window = taps.shape[0]
        fresh = taps.new_zeros(window, batch, taps.shape[2])
        fresh[:, :, hidden:] = 1
        acc = torch.cat([fresh, fresh])
        acc[:window, :, :hidden] += taps[:, silence, :hidden].flip(0).cumsum(0).flip(0)[:, None]
        self.window, self.hidden = window, hidden
        self.acc, self.fresh = (t.numpy() if numpy else t for t in (acc, fresh))
        self.taps = taps.numpy() if numpy else taps
        by_level = taps.transpose(0, 1)[:, :, None, :]  # (levels, window, 1, width), a view
        if batch == 1 and numpy:  # a basic index is a view: 3x faster than any gather
            by_level = by_level.numpy()
            self.rows = lambda d: by_level[d[0]]
        elif batch == 1 and taps.device.type == "cpu":  # (on a GPU, int() would wait for it)
            self.rows = lambda d: by_level[int(d)]
        elif numpy:
            self.rows = lambda d: np.take(taps.numpy(), d, axis=1)
        else:  # index_select: 2.4x faster than advanced indexing at hidden 1024
            self.rows = lambda d: taps.index_select(1, d)

    def begin(self, base: _Array) -> None:
        """Add the upper tier and conditioning, (B, window, hidden), of a bottom frame."""
        self.acc[: self.window, :, : self.hidden] += base.swapaxes(0, 1)

    def layer(self, k: int) -> _Array:
        return self.acc[k]

    def drawn(self, k: int, d: _Array) -> None:
        # in place on a view: ``acc[a:b] += x`` would also assign the result back
        later = self.acc[k + 1 : k + 1 + self.window]
        later += self.rows(d)

    def end(self) -> None:
        self.acc[: self.window] = self.acc[self.window :]
        self.acc[self.window :] = self.fresh

    def compiled(self, base: np.ndarray, mlp: _NumpyMLP, *frame: object) -> None:
        """begin, every step and end in one compiled call (kernels.py)."""
        _kernels().pushed_frame(self.acc, self.fresh, base, self.taps, mlp.weights, mlp.outs, *frame)


class _PulledTaps:
    """The sample MLP's first layer summed at each step from the window's tap rows, one
    ``embedding_bag`` call over the last ``window`` samples. It reads what _PushedTaps
    reads but writes no accumulators: from batch ~16 it is 1.3x (hidden 64, numpy) to
    4x (hidden 1024) faster; below, the call's fixed cost loses. On numpy, the index
    arithmetic runs on numpy views of the tensors (a third of PyTorch's call cost)."""

    def __init__(self, taps: torch.Tensor, silence: int, batch: int, hidden: int, numpy: bool) -> None:
        window, levels, width = taps.shape
        self.window, self.hidden = window, hidden
        self.table = taps.reshape(window * levels, width)
        self.bags = torch.arange(0, batch * window, window, device=taps.device)  # each row's first
        self.rows = torch.empty(batch * window, dtype=torch.long, device=taps.device)
        # history[:, window + k]: sample k of this bottom frame, after the window before it
        history = torch.full((batch, 2 * window), silence, dtype=torch.long, device=taps.device)
        offsets = (window - 1 - torch.arange(window, device=taps.device)) * levels  # tap j: j + 1 back
        base = taps.new_ones(batch, window, width)  # a last column of ones for _NumpyMLP
        self.sums = np.empty((batch, width), np.float32)  # the compiled step's first layer
        self.add, self.out = (np.add, torch.Tensor.numpy) if numpy else (torch.add, lambda t: t)
        self.history, self.offsets, self.base, self.index = (
            t.numpy() if numpy else t for t in (history, offsets, base, self.rows.view(batch, window))
        )

    def begin(self, base: _Array) -> None:
        self.base[:, :, : self.hidden] = base

    def layer(self, k: int) -> _Array:
        self.add(self.history[:, k : k + self.window], self.offsets, out=self.index)
        h = self.out(F.embedding_bag(self.rows, self.table, self.bags, mode="sum"))
        return self.add(h, self.base[:, k], out=h)

    def drawn(self, k: int, d: _Array) -> None:
        self.history[:, self.window + k] = d

    def end(self) -> None:
        self.history[:, : self.window] = self.history[:, self.window :]

    def compiled(self, base: np.ndarray, mlp: _NumpyMLP, *frame: object) -> None:
        """begin, every step and end in one compiled call (kernels.py)."""
        self.begin(base)
        table = self.table.numpy()
        _kernels().pulled_frame(
            self.history, self.offsets, table, self.base, self.sums, mlp.weights, mlp.outs, *frame
        )


class _NumpyMLP:
    """The sample-level MLP in numpy (on the CPU), two calls a layer: the input carries a
    constant 1 in its last column, which holds each bias as the last row of an augmented
    matrix and passes itself on (ReLU keeps it 1). At batch 1 the matrices are kept
    (out, in) and multiply the row as a vector (see _linear)."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], batch: int) -> None:
        self.layers = []
        for k, (w, b) in enumerate(layers):
            last = k == len(layers) - 1
            w = w.numpy().T  # (in, out)
            aug = np.zeros((w.shape[0] + 1, w.shape[1] + (0 if last else 1)), np.float32)
            aug[:-1, : w.shape[1]], aug[-1, : w.shape[1]] = w, b.numpy()
            if not last:
                aug[-1, -1] = 1.0
            if batch == 1:
                aug = np.ascontiguousarray(aug.T)  # (out, in)
            width = aug.shape[0] if batch == 1 else aug.shape[1]
            self.layers.append((aug, np.empty((batch, width), np.float32)))
        self.weights, self.outs = (tuple(x) for x in zip(*self.layers, strict=True))
        if batch == 1:
            self.dot = lambda h, w, out: np.dot(w, h[0], out=out[0])
        else:  # np.dot: 0.3 us less a call than np.matmul
            self.dot = lambda h, w, out: np.dot(h, w, out=out)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """h: a row of the accumulator, read once, so the first ReLU may overwrite it."""
        np.maximum(h, 0.0, out=h)
        for w, out in self.layers[:-1]:
            self.dot(h, w, out)
            np.maximum(out, 0.0, out=out)
            h = out
        w, out = self.layers[-1]
        self.dot(h, w, out)
        return out


class _TorchMLP:
    """The sample-level MLP in PyTorch (large models, GPUs); logits in float32."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], batch: int) -> None:
        self.layers = layers

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """h: a row of the first layer, read once, so the first ReLU may overwrite it."""
        for w, b in self.layers:
            h = _linear(h.relu_(), w, b)
        return h.float()


class Generator:
    """A trained model unrolled for sampling; reuse one for many calls.

    Parameters
    ----------
    model : the trained SampleRNN (any device).
    dtype : ``torch.float32`` or ``torch.bfloat16`` for the matrix products.
    backend : ``"auto"`` (numpy on the CPU in float32 for small models, and for large
        ones at batch 1), ``"numpy"`` or ``"torch"``.
    """

    NOISE_THREAD_FROM = 16  # batch size; below it the hand-over costs more than the draw
    PULL_FROM = 16  # batch size from which the first layer sums tap rows (see _PulledTaps)

    def __init__(
        self, model: SampleRNN, *, dtype: torch.dtype = torch.float32, backend: str = "auto"
    ) -> None:
        if dtype not in (torch.float32, torch.bfloat16):
            raise FeatprepError(f"generation dtype {dtype}: expected float32 or bfloat16")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        if backend not in ("auto", "numpy", "torch"):
            raise FeatprepError(f"generation backend {backend!r}: expected auto, numpy or torch")
        if backend == "numpy" and (self.device.type != "cpu" or dtype != torch.float32):
            raise FeatprepError("the numpy backend runs float32 on the CPU only")
        self.backend, self.dtype = backend, dtype
        sample = model.sample
        # weight-normed layers: compute their weights once
        with torch.no_grad(), torch.nn.utils.parametrize.cached():
            self.tiers = [_Tier.of(t, dtype) for t in model.tiers]
            tables = sample.tables()
        # tap j of the flipped tables is what a sample adds to the step j + 1 samples later
        taps = tables.flip(0)
        self.taps = taps.contiguous().to(dtype)
        self.numpy_taps = self.numpy_tiers = None
        if self.device.type == "cpu" and dtype == torch.float32:
            self.numpy_taps = F.pad(taps, (0, 1)).contiguous()  # a zero column under _NumpyMLP's ones
            self.numpy_tiers = [t.numpy() for t in self.tiers]
        # numpy's bottom frames as one compiled call each (kernels.py), when numba imports
        self.compiled = self.numpy_tiers is not None and _kernels() is not None
        linear = [m for m in sample.mlp if isinstance(m, torch.nn.Linear)]
        self.layers = [(m.weight.detach().contiguous().to(dtype), m.bias.detach().to(dtype)) for m in linear]
        self.values = dequantise(torch.arange(model.cfg.levels), model.cfg).to(self.device)

    def runs_numpy(self, batch: int) -> bool:
        """Whether a batch of this size runs its steps in numpy."""
        if self.backend != "auto" or self.numpy_tiers is None:
            return self.backend == "numpy"
        # at batch 1 a large model streams its matrices through np.dot(w, x) (1.05x
        # PyTorch's addmv, less per-call cost); from batch 2 PyTorch's products win
        return self.model.cfg.hidden <= NUMPY_UP_TO or batch == 1

    @torch.inference_mode()
    def __call__(
        self,
        features: torch.Tensor | None,
        speakers: torch.Tensor | None,
        frames: int,
        *,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> torch.Tensor:
        """(B, frames * top) float samples for ``frames`` top frames of conditioning.

        ``speakers``: indices (B,) or speaker vectors (B, E), as the model was trained.
        The same inputs and seed give the same samples.
        """
        if features is not None and features.shape[1] != frames:
            raise FeatprepError(f"{features.shape[1]} frames of features for {frames} frames to generate")
        if temperature < 0:
            raise FeatprepError(f"temperature {temperature}: expected >= 0")
        batch = speakers.shape[0] if speakers is not None else features.shape[0]
        numpy = self.runs_numpy(batch)
        with contextlib.ExitStack() as stack:
            if numpy and self.model.cfg.hidden <= NUMPY_UP_TO:
                # one thread for every product, the conditioning's too: at these sizes a
                # second PyTorch or BLAS thread only spins against the first (2.6x slower
                # at batch 64; on a busy machine a tiny two-thread product may wait a
                # scheduler tick for its second thread); the second core draws the noise
                stack.enter_context(_torch_threads(1))
                stack.enter_context(threadpool_limits(1, user_api="blas"))
            elif numpy and self.compiled:
                stack.enter_context(_kernels().one_thread())
            return self._generate(features, speakers, frames, batch, numpy, temperature, seed)

    def _generate(
        self,
        features: torch.Tensor | None,
        speakers: torch.Tensor | None,
        frames: int,
        batch: int,
        numpy: bool,
        temperature: float,
        seed: int,
    ) -> torch.Tensor:
        model = self.model
        features, speakers = (None if t is None else t.to(self.device) for t in (features, speakers))
        top, window, levels = model.top_frame, model.cfg.ratios[0], model.cfg.levels
        cond = model.conditioning(features, speakers, frames)
        tier_cond = [
            None if cond is None or t.cond is None else t.cond(cond).to(self.dtype) for t in model.tiers
        ]
        sample_cond = None
        if cond is not None and model.sample.cond is not None:
            sample_cond = model.sample.cond(cond).to(self.taps.dtype)
        silence = int(quantise(torch.zeros(1), model.cfg)[0])
        x = self.values[silence].to(self.dtype).repeat(batch, top + frames * top)
        tiers, values, samples = self.tiers, self.values.to(self.dtype), x
        if numpy:  # the loop below runs on numpy views of the same memory
            tiers, values, samples = self.numpy_tiers, values.numpy(), x.numpy()
            tier_cond = [None if c is None else c.numpy() for c in tier_cond]
            sample_cond = None if sample_cond is None else sample_cond.numpy()
        pulled = batch >= self.PULL_FROM
        first = (_PulledTaps if pulled else _PushedTaps)(
            self.numpy_taps if numpy else self.taps, silence, batch, model.cfg.hidden, numpy
        )
        mlp = (_NumpyMLP if numpy else _TorchMLP)(self.layers, batch)
        state = [t.initial(batch) for t in tiers]
        noise = None
        compiled = numpy and self.compiled
        greedy = np.empty((0, batch, levels), np.float32)  # the compiled frame's "no noise"

        def bottom_frame(start: int, base: _Array, frame: int) -> None:
            if sample_cond is not None:
                base = base + sample_cond[:, frame, None]
            offset = start - top * (frame + 1)  # of this bottom frame in its top frame
            if compiled:
                first.compiled(base, mlp, greedy if noise is None else noise, offset, values, samples, start)
                return
            first.begin(base)
            drawn = []
            for k in range(window):
                logits = mlp(first.layer(k))
                if noise is not None:
                    logits -= noise[offset + k]
                d = logits.argmax(axis=1)
                first.drawn(k, d)
                drawn.append(d)
            first.end()
            samples[:, start : start + window] = values[(np.stack if numpy else torch.stack)(drawn, 1)]

        def frame_tier(i: int, start: int, upper: _Array | None, frame: int) -> None:
            tier = tiers[i]
            c = None if tier_cond[i] is None else tier_cond[i][:, frame]
            up = tier.step(samples[:, start - tier.size : start], upper, c, state[i])
            if i == 0:
                bottom_frame(start, up, frame)
                return
            for k in range(tier.ratio):
                frame_tier(i - 1, start + k * (tier.size // tier.ratio), up[:, k], frame)

        with contextlib.ExitStack() as stack:
            if temperature > 0:
                ahead = batch >= self.NOISE_THREAD_FROM
                gumbel = stack.enter_context(_GumbelStream(seed, (top, batch, levels), temperature, ahead))
            for j in range(frames):
                if temperature > 0:
                    noise = gumbel.take() if numpy else torch.from_numpy(gumbel.take()).to(self.device)
                frame_tier(len(self.tiers) - 1, top + j * top, None, j)
        return x[:, top:].float().cpu()


@functools.cache
def _kernels() -> types.ModuleType | None:
    """kernels.py, imported at the first Generator (numba takes ~0.5 s), or None without numba."""
    try:
        from . import kernels
    except ImportError:
        return None
    return kernels


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _GumbelStream:
    """Noise for the Gumbel-max draw, one (top, B, levels) block per top frame. With
    ``ahead``, the next block is drawn on a second thread while this one is used (numpy's
    generator and ufuncs release the GIL); the order of draws is the same either way, so
    the samples depend on the seed only. A block is valid until the next ``take``: the
    blocks are reused (fresh ones cost their pages again: 1.25x slower at batch 64)."""

    def __init__(self, seed: int, shape: tuple[int, ...], scale: float, ahead: bool) -> None:
        self._rng, self._scale = np.random.default_rng(seed), scale
        self._blocks = [np.empty(shape, np.float32) for _ in range(2 if ahead else 1)]
        self._turn = 0
        self._pool = ThreadPoolExecutor(1) if ahead else None
        self._next = self._pool.submit(self._draw, self._blocks[0]) if self._pool else None

    def _draw(self, block: np.ndarray) -> np.ndarray:
        return _negative_gumbel(self._rng, block.shape, self._scale, out=block)

    def take(self) -> np.ndarray:
        if self._pool is None:
            return self._draw(self._blocks[0])
        block = self._next.result()
        self._turn ^= 1  # the block taken before this one is free again
        self._next = self._pool.submit(self._draw, self._blocks[self._turn])
        return block

    def __enter__(self) -> _GumbelStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _negative_gumbel(
    rng: np.random.Generator, shape: tuple[int, ...], scale: float, out: np.ndarray | None = None
) -> np.ndarray:
    """``-scale * g`` for standard Gumbel noise g, in float32 (a third of the cost of
    ``rng.gumbel``'s float64; the tail is cut at 16.6, where float32 uniforms end), into
    ``out`` (float32 of that shape) when given."""
    u = np.empty(shape, np.float32) if out is None else out
    # in slices of about 1 MB, drawn and transformed while in the core's cache
    step = max(1, (1 << 18) // max(1, u[0].size))
    with np.errstate(divide="ignore"):  # u = 0 gives -inf noise: that class is not drawn
        for first in range(0, len(u), step):
            part = u[first : first + step]
            _uniform(rng, part)
            np.log(part, out=part)
            np.negative(part, out=part)
            np.log(part, out=part)
            if scale != 1:
                part *= np.float32(scale)
    return u


def _uniform(rng: np.random.Generator, out: np.ndarray) -> None:
    """``rng.random(dtype=np.float32, out=out)``, the same numbers in 0.6x the time:
    for PCG64, numpy makes a float32 of the top 24 bits of each 32-bit half, low half
    first, of the generator's 64-bit outputs, one call a number; here in bulk (an even
    count, with no half left over from an earlier draw)."""
    bitgen = rng.bit_generator
    if out.size % 2 or not isinstance(bitgen, np.random.PCG64) or bitgen.state["has_uint32"]:
        rng.random(dtype=np.float32, out=out)
        return
    bits = bitgen.random_raw(out.size // 2).view(np.uint32).reshape(out.shape)
    np.right_shift(bits, 8, out=bits)
    out[...] = bits
    out *= np.float32(2.0**-24)


def generate_many(
    generator: Generator,
    requests: Iterable[tuple[np.ndarray | None, torch.Tensor, int]],
    *,
    batch_size: int = 16,
    temperature: float = 1.0,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """The samples of each request, in order, generated ``batch_size`` at a time.

    A request is (features (frames, D) or None, speaker (1,) or (1, E) as
    ``Run.speaker_input`` gives it, frames). A batch's features are zero-padded to its
    longest request; generation is causal, so the padding never reaches a request's own
    samples. Batch i draws its noise from ``seed + i``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FeatprepError(f"batch size {batch_size}: expected at least 1")
    if not 0 <= temperature < math.inf:  # here, not at the first batch: the caller may write first
        raise FeatprepError(f"temperature {temperature}: expected >= 0")
    return _batches(generator, iter(requests), batch_size, temperature, seed)


def _batches(
    generator: Generator, requests: Iterator, batch_size: int, temperature: float, seed: int
) -> Iterator[np.ndarray]:
    for i in itertools.count():
        group = list(itertools.islice(requests, batch_size))
        if not group:
            return
        longest = max(frames for _, _, frames in group)
        features = None
        if group[0][0] is not None:
            features = torch.zeros(len(group), longest, group[0][0].shape[1])
            for row, (feats, _, frames) in enumerate(group):
                features[row, :frames] = torch.from_numpy(feats[:frames])
        speakers = torch.cat([speaker for _, speaker, _ in group])
        audio = generator(features, speakers, longest, temperature=temperature, seed=seed + i)
        for (_, _, frames), row in zip(group, audio, strict=True):
            yield row[: frames * generator.model.top_frame].numpy()


def generate(
    model: SampleRNN,
    features: torch.Tensor | None,
    speakers: torch.Tensor | None,
    frames: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, frames * 80) samples for ``frames`` 5 ms frames of conditioning; see :class:`Generator`."""
    return Generator(model, dtype=dtype)(features, speakers, frames, temperature=temperature, seed=seed)

"""Autoregressive generation: frame tiers run only at their frame boundaries.

A :class:`Generator` unrolls a trained model once into plain matrices: each frame tier's
step is two matrix products around one RNN cell, and the sample level, the only
work done for every sample, is its first layer, three small matrix products and a
draw. The window convolution over embeddings becomes one table per tap
(``conv(embed(w)) = sum_i T_i[w_i]``): for small batches a drawn sample adds its row of
every tap to accumulators of the ``window`` samples that will read it (one gather a
step, :class:`_PushedTaps`); for large ones each step sums its window's rows in one
``embedding_bag`` call (:class:`_PulledTaps`). The upper tier and the conditioning are
added once per bottom frame. Sampling is by the inverse CDF of softmax(logits / T), one
uniform a sample (drawn in one block per top frame; :func:`_draw`); ``T = 0`` is greedy
decoding, the argmax.

On the CPU, small models and batch 1 run in numpy (a PyTorch call costs more than a
small product's arithmetic, and at batch 1 every product is a matrix times a vector,
which streams the matrix fastest); large batches of large models and GPUs run in
PyTorch, in float32 or bfloat16 (on CPUs with AMX and on GPUs, bfloat16 matrix products
are several times faster). In numpy, a bottom frame's samples are one compiled call
(kernels.py, when numba imports) doing the numpy step's arithmetic: 2.6-2.9x faster at the
small preset's batch 1, where the step's Python and numpy calls cost more than its
products; from batch 16 groups of 8 rows or more run on threads of their own, one a
core, frame tiers included. Batched: many utterances at once, each row with its own
conditioning.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.utils.parametrize
from threadpoolctl import ThreadpoolController, threadpool_limits
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
    """The sample-level MLP in numpy (on the CPU), one product and one ReLU a layer: the
    input carries a constant 1 in its last column, which holds each bias as the last
    column of an augmented (out, in) matrix and passes itself on (ReLU keeps it 1). The
    layers' outputs are (width, B), so the logits come out (levels, B), as _draw reads
    them; at batch 1 the matrices multiply the row as a vector (see _linear)."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], batch: int) -> None:
        self.layers = []
        for k, (w, b) in enumerate(layers):
            last = k == len(layers) - 1
            aug = np.zeros((w.shape[0] + (0 if last else 1), w.shape[1] + 1), np.float32)
            aug[: w.shape[0], :-1], aug[: w.shape[0], -1] = w.numpy(), b.numpy()
            if not last:
                aug[-1, -1] = 1.0
            self.layers.append((aug, np.empty((aug.shape[0], batch), np.float32)))
        self.weights, self.outs = (tuple(x) for x in zip(*self.layers, strict=True))
        if batch == 1:
            self.dot = lambda w, x, out: np.dot(w, x.reshape(-1), out=out.reshape(-1))
        else:  # np.dot: 0.3 us less a call than np.matmul
            self.dot = lambda w, x, out: np.dot(w, x, out=out)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """h (B, width): a row of the accumulator, read once, so the first ReLU may overwrite it."""
        np.maximum(h, 0.0, out=h)
        x = h.T
        for w, out in self.layers[:-1]:
            self.dot(w, x, out)
            np.maximum(out, 0.0, out=out)
            x = out
        w, out = self.layers[-1]
        self.dot(w, x, out)
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

    PULL_FROM = 16  # batch size from which the first layer sums tap rows (see _PulledTaps)
    ROWS_PER_THREAD = 8  # compiled: a thread for every this many rows, up to a core each (16: 1.37x)

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
        _check_draw(temperature, seed)
        batch = speakers.shape[0] if speakers is not None else features.shape[0]
        numpy = self.runs_numpy(batch)
        with contextlib.ExitStack() as stack:
            if numpy and self.model.cfg.hidden <= NUMPY_UP_TO:
                # one thread for every product, the conditioning's too: at these sizes a
                # second PyTorch or BLAS thread only spins against the first (2.6x slower
                # at batch 64; on a busy machine a tiny two-thread product may wait a
                # scheduler tick for its second thread); from batch 16 the other cores
                # generate groups of rows (see _generate)
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
        top = model.top_frame
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
        run = _Run(tiers, values, samples, tier_cond, sample_cond, silence, numpy, threading.Event())
        # compiled frames release the GIL: groups of rows run on threads of their own, one
        # a core, each with its own frame tiers, so the threads never wait for each other;
        # rows are independent, so the samples are the same (the conditioning above is
        # computed for the whole batch)
        parts = max(1, min(_cores(), batch // self.ROWS_PER_THREAD)) if numpy and self.compiled else 1
        groups = [slice(p * batch // parts, (p + 1) * batch // parts) for p in range(parts)]
        rows = functools.partial(self._rows, run, frames=frames, temperature=temperature, seed=seed)
        if parts == 1:
            rows(groups[0])
        else:
            with ThreadPoolExecutor(parts - 1) as pool:
                others = [pool.submit(rows, g) for g in groups[1:]]
                try:
                    rows(groups[0])
                    for other in others:
                        other.result()
                except BaseException:
                    # Ctrl-C or an error: the other groups stop at their next top frame (the
                    # pool's exit waited for them to finish the batch: 6.6 s at batch 64)
                    run.stop.set()
                    raise
        return x[:, top:].float().cpu()

    def _rows(self, run: _Run, group: slice, *, frames: int, temperature: float, seed: int) -> None:
        """Generate the rows ``group`` of ``run``'s samples."""
        model, numpy = self.model, run.numpy
        top, window = model.top_frame, model.cfg.ratios[0]
        tiers, values, samples = run.tiers, run.values, run.samples[group]
        tier_cond = [None if c is None else c[group] for c in run.tier_cond]
        sample_cond = None if run.sample_cond is None else run.sample_cond[group]
        batch = group.stop - group.start
        first = (_PulledTaps if batch >= self.PULL_FROM else _PushedTaps)(
            self.numpy_taps if numpy else self.taps, run.silence, batch, model.cfg.hidden, numpy
        )
        mlp = (_NumpyMLP if numpy else _TorchMLP)(self.layers, batch)
        state = [t.initial(batch) for t in tiers]
        uniforms = None  # (top, B): one a sample of the top frame, or None (greedy)
        scale = _scale(temperature)
        compiled = numpy and self.compiled
        greedy = np.empty((0, batch), np.float32)  # the compiled frame's "no uniforms"

        def bottom_frame(start: int, base: _Array, frame: int) -> None:
            if sample_cond is not None:
                base = base + sample_cond[:, frame, None]
            offset = start - top * (frame + 1)  # of this bottom frame in its top frame
            if compiled:
                given = greedy if uniforms is None else uniforms
                first.compiled(base, mlp, given, scale, offset, values, samples, start)
                return
            first.begin(base)
            drawn = []
            for k in range(window):
                u = None if uniforms is None else uniforms[offset + k]
                d = (_draw if numpy else _draw_torch)(mlp(first.layer(k)), u, scale)
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

        # the whole batch's uniforms, the group's columns: the same whatever the groups
        rng, block = np.random.default_rng(seed), np.empty((top, len(run.samples)), np.float32)
        large = numpy and model.cfg.hidden > NUMPY_UP_TO and len(run.samples) == 1  # one group
        threads = _TierThreads() if large else None
        for j in range(frames):
            if run.stop.is_set():
                return
            if temperature > 0:
                _uniform(rng, block)
                ours = np.ascontiguousarray(block[:, group])
                uniforms = ours if numpy else torch.from_numpy(ours).to(self.device)
            with threads.frame(j) if threads else contextlib.nullcontext():
                frame_tier(len(tiers) - 1, top + j * top, None, j)


class _TierThreads:
    """numpy's BLAS threads for a large model's frame tiers at batch 1 (matrices times
    vectors), chosen by the clock. A second thread streams the tiers' matrices faster on
    a free core (1.15-1.35x at the paper size, 2 cores) and waits for the first when
    another process holds a core (1.2-1.6x slower): every ``EVERY`` top frames one frame
    runs in one thread and one in numpy's own count, timed, and the rest in the faster.
    The products do not depend on the thread count (OpenBLAS splits a matrix times a
    vector by rows), so neither do the samples."""

    EVERY = 25

    def __init__(self) -> None:
        self.blas = ThreadpoolController().select(user_api="blas")
        self.seconds: dict[int | None, float] = {}  # threads (None: numpy's own) -> its timed frame

    @contextlib.contextmanager
    def frame(self, j: int) -> Iterator[None]:
        trial = j % self.EVERY
        threads = (1, None)[trial] if trial < 2 else min(self.seconds, key=self.seconds.__getitem__)
        with self.blas.limit(limits=1) if threads == 1 else contextlib.nullcontext():
            start = time.perf_counter()
            yield
            if trial < 2:
                self.seconds[threads] = time.perf_counter() - start


class _Run(NamedTuple):
    """What the groups of rows of one generation share: the tiers and sample values of
    their arithmetic (numpy or PyTorch), the (B, top + samples) samples they write, the
    conditioning of the whole batch, the silence class."""

    tiers: list[_Tier]
    values: _Array
    samples: _Array
    tier_cond: list[_Array | None]
    sample_cond: _Array | None
    silence: int
    numpy: bool
    stop: threading.Event  # set when the batch is given up: the groups still at work return


@functools.cache
def _kernels() -> types.ModuleType | None:
    """kernels.py, imported at the first Generator (numba takes ~0.5 s), or None without numba."""
    try:
        from . import kernels
    except ImportError:
        return None
    return kernels


def _cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# 2 ** f on [-1/2, 1/2], lowest power first: a near-minimax polynomial (Chebyshev fit),
# within 2.5e-7 (2 ulp) of 2 ** f evaluated in float32
EXP2_POLY = tuple(
    np.float32(c)
    for c in (1.0000001192092896, 0.6931471824645996, 0.2402210682630539, 0.05550327152013779,
              0.009676037356257439, 0.0013400432653725147)
)  # fmt: skip
EXP2_FLOOR = np.float32(-126)  # 2 ** -126, float32's smallest normal: no class weighs 0


def _check_draw(temperature: float, seed: int) -> None:
    """Raise `FeatprepError` unless ``temperature`` is a finite number >= 0 and ``seed`` a
    whole number >= 0 (numpy's generators take no negative seed)."""
    if not 0 <= temperature < math.inf:
        raise FeatprepError(f"temperature {temperature}: expected a finite number >= 0 (0: greedy)")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise FeatprepError(f"seed {seed!r}: expected a whole number >= 0")


def check_sampling(batch_size: int, temperature: float, seed: int) -> None:
    """Raise `FeatprepError` unless `generate_many` can take ``batch_size``, ``temperature``
    and ``seed``: callers check them before they load a model or run Festival."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise FeatprepError(f"batch size {batch_size}: expected at least 1")
    _check_draw(temperature, seed)


def _scale(temperature: float) -> np.float32:
    """The draw's ``log2(e) / T`` in float32, at most float32's largest: a temperature so
    small that the scale overflowed made it inf, and inf times the largest logit's 0 a NaN
    that weighed every class alike (uniform noise for a near-greedy draw)."""
    if temperature == 0:
        return np.float32(0)
    return np.float32(min(math.log2(math.e) / temperature, float(np.finfo(np.float32).max)))


def _draw(logits: np.ndarray, uniforms: np.ndarray | None, scale: np.float32) -> np.ndarray:
    """A class (B,) of each column of logits (levels, B): the argmax without uniforms
    (greedy), else drawn from softmax(logits / T) with ``scale = log2(e) / T`` by the
    inverse CDF, one uniform (B,) a draw: the first class whose running sum of weights
    ``2 ** ((l - max) * scale)`` exceeds ``u`` times their total.

    The power of two is a polynomial of the exponent's fraction times its whole part's
    float32 bits, float32 operation by operation, so kernels.py's compiled draw does the
    same arithmetic (np.exp's float32 SIMD code and the C library's differ in the last
    bit). Below 2 ** -126 of the largest a weight is raised to it (the distribution moves
    by less than 1e-35): no class is lost, and a NaN logit is a small weight too.
    """
    if uniforms is None:
        return logits.argmax(axis=0)
    t = (logits - logits.max(axis=0)) * scale
    t = np.where(t >= EXP2_FLOOR, t, EXP2_FLOOR)
    whole = np.floor(t + np.float32(0.5))
    fraction = t - whole
    weights = EXP2_POLY[-1] * fraction
    for c in EXP2_POLY[-2:0:-1]:
        weights += c
        weights *= fraction
    weights += EXP2_POLY[0]
    weights *= ((whole.astype(np.int32) + 127) << 23).view(np.float32)
    sums = np.cumsum(weights, axis=0)
    return np.minimum((sums <= uniforms * sums[-1]).sum(axis=0), len(logits) - 1)


def _draw_torch(logits: torch.Tensor, uniforms: torch.Tensor | None, scale: np.float32) -> torch.Tensor:
    """_draw on logits (B, levels) in PyTorch, with its own exp2 (no bitwise twin here)."""
    if uniforms is None:
        return logits.argmax(dim=1)
    t = ((logits - logits.amax(dim=1, keepdim=True)) * float(scale)).clamp_(min=float(EXP2_FLOOR))
    sums = torch.exp2(t).cumsum(dim=1)
    return (sums <= uniforms[:, None] * sums[:, -1:]).sum(dim=1).clamp_(max=logits.shape[1] - 1)


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
    samples. Batch i draws its uniforms from ``seed + i``.
    """
    check_sampling(batch_size, temperature, seed)  # here, not at the first batch: the caller may write first
    return _batches(generator, iter(requests), batch_size, temperature, seed)


def _batches(
    generator: Generator, requests: Iterator, batch_size: int, temperature: float, seed: int
) -> Iterator[np.ndarray]:
    size = min(batch_size, sys.maxsize)  # islice takes no larger count (--batch-size 1e20 was its traceback)
    for i in itertools.count():
        group = list(itertools.islice(requests, size))
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

"""The CPU generator's bottom frame as compiled loops (numba), one call per bottom frame.

At the small preset the per-sample step is three small matrix products whose arithmetic
costs less than the Python and numpy calls around them; here the whole bottom frame (the
first layer, the MLP, the draw, the taps' push or pull) is one call, and the GIL is
released for it. The arithmetic is that of the numpy step in generate.py, operation for
operation: the same BLAS products (np.dot compiles to the same gemv/gemm calls), the same
float32 operations in the same order (no fused multiply-adds: numba does not contract
without fastmath), the same draw (generate.py's ``_draw``: inverse CDF with its own
``exp2``) and numpy's argmax for greedy decoding (the first maximum; a NaN wins), so a
compiled frame gives the numpy frame's samples bit for bit. numba is a dependency;
where it cannot be imported, generate.py runs the numpy step.

Logits are (levels, B): the draw's loops run over the batch innermost, so the running
maxima, sums and counts of a step are vectors (one row each would be a chain of 256
dependent additions); at batch 1 they run over the levels.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

# numba's np.dot calls the BLAS of scipy.linalg.cython_blas: load it now, so that
# threadpoolctl sees (and limits) its threads from the first generation on
import scipy.linalg.cython_blas  # noqa: F401
from threadpoolctl import ThreadpoolController

from .generate import EXP2_FLOOR, EXP2_POLY

_CONTROLLER = ThreadpoolController()
# scipy's BLAS, when it is a library of its own (wheels): not the one numpy multiplies on
_SCIPY_BLAS = _CONTROLLER.select(
    filepath=[
        lib.filepath
        for lib in _CONTROLLER.lib_controllers
        if lib.user_api == "blas" and "numpy" not in lib.filepath
    ]
)
_C0, _C1, _C2, _C3, _C4, _C5 = EXP2_POLY
_FLOOR = EXP2_FLOOR


def one_thread() -> contextlib.AbstractContextManager:
    """The compiled products' BLAS in one thread, numpy's as it is: the idle threads of a
    second OpenBLAS spin against numpy's (20x slower at the paper size on a busy
    machine), and the sample MLP's matrices, a few MB, gain little from a second."""
    return _SCIPY_BLAS.limit(limits=1)


@numba.njit(cache=True, nogil=True)
def _argmax(x: np.ndarray) -> int:
    """numpy's argmax of a vector: the first maximum, or the first NaN."""
    best, at = x[0], 0
    if best != best:
        return 0
    for i in range(1, x.shape[0]):
        v = x[i]
        if v != v:
            return i
        if v > best:
            best, at = v, i
    return at


@numba.njit(cache=True, nogil=True)
def _relu(x: np.ndarray) -> None:
    """np.maximum(x, 0, out=x) on a C-contiguous x: a NaN stays NaN."""
    flat = x.reshape(-1)  # one loop: a (width, 1) column would not vectorize
    for i in range(flat.shape[0]):
        if flat[i] < 0:
            flat[i] = 0


@numba.njit(cache=True, nogil=True)
def _mlp(h, weights, outs):  # noqa: ANN001, ANN202
    """_NumpyMLP on h (B, width): the logits, (levels, B), in outs[-1]."""
    batch = h.shape[0]
    _relu(h)
    if batch == 1:  # matrices times vectors (see generate._affine)
        np.dot(weights[0], h[0], outs[0].reshape(-1))
    else:
        np.dot(weights[0], h.T, outs[0])
    for i in range(1, len(weights)):
        _relu(outs[i - 1])
        if batch == 1:
            np.dot(weights[i], outs[i - 1].reshape(-1), outs[i].reshape(-1))
        else:
            np.dot(weights[i], outs[i - 1], outs[i])
    return outs[-1]


@numba.njit(cache=True, nogil=True)
def _exp2_parts(t):  # noqa: ANN001, ANN202
    """generate._draw's 2 ** t for t <= 0: the polynomial of t's fraction and the float32
    bits of 2 ** (t's whole part)."""
    t = t if t >= _FLOOR else _FLOOR  # a NaN too
    k = np.floor(t + np.float32(0.5))
    f = t - k
    p = ((((_C5 * f + _C4) * f + _C3) * f + _C2) * f + _C1) * f + _C0
    return p, (np.int32(k) + np.int32(127)) << np.int32(23)


@numba.njit(cache=True, nogil=True)
def _draw_column(logits, u, scale, bits):  # noqa: ANN001, ANN202
    """_draw at batch 1, its loops over the levels (a loop over a batch of one would not
    vectorize): logits (levels,) and bits (levels,) int32 are overwritten."""
    levels, peak, nan = logits.shape[0], logits[0], False
    for i in range(1, levels):  # branch-free: 3.6x faster than _draw's select
        v = logits[i]
        peak = v if v > peak else peak
        nan |= v != v
    if nan:  # np.max: a NaN wins
        peak = np.float32(np.nan)
    for i in range(levels):
        logits[i], bits[i] = _exp2_parts((logits[i] - peak) * scale)
    powers, total = bits.view(np.float32), np.float32(0)
    for i in range(levels):
        total += logits[i] * powers[i]
        logits[i] = total
    total *= u
    drawn = 0
    for i in range(levels):
        drawn += logits[i] <= total
    return min(drawn, levels - 1)


@numba.njit(cache=True, nogil=True)
def _draw(logits, uniforms, row, scale, bits, top, drawn):  # noqa: ANN001, ANN202
    """generate._draw on logits (levels, B), overwritten with the running sums, with
    uniforms[row] (uniforms (top, B), or empty for greedy decoding): bits (levels, B)
    int32 and top (2, B) float32 are scratch."""
    levels, batch = logits.shape
    if uniforms.shape[0] == 0 and batch == 1:
        drawn[0] = _argmax(logits.reshape(-1))
        return
    if uniforms.shape[0] == 0:  # greedy: numpy's argmax of each column
        best = top[0]
        best[:] = logits[0]
        drawn[:] = 0
        for i in range(1, levels):
            for b in range(batch):
                v, m = logits[i, b], best[b]
                if v > m or (v != v and m == m):
                    best[b], drawn[b] = v, i
        return
    if batch == 1:
        drawn[0] = _draw_column(logits.reshape(-1), uniforms[row, 0], scale, bits.reshape(-1))
        return
    peak, total = top[0], top[1]
    peak[:] = logits[0]
    for i in range(1, levels):
        for b in range(batch):
            v = logits[i, b]
            if v > peak[b] or v != v:  # np.max: a NaN wins
                peak[b] = v
    for i in range(levels):
        for b in range(batch):
            logits[i, b], bits[i, b] = _exp2_parts((logits[i, b] - peak[b]) * scale)
    powers = bits.view(np.float32)
    total[:] = 0
    for i in range(levels):
        for b in range(batch):
            total[b] += logits[i, b] * powers[i, b]
            logits[i, b] = total[b]
    for b in range(batch):
        total[b] *= uniforms[row, b]
        drawn[b] = 0
    for i in range(levels):
        for b in range(batch):
            drawn[b] += logits[i, b] <= total[b]
    for b in range(batch):
        drawn[b] = min(drawn[b], levels - 1)


@numba.njit(cache=True, nogil=True)
def _scratch(levels, batch):  # noqa: ANN001, ANN202
    """A frame's drawn classes (B,) and _draw's scratch: bits (levels, B), top (2, B)."""
    return np.empty(batch, np.int64), np.empty((levels, batch), np.int32), np.empty((2, batch), np.float32)


@numba.njit(cache=True, nogil=True)
def pushed_frame(acc, fresh, base, taps, weights, outs, uniforms, scale, offset, values, samples, start):  # noqa: ANN001, ANN201
    """A bottom frame on _PushedTaps' accumulators ``acc`` (2 window, B, width); base
    (B, window, hidden); taps (window, levels, width); uniforms (top, B), or empty for
    greedy decoding, read from row ``offset``; samples[:, start:start + window] set."""
    window, batch, hidden, width = taps.shape[0], acc.shape[1], base.shape[2], taps.shape[2]
    for k in range(window):
        for b in range(batch):
            for i in range(hidden):
                acc[k, b, i] += base[b, k, i]
    levels = taps.shape[1]
    drawn, bits, top = _scratch(levels, batch)
    for k in range(window):
        _draw(_mlp(acc[k], weights, outs), uniforms, offset + k, scale, bits, top, drawn)
        for b in range(batch):
            d = drawn[b]
            for j in range(window):
                for i in range(width):
                    acc[k + 1 + j, b, i] += taps[j, d, i]
            samples[b, start + k] = values[d]
    acc[:window] = acc[window:]
    acc[window:] = fresh


@numba.njit(cache=True, nogil=True)
def pulled_frame(  # noqa: ANN201
    history,
    offsets,
    table,
    base,
    h,
    weights,
    outs,
    uniforms,
    scale,
    offset,
    values,
    samples,
    start,  # noqa: ANN001
):
    """A bottom frame on _PulledTaps' history (B, 2 window) of drawn classes: each step
    sums the window's rows of ``table`` (window levels, width) in embedding_bag's order,
    adds base (B, window, width) and runs the MLP on h (B, width)."""
    window, batch, width = offsets.shape[0], history.shape[0], table.shape[1]
    levels = table.shape[0] // window
    drawn, bits, top = _scratch(levels, batch)
    for k in range(window):
        for b in range(batch):
            first = history[b, k] + offsets[0]
            for i in range(width):
                h[b, i] = table[first, i]
            for j in range(1, window):
                r = history[b, k + j] + offsets[j]
                for i in range(width):
                    h[b, i] += table[r, i]
            for i in range(width):
                h[b, i] += base[b, k, i]
        _draw(_mlp(h, weights, outs), uniforms, offset + k, scale, bits, top, drawn)
        for b in range(batch):
            history[b, window + k] = drawn[b]
            samples[b, start + k] = values[drawn[b]]
    history[:, :window] = history[:, window:]

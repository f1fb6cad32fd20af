"""The CPU generator's bottom frame as compiled loops (numba), one call per bottom frame.

At the small preset the per-sample step is three small matrix products whose arithmetic
costs less than the Python and numpy calls around them; here the whole bottom frame (the
first layer, the MLP, the noise, the draw, the taps' push or pull) is one call, and the
GIL is released for it, so the noise thread draws beside it. The arithmetic is that of
the numpy step in generate.py, operation for operation: the same BLAS products (np.dot
compiles to the same gemv/gemm calls), the same float32 additions in the same order and
numpy's argmax (the first maximum; a NaN wins), so a compiled frame gives the numpy
frame's samples bit for bit. numba comes with librosa; without it, generate.py runs the
numpy step.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

# numba's np.dot calls the BLAS of scipy.linalg.cython_blas: load it now, so that
# threadpoolctl sees (and limits) its threads from the first generation on
import scipy.linalg.cython_blas  # noqa: F401
from threadpoolctl import ThreadpoolController

_CONTROLLER = ThreadpoolController()
# scipy's BLAS, when it is a library of its own (wheels): not the one numpy multiplies on
_SCIPY_BLAS = _CONTROLLER.select(
    filepath=[
        lib.filepath
        for lib in _CONTROLLER.lib_controllers
        if lib.user_api == "blas" and "numpy" not in lib.filepath
    ]
)


def one_thread() -> contextlib.AbstractContextManager:
    """The compiled products' BLAS in one thread, numpy's as it is: the idle threads of a
    second OpenBLAS spin against numpy's (20x slower at the paper size on a busy
    machine), and the sample MLP's matrices, a few MB, gain little from a second."""
    return _SCIPY_BLAS.limit(limits=1)


@numba.njit(cache=True, nogil=True)
def _argmax(x: np.ndarray) -> int:
    """numpy's argmax of a row: the first maximum, or the first NaN."""
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
    """np.maximum(x, 0, out=x): a NaN stays NaN."""
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[b, i] < 0:
                x[b, i] = 0


@numba.njit(cache=True, nogil=True)
def _mlp_draw(h, weights, outs, noise, row, drawn):  # noqa: ANN001, ANN202
    """_NumpyMLP on h (B, width), minus noise[row] (when there is noise), argmax into drawn."""
    batch = h.shape[0]
    _relu(h)
    for i in range(len(weights)):
        w, out = weights[i], outs[i]
        if batch == 1:
            np.dot(w, h[0], out[0])
        else:
            np.dot(h, w, out)
        if i < len(weights) - 1:
            _relu(out)
        h = out
    for b in range(batch):
        if noise.shape[0]:
            for i in range(h.shape[1]):
                h[b, i] -= noise[row, b, i]
        drawn[b] = _argmax(h[b])


@numba.njit(cache=True, nogil=True)
def pushed_frame(acc, fresh, base, taps, weights, outs, noise, offset, values, samples, start):  # noqa: ANN001, ANN201
    """A bottom frame on _PushedTaps' accumulators ``acc`` (2 window, B, width); base
    (B, window, hidden); taps (window, levels, width); noise (top, B, levels), or empty
    for greedy decoding, read from row ``offset``; samples[:, start:start + window] set."""
    window, batch, hidden, width = taps.shape[0], acc.shape[1], base.shape[2], taps.shape[2]
    for k in range(window):
        for b in range(batch):
            for i in range(hidden):
                acc[k, b, i] += base[b, k, i]
    drawn = np.empty(batch, np.int64)
    for k in range(window):
        _mlp_draw(acc[k], weights, outs, noise, offset + k, drawn)
        for b in range(batch):
            d = drawn[b]
            for j in range(window):
                for i in range(width):
                    acc[k + 1 + j, b, i] += taps[j, d, i]
            samples[b, start + k] = values[d]
    acc[:window] = acc[window:]
    acc[window:] = fresh


@numba.njit(cache=True, nogil=True)
def pulled_frame(history, offsets, table, base, h, weights, outs, noise, offset, values, samples, start):  # noqa: ANN001, ANN201
    """A bottom frame on _PulledTaps' history (B, 2 window) of drawn classes: each step
    sums the window's rows of ``table`` (window levels, width) in embedding_bag's order,
    adds base (B, window, width) and runs the MLP on h (B, width)."""
    window, batch, width = offsets.shape[0], history.shape[0], table.shape[1]
    drawn = np.empty(batch, np.int64)
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
        _mlp_draw(h, weights, outs, noise, offset + k, drawn)
        for b in range(batch):
            history[b, window + k] = drawn[b]
            samples[b, start + k] = values[drawn[b]]
    history[:, :window] = history[:, window:]

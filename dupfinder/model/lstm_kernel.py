"""The LSTM recurrence compiled with numba, for the torch-free forward pass in `npencode`.

One question costs a dozen sequential steps per direction, each a 128 x 512 matrix-vector
product and a few hundred exponentials. In numpy every step is a dozen calls whose overhead
dwarfs the arithmetic (about 14 us per direction-step); here a step is one loop nest (about 6 us).

numba has no vectorized exp without Intel's SVML, and libm's scalar exp cost more than the
matrix-vector product, so `exp_into` computes exp itself: range reduction by ln 2 and a degree-7
polynomial, relative error below 1e-7 for float32 inputs in [-30, 30], which is all the gates ever
need (sigmoid and tanh are written through exp, their arguments clipped to that range). Compiled
code is cached on disk (numba `cache=True`), so only the first process on a machine compiles.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

CLIP = 30.0  # exp arguments are clipped to [-CLIP, CLIP]: sigmoid(-30) = 9e-14, tanh(15) = 1 - 2e-13


@njit(fastmath=True, nogil=True, cache=True)
def exp_into(x: np.ndarray, out: np.ndarray, bits: np.ndarray) -> None:  # pragma: no cover - compiled
    """out = exp(x) for float32 x in [-CLIP, CLIP]; `bits` is int32 scratch, at least as long as x.

    exp(x) = 2^k * exp(r) with k = round(x / ln 2) and r = x - k ln 2 in [-ln2/2, ln2/2]
    (ln 2 split in two parts so that k ln 2 is exact); exp(r) by its Taylor polynomial to r^7
    (remainder below 2e-8), 2^k by writing k + 127 into a float32's exponent bits.
    """
    n = x.shape[0]
    for j in range(n):
        v = x[j]
        k = math.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))
        r = v - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        p = np.float32(1.0 / 5040)
        p = p * r + np.float32(1.0 / 720)
        p = p * r + np.float32(1.0 / 120)
        p = p * r + np.float32(1.0 / 24)
        p = p * r + np.float32(1.0 / 6)
        p = p * r + np.float32(0.5)
        p = p * r + np.float32(1.0)
        p = p * r + np.float32(1.0)
        out[j] = p
        bits[j] = (np.int32(k) + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for j in range(n):
        out[j] *= scale[j]


@njit(fastmath=True, nogil=True, cache=True)
def lstm_layer(
    x: np.ndarray, w_ih_t: np.ndarray, bias: np.ndarray, w_hh_t: np.ndarray, lengths: np.ndarray, out: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Run one (bi)LSTM layer over each row's first `lengths[r]` time steps; returns `out`.

    x (B, T, E) float32 inputs. w_ih_t (E, dirs * 4h), bias (dirs * 4h,) and w_hh_t (dirs, h, 4h):
    the input and recurrent weights transposed, direction d in columns [4h d, 4h (d + 1)), gates
    ordered (i, f, o, g) with the i, f, o columns negated (so sigmoid(x) = 1 / (1 + exp(z))).
    out (B, T, dirs * h) float32 receives the hidden states, direction d in columns
    [h d, h (d + 1)) as torch concatenates them; the second direction runs from each row's last
    real step back to its first, so padding is never an input. Steps past a row's length are not
    written. The input projection is done here too, not by a BLAS matmul: for one question a
    threaded BLAS call costs more than the arithmetic, far more on a busy machine.
    """
    b, _, e_in = x.shape
    dirs, h, four_h = w_hh_t.shape
    lo, hi, one, two = np.float32(-CLIP), np.float32(CLIP), np.float32(1.0), np.float32(2.0)
    z = np.empty(four_h, dtype=np.float32)
    e = np.empty(four_h, dtype=np.float32)
    bits = np.empty(four_h, dtype=np.int32)
    cell = np.empty(h, dtype=np.float32)
    arg = np.empty(h, dtype=np.float32)
    e_cell = np.empty(h, dtype=np.float32)
    for d in range(dirs):
        w = w_hh_t[d]
        gates, hidden = d * four_h, d * h  # this direction's columns in pre and out
        for r in range(b):
            n = lengths[r]
            cell[:] = 0.0
            for s in range(n):
                t = s if d == 0 else n - 1 - s
                for j in range(four_h):
                    z[j] = bias[gates + j]
                xt = x[r, t]
                for k in range(e_in):
                    xk = xt[k]
                    wk = w_ih_t[k]
                    for j in range(four_h):
                        z[j] += xk * wk[gates + j]
                if s > 0:  # the initial hidden state is zero
                    prev = out[r, t - 1] if d == 0 else out[r, t + 1]
                    for k in range(h):
                        hk = prev[hidden + k]
                        wk = w[k]
                        for j in range(four_h):
                            z[j] += hk * wk[j]
                for j in range(3 * h):  # -(i, f, o) pre-activations
                    z[j] = min(max(z[j], lo), hi)
                for j in range(3 * h, four_h):  # g: tanh(x) = 1 - 2 / (1 + exp(2x))
                    z[j] = min(max(two * z[j], lo), hi)
                exp_into(z, e, bits)
                for j in range(h):
                    i = one / (one + e[j])
                    f = one / (one + e[h + j])
                    g = one - two / (one + e[3 * h + j])
                    cell[j] = f * cell[j] + i * g
                    arg[j] = min(max(two * cell[j], lo), hi)
                exp_into(arg, e_cell, bits)
                dst = out[r, t]
                for j in range(h):
                    o = one / (one + e[2 * h + j])
                    dst[hidden + j] = o * (one - two / (one + e_cell[j]))
    return out

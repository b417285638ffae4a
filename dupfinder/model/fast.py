"""The encoder's forward pass without torch: for queries, where one question costs torch more in
import time and per-call overhead than in arithmetic. The LSTM recurrence runs either in plain
numpy or, with `jit=True`, in the numba-compiled `lstm_kernel` (about twice as fast per question,
but importing numba and loading the compiled code costs about half a second once per process).
Same math as `model.SiameseEncoder` in eval mode; `tests/test_npencode.py` holds the two to 1e-5."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from dupfinder.text import UNK_ID

POOLINGS = ("mean", "max", "meanmax", "last", "maxlast")  # every pooling dupfinder runs, here and in torch
DOUBLE_WIDTH = ("meanmax", "maxlast")  # two pooled vectors side by side
# the config keys this forward pass implements; a model with any other key goes through torch
KNOWN_KEYS = {"vocab_size", "d_embed", "d_model", "n_layers", "bidirectional", "pooling", "d_out", "dropout"}


def pad_ids(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Token id arrays -> right-padded ids (B, T) int64 and lengths (B,); an empty question is one UNK."""
    lengths = np.fromiter((max(1, len(s)) for s in seqs), dtype=np.int64, count=len(seqs))
    ids = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)
    for row, s in enumerate(seqs):
        if len(s):
            ids[row, : len(s)] = s
        else:
            ids[row, 0] = UNK_ID
    return ids, lengths


def pooled_width(config: Mapping) -> int:
    """Width of the pooled LSTM states, before any projection (torch's `SiameseEncoder` uses it too)."""
    return config["d_model"] * (2 if config["bidirectional"] else 1) * (2 if config["pooling"] in DOUBLE_WIDTH else 1)


def vector_dim(config: Mapping) -> int:
    """Dimension of the encoder's vectors: the projection's, else the pooled width."""
    return int(config["d_out"]) if config.get("d_out") else pooled_width(config)


def supports(config: Mapping) -> bool:
    """Whether this module can run a model with this config (else it must go through torch)."""
    return set(config) <= KNOWN_KEYS and config.get("pooling") in POOLINGS


def expected_shapes(config: Mapping) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the model's state dict, with torch's names."""
    h, dirs = config["d_model"], 2 if config["bidirectional"] else 1
    shapes = {"embed.weight": (config["vocab_size"], config["d_embed"])}
    for layer in range(config["n_layers"]):
        d_in = config["d_embed"] if layer == 0 else h * dirs
        for suffix in ("", "_reverse")[:dirs]:
            shapes[f"lstm.weight_ih_l{layer}{suffix}"] = (4 * h, d_in)
            shapes[f"lstm.weight_hh_l{layer}{suffix}"] = (4 * h, h)
            shapes[f"lstm.bias_ih_l{layer}{suffix}"] = (4 * h,)
            shapes[f"lstm.bias_hh_l{layer}{suffix}"] = (4 * h,)
    if config.get("d_out"):
        shapes["proj.weight"] = (config["d_out"], pooled_width(config))
        shapes["proj.bias"] = (config["d_out"],)
    return shapes


def _gate_params(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, h: int):
    """Transposed float32 weights and one bias, gates reordered from PyTorch's (i, f, g, o) to
    (i, f, o, g) so that one contiguous slice takes the sigmoid and one the tanh; the sigmoid rows
    are negated (exactly), since sigmoid(x) = 1 / (1 + exp(-x)): the form `lstm_kernel.lstm_layer` takes."""
    order = np.r_[0 : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]
    sign = np.r_[np.full(3 * h, -1.0), np.ones(h)].astype(np.float32)[:, None]
    w_ih_t = (w_ih.astype(np.float32)[order] * sign).T.copy()  # (E, 4h)
    w_hh_t = (w_hh.astype(np.float32)[order] * sign).T.copy()  # (h, 4h)
    bias = (b_ih.astype(np.float32) + b_hh.astype(np.float32))[order] * sign[:, 0]  # (4h,)
    return w_ih_t, w_hh_t, bias


def embed_rows(embed: np.ndarray, ids: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
    """Input vectors of ids: rows of `embed` (V, E), and of `extra` for ids V on."""
    if extra is None or not len(extra):
        return embed[ids]
    beyond = ids >= len(embed)
    x = embed[np.where(beyond, 0, ids)]
    x[beyond] = extra[ids[beyond] - len(embed)]
    return x


class NumpyEncoder:
    """Embedding -> (bi)LSTM over each question's real tokens -> pooling -> projection -> L2 normalize.

    >>> enc = NumpyEncoder(config, weights)  # config.json's "model" section, state dict as numpy
    >>> enc([np.array([5, 17, 9]), np.array([], dtype=np.int32)]).shape  # an empty question is one UNK
    (2, 256)
    """

    def __init__(self, config: Mapping, weights: Mapping[str, np.ndarray], jit: bool = False):
        if not supports(config):
            raise ValueError(f"config not supported by the numpy encoder: {dict(config)}")
        want = expected_shapes(config)
        for name, shape in want.items():
            if name not in weights or tuple(weights[name].shape) != shape:
                got = tuple(weights[name].shape) if name in weights else "missing"
                raise ValueError(f"weight {name}: expected shape {shape}, got {got}")
        self.config = dict(config)
        self.dim = vector_dim(config)
        self.h = int(config["d_model"])
        self.dirs = 2 if config["bidirectional"] else 1
        self.pooling = config["pooling"]
        self.embed = np.asarray(weights["embed.weight"], dtype=np.float32)  # (V, E)
        self.layers = []  # per layer: W_ih^T (E_in, dirs*4h), bias (dirs*4h,), W_hh^T (dirs, h, 4h)
        for layer in range(config["n_layers"]):
            params = [
                _gate_params(*(weights[f"lstm.{kind}_l{layer}{suffix}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")), self.h)
                for suffix in ("", "_reverse")[: self.dirs]
            ]
            w_ih_t, w_hh_t, bias = zip(*params)
            self.layers.append((np.concatenate(w_ih_t, axis=1), np.concatenate(bias), np.stack(w_hh_t)))
        self.layer = self._layer_numpy
        self.jit = False
        if jit:  # imports numba and loads (or compiles) the kernel: about 0.5 s, once per process
            try:
                from dupfinder.model.lstm_kernel import lstm_layer
            except ImportError:  # numba missing or broken: plain numpy gives the same vectors
                pass
            else:
                self.layer, self.jit = lstm_layer, True
        self.proj = None
        if config.get("d_out"):
            self.proj = (
                np.asarray(weights["proj.weight"], dtype=np.float32).T.copy(),  # (W, D)
                np.asarray(weights["proj.bias"], dtype=np.float32),  # (D,)
            )

    def __call__(self, seqs: Sequence[np.ndarray], extra: np.ndarray | None = None) -> np.ndarray:
        """Token id arrays -> unit vectors (B, D) float32; an empty question is encoded as one UNK.
        `extra` (k, E): the input vectors of ids V .. V + k - 1, past the embedding table's V rows."""
        b = len(seqs)
        if b == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if b == 1:  # one question, the query path: nothing to pad or sort
            ids = np.asarray(seqs[0])[None, :] if len(seqs[0]) else np.array([[UNK_ID]])
            lengths, order = np.array([ids.shape[1]]), None
        else:
            ids, lengths = pad_ids(seqs)  # (B, T), (B,)
            order = np.argsort(-lengths, kind="stable")  # longest first: the numpy path steps a prefix of rows
            ids, lengths = ids[order], lengths[order]
        t_max = ids.shape[1]
        uniform = bool(lengths[-1] == t_max)  # one question, or all of one length: no padding
        x = embed_rows(self.embed, ids, extra)  # (B, T, E)
        for w_ih_t, bias, w_hh_t in self.layers:
            # padding steps stay zero: they add nothing to a mean, and max pooling masks them
            x = self.layer(x, w_ih_t, bias, w_hh_t, lengths, np.zeros((b, t_max, self.dirs * self.h), dtype=np.float32))

        pooled = []
        if self.pooling in ("mean", "meanmax"):
            pooled.append(x.sum(axis=1) / lengths[:, None].astype(np.float32))  # (B, H) float32
        if self.pooling in ("max", "meanmax", "maxlast"):
            real = np.arange(t_max)[None, :, None] < lengths[:, None, None]  # (B, T, 1)
            pooled.append(x.max(axis=1) if uniform else np.where(real, x, -np.inf).max(axis=1))  # (B, H)
        if self.pooling in ("last", "maxlast"):
            last = x[np.arange(b), lengths - 1]  # (B, H): the states at each row's last token
            if self.dirs == 2:  # the backward direction ends at the first token
                last = np.concatenate([last[:, : self.h], x[:, 0, self.h :]], axis=-1)
            pooled.append(last)
        v = pooled[0] if len(pooled) == 1 else np.concatenate(pooled, axis=-1)  # (B, H) or (B, 2H) float32
        if self.proj is not None:
            v = v @ self.proj[0] + self.proj[1]  # (B, D)
        v /= np.maximum(np.sqrt(np.einsum("ij,ij->i", v, v))[:, None], 1e-12)
        if order is None:
            return v
        out = np.empty_like(v)
        out[order] = v
        return out

    def _layer_numpy(self, x, w_ih_t, bias, w_hh_t, lengths, out) -> np.ndarray:
        """`lstm_kernel.lstm_layer` in plain numpy, for rows sorted longest first (no numba import).

        Each step is one matmul for all directions and rows still running, then a few in-place
        ufuncs; with a single question the cost is numpy's per-call overhead, so a step does as
        few calls as it can.
        """
        b, t_max, _ = x.shape
        dirs, h = self.dirs, self.h
        steps = np.arange(t_max)
        rev = np.where(steps[None, :] < lengths[:, None], lengths[:, None] - 1 - steps[None, :], steps[None, :])  # (B, T)

        def reverse(a: np.ndarray) -> np.ndarray:
            """(B, T, F) -> each row's real steps backwards, padding left in place (an involution)."""
            return np.take_along_axis(a, rev[:, :, None], axis=1)

        pre = (x.reshape(b * t_max, -1) @ w_ih_t + bias).reshape(b, t_max, dirs, 4 * h)
        if dirs == 2:
            pre[:, :, 1] = reverse(pre[:, :, 1])
        pre = np.ascontiguousarray(pre.transpose(1, 2, 0, 3))  # (T, dirs, B, 4h): one block per step
        active = (lengths[None, :] > steps[:, None]).sum(axis=1).tolist()  # rows still running at each step
        hidden = np.zeros((t_max, dirs, b, h), dtype=np.float32)
        cell = np.zeros((dirs, b, h), dtype=np.float32)
        prev = hidden[0]  # zeros: the initial state
        for t in range(t_max):
            n = active[t]
            z = np.matmul(prev[:, :n], w_hh_t)  # (dirs, n, 4h)
            z += pre[t, :, :n]
            sig = z[..., : 3 * h]  # -(i, f, o) pre-activations
            # the kernel's clip: keeps exp from overflowing and 1 / (1 + exp) from making subnormals
            np.minimum(sig, 30.0, out=sig)
            np.exp(sig, out=sig)
            sig += 1.0
            np.reciprocal(sig, out=sig)  # i, f, o
            g = z[..., 3 * h :]
            np.tanh(g, out=g)
            g *= sig[..., :h]
            c = cell[:, :n]
            c *= sig[..., h : 2 * h]
            c += g
            prev = hidden[t]
            np.multiply(sig[..., 2 * h :], np.tanh(c), out=prev[:, :n])
        hidden = hidden.transpose(2, 0, 1, 3)  # (B, T, dirs, h)
        if dirs == 2:
            hidden[:, :, 1] = reverse(hidden[:, :, 1])
        out[:] = hidden.reshape(b, t_max, dirs * h)
        return out

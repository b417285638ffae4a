"""Encoder: questions in, unit-norm float32 vectors out (batched, length-sorted, inference mode).

A few questions (a query) go through the numpy forward pass of `npencode`, which needs no torch:
a `dupfinder query` process never imports it. Many questions go through torch, which is faster
per question in bulk. Both compute the same vectors (to 1e-5; `tests/test_npencode.py`).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from dupfinder.model.files import LoadedModel, ModelFiles, load_network, load_numpy_weights, read_model_dir
from dupfinder.model.subwords import load_subwords
from dupfinder.errors import ModelError
from dupfinder.text import Vocab, tokenize

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "numpy", "torch")
# "auto" encodes up to this many questions at once with numpy. Measured on the 2-core dev box:
# one question 0.5 ms with numpy against 1.4 ms with torch; in bulk numpy reaches 2,500-3,700
# questions/s, torch 5,000-8,000.
NUMPY_MAX_BATCH = 64
NUMPY_BULK = 256  # batch size of bulk numpy encoding (numba kernel), when torch is not installed
_torch_threads: int | None = None
# Whether new encoders run the numba-compiled LSTM kernel for small batches (see npencode). A
# long-lived process (a service, a benchmark) wants it: one question 0.23 ms instead of 0.56; a
# one-shot CLI process does not, since importing numba and loading the kernel costs ~0.5 s.
_jit = True


TORCH_HINT = "install the train extra: pip install 'dupfinder[train]' (PyTorch's CPU build: see the README)"


@functools.cache
def torch_installed() -> bool:
    """Whether PyTorch can be imported; queries, indexing and dedup run without it, in numpy."""
    return importlib.util.find_spec("torch") is not None


def require_torch(what: str) -> None:
    """A one-line error for a command that needs PyTorch when it is not installed."""
    if not torch_installed():
        raise ModelError(f"{what} needs PyTorch: {TORCH_HINT}")


def use_jit(flag: bool) -> None:
    """Default for encoders created from now on: numba kernel (True) or plain numpy (False)."""
    global _jit
    _jit = flag


def set_torch_threads(threads: int | None) -> None:
    """CPU threads for torch: now if torch is loaded, else when the first network is."""
    global _torch_threads
    _torch_threads = threads
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def pad_batch(seqs: Sequence[np.ndarray]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Token id arrays -> padded ids (B, T) int64 and lengths (B,); an empty question is one UNK."""
    import torch

    from dupfinder.model.fast import pad_ids

    ids, lengths = pad_ids(seqs)
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def encode_sorted(
    forward: Callable[[Sequence[np.ndarray]], np.ndarray], dim: int, seqs: Sequence[np.ndarray], batch_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Unit vectors (n, dim) float32 from `forward` (token id arrays -> (b, dim)), fed batches of similar length."""
    out = np.empty((len(seqs), dim), dtype=np.float32)
    # sorted by length, each batch pads only to its own longest question
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = forward([seqs[i] for i in idx])  # (b, d)
        if progress is not None:
            progress(len(idx))
    return out


def encode_sequences(
    network, seqs: Sequence[np.ndarray], batch_size: int = 512, progress: Callable[[int], None] | None = None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Unit vectors (n, d) float32 for token id arrays through a torch network in eval mode; its mode is restored.
    `extra` (k, d_embed): the input vectors of ids len(vocabulary) .. len(vocabulary) + k - 1."""
    import torch

    was_training = network.training
    network.eval()
    with torch.inference_mode():
        table = None if extra is None or not len(extra) else torch.cat([network.embed.weight, torch.from_numpy(extra)])
        out = encode_sorted(lambda batch: network(*pad_batch(batch), table=table).numpy(), network.config.d_vector, seqs,
                            batch_size, progress)
    network.train(was_training)
    return out


class Encoder:
    """A loaded model ready to encode. `encode(texts)` returns float32 (n, d) unit-norm rows.

    `backend` "auto" runs batches of up to NUMPY_MAX_BATCH questions in numpy and larger ones in
    torch (loaded on first use; in numpy too when torch is not installed); "numpy" and "torch" force one. A model without weights.npz
    (written before it existed) always runs in torch.

    >>> enc = load_model()
    >>> v = enc.encode(["How do I learn Python?", "What is the best way to learn Python?"])
    >>> v.shape, v.dtype
    ((2, 256), dtype('float32'))
    >>> float(v[0] @ v[1]) > enc.threshold  # cosine = inner product of unit vectors
    True
    """

    def __init__(self, model: ModelFiles, backend: str = "auto", jit: bool | None = None):
        from dupfinder.model.fast import supports, vector_dim

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.files = model
        self.vocab: Vocab = model.vocab
        self.text_config = model.text_config
        self.threshold: float = model.threshold
        self.fingerprint: str = model.fingerprint
        self.path: Path = model.path
        try:
            self.dim: int = vector_dim(model.model_config)
        except (KeyError, TypeError) as e:
            raise ModelError(f"{model.path} has an unreadable config ({e!r}); retrain or restore the model") from None
        try:
            self.subwords = load_subwords(model.path, model.manifest, int(model.model_config["d_embed"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{model.path} has an unreadable config ({e!r}); retrain or restore the model") from None
        self._network = model.network if isinstance(model, LoadedModel) else None
        self._numpy = self._numpy_jit = None
        self.backend = backend
        if backend != "torch" and supports(model.model_config):
            self._numpy = self._load_numpy(_jit if jit is None else jit)
        if backend == "numpy" and self._numpy is None:
            raise ModelError(f"{model.path} cannot run without torch (no weights.npz, or a config numpy does not support)")

    def _load_numpy(self, jit: bool):
        from dupfinder.model.fast import NumpyEncoder

        weights = load_numpy_weights(self.files)
        if weights is None:
            return None
        try:
            return NumpyEncoder(self.files.model_config, weights, jit=jit)
        except ValueError as e:
            raise ModelError(f"{self.path / 'weights.npz'} does not match config.json ({e}); retrain or restore the model") from None

    @property
    def network(self):
        """The torch network, loaded on first use."""
        if self._network is None:
            if not torch_installed():
                raise ModelError(f"{self.path} needs PyTorch (no weights.npz, or a config only torch runs): {TORCH_HINT}")
            self._network = load_network(self.files)
            set_torch_threads(_torch_threads)  # after the load: before it, torch may not be imported yet
        return self._network

    @property
    def manifest(self) -> dict:
        return self.files.manifest

    def token_ids(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Each question's token ids, and the input vectors of its words outside the vocabulary from
        the model's subword table (ids len(vocabulary) on, one per distinct word), or None when the
        model has no table: then such words are <unk>."""
        if self.subwords is None:
            return [self.vocab.encode(tokenize(t, self.text_config)) for t in texts], None
        stoi, n, unknown = self.vocab.stoi, len(self.vocab), {}
        seqs = []
        for t in texts:
            tokens = tokenize(t, self.text_config)
            seqs.append(np.fromiter((stoi[w] if w in stoi else unknown.setdefault(w, n + len(unknown)) for w in tokens),
                                    dtype=np.int32, count=len(tokens)))
        return seqs, self.subwords.vectors(list(unknown))

    def uses_numpy(self, n: int) -> bool:
        """Whether `encode` of n questions runs in numpy: a few always, many when torch is absent."""
        return self._numpy is not None and (self.backend == "numpy" or n <= NUMPY_MAX_BATCH or not torch_installed())

    def encode(
        self, texts: Sequence[str], batch_size: int = 512, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Unit vectors for `texts`, float32 (n, d); cosine similarity is their inner product."""
        seqs, extra = self.token_ids(texts)
        if len(seqs) == 1 and self._numpy is not None and progress is None:
            return self._numpy(seqs, extra)  # the query path: one question, no batching to arrange
        if len(seqs) > NUMPY_BULK and self.uses_numpy(len(seqs)) and not torch_installed():
            # bulk without torch: the numba kernel pays its half-second load back after a few
            # hundred questions (60,000 demo questions: 4,100/s against 2,800/s in plain numpy)
            bulk = self._bulk()
            return encode_sorted(lambda batch: bulk(batch, extra), self.dim, seqs, NUMPY_BULK, progress)
        if self.uses_numpy(len(seqs)):
            return encode_sorted(lambda batch: self._numpy(batch, extra), self.dim, seqs, min(batch_size, NUMPY_MAX_BATCH), progress)
        return encode_sequences(self.network, seqs, batch_size, progress, extra)

    def _bulk(self):
        if self._numpy.jit:
            return self._numpy
        if self._numpy_jit is None:
            self._numpy_jit = self._load_numpy(jit=True)
        return self._numpy_jit

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.encode([a, b])
        return float(va @ vb)


def load_model(path: str | Path | None = None, backend: str = "auto", jit: bool | None = None) -> Encoder:
    """Load a model directory as an `Encoder`; with no path, the default model shipped in the package.

    Reads no torch weights until a batch needs them (see `Encoder`).
    """
    return Encoder(read_model_dir(path), backend, jit)

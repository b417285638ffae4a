"""Encoder: questions in, unit-norm float32 vectors out (batched, length-sorted, inference mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .artifacts import LoadedModel, load_model_dir
from .text import UNK_ID, Vocab, tokenize


def pad_batch(seqs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id arrays -> padded ids (B, T) int64 and lengths (B,); an empty question is one UNK."""
    lengths = np.fromiter((max(1, len(s)) for s in seqs), dtype=np.int64, count=len(seqs))
    ids = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)
    for row, s in enumerate(seqs):
        if len(s):
            ids[row, : len(s)] = s
        else:
            ids[row, 0] = UNK_ID
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def encode_sequences(
    network, seqs: Sequence[np.ndarray], batch_size: int = 512, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Unit vectors (n, d) float32 for token id arrays, in eval mode; the network's mode is restored."""
    out = np.empty((len(seqs), network.config.d_vector), dtype=np.float32)
    if not len(seqs):
        return out
    # sorted by length, each batch pads only to its own longest question
    order = np.argsort([len(s) for s in seqs], kind="stable")
    was_training = network.training
    network.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = network(*pad_batch([seqs[i] for i in idx])).numpy()  # (b, d)
            if progress is not None:
                progress(len(idx))
    network.train(was_training)
    return out


class Encoder:
    """A loaded model ready to encode. `encode(texts)` returns float32 (n, d) unit-norm rows.

    >>> enc = load_model()
    >>> v = enc.encode(["How old are you?", "What is your age?"])
    >>> float(v[0] @ v[1]) > enc.threshold
    True
    """

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.network = loaded.network
        self.vocab: Vocab = loaded.vocab
        self.text_config = loaded.text_config
        self.threshold: float = loaded.threshold
        self.fingerprint: str = loaded.fingerprint
        self.dim: int = self.network.config.d_vector
        self.path: Path = loaded.path

    @property
    def manifest(self) -> dict:
        return self.loaded.manifest

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.vocab.encode(tokenize(t, self.text_config)) for t in texts]

    def encode(
        self, texts: Sequence[str], batch_size: int = 512, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Unit vectors for `texts`, float32 (n, d); cosine similarity is their inner product."""
        return encode_sequences(self.network, self.token_ids(texts), batch_size, progress)

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.encode([a, b])
        return float(va @ vb)


def load_model(path: str | Path | None = None) -> Encoder:
    """Load a model directory as an `Encoder`; with no path, the default model shipped in the package."""
    return Encoder(load_model_dir(path))

"""A stand-in for `Encoder` without torch: a fixed random unit vector per normalized text (so the
same question, whatever its case or spacing, gets the same vector). For index and search tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dupfinder.text import normalize


class FakeEncoder:
    def __init__(self, dim: int = 16, fingerprint: str = "fake0000", threshold: float = 0.5, path: str = "/nowhere/fake"):
        self.dim, self.fingerprint, self.threshold, self.path = dim, fingerprint, threshold, Path(path)

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(normalize(text).encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts, batch_size=512, progress=None) -> np.ndarray:
        out = np.stack([self.vector(t) for t in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)
        if progress is not None:
            for start in range(0, len(texts), batch_size):
                progress(min(batch_size, len(texts) - start))
        return out  # (n, d)

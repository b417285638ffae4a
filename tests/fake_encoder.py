"""A stand-in for `Encoder` without torch: a fixed random unit vector per normalized text (so the
same question, whatever its case or spacing, gets the same vector). For store and engine tests, with
`open_local` and `add_questions` to put its vectors in a `LocalStore`."""

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


def open_local(directory, encoder, kind: str | None = None):
    """A `LocalStore` at `directory` for `encoder`'s vectors, as `Engine.for_writing` opens one: a
    new store records the encoder as its model; an existing one must have been built with it."""
    from dupfinder.engine import check_model, model_record
    from dupfinder.store.local import LocalStore

    store = LocalStore(directory, create={"kind": kind})
    try:
        if store.exists:
            check_model(store.model, encoder, store.location)
        else:
            store.set_model(record=model_record(encoder), dim=encoder.dim)
    except BaseException:
        store.close()
        raise
    return store


def add_questions(directory, encoder, questions, kind: str | None = None, upsert: bool = False):
    """Encode `questions` and add them to the local store at `directory` (created when absent)."""
    with open_local(directory, encoder, kind) as store:
        return store.add(questions, encoder.encode([q.text for q in questions]), upsert=upsert)

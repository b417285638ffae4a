"""Input vectors for words a model never learned, from their spelling.

Without this, every word outside the vocabulary reads as <unk>: "How do I install Zorblax?" and
"How do I install Quibbit?" are one token sequence and get one vector. With a model's subword table (subwords-*.npz),
such a word's input vector is the mean of the rows of its hashed character n-grams (fastText's:
the 3- to 5-character pieces of "<word>"). The table is fitted after training, so that the n-grams
of the vocabulary's own words give back those words' learned vectors (Pinter et al. 2017's "mimick"
idea, with fastText's hashed n-grams); a new word then reads like the known words it is spelled
like, and two different words get different vectors. Words in the vocabulary keep their vectors.

The model's fingerprint covers the table: a store built before it was added is refused, since the
vectors of its questions with unknown words would differ.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dupfinder.errors import ModelError

SUBWORDS_FORMAT = 1
HELD_OUT = 2000  # vocabulary words kept out of the fit, to report how well the table predicts a word's vector
CACHE = 1 << 16  # words whose vectors an Encoder keeps (a dict, cleared when full)


def char_ngrams(word: str, lo: int, hi: int) -> list[str]:
    """fastText's character n-grams of `word`: every piece of lo..hi characters of "<word>"."""
    w = f"<{word}>"
    return [w[i : i + n] for n in range(lo, hi + 1) for i in range(len(w) - n + 1)] or [w]


def bucket_rows(word: str, buckets: int, lo: int, hi: int) -> np.ndarray:
    """The table rows of `word`'s n-grams (a stable hash: crc32 of the UTF-8 bytes, modulo `buckets`)."""
    return np.fromiter((zlib.crc32(g.encode("utf-8")) % buckets for g in char_ngrams(word, lo, hi)), dtype=np.int64)


@dataclass
class Subwords:
    """The n-gram table (buckets, d_embed), float16 or float32, and the n-gram lengths; `vectors(words)` -> (k, d_embed) float32."""

    table: np.ndarray
    lo: int = 3
    hi: int = 5

    def __post_init__(self):
        self._cache: dict[str, np.ndarray] = {}

    def vector(self, word: str) -> np.ndarray:
        v = self._cache.get(word)
        if v is None:
            if len(self._cache) >= CACHE:
                self._cache.clear()
            rows = self.table[bucket_rows(word, len(self.table), self.lo, self.hi)]
            v = self._cache[word] = rows.astype(np.float32).mean(axis=0)
        return v

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        if not words:
            return np.zeros((0, self.table.shape[1]), dtype=np.float32)
        return np.stack([self.vector(w) for w in words]).astype(np.float32, copy=False)


def subwords_bytes(sub: Subwords) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, table=sub.table.astype(np.float16), ngrams=np.array([sub.lo, sub.hi], dtype=np.int32),
             format=np.int32(SUBWORDS_FORMAT))
    return buf.getvalue()


def load_subwords(model_dir: Path, manifest: dict, d_embed: int) -> Subwords | None:
    """The model's n-gram table, or None when its manifest names none (unknown words then read as
    <unk>). A named but missing, stale or unreadable file is a one-line ModelError naming it."""
    record = manifest.get("subwords")
    if record is None:
        return None
    path = Path(model_dir) / str(record.get("file", "subwords.npz") if isinstance(record, dict) else "subwords.npz")
    try:
        data = path.read_bytes()
    except OSError:
        raise ModelError(f"{path} is missing (the manifest names it); restore the model") from None
    if not isinstance(record, dict) or hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise ModelError(f"{path} does not match {Path(model_dir) / 'manifest.json'} (stale or damaged); restore the model")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            a = {name: npz[name] for name in npz.files}
        if int(a["format"]) > SUBWORDS_FORMAT:
            raise ModelError(f"{path} was written by a newer dupfinder; upgrade dupfinder")
        lo, hi = (int(x) for x in a["ngrams"])
        table = a["table"]  # float16 as stored (6.5 MB for the shipped model); rows become float32 when read
        if table.ndim != 2 or table.shape[1] != d_embed or not 1 <= lo <= hi or not np.isfinite(table).all():
            raise ValueError(f"a table of shape {table.shape} for {d_embed}-d word vectors")
        return Subwords(table, lo, hi)
    except ModelError:
        raise
    except Exception as e:  # zipfile and numpy raise many kinds for a damaged file
        raise ModelError(f"{path} is corrupt ({type(e).__name__}: {e}); restore the model") from None


def fit_table(words: Sequence[str], targets: np.ndarray, buckets: int, lo: int = 3, hi: int = 5, epochs: int = 10,
              seed: int = 0, lr: float = 0.02, log: Callable[[str], None] = print,
              after_epoch: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """The (buckets, d) table whose mean n-gram rows best reproduce `targets` (k, d) for `words`:
    squared error, Adam at a constant rate over shuffled batches (torch's EmbeddingBag), so the
    first n epochs of a longer fit are an n-epoch fit. `after_epoch(epoch, table)` sees each epoch's table."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    rows = [torch.from_numpy(bucket_rows(w, buckets, lo, hi)) for w in words]
    lengths = torch.tensor([len(r) for r in rows])
    flat = torch.cat(rows)
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)[:-1]])
    y = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    bag = torch.nn.EmbeddingBag(buckets, y.shape[1], mode="mean")
    torch.nn.init.normal_(bag.weight, std=0.01, generator=gen)
    opt = torch.optim.Adam(bag.parameters(), lr=lr)
    batch = 512
    for epoch in range(epochs):
        order = torch.randperm(len(words), generator=gen)
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            pieces = [flat[starts[i] : starts[i] + lengths[i]] for i in idx.tolist()]
            offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths[idx].cumsum(0)[:-1]])
            loss = ((bag(torch.cat(pieces), offsets) - y[idx]) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch in (0, epochs - 1) or (epoch + 1) % 5 == 0:
            log(f"subwords: epoch {epoch + 1}/{epochs}, mean squared error {total / len(words):.4f}")
        if after_epoch is not None:
            after_epoch(epoch + 1, bag.weight.detach().numpy())
    return bag.weight.detach().numpy().copy()


def median_cosine(predicted: np.ndarray, truth: np.ndarray) -> float:
    cos = (predicted * truth).sum(1) / (np.linalg.norm(predicted, axis=1) * np.linalg.norm(truth, axis=1) + 1e-12)
    return round(float(np.median(cos)), 4)


def fit_subwords(itos: Sequence[str], embed: np.ndarray, buckets: int, lo: int = 3, hi: int = 5, epochs: int = 10,
                 seed: int = 0, log: Callable[[str], None] = print,
                 after_epoch: Callable[[Subwords, dict], None] | None = None) -> tuple[Subwords, dict]:
    """A table fitted on the vocabulary's words (`itos`, `embed` rows; <pad> and <unk> left out), and
    its record: the settings, and what it measured on HELD_OUT words it was not fitted on (the
    median cosine of its vectors to theirs, against that of <unk>'s vector, which those words would
    read as without it). `after_epoch(table, record)` sees each epoch's table and record."""
    words = list(itos[2:])
    targets = np.asarray(embed[2:], dtype=np.float32)
    order = np.random.default_rng(seed).permutation(len(words))
    test, fit = np.split(order, [min(HELD_OUT, len(words) // 5)])
    test_words = [words[i] for i in test]
    unk = np.broadcast_to(np.asarray(embed[1], dtype=np.float32), (len(test), targets.shape[1]))

    def measured(table: np.ndarray, epoch: int) -> tuple[Subwords, dict]:
        sub = Subwords(table, lo, hi)
        quality = {"held_out_words": len(test), "median_cosine": median_cosine(sub.vectors(test_words), targets[test]),
                   "unk_median_cosine": median_cosine(unk, targets[test])}
        return sub, {"buckets": buckets, "ngrams": [lo, hi], "fitted_words": len(fit), "epochs": epoch, "seed": seed, **quality}

    each = None if after_epoch is None else (lambda epoch, table: after_epoch(*measured(table.copy(), epoch)))
    table = fit_table([words[i] for i in fit], targets[fit], buckets, lo, hi, epochs, seed, log=log, after_epoch=each)
    return measured(table, epochs)


def subwords_fingerprint(encoder_fingerprint: str, table_sha256: str) -> str:
    """The fingerprint of a model with a subword table: its encoder's, extended by the table's bytes."""
    return hashlib.sha256(f"{encoder_fingerprint}:{table_sha256}".encode()).hexdigest()[:16]


def add_subwords(model_dir: str | Path, buckets: int = 65536, lo: int = 3, hi: int = 5, epochs: int = 10, seed: int = 0,
                 log: Callable[[str], None] = print) -> dict:
    """Fit a subword table to the model's word vectors and add it to the model directory in place
    (`write_subwords`). Returns the manifest's new "subwords" entry."""
    from dupfinder.model.files import load_numpy_weights, read_model_dir

    if buckets < 1 or epochs < 1 or not 1 <= lo <= hi:
        raise ValueError("buckets and epochs must be at least 1, and 1 <= lo <= hi")
    files = read_model_dir(model_dir)
    weights = load_numpy_weights(files)
    if weights is None:
        raise ModelError(f"{files.path} has no weights.npz; subwords need a format 2 model")
    sub, record = fit_subwords(files.vocab.itos, weights["embed.weight"].astype(np.float32), buckets, lo, hi, epochs, seed, log=log)
    log(f"subwords: held-out words' median cosine to their learned vectors {record['median_cosine']} "
        f"(<unk>'s vector: {record['unk_median_cosine']})")
    return write_subwords(files, sub, record)


def write_subwords(files, sub: Subwords, record: dict) -> dict:
    """Add `sub` (with its `fit_subwords` record) to the model directory `files` (a ModelFiles):
    subwords-SHA.npz, then the manifest, atomically; a table already there is replaced and the
    fingerprint becomes the encoder's extended by the table. Returns the manifest's new "subwords" entry."""
    import json

    from dupfinder.atomic import write_atomic

    data = subwords_bytes(sub)
    sha = hashlib.sha256(data).hexdigest()
    manifest = dict(files.manifest)
    encoder_fingerprint = (manifest.get("subwords") or {}).get("encoder_fingerprint", manifest["fingerprint"])
    name = f"subwords-{sha[:12]}.npz"  # a new name: the manifest names the old file until it is replaced
    entry = {"file": name, "sha256": sha, "encoder_fingerprint": encoder_fingerprint, **record}
    manifest["subwords"] = entry
    manifest["fingerprint"] = subwords_fingerprint(encoder_fingerprint, sha)
    try:
        write_atomic(files.path / name, data)
        write_atomic(files.path / "manifest.json", json.dumps(manifest, indent=2).encode())
    except OSError as e:
        raise ModelError(f"cannot write to {files.path}: {e.strerror or e}; copy the model somewhere writable") from None
    for old in files.path.glob("subwords-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return entry

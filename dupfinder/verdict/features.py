"""Pair features for the verdict head: from the two stored vectors (symmetric in the two questions)
and from the two questions' tokens, where a word outside the vocabulary keeps its identity (two
different unknown words never match, whether or not the encoder has a subword table for them).

numpy in, numpy out; no torch. `QuestionText` is what one question contributes, computed once.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dupfinder.text import UNK_ID, TextConfig, Vocab, tokenize

_WORD = re.compile(r"\w")
_SUFFIXES = ("ing", "ies", "ied", "ed", "es", "s", "ly")
_NOT_A_WORD = False  # the lexicon's entry for a token without a word character (punctuation)
_LEXICON_SIZE = 300_000  # tokens remembered before the lexicon starts again (about 65 MB of unknown words)
# pairs after which `pairs` loads the numba kernel on its own: loading it (about 1 s, and a first
# compile) is repaid by some 30,000 pairs (numpy 37 us a pair in bulk, the kernel 5)
_COMPILE_AFTER = 50_000

TEXT_FEATURES = (
    "jaccard",  # shared distinct tokens / all distinct tokens
    "idf_overlap",  # the same, each token weighed by its idf
    "unmatched_idf_max",  # the rarest word that occurs in only one of the two
    "unmatched_idf_sum",
    "unmatched_min",  # words of one question missing from the other: the smaller side
    "unmatched_max",  # ... and the larger side
    "stem_jaccard",  # jaccard of crude stems (seeing ~ see)
    "align_mean",  # idf-weighted mean over both questions' words of the best embedding match in the other
    "align_min",  # the worst-matched word's best match
    "align_gap",  # max over words of idf x (1 - best match): a rare word with no counterpart
    "unknown_unmatched",  # words outside the vocabulary found in only one question (by spelling)
    "unknown_shared",  # words outside the vocabulary found in both
    "first_same",  # the two questions start with the same word
    "len_diff",  # |log(len a) - log(len b)|
    "len_min",  # log of the shorter length
)
N_TEXT = len(TEXT_FEATURES)


_SUFFIX_LENGTHS = tuple((s, len(s)) for s in _SUFFIXES)


def stem(word: str) -> str:
    n = len(word)
    for s, k in _SUFFIX_LENGTHS:
        if n > k + 2 and word.endswith(s):
            return word[:-k]
    return word


@dataclass
class QuestionText:
    """One question as the text features read it: its distinct words (punctuation dropped, in order of
    first use), their keys (vocabulary id, or a negative hash of the spelling for an unknown word),
    idf weights, unit word embeddings and crude stems."""

    words: list[str]
    keys: np.ndarray  # (w,) int64
    idf: np.ndarray  # (w,) float32
    emb: np.ndarray  # (w, e) float32, unit rows; zero rows for unknown words
    stems: frozenset
    first: str
    length: int  # words, repeats included
    stem_keys: np.ndarray | None = None  # (s,) int64 hashes of the distinct stems
    text_tokens: tuple = ()  # every token in order, punctuation too (the rewording rule reads them)
    rewording: tuple | None = None  # the rewording rule's reading of them, filled on first use


def _key(word: str, i: int) -> int:
    if i != UNK_ID:
        return i
    import zlib

    return -2 - zlib.crc32(word.encode())  # stable across processes, unlike hash()


class TextFeaturizer:
    """Reads questions with the model's text settings and vocabulary; `idf` is per vocabulary id
    (unknown words get `idf_unknown`), `embed` the encoder's word embedding table."""

    def __init__(self, vocab: Vocab, text_config: TextConfig, idf: np.ndarray, idf_unknown: float, embed: np.ndarray):
        self.vocab = vocab
        self.text_config = text_config
        self.idf = np.asarray(idf, dtype=np.float32)  # (V,)
        self.idf_unknown = float(idf_unknown)
        e = np.asarray(embed, dtype=np.float32)  # (V, E)
        self.embed = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)
        self.embed[UNK_ID] = 0.0  # an unknown word matches only its own spelling
        self._lexicon: dict[str, tuple | bool] = {}  # token -> (vocabulary id, key, stem, stem key), or _NOT_A_WORD
        self._kernel = None  # the compiled `pairs` (see `compile`)
        self._pairs_seen = 0

    def compile(self) -> bool:
        """Compute `pairs` with the numba kernel from now on (`features_kernel`: a search's ten pairs in
        a quarter of the time, a large batch in a seventh); False, and plain numpy, where numba
        cannot load or compile it (tried here, on one pair, so a search never meets the error)."""
        try:
            from dupfinder.verdict.features_kernel import pair_features

            self._kernel = pair_features
            a, b = self.questions(["what is it?", "what is that?"])
            self._compiled([a], [b])
        except Exception:  # numba missing or broken (no compiler, no cache): plain numpy, the same numbers
            self._kernel = None
            return False
        return True

    def question(self, text: str) -> QuestionText:
        return self.questions([text])[0]

    def questions(self, texts: Sequence[str]) -> list[QuestionText]:
        """`QuestionText` of each text, with one idf and embedding lookup for them all. Each token's
        vocabulary id, key and stem come from the lexicon, worked out the first time it is seen:
        a search reads its question and hits, some 60 words, mostly seen before."""
        lexicon = self._lexicon
        read = []  # per text: {word: (id, key, stem, stem key)} in order of first use, the words with repeats, the tokens
        for text in texts:
            entries, n_all = {}, 0
            tokens = tuple(map(sys.intern, tokenize(text, self.text_config)))  # one copy of each word, kept by many questions
            for t in tokens:
                e = lexicon.get(t)
                if e is None:
                    e = self._entry(t)
                if e:  # a word, not punctuation
                    n_all += 1
                    entries.setdefault(t, e)
            read.append((entries, n_all, tokens))
        flat = [e for entries, _, _ in read for e in entries.values()]
        ids = np.array([e[0] for e in flat], np.int64)  # (W,)
        keys = np.array([e[1] for e in flat], np.int64)
        idf = self.idf[ids]
        idf[ids == UNK_ID] = self.idf_unknown
        emb = self.embed[ids]  # (W, E)
        out, start = [], 0
        for entries, n_all, tokens in read:
            end = start + len(entries)
            words = list(entries)
            stems = {e[2]: e[3] for e in entries.values()}
            out.append(QuestionText(words, keys[start:end], idf[start:end], emb[start:end], frozenset(stems), words[0] if words else "",
                                    n_all, np.array(list(stems.values()), np.int64), tokens))
            start = end
        if len(lexicon) > _LEXICON_SIZE:  # unknown words pile up in a server that runs for months
            lexicon.clear()
        return out

    def _entry(self, token: str):
        """(vocabulary id, key, stem, stem key) of a word token, or _NOT_A_WORD; remembered."""
        if not _WORD.match(token):
            e = _NOT_A_WORD
        else:
            i = self.vocab.stoi.get(token, UNK_ID)
            s = stem(token)
            e = (i, _key(token, i), s, _crc(s))
        self._lexicon[token] = e
        return e

    def pair(self, a: QuestionText, b: QuestionText) -> np.ndarray:
        """The TEXT_FEATURES of one pair, (N_TEXT,) float32; symmetric in a and b."""
        f = np.zeros(N_TEXT, dtype=np.float32)
        if not a.words or not b.words:
            return f
        same = a.keys[:, None] == b.keys[None, :]  # (wa, wb) identical spelling, known or not
        in_b, in_a = same.any(1), same.any(0)  # (wa,), (wb,)
        n_shared = int(in_b.sum())
        idf_shared = float(a.idf[in_b].sum())
        only = np.concatenate([a.idf[~in_b], b.idf[~in_a]])
        f[0] = n_shared / (len(a.words) + len(b.words) - n_shared)
        f[1] = idf_shared / max(1e-6, idf_shared + float(only.sum()))
        only_sum = float(only.sum())
        f[2] = float(only.max()) if len(only) else 0.0
        f[3] = only_sum
        na, nb = len(a.words) - n_shared, len(b.words) - n_shared
        f[4], f[5] = min(na, nb), max(na, nb)
        f[6] = len(a.stems & b.stems) / len(a.stems | b.stems)
        sim = np.maximum(a.emb @ b.emb.T, same)  # (wa, wb) word embedding cosines; same spelling 1
        best = np.concatenate([sim.max(1), sim.max(0)])  # each word's best match in the other question
        idf = np.concatenate([a.idf, b.idf])
        f[7] = float((best * idf).sum() / max(1e-6, idf.sum()))
        f[8] = float(best.min())
        f[9] = float((idf * (1.0 - best)).max())
        unk_a, unk_b = a.keys < 0, b.keys < 0
        shared_unk = int((in_b & unk_a).sum())
        f[10] = int(unk_a.sum()) + int(unk_b.sum()) - 2 * shared_unk
        f[11] = shared_unk
        f[12] = float(a.first == b.first)
        la, lb = math.log(1 + a.length), math.log(1 + b.length)
        f[13] = abs(la - lb)
        f[14] = min(la, lb)
        return f

    def pairs(self, a: Sequence[QuestionText], b: Sequence[QuestionText], chunk: int = 2048) -> np.ndarray:
        """(n, N_TEXT) float32 for the pairs (a[i], b[i]): `pair` of each, computed on padded
        batches (the same numbers; a handful of numpy calls per batch instead of per pair), or by
        the numba kernel once `compile` has loaded it (which it does itself after _COMPILE_AFTER
        pairs)."""
        out = np.zeros((len(a), N_TEXT), dtype=np.float32)
        seen, self._pairs_seen = self._pairs_seen, self._pairs_seen + len(a)
        if self._kernel is None and seen < _COMPILE_AFTER <= self._pairs_seen:  # bulk work: tried once
            self.compile()
        batch = self._batch if self._kernel is None else self._compiled
        for start in range(0, len(a), chunk):
            out[start : start + chunk] = batch(a[start : start + chunk], b[start : start + chunk])
        return out

    def _compiled(self, a: Sequence[QuestionText], b: Sequence[QuestionText]) -> np.ndarray:
        """`_batch` by the numba kernel: each distinct question's arrays once, one after another."""
        index: dict[int, int] = {}
        qs: list[QuestionText] = []

        def at(q: QuestionText) -> int:
            j = index.get(id(q))
            if j is None:
                j = index[id(q)] = len(qs)
                qs.append(q)
            return j

        pa = np.fromiter(map(at, a), np.int64, len(a))
        pb = np.fromiter(map(at, b), np.int64, len(b))
        word_off = np.zeros(len(qs) + 1, np.int64)
        np.cumsum(np.fromiter((len(q.keys) for q in qs), np.int64, len(qs)), out=word_off[1:])
        stem_off = np.zeros(len(qs) + 1, np.int64)
        np.cumsum(np.fromiter((len(q.stem_keys) for q in qs), np.int64, len(qs)), out=stem_off[1:])
        return self._kernel(np.concatenate([q.keys for q in qs]), np.concatenate([q.idf for q in qs]),
                            np.concatenate([q.emb for q in qs]), np.concatenate([q.stem_keys for q in qs]), word_off, stem_off,
                            np.fromiter((q.length for q in qs), np.float64, len(qs)), pa, pb, np.empty((len(a), N_TEXT), np.float32))

    def _batch(self, a: Sequence[QuestionText], b: Sequence[QuestionText]) -> np.ndarray:
        n = len(a)
        if n == 0:
            return np.zeros((0, N_TEXT), np.float32)
        ka, ia, ea, ma, sa = _pad(a, self.embed.shape[1])  # keys (n, La), idf, emb (n, La, E), mask, stem keys (n, Sa)
        kb, ib, eb, mb, sb = _pad(b, self.embed.shape[1])
        na, nb = ma.sum(1), mb.sum(1)  # (n,)
        same = (ka[:, :, None] == kb[:, None, :]) & ma[:, :, None] & mb[:, None, :]  # (n, La, Lb)
        in_b, in_a = same.any(2), same.any(1)  # (n, La), (n, Lb)
        n_shared = in_b.sum(1)
        idf_shared = (ia * in_b).sum(1)
        only_a, only_b = ia * (ma & ~in_b), ib * (mb & ~in_a)
        only_sum = only_a.sum(1) + only_b.sum(1)
        f = np.zeros((n, N_TEXT), np.float32)
        f[:, 0] = n_shared / np.maximum(1, na + nb - n_shared)
        f[:, 1] = idf_shared / np.maximum(1e-6, idf_shared + only_sum)
        f[:, 2] = np.maximum(only_a.max(1, initial=0.0), only_b.max(1, initial=0.0))
        f[:, 3] = only_sum
        f[:, 4], f[:, 5] = np.minimum(na - n_shared, nb - n_shared), np.maximum(na - n_shared, nb - n_shared)
        stem_same = (sa[:, :, None] == sb[:, None, :]) & (sa[:, :, None] != 0) & (sb[:, None, :] != 0)
        s_shared = stem_same.any(2).sum(1)
        s_union = (sa != 0).sum(1) + (sb != 0).sum(1) - s_shared
        f[:, 6] = s_shared / np.maximum(1, s_union)
        sim = np.maximum(np.matmul(ea, eb.transpose(0, 2, 1)), same)  # (n, La, Lb) word cosines; same spelling 1
        sim = np.where(ma[:, :, None] & mb[:, None, :], sim, -np.inf)
        best_a, best_b = sim.max(2), sim.max(1)  # (n, La), (n, Lb); -inf at padding
        w_sum = (ia * ma).sum(1) + (ib * mb).sum(1)
        fa, fb = np.where(ma, best_a, 0.0), np.where(mb, best_b, 0.0)
        f[:, 7] = ((fa * ia).sum(1) + (fb * ib).sum(1)) / np.maximum(1e-6, w_sum)
        f[:, 8] = np.minimum(np.where(ma, best_a, np.inf).min(1), np.where(mb, best_b, np.inf).min(1))
        gap_a, gap_b = ia * (1 - np.where(ma, best_a, 1.0)), ib * (1 - np.where(mb, best_b, 1.0))  # 0 at padding
        f[:, 9] = np.maximum(np.where(ma, gap_a, -np.inf).max(1), np.where(mb, gap_b, -np.inf).max(1))
        unk_a, unk_b = (ka < 0) & ma, (kb < 0) & mb
        shared_unk = (in_b & unk_a).sum(1)
        f[:, 10] = unk_a.sum(1) + unk_b.sum(1) - 2 * shared_unk
        f[:, 11] = shared_unk
        f[:, 12] = (ka[:, 0] == kb[:, 0]) & (na > 0) & (nb > 0)
        la = np.log1p(np.fromiter((q.length for q in a), np.float64, n))
        lb = np.log1p(np.fromiter((q.length for q in b), np.float64, n))
        f[:, 13], f[:, 14] = np.abs(la - lb), np.minimum(la, lb)
        f[(na == 0) | (nb == 0)] = 0.0
        return f


def _crc(text: str) -> int:
    """A stem's key: only compared within one process (features are computed where they are used), so
    Python's hash serves; never 0, which is padding."""
    return hash(text) or 1


def _pad(qs: Sequence[QuestionText], dim: int):
    """Padded batch arrays of questions: keys (n, L) int64, idf (n, L) float32, embeddings
    (n, L, E) float32, mask (n, L) bool, stem keys (n, S) int64 (0: padding)."""
    n = len(qs)
    L = max(1, max(len(q.words) for q in qs))
    S = max(1, max(len(q.stem_keys) for q in qs))
    keys = np.zeros((n, L), np.int64)
    idf = np.zeros((n, L), np.float32)
    emb = np.zeros((n, L, dim), np.float32)
    mask = np.zeros((n, L), bool)
    stems = np.zeros((n, S), np.int64)
    for i, q in enumerate(qs):
        w = len(q.words)
        keys[i, :w], idf[i, :w], emb[i, :w], mask[i, :w] = q.keys, q.idf, q.emb, True
        stems[i, : len(q.stem_keys)] = q.stem_keys
    return keys, idf, emb, mask, stems


def vector_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[|u - v|, u * v, cosine] of unit vectors (n, d) -> (n, 2d + 1) float32; symmetric in u and v."""
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    prod = u * v  # (n, d)
    return np.concatenate([np.abs(u - v), prod, prod.sum(1, keepdims=True)], axis=1)


def document_idf(token_lists, vocab: Vocab) -> tuple[np.ndarray, float]:
    """Smoothed idf per vocabulary id from questions (lists of tokens), and the idf of a word never seen."""
    df = np.zeros(len(vocab), dtype=np.int64)
    n = 0
    for tokens in token_lists:
        ids = np.unique(vocab.encode([t for t in tokens if _WORD.match(t)]))
        df[ids] += 1
        n += 1
    idf = np.log((n + 1) / (df + 1)).astype(np.float32)
    return idf, float(math.log(n + 1))

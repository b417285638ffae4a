"""The search path's cheaper computations give the same numbers as the ones they replaced: the
verdict head's text features (words read through the featurizer's lexicon, batches padded by one
scatter) and its matrix products (a batch's rows one at a time), checked bit for bit on 300 dev
pairs of the shipped model (tests/data/dev_pairs_sample.csv) against copies of the old code; the
compiled text features within float32 rounding of numpy's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dupfinder.engine import load_encoder
from dupfinder.text import UNK_ID, tokenize
from dupfinder.verdict import features
from dupfinder.verdict.features import QuestionText, _crc, _key, _WORD, stem
from dupfinder.verdict.head import load_encoder_head

SAMPLE = Path(__file__).parent / "data" / "dev_pairs_sample.csv"
ODD = ["", "?", "...", "cats cat cats CATS", "Zorblax zorblax quibbit?", "naïve café — ﬁne “quotes”", "don't can't what's", "a " * 60]


@pytest.fixture(scope="module")
def head():
    return load_encoder_head(load_encoder())


@pytest.fixture(scope="module")
def pairs() -> tuple[list[str], list[str]]:
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["question1"] for r in rows] + ODD, [r["question2"] for r in rows] + ODD[::-1]


def old_questions(feat, texts) -> list[QuestionText]:
    """The featurizer's questions() before the lexicon."""
    all_words = [[t for t in tokenize(x, feat.text_config) if _WORD.match(t)] for x in texts]
    words = [list(dict.fromkeys(w)) for w in all_words]
    flat = [w for ws in words for w in ws]
    ids = feat.vocab.encode(flat).astype(np.int64)
    unknown = ids == UNK_ID
    idf = feat.idf[ids]
    idf[unknown] = feat.idf_unknown
    emb = feat.embed[ids]
    keys = ids.copy()
    for j in np.flatnonzero(unknown).tolist():
        keys[j] = _key(flat[j], UNK_ID)
    out, start = [], 0
    for ws, aw in zip(words, all_words):
        end = start + len(ws)
        stems = frozenset(stem(w) for w in ws)
        out.append(QuestionText(ws, keys[start:end], idf[start:end], emb[start:end], stems, ws[0] if ws else "", len(aw),
                                np.fromiter((_crc(x) for x in stems), np.int64, len(stems))))
        start = end
    return out


def old_pad(qs, dim: int):
    """_pad before the scatter: one question at a time."""
    n = len(qs)
    L = max(1, max(len(q.words) for q in qs))
    S = max(1, max(len(q.stem_keys) for q in qs))
    keys, idf = np.zeros((n, L), np.int64), np.zeros((n, L), np.float32)
    emb, mask, stems = np.zeros((n, L, dim), np.float32), np.zeros((n, L), bool), np.zeros((n, S), np.int64)
    for i, q in enumerate(qs):
        w = len(q.words)
        keys[i, :w], idf[i, :w], emb[i, :w], mask[i, :w] = q.keys, q.idf, q.emb, True
        stems[i, : len(q.stem_keys)] = q.stem_keys
    return keys, idf, emb, mask, stems


def same_question(a: QuestionText, b: QuestionText) -> bool:
    return (a.words == b.words and a.stems == b.stems and a.first == b.first and a.length == b.length
            and all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in
                    [(a.keys, b.keys), (a.idf, b.idf), (a.emb, b.emb), (np.sort(a.stem_keys), np.sort(b.stem_keys))]))


def test_questions_read_as_before(head, pairs):
    feat = head.featurizer
    texts = pairs[0] + pairs[1]
    want = old_questions(feat, texts)
    for batch in (1, 6, 97, len(texts)):  # a fresh lexicon, then words seen before
        got = [q for i in range(0, len(texts), batch) for q in feat.questions(texts[i : i + batch])]
        assert all(same_question(g, w) for g, w in zip(got, want))
    assert all(same_question(feat.question(t), w) for t, w in zip(texts[:50], want))


def test_pair_features_as_before(head, pairs, monkeypatch):
    feat = head.featurizer
    monkeypatch.setattr(feat, "_kernel", None)  # numpy's path; the compiled one is held to it below
    a, b = feat.questions(pairs[0]), feat.questions(pairs[1])
    for chunk in (5, 7, 40, 2048):
        got = feat.pairs(a, b, chunk=chunk)
        with monkeypatch.context() as m:
            m.setattr(features, "_pad", old_pad)
            want = feat.pairs(a, b, chunk=chunk)
        assert np.array_equal(got, want)
    assert feat.pairs([], []).shape == (0, features.N_TEXT)


def test_compiled_pair_features_match_numpy(head, pairs, monkeypatch):
    feat = head.featurizer
    a, b = feat.questions(pairs[0]), feat.questions(pairs[1])
    assert feat.compile()
    got = feat.pairs(a, b)
    monkeypatch.setattr(feat, "_kernel", None)
    want = feat.pairs(a, b)
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.array_equal(got[:, [0, 4, 5, 6, 10, 11, 12, 13, 14]], want[:, [0, 4, 5, 6, 10, 11, 12, 13, 14]])


def old_matmul(x, w):
    """The head's products before: a query's few rows one at a time, more in one matrix product."""
    if len(x) > 32:
        return x @ w
    out = np.empty((len(x), w.shape[1]), np.float32)
    for i in range(len(x)):
        out[i] = x[i] @ w
    return out


def test_the_head_scores_as_before(head, pairs, monkeypatch):
    """Up to 32 pairs (a search alone) bit for bit as before; a larger batch (searches the server
    batched) within float32 rounding of the one matrix product it had, whose last bits depended on
    how many threads OpenBLAS used. Its hidden layers are now each row's own product, as alone."""
    from dupfinder.verdict import head as head_module

    enc = load_encoder()
    texts1, texts2 = pairs[0][:200], pairs[1][:200]
    u, v = enc.encode(texts1), enc.encode(texts2)
    text = head.featurizer.pairs(head.featurizer.questions(texts1), head.featurizer.questions(texts2))
    new = {n: head.probabilities(u[:n], v[:n], text[:n]) for n in (1, 5, 32, 40, 200)}
    with monkeypatch.context() as m:
        m.setattr(head_module, "_matmul", old_matmul)
        for n in (1, 5, 32):
            assert np.array_equal(new[n], head.probabilities(u[:n], v[:n], text[:n]))
        for n in (40, 200):
            np.testing.assert_allclose(new[n], head.probabilities(u[:n], v[:n], text[:n]), rtol=1e-5, atol=1e-7)
    w1 = head.weights["w1"]
    x = np.random.default_rng(0).normal(size=(200, w1.shape[0])).astype(np.float32)
    assert np.array_equal(head_module._matmul(x, w1), np.stack([x[i] @ w1 for i in range(len(x))]))


def test_hits_are_answered_in_the_engine_shape():
    from dupfinder.engine import Hit
    from dupfinder.server.app import _hit

    for h in [Hit("q-1", "How old are you?", 0.75, True), Hit(7, "What is your age?", 1.0, False, 0.125)]:
        assert _hit(h) == h.to_dict() and list(_hit(h)) == list(h.to_dict())

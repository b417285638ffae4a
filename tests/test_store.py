"""What every store must do (the `Store` protocol), each store held to `BruteForceStore`, the
reference: adding (skipped by user id and by normalized text, empty ones; another text for a stored
id refused, or replaced with upsert), search (an exact store gives the reference's top k; an
approximate one, its recall), get, remove (all or nothing; by the user's id, or by the store's id for
a question without one), count, info, and a write then reopen that gives the same hits.

A backend joins by one line in BACKENDS. Nothing here assumes how a store numbers its questions.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from dupfinder.errors import InputError
from dupfinder.store.base import METRIC, BruteForceStore, Question, Store, text_hash
from dupfinder.store.local import LocalStore
from fake_encoder import FakeEncoder

DIM = 24
MODEL = {"path": "/nowhere/fake", "fingerprint": "fake0000", "threshold": 0.5, "default": False}
ENC = FakeEncoder(dim=DIM)  # one fixed random unit vector per normalized text


@dataclass
class Backend:
    name: str
    make: Callable[[Path], object]  # a folder for its files -> a new store, empty, with MODEL and DIM
    reopen: Callable[[object], object] | None = None  # the same store opened afresh (another process would); None: memory only
    exact: bool = True  # search gives the exact top k; else it is held to a recall


def local(kind: str) -> Callable[[Path], LocalStore]:
    def make(folder: Path) -> LocalStore:
        store = LocalStore(folder / f"local-{kind}", create={"kind": kind})
        store.set_model(MODEL, DIM)
        return store

    return make


def brute_force(folder: Path) -> BruteForceStore:
    store = BruteForceStore(1, location=str(folder / "memory"))
    store.set_model(MODEL, DIM)
    return store


BACKENDS = [
    Backend("brute-force", brute_force),
    Backend("local-flat", local("flat"), reopen=lambda s: LocalStore(s.location)),
    Backend("local-hnsw", local("hnsw"), reopen=lambda s: LocalStore(s.location), exact=False),
]

QUESTIONS = [
    Question("a1", "How old are you?", "t.csv"),
    Question("a2", "What is your age?", "t.csv"),
    Question("a3", "Where do you live?", "u.csv"),
    Question(None, "How do I learn Python?", "t.csv"),
    Question("a5", "What is the capital of France?", "t.csv"),
]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request) -> Backend:
    return request.param


@pytest.fixture
def store(backend, tmp_path):
    s = backend.make(tmp_path)
    yield s
    s.close()


@pytest.fixture
def reference(tmp_path):
    return brute_force(tmp_path / "reference")


def add(store, questions, upsert=False):
    return store.add(questions, ENC.encode([q.text for q in questions]), upsert=upsert)


def report_of(r) -> tuple:
    return r.added, r.already_indexed, r.empty, r.replaced, r.count, r.created


def store_id(store, text: str) -> int:
    """The store's id of a stored text: its own nearest neighbour, at cosine 1."""
    scores, ids = store.search(ENC.encode([text]), 1)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5), f"{text!r} is not stored"
    return int(ids[0, 0])


def texts_of(store, ids: np.ndarray) -> list[list[str | None]]:
    """Each id's stored text, None for -1."""
    records = store.get(ids.ravel().tolist())
    return [[records[i].text if i >= 0 else None for i in row] for row in ids.tolist()]


def tie_blocks(texts: list[list[str | None]], scores: np.ndarray, tol: float = 1e-5) -> list[list[set]]:
    """Each row's ranking as blocks of ranks whose (reference) scores are within `tol` of the one
    before: the order inside such a block hangs on float rounding, the order of the blocks does not."""
    out = []
    for row_texts, row_scores in zip(texts, scores.tolist()):
        blocks: list[set] = []
        for i, (t, s) in enumerate(zip(row_texts, row_scores)):
            if i == 0 or abs(s - row_scores[i - 1]) > tol:
                blocks.append(set())
            blocks[-1].add(t)
        out.append(blocks)
    return out


def random_corpus(n: int, seed: int) -> list[Question]:
    rng = np.random.default_rng(seed)
    return [Question(f"r{i}" if rng.random() < 0.7 else None, f"random question {i} {rng.integers(1_000_000)}", f"s{i % 3}.csv")
            for i in range(n)]


def test_is_a_store_and_starts_empty(store):
    assert isinstance(store, Store)
    assert (store.dim, store.count, store.model, store.exists) == (DIM, 0, MODEL, False)
    scores, ids = store.search(ENC.encode(["anything?", "else?"]), 3)
    assert scores.shape == ids.shape == (2, 3) and (ids == -1).all()
    assert store.get([0, 1, -1]) == {} and store.sources() == {}


def test_add_skips_known_ids_normalized_texts_and_empty(store, reference):
    for s in (store, reference):
        assert report_of(add(s, QUESTIONS)) == (5, 0, 0, 0, 5, True)
        assert s.exists
    more = [
        Question("a1", "how old are YOU?"),  # same id, same normalized text: already there
        Question("zz", "  how OLD   are you?  "),  # a new id with a stored text
        Question(None, ""),
        Question(None, "   "),
        Question("b1", "A new question?"),
        Question("b2", "a new question?"),  # the same text earlier in the batch
        Question(None, "what is your AGE?"),
        Question("b3", "  Another new one "),
    ]
    assert store.known(more) == reference.known(more) == ({"a1": text_hash("How old are you?")},
                                                          {text_hash("How old are you?"), text_hash("What is your age?")})
    got, want = add(store, more), add(reference, more)
    assert report_of(got) == report_of(want) == (2, 4, 2, 0, 7, False)
    assert report_of(add(store, more)) == (0, 6, 2, 0, 7, False)  # nothing new
    assert store.count == 7
    stored = store.get([store_id(store, "A new question?"), store_id(store, "Another new one")])
    assert sorted((r.user_id, r.text) for r in stored.values()) == [("b1", "A new question?"), ("b3", "Another new one")]


def test_a_new_store_with_only_empty_questions_is_refused(store, reference):
    for s in (store, reference):
        with pytest.raises(InputError, match="no questions to index: every one was empty"):
            add(s, [Question(None, ""), Question("x", "   ")])
        assert (s.exists, s.count) == (False, 0)


def test_another_text_for_a_stored_id_is_refused_for_the_whole_batch(store, reference):
    for s in (store, reference):
        add(s, QUESTIONS)
        with pytest.raises(InputError, match=r"already in .* with other text: id a1, a3; add with upsert \(--upsert\) to replace, or give new ids; nothing was added"):
            add(s, [Question("n1", "Fine on its own"), Question("a1", "Another text"), Question("a3", "And another")])
        with pytest.raises(InputError, match="id x appears twice in the input with different text; nothing was added"):
            add(s, [Question("x", "one"), Question("x", "two")])
        assert s.count == 5
        scores, _ = s.search(ENC.encode(["Fine on its own", "one"]), 1)
        assert (scores < 0.999).all()  # none of either batch was stored


def test_upsert_replaces_the_text_of_a_stored_id(store, reference):
    for s in (store, reference):
        add(s, QUESTIONS)
        old = store_id(s, "How old are you?")
        report = add(s, [Question("a1", "How old is the universe?", "v.csv"), Question("n1", "A new one")], upsert=True)
        assert report_of(report) == (2, 0, 0, 1, 6, False)
        new = store_id(s, "How old is the universe?")
        assert old not in s.get([old, new]) and s.get([new])[new].user_id == "a1"
        (scores,), (ids,) = s.search(ENC.encode(["How old are you?"]), 6)
        assert old not in ids.tolist() and scores[0] < 0.999


# the local store answers under 16 queries on one thread, 16 and more on all; 310 is more than it holds
@pytest.mark.parametrize("n_queries,k", [(1, 1), (13, 7), (17, 310), (1, 310)])
def test_search_gives_the_reference_top_k(backend, store, reference, n_queries, k):
    corpus = random_corpus(301, seed=k + n_queries)
    for s in (store, reference):
        add(s, corpus)
    rng = np.random.default_rng(n_queries)
    queries = ENC.encode([q.text for q in corpus[:n_queries]]) + 0.5 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)  # (m, d) near some stored questions, not on them
    scores, ids = store.search(queries, k)
    want_scores, want_ids = reference.search(queries, k)
    assert scores.shape == ids.shape == (n_queries, k) and scores.dtype == np.float32 and ids.dtype == np.int64
    found = ids >= 0
    if backend.exact:
        np.testing.assert_array_equal(found, want_ids >= 0)
        np.testing.assert_allclose(scores[found], want_scores[found], atol=1e-5)
        assert tie_blocks(texts_of(store, ids), want_scores) == tie_blocks(texts_of(reference, want_ids), want_scores)
    else:
        got, want = texts_of(store, ids), texts_of(reference, want_ids)
        recall = np.mean([len(set(g) & set(w) - {None}) / len(set(w) - {None}) for g, w in zip(got, want)])
        assert recall >= 0.9
    # whatever is found: best first, with its true cosine
    assert (found[:, :-1] >= found[:, 1:]).all() and (np.diff(np.where(found, scores, -2), axis=1) <= 1e-6).all()
    vectors = {q.text: v for q, v in zip(corpus, ENC.encode([q.text for q in corpus]))}
    true = np.array([[vectors[t] @ q if t else -2 for t in row] for row, q in zip(texts_of(store, ids), queries)], np.float32)
    np.testing.assert_allclose(np.where(found, scores, -2), true, atol=1e-5)
    assert found.sum(1).max() <= 301 and (ids[:, 301:] == -1).all()


def test_get_returns_the_records_and_leaves_out_unknown_ids(store):
    add(store, QUESTIONS)
    ids = {q.text: store_id(store, q.text) for q in QUESTIONS}
    assert len(set(ids.values())) == 5
    unknown = max(ids.values()) + 1000
    records = store.get([*ids.values(), -1, unknown])
    assert set(records) == set(ids.values())
    for q in QUESTIONS:
        r = records[ids[q.text]]
        assert (r.id, r.user_id, r.text, r.text_hash, r.source) == (ids[q.text], q.user_id, q.text, text_hash(q.text), q.source)
        assert r.added and r.display_id == (q.user_id if q.user_id is not None else r.id)


def test_remove_by_user_id_or_store_id_all_or_nothing(store, reference):
    for s in (store, reference):
        add(s, QUESTIONS)
        python = store_id(s, "How do I learn Python?")  # has no user id
        a1, a2 = store_id(s, "How old are you?"), store_id(s, "What is your age?")
        for wanted, missing in ((["a1", "nope"], "nope"), ([str(a1)], str(a1)), (["a2", str(python + 1000)], str(python + 1000))):
            with pytest.raises(InputError, match=f"not in {re.escape(s.location)}: {missing}; nothing was removed"):
                s.remove(wanted)  # a store id names only a question without a user id
            assert s.count == 5
        report = s.remove(["a2", str(python), "a2"])
        assert (report.removed, report.count, s.count) == (["a2", str(python)], 3, 3)
        assert s.get([python]) == {}
        _, ids = s.search(ENC.encode(["What is your age?", "How do I learn Python?"]), 5)
        assert python not in ids.ravel().tolist() and {r.user_id for r in s.get(ids.ravel().tolist()).values()} == {"a1", "a3", "a5"}
        add(s, [Question("new", "Brand new question")])
        assert store_id(s, "Brand new question") not in {python, a2, a1}  # store ids are never reused
    assert report_of(add(store, [Question("a2", "Other text now")])) == report_of(add(reference, [Question("a2", "Other text now")]))


def test_count_info_and_sources(store, reference, backend):
    for s in (store, reference):
        add(s, QUESTIONS)
        s.remove(["a5"])
        info = s.info()
        assert (info["index"], info["count"], info["metric"], info["dimension"]) == (s.location, 4, METRIC, DIM)
        assert s.count == 4 and info["kind"] == s.kind
        assert s.sources() == info["sources"] == {"t.csv": 3, "u.csv": 1}
    assert store.kind == {"brute-force": "brute-force", "local-flat": "flat", "local-hnsw": "hnsw"}[backend.name]


def test_write_then_reopen_gives_the_same_hits(backend, store):
    if backend.reopen is None:
        pytest.skip(f"{backend.name} keeps nothing to reopen")
    corpus = random_corpus(157, seed=1)
    add(store, corpus)
    store.remove([q.user_id for q in corpus[:9] if q.user_id is not None])
    add(store, [Question("late", "added after a removal")])
    queries = ENC.encode([q.text for q in corpus[::10]] + ["added after a removal", "not stored at all"])
    before = store.search(queries, 11)
    records = store.get(before[1].ravel().tolist())
    count, info = store.count, store.info()
    store.close()
    with backend.reopen(store) as again:
        after = again.search(queries, 11)
        np.testing.assert_array_equal(after[1], before[1])
        np.testing.assert_allclose(after[0], before[0], atol=1e-6)
        assert again.get(before[1].ravel().tolist()) == records
        assert (again.count, again.model, again.dim, again.kind) == (count, MODEL, DIM, info["kind"])
        assert again.sources() == info["sources"]

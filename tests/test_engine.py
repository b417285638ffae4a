"""The engine: `query` against brute force over the store's own vectors, the verdict rule in force,
`add` planning before encoding, scores clipped at 1.0, and the same hits over any store."""

from __future__ import annotations

import numpy as np
import pytest

from dupfinder.engine import Engine, Hit, model_record
from dupfinder.errors import IndexStoreError, InputError
from dupfinder.knn import exact_search
from dupfinder.store.base import BruteForceStore, Question
from fake_encoder import FakeEncoder, open_local

TEXTS = [f"indexed question {i}" for i in range(97)]
QUESTIONS = [Question(f"u{i}" if i % 3 else None, t) for i, t in enumerate(TEXTS)]


@pytest.fixture
def engine(tmp_path):
    enc = FakeEncoder(dim=16, threshold=0.5)
    with Engine(enc, open_local(tmp_path / "ix", enc)) as engine:
        engine.add(QUESTIONS)
        yield engine


def store_ids(engine: Engine, texts: list[str]) -> list[int]:
    """The store's id of each stored text: its own nearest neighbour (FakeEncoder gives each text its own vector)."""
    scores, ids = engine.store.search(engine.encode(texts), 1)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    return ids[:, 0].tolist()


def test_query_matches_brute_force(engine):
    engine = Engine(engine.encoder, engine.store, threshold=0.2)
    shown = [q.user_id if q.user_id is not None else i for q, i in zip(QUESTIONS, store_ids(engine, TEXTS))]  # user id, else the store's id
    texts = ["indexed question 5", "something else", "INDEXED question 42 "]
    want_scores, want_rows = exact_search(engine.encoder.encode(TEXTS), engine.encoder.encode(texts), k=6)
    for results in (engine.query(texts, k=6), list(engine.query_many(texts, k=6, chunk=2))):
        for hits, s_row, i_row in zip(results, want_scores, want_rows):
            assert [h.score for h in hits] == pytest.approx(s_row.tolist(), abs=1e-5)
            for h, i in zip(hits, i_row.tolist()):
                assert h.id == shown[i]
                assert h.text == QUESTIONS[i].text
                assert h.duplicate == (h.score >= 0.2)
        assert results[0][0] == Hit("u5", "indexed question 5", pytest.approx(1.0, abs=1e-5), True)
        assert results[2][0].id == shown[42] and isinstance(shown[42], int) and results[2][0].duplicate  # normalized text: same vector


def test_query_uses_model_threshold_and_k_beyond_count(engine):
    (hits,) = engine.query(["indexed question 1"], k=500)
    assert len(hits) == 97
    assert engine.threshold == 0.5 and engine.verdict.source == "model"
    assert [h.duplicate for h in hits] == [h.score >= engine.encoder.threshold for h in hits]
    assert sorted((h.score for h in hits), reverse=True) == [h.score for h in hits]
    with pytest.raises(ValueError):
        engine.query(["x"], k=0)


def test_any_store_gives_the_same_hits(engine):
    enc = engine.encoder
    reference = Engine(enc, BruteForceStore(enc.dim, model_record(enc)))
    reference.add(QUESTIONS)
    texts = ["indexed question 5", "something else", "INDEXED question 42 ", "what about question 7?"]
    got, want = engine.query(texts, k=9), reference.query(texts, k=9)
    # the same questions (a store numbers its own, so the ids shown agree where the user gave one)
    assert [[(h.text, h.id if isinstance(h.id, str) else None) for h in hits] for hits in got] == \
        [[(h.text, h.id if isinstance(h.id, str) else None) for h in hits] for hits in want]
    for g, w in zip(got, want):
        assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-5)


class Counting(FakeEncoder):
    """A FakeEncoder that remembers what it was asked to encode, and returns vectors a float32 ulp
    longer than unit: an identical question's inner product then comes out just above 1."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.encoded: list[str] = []

    def encode(self, texts, batch_size=512, progress=None):
        self.encoded += list(texts)
        return super().encode(texts, batch_size, progress) * np.float32(1 + 2e-7)


def test_scores_never_exceed_one(tmp_path):
    enc = Counting()
    assert float(enc.encode(["How old are you?"])[0] @ enc.encode(["How old are you?"])[0]) > 1.0  # the case to clip
    with Engine(enc, open_local(tmp_path / "ix", enc)) as engine:
        engine.add(QUESTIONS[:10])
        (hits,) = engine.query(["indexed question 3"], k=3)
        assert hits[0].text == "indexed question 3" and hits[0].score == 1.0 and hits[0].duplicate
        assert all(h.score <= 1.0 for hits in engine.query_many(TEXTS[:10], k=3, chunk=3) for h in hits)
        assert engine.similarity("How old are you?", "how old are YOU?") == {"score": 1.0, "threshold": 0.5, "duplicate": True,
                                                                           "cosine": 1.0, "verdict": "cosine"}
        assert [r["score"] for r in engine.similarities([("a", "a"), ("b", "b"), ("a", "b")], chunk=2)][:2] == [1.0, 1.0]


def test_add_plans_before_encoding_and_counts_what_it_skips(tmp_path):
    enc = Counting()
    with Engine(enc, open_local(tmp_path / "ix", enc)) as engine:
        bars = []

        class Bar:
            def __init__(self, total, label):
                self.total, self.label, self.done, self.closed = total, label, 0, False
                bars.append(self)

            def update(self, n):
                self.done += n

            def close(self):
                self.closed = True

        report = engine.add(QUESTIONS[:5], progress=Bar)
        assert (report.added, report.already_indexed, report.empty, report.count, report.created) == (5, 0, 0, 5, True)
        enc.encoded.clear()
        more = [Question("u1", "indexed QUESTION 1"), Question(None, "  "), Question("n1", "a new one"),
                Question("n2", "A new one"), Question(None, "indexed question 0"), Question("n3", "another")]
        report = engine.add(more, progress=Bar)
        assert (report.added, report.already_indexed, report.empty, report.count, report.created) == (2, 3, 1, 7, False)
        assert enc.encoded == ["a new one", "another"]  # only what is stored is encoded
        assert [(b.total, b.label, b.done, b.closed) for b in bars] == [(5, "encoding", 5, True), (2, "encoding", 2, True)]

        enc.encoded.clear()
        with pytest.raises(InputError, match=r"already in .* with other text: id u2; add with upsert \(--upsert\) to replace"):
            engine.add([Question("n9", "fine"), Question("u2", "other text for u2")])
        assert enc.encoded == [] and engine.store.count == 7  # refused before any encoding or writing
        with pytest.raises(InputError, match="id x appears twice in the input with different text; nothing was added"):
            engine.add([Question("x", "one"), Question("x", "two")])


def test_remove_and_info(engine):
    info = engine.info()
    assert (info["count"], info["kind"], info["dimension"], info["metric"]) == (97, "flat", 16, "inner_product")
    assert (info["model"], info["model_fingerprint"], info["threshold"], info["threshold_source"]) == ("/nowhere/fake", "fake0000", 0.5, "model")
    assert Engine(engine.encoder, engine.store, threshold=0.25).info()["threshold_source"] == "option"
    q3 = store_ids(engine, ["indexed question 3"])[0]  # a question without a user id
    report = engine.remove(["u1", q3])  # a user id, and the store's id of a question without one
    assert (report.removed, report.count) == (["u1", str(q3)], 95)
    (hits,) = engine.query(["indexed question 1"], k=95)
    assert len(hits) == 95 and not {"u1", q3} & {h.id for h in hits}


def test_screen_finds_duplicates_in_the_store_and_in_the_batch(engine):
    engine = Engine(engine.encoder, engine.store, threshold=0.9)
    texts = ["indexed question 5", "something new", "INDEXED question 5", ""]
    with_empty = Engine(engine.encoder, engine.store, threshold=-1.0)  # everything a duplicate, but not of nothing
    assert with_empty.screen([""], k=2) == [{"in_index": [], "in_batch": []}]
    out = engine.screen(texts, k=2)
    assert [[h.id for h in row["in_index"]] for row in out] == [["u5"], [], ["u5"], []]
    assert [row["in_batch"] for row in out] == [[2], [], [0], []]


def test_an_engine_without_a_store(tmp_path):
    engine = Engine(FakeEncoder(threshold=0.3), threshold=0.9)
    assert engine.threshold == 0.9 and engine.verdict.source == "option"
    assert engine.similarity("same", "SAME")["duplicate"]
    for call in (lambda: engine.query(["x"]), lambda: engine.add([Question(None, "x")]), lambda: engine.remove(["1"]), engine.info):
        with pytest.raises(IndexStoreError, match=r"this engine has no index; open one with Engine.open\(INDEX\)"):
            call()
    assert [row["in_index"] for row in engine.screen(["a", "b"])] == [[], []]

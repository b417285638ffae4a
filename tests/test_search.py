"""`exact_search` against a full sort, and `query` against brute force over the index's own vectors."""

from __future__ import annotations

import numpy as np
import pytest

from dupfinder.store.local import Question, QuestionIndex, add_questions
from dupfinder.search import Hit, exact_search, query
from fake_encoder import FakeEncoder


@pytest.mark.parametrize("n,m,k,block", [(50, 7, 5, 3), (10, 4, 12, 100), (1, 1, 1, 1), (200, 33, 200, 8)])
def test_exact_search_matches_full_sort(n, m, k, block):
    rng = np.random.default_rng(n + m + k)
    db = rng.standard_normal((n, 8)).astype(np.float32)
    q = rng.standard_normal((m, 8)).astype(np.float32)
    scores, ids = exact_search(db, q, k, block=block)
    sims = q @ db.T
    kk = min(k, n)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
    np.testing.assert_allclose(scores[:, :kk], np.take_along_axis(sims, want, axis=1), atol=1e-5)
    assert (ids[:, :kk] == want).all()
    assert (ids[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()


@pytest.fixture
def index(tmp_path):
    enc = FakeEncoder(dim=16, threshold=0.5)
    texts = [f"indexed question {i}" for i in range(97)]
    qs = [Question(f"u{i}" if i % 3 else None, t) for i, t in enumerate(texts)]
    add_questions(tmp_path / "ix", enc, qs)
    with QuestionIndex.open(tmp_path / "ix") as idx:
        yield idx, enc, qs


def test_query_matches_brute_force(index):
    idx, enc, qs = index
    texts = ["indexed question 5", "something else", "INDEXED question 42 "]
    results = query(idx, enc, texts, k=6, threshold=0.2, batch_size=2)
    want_scores, want_rows = exact_search(enc.encode([q.text for q in qs]), enc.encode(texts), k=6)
    for hits, s_row, i_row in zip(results, want_scores, want_rows):
        assert [h.score for h in hits] == pytest.approx(s_row.tolist(), abs=1e-5)
        for h, i in zip(hits, i_row.tolist()):
            assert h.id == (qs[i].user_id if qs[i].user_id is not None else i)  # user id, else the internal id
            assert h.text == qs[i].text
            assert h.duplicate == (h.score >= 0.2)
    assert results[0][0] == Hit("u5", "indexed question 5", pytest.approx(1.0, abs=1e-5), True)
    assert results[2][0].id == 42 and results[2][0].duplicate  # normalized text: same vector


def test_query_uses_model_threshold_and_k_beyond_count(index):
    idx, enc, _ = index
    (hits,) = query(idx, enc, ["indexed question 1"], k=500)
    assert len(hits) == 97
    assert [h.duplicate for h in hits] == [h.score >= enc.threshold for h in hits]
    assert sorted((h.score for h in hits), reverse=True) == [h.score for h in hits]
    with pytest.raises(ValueError):
        query(idx, enc, ["x"], k=0)

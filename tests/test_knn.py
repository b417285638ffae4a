"""`knn.exact_search` (FAISS's flat kernel, blockwise) against a full numpy sort, and the one union-find."""

from __future__ import annotations

import numpy as np
import pytest

from dupfinder.knn import UnionFind, exact_search


@pytest.mark.parametrize("n,m,k,block", [(50, 7, 5, 3), (10, 4, 12, 100), (1, 1, 1, 1), (200, 33, 200, 8), (0, 3, 2, 2)])
def test_exact_search_matches_full_sort(n, m, k, block):
    rng = np.random.default_rng(n + m + k)
    db = rng.standard_normal((n, 8)).astype(np.float32)
    q = rng.standard_normal((m, 8)).astype(np.float32)
    done = []
    scores, ids = exact_search(db, q, k, block_size=block, progress=done.append)
    assert scores.shape == ids.shape == (m, k) and scores.dtype == np.float32 and ids.dtype == np.int64
    sims = q @ db.T  # (m, n)
    kk = min(k, n)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
    np.testing.assert_allclose(scores[:, :kk], np.take_along_axis(sims, want, axis=1), atol=1e-5)
    assert (ids[:, :kk] == want).all()
    assert (ids[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()
    assert sum(done) == m and max(done) <= block  # progress per block of queries


def test_union_find_keeps_the_smaller_root():
    sets = UnionFind(6)
    assert sets.union(4, 2) == 2 and sets.union(5, 4) == 2 and sets.union(1, 3) == 1
    assert sets.find(5) == 2 and sets.find(3) == 1
    assert sets.union(3, 5) == 1
    assert sets.roots().tolist() == [0, 1, 1, 1, 1, 1]

"""Exact blockwise k-nearest-neighbour search by inner product, and the one union-find.

Vectors are unit norm everywhere in dupfinder, so inner product is cosine.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def exact_search(
    database: np.ndarray, queries: np.ndarray, k: int, block_size: int = 4096, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: scores (m, k) float32, best first, and row numbers (m, k)
    int64 into `database` (n, d); -inf / -1 past its end. Blockwise over the queries (FAISS's flat
    kernel), so memory stays at block_size * k results."""
    import faiss

    database = np.ascontiguousarray(database, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    m, kk = len(queries), min(k, len(database))
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    for start in range(0, m, block_size):
        block = queries[start : start + block_size]
        if kk:
            s, i = faiss.knn(block, database, kk, metric=faiss.METRIC_INNER_PRODUCT)  # (b, kk), (b, kk)
            scores[start : start + len(block), :kk], ids[start : start + len(block), :kk] = s, i
        if progress is not None:
            progress(len(block))
    return scores, ids


class UnionFind:
    """Disjoint sets over 0..n-1 with path compression; `union` keeps the smaller root."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            ra, rb = min(ra, rb), max(ra, rb)
            self.parent[rb] = ra
        return ra

    def roots(self) -> np.ndarray:
        return np.fromiter((self.find(i) for i in range(len(self.parent))), dtype=np.int64, count=len(self.parent))

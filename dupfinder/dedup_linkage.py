"""Clusters over dedup's candidate edges, by linkage: complete (two clusters merge only when every
question of one is a duplicate of every question of the other, so a cluster's questions are
pairwise duplicates by the verdict in force), the guard (a star around each canonical) or single.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dupfinder.knn import UnionFind

# FAISS and numpy sum float32 products in different orders; an edge found at exactly tau must not
# then fail the guard's re-check by one ulp
CHECK_TOLERANCE = 1e-5


PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # rows u (m,), rows v (m,) -> scores (m,)


@dataclass
class Clusters:
    """Clusters of n distinct vectors: each one's canonical (an index into the vectors) and its cosine with it."""

    canonical: np.ndarray  # (n,) int64
    score: np.ndarray  # (n,) float32
    edges: int  # candidate edges at or above tau
    merges_refused: int  # merges the linkage refused (0 for single)


class PairScores:
    """The score of any pair of vectors, each pair scored at most once: the candidate edges' scores
    are known; other pairs below the cosine `floor` are not duplicates (score 0) without asking the
    scorer, and the rest are scored in one call per question and remembered."""

    def __init__(self, x: np.ndarray, a: np.ndarray, b: np.ndarray, s: np.ndarray, floor: float,
                 scorer: PairScorer | None = None):
        self.x, self.floor, self.scorer = x, floor, scorer
        self.n = len(x)
        keys = np.minimum(a, b).astype(np.int64) * self.n + np.maximum(a, b)
        order = np.argsort(keys, kind="stable")
        self.keys, self.known = keys[order], np.asarray(s, np.float32)[order]
        self.extra: dict[int, float] = {}  # pairs scored here
        self.scored = 0

    def matrix(self, rows_a: list[int], rows_b: list[int], tau: float) -> np.ndarray | None:
        """Scores (|A|, |B|) of every cross pair, or None as soon as one is known to be below tau."""
        x = self.x
        cos = x[rows_a] @ x[rows_b].T  # (|A|, |B|)
        if (cos < self.floor - CHECK_TOLERANCE).any():
            return None
        if self.scorer is None:  # the cosine rule: the score is the cosine
            return cos
        ia, ib = np.meshgrid(np.asarray(rows_a, np.int64), np.asarray(rows_b, np.int64), indexing="ij")
        keys = (np.minimum(ia, ib) * self.n + np.maximum(ia, ib)).ravel()  # (|A| |B|,)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1) if len(self.keys) else np.zeros(len(keys), np.int64)
        found = self.keys[at] == keys if len(self.keys) else np.zeros(len(keys), bool)
        out = np.where(found, self.known[at] if len(self.keys) else 0.0, np.nan).astype(np.float32)
        for i in np.flatnonzero(~found).tolist():
            out[i] = self.extra.get(int(keys[i]), np.nan)
        if (out < tau - CHECK_TOLERANCE).any():  # a known non-duplicate: nothing to score
            return None
        todo = np.flatnonzero(np.isnan(out))
        if len(todo):
            u, v = keys[todo] // self.n, keys[todo] % self.n
            p = np.asarray(self.scorer(u, v), np.float32)  # (t,)
            out[todo] = p
            self.extra.update(zip(keys[todo].tolist(), p.tolist()))
            self.scored += len(todo)
        return out.reshape(cos.shape)


Accept = Callable[[int, list[int], list[int]], bool]  # (canonical, its cluster's members, the joining ones) -> merge?


def merge_strongest_first(
    n: int,
    a: np.ndarray,
    b: np.ndarray,
    s: np.ndarray,
    tau: float,
    weight: np.ndarray | None = None,
    first_row: np.ndarray | None = None,
    accept: Accept | None = None,
) -> tuple[np.ndarray, int, int]:
    """Union-find over the edges at or above tau, strongest first; `accept` decides each merge of
    two clusters (None: every one, plain union-find). The cluster with more rows (`weight`; ties:
    the earlier `first_row`) keeps its canonical, which is its root. Returns (canonical (n,) int64,
    edges at or above tau, merges refused)."""
    keep = s >= tau
    a, b, s = a[keep], b[keep], s[keep]
    order = np.lexsort((b, a, -s))  # strongest first; ties in a fixed order
    sets = UnionFind(n)
    parent, find = sets.parent, sets.find
    size = (np.ones(n, np.int64) if weight is None else np.asarray(weight)).tolist()
    first = (np.arange(n) if first_row is None else np.asarray(first_row)).tolist()
    members: dict[int, list[int]] = {}  # root -> its vectors, for roots of more than one vector
    refused = 0
    # clusters only grow, so two roots with the same member counts are the same two clusters: a
    # refused merge is refused again without asking `accept`
    refused_before: set[tuple[int, int, int, int]] = set()
    for start in range(0, len(order), 1 << 16):  # in chunks: a Python list of every edge is large
        chunk = order[start : start + (1 << 16)]
        for i, j in zip(a[chunk].tolist(), b[chunk].tolist()):
            ri, rj = find(i), find(j)
            if ri == rj:
                continue
            # ri keeps its canonical (a root is its cluster's canonical), rj joins it
            if (size[rj], -first[rj]) > (size[ri], -first[ri]):
                ri, rj = rj, ri
            mi, mj = members.get(ri, [ri]), members.get(rj, [rj])
            if accept is not None:
                key = (ri, rj, len(mi), len(mj))
                if key in refused_before:
                    refused += 1
                    continue
                if not accept(ri, mi, mj):
                    refused += 1
                    refused_before.add(key)
                    continue
            parent[rj] = ri
            size[ri] += size[rj]
            members[ri] = mi + mj
            members.pop(rj, None)
    canonical = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    return canonical, len(a), refused


def complete_linkage(
    x: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    s: np.ndarray,
    tau: float,
    weight: np.ndarray | None = None,
    first_row: np.ndarray | None = None,
    scorer: PairScorer | None = None,
    floor: float | None = None,
) -> tuple[np.ndarray, int, int]:
    """Edges at or above tau, strongest first; two clusters merge only if every cross pair reaches tau.

    `s` holds the edges' scores (cosines, or a verdict stage's probabilities with `scorer` to score
    the other cross pairs on the same scale and `floor` the cosine below which a pair is no
    duplicate). Canonicals as in `merge_strongest_first`.
    """
    scores = PairScores(x, a, b, s, tau if floor is None else floor, scorer)

    def accept(ri: int, mi: list[int], mj: list[int]) -> bool:
        if len(mi) * len(mj) == 1:  # a single pair is this edge, at or above tau
            return True
        m = scores.matrix(mi, mj, tau)
        return m is not None and not (m < tau - CHECK_TOLERANCE).any()

    return merge_strongest_first(len(x), a, b, s, tau, weight, first_row, accept)


def cluster_edges(
    x: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    s: np.ndarray,
    tau: float,
    guard: bool = True,
    weight: np.ndarray | None = None,
    first_row: np.ndarray | None = None,
    judge: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> Clusters:
    """Union-find over the edges at or above tau, strongest first, with the anti-chaining guard
    (every member of a joining cluster reaches tau with the other's canonical; `guard=False`: plain
    union-find). Canonicals as in `merge_strongest_first`. `judge(members, canonical)` scores
    members against a canonical on the scale of `s` and tau (default: their cosines; a verdict
    head's probabilities when the edges carry them).
    """
    floor = tau - CHECK_TOLERANCE

    def accept(ri: int, mi: list[int], mj: list[int]) -> bool:
        joining = np.array(mj)
        if judge is None:
            return bool((x[joining] @ x[ri] >= floor).all())  # (m,)
        return bool((judge(joining, ri) >= floor).all())

    return with_scores(x, *merge_strongest_first(len(x), a, b, s, tau, weight, first_row, accept if guard else None))


def with_scores(x: np.ndarray, canonical: np.ndarray, edges: int, refused: int) -> Clusters:
    """Clusters with each vector's cosine with its canonical."""
    n = len(x)
    score = np.empty(n, dtype=np.float32)
    for start in range(0, n, 65536):  # chunked: the gathered canonicals are an (n, d) copy otherwise
        sl = slice(start, start + 65536)
        score[sl] = np.einsum("ij,ij->i", x[sl], x[canonical[sl]])
    score[canonical == np.arange(n)] = 1.0
    return Clusters(canonical, score, edges, refused)


LINKAGES = ("complete", "guard", "single")


def cluster(x: np.ndarray, a: np.ndarray, b: np.ndarray, s: np.ndarray, tau: float, linkage: str = "complete",
            weight: np.ndarray | None = None, first_row: np.ndarray | None = None, scorer: PairScorer | None = None,
            floor: float | None = None) -> Clusters:
    """Clusters over edges (a, b, s) at or above tau by `linkage`. `scorer(u, v)` scores pairs of
    vectors on the scale of `s` and tau (default: their cosines; a verdict stage's probabilities
    when the edges carry them), `floor` is the cosine below which a pair is no duplicate without
    asking it."""
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, not {linkage!r}")
    if linkage == "complete":
        return with_scores(x, *complete_linkage(x, a, b, s, tau, weight, first_row, scorer, floor))
    judge = None
    if scorer is not None:
        floor = tau if floor is None else floor

        def judge(members: np.ndarray, canonical: int) -> np.ndarray:
            # below the cosine floor a pair is no candidate, as for the edges: one such member
            # refuses the merge without asking the verdict (the guard's calls were most of dedup's time)
            if not (x[members] @ x[canonical] >= floor).all():  # (m,)
                return np.zeros(len(members), np.float32)
            return scorer(members, np.full(len(members), canonical))
    return cluster_edges(x, a, b, s, tau, linkage == "guard", weight, first_row, judge)

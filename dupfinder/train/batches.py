"""Batches for training: cluster-aware splits, hard negatives, and the pair-batch generator that
never puts two pairs of one duplicate cluster in a batch."""

from __future__ import annotations

from collections import Counter

import numpy as np

from dupfinder.io import Pairs


class HardNegatives:
    """Questions labeled as not duplicates of a duplicate cluster, to serve as its hard negatives.

    A row "x is not a duplicate of y" holds for every member of x's cluster (x' = x and x != y, so
    x' != y), so the partners are pooled per cluster. Rows inside one cluster contradict the
    clusters and are left out.
    """

    def __init__(self, pairs: Pairs, clusters: dict[int, int]):
        partners: dict[int, list[int]] = {}
        neg = pairs.label == 0
        for a, b in zip(pairs.qid1[neg].tolist(), pairs.qid2[neg].tolist()):
            ca, cb = clusters[a], clusters[b]
            if ca != cb:
                partners.setdefault(ca, []).append(b)
                partners.setdefault(cb, []).append(a)
        self.of_cluster = {c: np.unique(np.asarray(qs, dtype=np.int64)) for c, qs in partners.items()}

    def sample(self, anchor_clusters: list[int], rng: np.random.Generator) -> np.ndarray:
        """One random hard negative (a question id) per anchor cluster that has any."""
        out = [qs[rng.integers(len(qs))] for qs in map(self.of_cluster.get, anchor_clusters) if qs is not None]
        return np.asarray(out, dtype=np.int64)


def split_by_cluster(
    pairs: Pairs, clusters: dict[int, int], val_fraction: float, seed: int, max_cluster: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation pair indices such that no question (nor its cluster) is on both sides.

    Seed pairs are drawn at random and both their clusters go to validation until about
    `val_fraction` of the pairs are in it; pairs that straddle the two sides are dropped. Drawing
    pairs (not single clusters) keeps labeled non-duplicates in the validation split; clusters of
    more than `max_cluster` questions stay in training, or a few of them would fill the split.
    """
    rng = np.random.default_rng(seed)
    c1 = np.fromiter((clusters[q] for q in pairs.qid1.tolist()), dtype=np.int64, count=len(pairs))
    c2 = np.fromiter((clusters[q] for q in pairs.qid2.tolist()), dtype=np.int64, count=len(pairs))
    sizes = Counter(clusters.values())
    small = np.fromiter((sizes[a] <= max_cluster and sizes[b] <= max_cluster for a, b in zip(c1.tolist(), c2.tolist())), dtype=bool, count=len(pairs))
    target = int(round(val_fraction * len(pairs)))
    seeds = rng.permutation(np.flatnonzero(small))
    step = max(1, target // 20)
    in_val = np.zeros(len(pairs), dtype=bool)
    val_clusters = np.zeros(0, dtype=np.int64)
    for pos in range(0, len(seeds), step):
        if in_val.sum() >= target:
            break
        chunk = seeds[pos : pos + step]
        val_clusters = np.union1d(val_clusters, np.r_[c1[chunk], c2[chunk]])
        in_val = np.isin(c1, val_clusters) & np.isin(c2, val_clusters)
    straddle = np.isin(c1, val_clusters) ^ np.isin(c2, val_clusters)
    return np.flatnonzero(~in_val & ~straddle), np.flatnonzero(in_val)


class PairBatcher:
    """Batches of duplicate pairs in which no two pairs share a duplicate cluster.

    Every off-diagonal entry of S = V1 V2^T is then a true negative. The order is reshuffled each
    epoch and is a pure function of (seed, epoch), so a resumed run sees the same batches.
    """

    def __init__(self, cluster_of_pair: np.ndarray, batch_size: int, seed: int):
        if batch_size < 2:
            raise ValueError("batch_size must be at least 2: the other pairs of a batch are the negatives")
        self.cluster = np.asarray(cluster_of_pair, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of pair indices) of one epoch; the last incomplete batch is dropped."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.cluster)
        perm = rng.permutation(n)
        # each cluster's pairs are spread evenly over the epoch: the r-th of a cluster of n pairs
        # lands at a random point of the r-th n-th of the epoch, so big clusters rarely collide
        clusters = self.cluster[perm]
        by_cluster = np.argsort(clusters, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[by_cluster] = np.arange(n) - _group_starts(clusters[by_cluster])
        _, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
        order = perm[np.argsort((rank + rng.random(n)) / counts[inverse], kind="stable")]

        batches: list[np.ndarray] = []
        current: list[int] = []
        seen: set[int] = set()
        waiting: list[int] = []
        for i in order.tolist():
            c = int(self.cluster[i])
            if c in seen:
                waiting.append(i)
                continue
            current.append(i)
            seen.add(c)
            if len(current) == self.batch_size:
                batches.append(np.asarray(current, dtype=np.int64))
                current, seen = [], set()
                still = []
                for j in waiting:  # pairs deferred from the full batch start the next one
                    cj = int(self.cluster[j])
                    if cj in seen or len(current) == self.batch_size:
                        still.append(j)
                    else:
                        current.append(j)
                        seen.add(cj)
                waiting = still
        return batches


def _group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """For a sorted array of group labels, the index at which each element's group starts."""
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    return np.repeat(starts, np.diff(np.r_[starts, len(sorted_groups)]))

"""Batches for training: duplicate clusters, cluster-aware splits, implied positives, hard
negatives, overlap weights and the pair-batch generator that never puts two pairs of one
duplicate cluster in a batch."""

from __future__ import annotations

from collections import Counter

import numpy as np

from dupfinder.io import Pairs

def cluster_positives(pairs: Pairs, clusters: dict[int, int], seed: int, per_labeled: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Unlabeled duplicate pairs implied by the clusters: (qid1, qid2) arrays.

    If a = b and b = c are labeled, a = c is a duplicate too, but no row says so. Each cluster of
    three or more questions contributes up to `per_labeled` x its labeled duplicate pairs of these
    implied pairs, drawn at random (deterministic for `seed`), so a big cluster cannot crowd out
    the small ones.
    """
    dup = pairs.label == 1
    members: dict[int, set[int]] = {}
    labeled: dict[int, set[tuple[int, int]]] = {}
    for a, b in zip(pairs.qid1[dup].tolist(), pairs.qid2[dup].tolist()):
        c = clusters[a]
        members.setdefault(c, set()).update((a, b))
        labeled.setdefault(c, set()).add((min(a, b), max(a, b)))
    rng = np.random.default_rng([seed, 7])
    out1: list[int] = []
    out2: list[int] = []
    for c in sorted(members):
        qs = sorted(members[c])
        n, seen = len(qs), labeled[c]
        if n < 3 or len(seen) == n * (n - 1) // 2:
            continue
        want = min(int(round(per_labeled * len(seen))), n * (n - 1) // 2 - len(seen))
        i, j = np.triu_indices(n, 1)
        keep = [k for k in rng.permutation(len(i)).tolist() if (qs[i[k]], qs[j[k]]) not in seen][:want]
        out1 += [qs[i[k]] for k in keep]
        out2 += [qs[j[k]] for k in keep]
    return np.asarray(out1, dtype=np.int64), np.asarray(out2, dtype=np.int64)


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


class OverlapBias:
    """How often a pairs file calls a pair a duplicate, given only how many words its questions share.

    Quora's labels lean on word overlap: of the training pairs whose questions share under 10% of
    their words (Jaccard), 1.4% are duplicates; of those sharing half, 56%. An encoder can learn
    that shortcut and call "Where are you from?" / "Where are you going?" (overlap 0.6) a duplicate
    and "How old are you?" / "What is your age?" (overlap 0) not. Example reweighting against a
    known bias counters it: a labeled pair weighs 1 - P(its label | its overlap), so the pairs the
    shortcut gets wrong (duplicates in other words, non-duplicates in the same words) count most.

    P(duplicate | overlap) is counted in `bins` equal bins of Jaccard overlap over word tokens
    (punctuation and unknown words left out), with add-one smoothing. Weights are scaled to average
    1 over each label's pairs, so the loss keeps its scale; `strength` s blends them with 1.
    """

    def __init__(self, pairs: Pairs, tokens: dict[int, np.ndarray], is_word: np.ndarray, bins: int = 10):
        self.tokens, self.is_word, self.bins = tokens, is_word, bins
        at = self.bin_of(pairs.qid1, pairs.qid2)
        dup = pairs.label == 1
        counts = np.bincount(at, minlength=bins)
        self.p_duplicate = (np.bincount(at[dup], minlength=bins) + 1) / (counts + 2)  # (bins,)
        self.mean_dup = float((1 - self.p_duplicate[at[dup]]).mean()) if dup.any() else 1.0
        self.mean_neg = float(self.p_duplicate[at[~dup]].mean()) if (~dup).any() else 1.0

    def overlap(self, qid1: np.ndarray, qid2: np.ndarray) -> np.ndarray:
        """Jaccard overlap of the two questions' word sets, per pair; 0 where neither has a word."""
        out = np.zeros(len(qid1))
        for i, (a, b) in enumerate(zip(qid1.tolist(), qid2.tolist())):
            ta, tb = self.tokens[a], self.tokens[b]
            wa, wb = set(ta[self.is_word[ta]].tolist()), set(tb[self.is_word[tb]].tolist())
            union = len(wa | wb)
            out[i] = len(wa & wb) / union if union else 0.0
        return out

    def bin_of(self, qid1: np.ndarray, qid2: np.ndarray) -> np.ndarray:
        return np.minimum((self.overlap(qid1, qid2) * self.bins).astype(np.int64), self.bins - 1)

    def weights(self, qid1: np.ndarray, qid2: np.ndarray, duplicate: bool, strength: float = 1.0) -> np.ndarray:
        """Per-pair weights (n,) float32 for pairs all labeled `duplicate` (True) or not (False)."""
        p = self.p_duplicate[self.bin_of(qid1, qid2)]
        w = (1 - p) / self.mean_dup if duplicate else p / self.mean_neg
        return ((1 - strength) + strength * w).astype(np.float32)

    def table(self) -> str:
        cells = ", ".join(f"{i / self.bins:.1f}+: {p:.3f}" for i, p in enumerate(self.p_duplicate))
        return f"duplicate rate by word overlap: {cells}"


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

"""Training batches (`dupfinder.train.batches`): the validation split by cluster, batches that never
hold one cluster twice, and labeled non-duplicates pooled per cluster."""

import numpy as np
import pytest

from dupfinder.io import Pairs, ReadReport, duplicate_clusters
from dupfinder.train.batches import HardNegatives, PairBatcher, split_by_cluster


def test_split_by_cluster_never_shares_a_question_or_cluster():
    rng = np.random.default_rng(0)
    # a synthetic pairs set: 300 clusters of 1-4 questions, duplicates within, non-duplicates across
    cluster_sizes = rng.integers(1, 5, size=300)
    qids, cl = [], []
    for c, n in enumerate(cluster_sizes):
        for _ in range(n):
            qids.append(len(qids))
            cl.append(c)
    cl = np.array(cl)
    q1, q2, lab = [], [], []
    for c in range(300):
        members = np.flatnonzero(cl == c)
        for a, b in zip(members[:-1], members[1:]):
            q1.append(a); q2.append(b); lab.append(1)
    for _ in range(500):
        a, b = rng.integers(0, len(qids), 2)
        if cl[a] != cl[b]:
            q1.append(a); q2.append(b); lab.append(0)
    pairs = Pairs(np.array(q1), np.array(q2), np.array(lab, dtype=np.int8), {q: f"q{q}" for q in qids}, ReadReport("x"))
    clusters = duplicate_clusters(pairs)
    train_idx, val_idx = split_by_cluster(pairs, clusters, 0.1, seed=0)
    assert len(val_idx) > 0 and (pairs.label[val_idx] == 0).any() and (pairs.label[val_idx] == 1).any()
    train_q = set(pairs.qid1[train_idx]) | set(pairs.qid2[train_idx])
    val_q = set(pairs.qid1[val_idx]) | set(pairs.qid2[val_idx])
    assert not train_q & val_q
    assert not {clusters[q] for q in train_q} & {clusters[q] for q in val_q}
    assert not set(train_idx) & set(val_idx)
    # deterministic for a seed
    again = split_by_cluster(pairs, clusters, 0.1, seed=0)
    assert np.array_equal(again[1], val_idx)


@pytest.mark.parametrize("batch_size", [2, 7, 32])
def test_batcher_never_puts_one_cluster_twice_in_a_batch(batch_size):
    rng = np.random.default_rng(1)
    # skewed cluster sizes: one huge cluster, a few mid, many singletons
    cluster = np.r_[np.zeros(60, int), np.repeat(np.arange(1, 11), 8), np.arange(11, 400)]
    rng.shuffle(cluster)
    b = PairBatcher(cluster, batch_size, seed=3)
    batches = b.epoch(0)
    assert batches and all(len(x) == batch_size for x in batches)
    for x in batches:
        assert len(set(cluster[x].tolist())) == batch_size
    used = np.concatenate(batches)
    assert len(set(used.tolist())) == len(used)  # no pair twice in an epoch
    # a cluster gives at most one pair per batch; beyond that only the last, incomplete batch is lost
    sizes = np.bincount(cluster)
    unavoidable = np.maximum(sizes - len(batches), 0).sum()
    assert len(cluster) - len(used) <= unavoidable + batch_size - 1
    # deterministic per (seed, epoch), reshuffled across epochs
    assert all(np.array_equal(p, q) for p, q in zip(b.epoch(0), PairBatcher(cluster, batch_size, seed=3).epoch(0)))
    assert not all(np.array_equal(p, q) for p, q in zip(b.epoch(0), b.epoch(1)))


def test_hard_negatives_are_pooled_per_cluster():
    # cluster A = {1, 2, 3}, cluster B = {10, 11}; labeled non-duplicates 1-10 and 3-30, and 2-3,
    # which contradicts cluster A and is left out
    q1 = np.array([1, 2, 10, 1, 3, 2])
    q2 = np.array([2, 3, 11, 10, 30, 3])
    label = np.array([1, 1, 1, 0, 0, 0], dtype=np.int8)
    questions = {q: f"question {q}" for q in np.r_[q1, q2].tolist()}
    pairs = Pairs(q1, q2, label, questions, ReadReport("test"))
    clusters = duplicate_clusters(pairs)
    hard = HardNegatives(pairs, clusters)
    a, b, lone = clusters[1], clusters[10], clusters[30]
    assert hard.of_cluster[a].tolist() == [10, 30]  # 1 != 10 and 3 != 30 hold for all of A
    assert hard.of_cluster[b].tolist() == [1]
    assert hard.of_cluster[lone].tolist() == [3]
    rng = np.random.default_rng(0)
    got = hard.sample([a, b, clusters[11], 999], rng)  # 999 has none: no entry for it
    assert len(got) == 3 and got[0] in (10, 30) and got[1] == 1 and got[2] == 1


def test_batcher_refuses_batch_of_one():
    with pytest.raises(ValueError):
        PairBatcher(np.arange(5), 1, seed=0)

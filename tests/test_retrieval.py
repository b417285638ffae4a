import math

import numpy as np
import pytest

from dupfinder.io import load_pairs
from dupfinder.evaluation.retrieval import (
    build_benchmark,
    drop_self,
    evaluate_encoder,
    evaluate_ranker,
    evaluate_top,
    evaluate_vectors,
    pair_scores,
)

# dev clusters: {1, 2, 3} and {6, 7}; 4 and 5 are a labeled non-duplicate
DEV = """id,qid1,qid2,question1,question2,is_duplicate
1,1,2,How old are you?,What is your age?,1
2,2,3,What is your age?,How many years old are you?,1
3,4,5,Where are you from?,Where do you live?,0
4,6,7,How do I learn Python?,What is the best way to learn Python?,1
"""

# 8 joins the dev cluster {6, 7}; 15 links dev questions 3 and 5, so 5 becomes a duplicate of 1, 2, 3;
# 13 has the text of dev question 4; 9..12, 14, 16 are free to be distractors; 2 occurs in training
TRAIN = """id,qid1,qid2,question1,question2,is_duplicate
10,7,8,What is the best way to learn Python?,How can I learn Python fast?,1
11,9,10,Why is the sky blue?,What makes the sky blue?,1
12,11,12,How do I cook rice?,How do I bake bread?,0
13,13,14,where are you  FROM?,Where are you going?,0
14,3,15,How many years old are you?,What's your age in years?,1
15,15,5,What's your age in years?,Where do you live?,1
16,2,16,What is your age?,What is your name?,0
"""


def flat(metrics):
    """Top-level, unseen- and seen-subset metrics in one flat dict (pytest.approx takes no nesting)."""
    out = {k: v for k, v in metrics.items() if k not in ("unseen", "seen")}
    for part in ("unseen", "seen"):
        out.update({f"{part} {k}": v for k, v in metrics.get(part, {}).items()})
    return out


@pytest.fixture
def dev(tmp_path):
    path = tmp_path / "dev.csv"
    path.write_text(DEV)
    return load_pairs(path)


@pytest.fixture
def train(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(TRAIN)
    return load_pairs(path)


def test_queries_corpus_and_relevance_sets(dev, train):
    bench = build_benchmark(dev, train, n_distractors=100)
    # every dev question, sorted by qid, then the distractors
    assert bench.corpus_qids[: bench.n_dev].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert bench.corpus_qids[bench.n_dev :].tolist() == [9, 10, 11, 12, 14, 16]
    assert bench.corpus[0] == "How old are you?"
    # queries: question1 of each duplicate dev pair, once each (qids 1, 2, 6 -> rows 0, 1, 5)
    assert bench.queries.tolist() == [0, 1, 5]
    # relevant: the cluster minus the query itself; 5 is linked to 1-3 through training pairs
    assert [r.tolist() for r in bench.relevant] == [[1, 2, 4], [0, 2, 4], [6]]
    assert bench.n_relevant.tolist() == [3, 3, 1]
    assert bench.unseen.tolist() == [True, False, True]


def test_distractors_exclude_dev_clusters_and_dev_texts(dev, train):
    bench = build_benchmark(dev, train, n_distractors=100)
    distractors = set(bench.corpus_qids[bench.n_dev :].tolist())
    assert not distractors & {8, 15}  # share a cluster with dev questions
    assert 13 not in distractors  # same normalized text as dev question 4
    assert bench.excluded == {"shares a cluster with a dev question": 2, "same text as a dev question": 1}
    assert bench.summary()["distractors"] == 6


def test_distractor_sample_is_seeded_and_sized(dev, train):
    a = build_benchmark(dev, train, n_distractors=3, seed=7)
    b = build_benchmark(dev, train, n_distractors=3, seed=7)
    assert a.n_distractors == 3
    assert a.corpus_qids.tolist() == b.corpus_qids.tolist()
    assert set(a.corpus_qids[a.n_dev :].tolist()) <= {9, 10, 11, 12, 14, 16}
    assert len(set(a.corpus_qids.tolist())) == len(a.corpus_qids)


def test_without_training_file(dev):
    bench = build_benchmark(dev, None, n_distractors=0)
    assert bench.n_distractors == 0 and bench.unseen is None
    # without the training pairs, 5 is no duplicate of 1-3
    assert [r.tolist() for r in bench.relevant] == [[1, 2], [0, 2], [6]]
    with pytest.raises(ValueError, match="training file"):
        build_benchmark(dev, None, n_distractors=5)


def test_drop_self():
    top = np.array([[0, 3, 1, 2], [2, 6, 0, 4], [6, 5, -1, -1]])
    queries = np.array([0, 1, 5])
    # the query is skipped wherever it is; a row without it keeps its first k
    assert drop_self(top, queries, 3).tolist() == [[3, 1, 2], [2, 6, 0], [6, -1, -1]]
    # fewer results than k pad with -1, and the query itself never counts
    assert drop_self(np.array([[0, 4]]), np.array([0]), 3).tolist() == [[4, -1, -1]]


def test_ranking_metrics_by_hand(dev, train):
    bench = build_benchmark(dev, train, n_distractors=100)
    top = np.array([[0, 3, 1, 2], [2, 1, 6, 0], [6, 5, 0, 1]])
    # after skipping the query: relevance [0,1,1] of 3, [1,0,1] of 3, [1,0,0] of 1
    m = evaluate_top(bench, top, k=3)
    d = [1 / math.log2(i + 2) for i in range(3)]
    assert m["queries"] == 3
    assert m["p@1"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["mrr@3"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    ideal3 = sum(d)
    assert m["ndcg@3"] == pytest.approx(((d[1] + d[2]) / ideal3 + (d[0] + d[2]) / ideal3 + 1.0) / 3)
    # the unseen subset: queries 0 and 2
    assert m["unseen"]["queries"] == 2
    assert m["unseen"]["p@1"] == pytest.approx(1 / 2)
    # and the seen one: query 1, relevance [1,0,1] of 3
    assert m["seen"]["queries"] == 1
    assert m["seen"]["ndcg@3"] == pytest.approx((d[0] + d[2]) / ideal3)


def test_vectors_ranker_and_encoder_agree_with_brute_force(dev, train):
    bench = build_benchmark(dev, train, n_distractors=100)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(bench.corpus), 5)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    brute = np.argsort(-(vectors[bench.queries] @ vectors.T), axis=1, kind="stable")[:, :11]
    expected = flat(evaluate_top(bench, brute, k=10))
    assert flat(evaluate_vectors(bench, vectors, k=10)) == pytest.approx(expected)

    def rank(query_rows, n):
        return brute[:, :n]

    assert flat(evaluate_ranker(bench, rank, k=10)) == pytest.approx(expected)
    lookup = dict(zip(bench.corpus, vectors))
    metrics, got = evaluate_encoder(bench, lambda texts: np.stack([lookup[t] for t in texts]), k=10)
    assert flat(metrics) == pytest.approx(expected)
    np.testing.assert_array_equal(got, vectors)


def test_perfect_encoder_scores_one(dev, train):
    bench = build_benchmark(dev, train, n_distractors=100)
    # one axis per cluster: duplicates are identical vectors, everything else orthogonal
    from dupfinder.io import duplicate_clusters
    from dupfinder.evaluation.retrieval import merge_pairs

    clusters = duplicate_clusters(merge_pairs(dev, train))
    ids = sorted(set(clusters[q] for q in bench.corpus_qids.tolist()))
    vectors = np.zeros((len(bench.corpus), len(ids)), dtype=np.float32)
    for row, q in enumerate(bench.corpus_qids.tolist()):
        vectors[row, ids.index(clusters[q])] = 1.0
    m = evaluate_vectors(bench, vectors, k=10)
    assert (m["p@1"], m["recall@10"], m["mrr@10"], m["ndcg@10"]) == pytest.approx((1.0, 1.0, 1.0, 1.0))


def test_pair_scores_from_corpus_vectors(dev, tiny_model):
    from dupfinder import load_model
    from dupfinder.evaluation.pairs import score_pairs

    bench = build_benchmark(dev, None, n_distractors=0)
    encoder = load_model(tiny_model)
    metrics, vectors = evaluate_encoder(bench, encoder.encode)
    assert 0.0 <= metrics["ndcg@10"] <= 1.0
    np.testing.assert_allclose(pair_scores(bench, vectors, dev), score_pairs(encoder, dev), atol=1e-5)


def test_tfidf_baseline_matches_brute_force(dev, train):
    pytest.importorskip("sklearn")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from baselines import Tfidf

    bench = build_benchmark(dev, train, n_distractors=100)
    tfidf = Tfidf()
    tfidf.fit(bench.corpus)
    dense = tfidf.matrix.toarray()
    cosine = dense[bench.queries] @ dense.T  # (q, n)
    top = tfidf.rank(bench.queries, 5)
    # the same scores in the same order as brute force (ids may differ only among ties)
    np.testing.assert_allclose(np.take_along_axis(cosine, top, 1), -np.sort(-cosine, axis=1)[:, :5], atol=1e-6)
    assert (top[:, 0] == bench.queries).all()  # each query is its own best match
    a, b = tfidf.pair_scores(np.array([0, 1]), np.array([1, 5])), cosine[[0, 1], [1, 5]]
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(dense[[0]] @ dense.T, tfidf.query(bench.corpus[0], 5)[None], 1),
                               -np.sort(-(dense[[0]] @ dense.T), axis=1)[:, :5], atol=1e-6)

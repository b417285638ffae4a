import numpy as np
import pytest

from dupfinder.evaluation.calibrate import calibrate
from dupfinder.evaluation.metrics import pair_metrics, ranking_metrics, roc_auc, threshold_sweep


def test_roc_auc_matches_all_pairs_count_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) + labels, 1)  # many ties
    pos, neg = scores[labels], scores[~labels]
    brute = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert roc_auc(scores, labels) == pytest.approx(brute)


def test_sweep_agrees_with_pair_metrics_at_every_cut():
    rng = np.random.default_rng(1)
    labels = rng.random(200) < 0.5
    scores = np.round(rng.normal(size=200) + labels, 2)
    sweep = threshold_sweep(scores, labels)
    for i, t in enumerate(sweep["threshold"]):
        m = pair_metrics(scores, labels, t)
        assert m["accuracy"] == pytest.approx(sweep["accuracy"][i])
        assert m["recall"] == pytest.approx(sweep["recall"][i])


def test_calibrate_balanced_and_precision_target():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    cal = calibrate(scores, labels, target_precision=1.0)
    assert pair_metrics(scores, labels, cal["threshold"])["accuracy"] == pytest.approx(5 / 6)
    # precision 1.0 is reached down to 0.8 (two duplicates, no false one)
    assert 0.7 < cal["threshold_at_precision"] < 0.8


def test_unreachable_precision_gives_none():
    scores = np.array([0.9, 0.8])
    labels = np.array([0, 1])
    assert calibrate(scores, labels, target_precision=0.9)["threshold_at_precision"] is None


def test_ranking_metrics_by_hand():
    rel = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    m = ranking_metrics(rel, np.array([1, 2, 1]), k=3)
    assert m["p@1"] == pytest.approx(1 / 3)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["recall@3"] == pytest.approx((1 + 0.5 + 0) / 3)
    ndcg2 = (1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["ndcg@3"] == pytest.approx((1 + ndcg2 + 0) / 3)

"""Pair metrics at a threshold, the threshold sweep that calibration reads, and ranking metrics for retrieval."""

from __future__ import annotations

import numpy as np

from dupfinder.verdict import is_duplicate


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) within each run of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pair_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC and the confusion matrix of the verdicts at `threshold`."""
    labels = np.asarray(labels).astype(bool)
    pred = is_duplicate(np.asarray(scores), threshold)
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pairs": len(labels),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / len(labels) if len(labels) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(scores, labels),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def threshold_sweep(scores: np.ndarray, labels: np.ndarray, balanced: bool = False) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall and F1 of `score > t` for every useful cut t, in one sort.

    With `balanced`, the two classes weigh the same (accuracy is then balanced accuracy), so the
    cut does not depend on the share of duplicates in the split it is chosen on.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    w_pos = 1.0 / max(1, y.sum()) if balanced else 1.0
    w_neg = 1.0 / max(1, (~y).sum()) if balanced else 1.0
    # cut after each run of tied scores: predicted positive = the first k items
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1 - tp).astype(np.float64)
    pos, neg = float(y.sum()), float((~y).sum())
    # the threshold of a cut lies halfway to the next lower score, so `score > t` keeps exactly k
    nxt = np.r_[s[last[:-1] + 1], s[-1] - 1e-3]
    thresholds = (s[last] + nxt) / 2
    # also the cut that predicts nothing positive
    thresholds = np.r_[s[0] + 1e-3, thresholds]
    tp, fp = np.r_[0.0, tp], np.r_[0.0, fp]
    accuracy = (w_pos * tp + w_neg * (neg - fp)) / (w_pos * pos + w_neg * neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = tp / pos if pos else np.zeros_like(tp)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"threshold": thresholds, "accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def ranking_metrics(ranked_relevance: np.ndarray, n_relevant: np.ndarray, k: int = 10) -> dict:
    """P@1, Recall@k, MRR@k and nDCG@k from a (queries, >=k) 0/1 matrix of ranked hits."""
    rel = np.asarray(ranked_relevance, dtype=np.float64)[:, :k]
    n_rel = np.maximum(np.asarray(n_relevant, dtype=np.float64), 1)
    first = np.where(rel.any(1), rel.argmax(1), -1)
    mrr = np.where(first >= 0, 1.0 / np.maximum(first + 1, 1), 0.0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (rel * discounts).sum(1)
    ideal = np.array([discounts[: int(min(n, k))].sum() for n in n_rel])
    return {
        "queries": len(rel),
        "p@1": float(rel[:, 0].mean()),
        f"recall@{k}": float((rel.sum(1) / n_rel).mean()),
        f"mrr@{k}": float(mrr.mean()),
        f"ndcg@{k}": float((dcg / ideal).mean()),
    }

"""Scoring labeled pairs with an encoder, on all pairs and on the pairs unseen in a training file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dupfinder.io import PairColumns, Pairs, load_pairs
from dupfinder.model.encoder import Encoder
from dupfinder.evaluation.metrics import pair_metrics
from dupfinder.text import normalize


def score_pairs(encoder: Encoder, pairs: Pairs, batch_size: int = 512) -> np.ndarray:
    """Cosine of each pair; each distinct question is encoded once."""
    qids = np.unique(np.r_[pairs.qid1, pairs.qid2])
    vectors = encoder.encode([pairs.questions[q] for q in qids.tolist()], batch_size=batch_size)  # (u, d)
    row = {q: i for i, q in enumerate(qids.tolist())}
    a = vectors[[row[q] for q in pairs.qid1.tolist()]]
    b = vectors[[row[q] for q in pairs.qid2.tolist()]]
    return (a * b).sum(1)


def unseen_mask(pairs: Pairs, train_file: str | Path, columns: PairColumns | None = None) -> np.ndarray:
    """Pairs where neither question occurs in `train_file` (by qid or by normalized text)."""
    train = load_pairs(train_file, columns, need_label=False)
    seen_ids = set(train.questions)
    seen_text = {normalize(t) for t in train.questions.values()}

    def seen(q: int) -> bool:
        return q in seen_ids or normalize(pairs.questions[q]) in seen_text

    return np.array([not seen(a) and not seen(b) for a, b in zip(pairs.qid1.tolist(), pairs.qid2.tolist())], dtype=bool)


def evaluate_pairs(encoder: Encoder, pairs: Pairs, tau: float, unseen_from: str | Path | None = None,
                   columns: PairColumns | None = None, scores: np.ndarray | None = None) -> dict:
    """Pair metrics at `tau` of `scores` (default: the encoder's cosines), plus the pairs unseen in
    `unseen_from` when asked."""
    scores = score_pairs(encoder, pairs) if scores is None else scores
    result = pair_metrics(scores, pairs.label, tau)
    if unseen_from is not None:
        mask = unseen_mask(pairs, unseen_from, columns)
        result["unseen"] = pair_metrics(scores[mask], pairs.label[mask], tau) if mask.any() else None
    return result

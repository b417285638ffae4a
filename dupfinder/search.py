"""Querying an index: `Hit`, `query` (encode once, search, join SQLite rows), and the exact numpy
search that tests use as ground truth for FAISS."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .encode import Encoder
    from .index import QuestionIndex


@dataclass
class Hit:
    """One neighbour of a query: the user's id (or the internal id when it has none), its text,
    the cosine, and whether that is at or above tau."""

    id: str | int
    text: str
    score: float
    duplicate: bool

    def to_dict(self) -> dict:
        return asdict(self)


def exact_search(database: np.ndarray, queries: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k inner product: scores (m, k) float32 and row numbers (m, k) int64 into
    `database` (n, d), -1 past its end. Blockwise over queries, so memory is block * n floats."""
    n = len(database)
    m = len(queries)
    kk = min(k, n)
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    for start in range(0, m, block):
        sims = queries[start : start + block] @ database.T  # (b, n)
        if kk == 0:
            continue
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]  # (b, kk), unordered
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        scores[start : start + block, :kk] = np.take_along_axis(top_scores, order, axis=1)
        ids[start : start + block, :kk] = np.take_along_axis(top, order, axis=1)
    return scores, ids


def query(
    index: "QuestionIndex", encoder: "Encoder", texts: Sequence[str], k: int = 5, threshold: float | None = None,
    batch_size: int = 512,
) -> list[list[Hit]]:
    """The k nearest indexed questions of each text, best first; `duplicate` is score >= tau
    (the index's model's unless `threshold`).

    >>> query(QuestionIndex.open("indexes/default"), encoder, ["How old are you?"], k=3)[0][0]
    Hit(id='12', text='What is your age?', score=0.93, duplicate=True)
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    tau = encoder.threshold if threshold is None else threshold
    vectors = encoder.encode(list(texts), batch_size=batch_size)  # (n, d) unit rows
    scores, ids = index.search(vectors, k)  # (n, k), (n, k)
    rows = index.rows(ids.ravel().tolist())
    out: list[list[Hit]] = []
    for row_scores, row_ids in zip(scores.tolist(), ids.tolist()):
        hits = []
        for score, i in zip(row_scores, row_ids):
            row = rows.get(i)
            if row is None:  # -1: fewer than k questions indexed
                continue
            user_id = row["user_id"]
            hits.append(Hit(user_id if user_id is not None else i, row["text"], float(score), bool(score >= tau)))
        out.append(hits)
    return out

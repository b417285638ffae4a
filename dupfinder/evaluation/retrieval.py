"""The dev retrieval benchmark: queries, a corpus padded with distractors, relevance sets, and scoring
of any encoder (`encode(texts) -> unit vectors`) or ranker (`rank(query_rows, k) -> corpus rows`) on it.

Pure functions over `Pairs`, so the tests check them on tiny hand-made data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from dupfinder.io import Pairs, duplicate_clusters
from dupfinder.knn import exact_search
from dupfinder.evaluation.metrics import ranking_metrics
from dupfinder.text import normalize


@dataclass
class RetrievalBenchmark:
    """Queries are rows of the corpus: a query is searched against every other corpus question.

    The first `n_dev` corpus rows are the dev questions (sorted by qid), the rest are distractors.
    """

    corpus: list[str]  # question texts
    corpus_qids: np.ndarray  # (n,) int64
    n_dev: int
    queries: np.ndarray  # (q,) int64 corpus rows of the queries
    relevant: list[np.ndarray]  # per query, corpus rows of its duplicate cluster, the query excluded
    unseen: np.ndarray | None = None  # (q,) bool: the query's question is not in the training file
    excluded: dict = field(default_factory=dict)  # distractor candidates left out, by reason

    @property
    def n_distractors(self) -> int:
        return len(self.corpus) - self.n_dev

    @property
    def n_relevant(self) -> np.ndarray:
        return np.array([len(r) for r in self.relevant], dtype=np.int64)

    def query_texts(self) -> list[str]:
        return [self.corpus[i] for i in self.queries.tolist()]

    def summary(self) -> dict:
        n_rel = self.n_relevant
        return {
            "queries": len(self.queries),
            "unseen_queries": None if self.unseen is None else int(self.unseen.sum()),
            "corpus": len(self.corpus),
            "dev_questions": self.n_dev,
            "distractors": self.n_distractors,
            "relevant_per_query_mean": float(n_rel.mean()) if len(n_rel) else 0.0,
            "relevant_per_query_max": int(n_rel.max()) if len(n_rel) else 0,
            "excluded_distractor_candidates": dict(self.excluded),
        }


def merge_pairs(a: Pairs, b: Pairs) -> Pairs:
    """One `Pairs` holding the rows of both; a question's text comes from `a` where both have it."""
    return Pairs(
        np.r_[a.qid1, b.qid1], np.r_[a.qid2, b.qid2], np.r_[a.label, b.label],
        {**b.questions, **a.questions}, a.report,
    )


def build_benchmark(dev: Pairs, train: Pairs | None, n_distractors: int, seed: int = 0) -> RetrievalBenchmark:
    """Queries: the question1 of each duplicate dev pair (each question once). Corpus: every dev
    question plus `n_distractors` training questions drawn at random (seeded). Relevant: the rest of
    the query's duplicate cluster.

    Clusters are the connected components of the duplicate pairs of both files (qids are shared), so
    two dev questions linked only through training pairs still count as duplicates. A training
    question is never a distractor when it shares a cluster with a dev question, or when its
    normalized text equals a dev question's: it would be an unlabeled duplicate, a false miss.
    """
    clusters = duplicate_clusters(merge_pairs(dev, train) if train is not None else dev)
    dev_qids = np.unique(np.r_[dev.qid1, dev.qid2])
    dev_set = set(dev_qids.tolist())
    dev_clusters = {clusters[q] for q in dev_set}
    dev_texts = {normalize(dev.questions[q]) for q in dev_set}

    picked: list[int] = []
    excluded = {"shares a cluster with a dev question": 0, "same text as a dev question": 0}
    train_texts: set[str] = set()
    if train is not None:
        candidates = []
        for q in sorted(train.questions):
            norm = normalize(train.questions[q])
            train_texts.add(norm)
            if q in dev_set:
                continue
            if clusters[q] in dev_clusters:
                excluded["shares a cluster with a dev question"] += 1
            elif norm in dev_texts:
                excluded["same text as a dev question"] += 1
            else:
                candidates.append(q)
        n = min(n_distractors, len(candidates))
        if n:
            rng = np.random.default_rng(seed)
            picked = sorted(np.asarray(candidates, dtype=np.int64)[rng.choice(len(candidates), size=n, replace=False)].tolist())
    elif n_distractors:
        raise ValueError("distractors come from the training file; pass one or ask for 0 distractors")

    corpus_qids = np.r_[dev_qids, np.asarray(picked, dtype=np.int64)]
    texts = {**(train.questions if train is not None else {}), **dev.questions}
    corpus = [texts[q] for q in corpus_qids.tolist()]
    row_of = {q: i for i, q in enumerate(dev_qids.tolist())}

    members: dict[int, list[int]] = {}
    for q, row in row_of.items():
        members.setdefault(clusters[q], []).append(row)
    query_qids = np.unique(dev.qid1[dev.label == 1])
    queries = np.array([row_of[q] for q in query_qids.tolist()], dtype=np.int64)
    relevant = [
        np.array(sorted(r for r in members[clusters[q]] if r != row_of[q]), dtype=np.int64) for q in query_qids.tolist()
    ]
    unseen = None
    if train is not None:
        unseen = np.array(
            [q not in train.questions and normalize(dev.questions[q]) not in train_texts for q in query_qids.tolist()],
            dtype=bool,
        )
    return RetrievalBenchmark(corpus, corpus_qids, len(dev_qids), queries, relevant, unseen, excluded)


def drop_self(top: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The first k results of each row other than the query itself: (q, >=k+1) -> (q, k).

    Rows without the query keep their first k; -1 (no result) stays -1.
    """
    top = np.asarray(top)
    is_self = top == np.asarray(queries)[:, None]
    # a stable sort on the mask moves the query's own entry behind the others, order kept
    order = np.argsort(is_self, axis=1, kind="stable")
    out = np.take_along_axis(top, order, axis=1)[:, :k]
    out = np.where(np.take_along_axis(is_self, order, axis=1)[:, :k], -1, out)
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out


def ranked_relevance(bench: RetrievalBenchmark, top: np.ndarray, k: int = 10) -> np.ndarray:
    """(q, k) 0/1 matrix: is the j-th result (the query itself skipped) relevant to query i."""
    ranked = drop_self(top, bench.queries, k)
    rel = np.zeros(ranked.shape, dtype=np.int8)
    for i, (row, wanted) in enumerate(zip(ranked, bench.relevant)):
        rel[i] = np.isin(row, wanted)
    return rel


def evaluate_top(bench: RetrievalBenchmark, top: np.ndarray, k: int = 10) -> dict:
    """P@1, Recall@k, MRR@k, nDCG@k from each query's ranked corpus rows, plus the same on queries
    unseen in training ("unseen") and on the others ("seen")."""
    rel = ranked_relevance(bench, top, k)
    with np.errstate(divide="ignore"):  # ranking_metrics divides by rank before masking the misses
        result = ranking_metrics(rel, bench.n_relevant, k)
        if bench.unseen is not None and bench.unseen.any():
            result["unseen"] = ranking_metrics(rel[bench.unseen], bench.n_relevant[bench.unseen], k)
            if not bench.unseen.all():
                result["seen"] = ranking_metrics(rel[~bench.unseen], bench.n_relevant[~bench.unseen], k)
    return result


def evaluate_vectors(bench: RetrievalBenchmark, vectors: np.ndarray, k: int = 10) -> dict:
    """Retrieval metrics when the corpus is encoded as `vectors` (n, d), one row per corpus question."""
    _, top = exact_search(vectors, vectors[bench.queries], min(k + 1, len(vectors)))  # +1: the query finds itself
    return evaluate_top(bench, top, k)


def evaluate_encoder(bench: RetrievalBenchmark, encode: Callable[[Sequence[str]], np.ndarray], k: int = 10) -> tuple[dict, np.ndarray]:
    """Encode the corpus with `encode(texts) -> (n, d)` unit rows and score it; returns metrics and vectors."""
    vectors = np.asarray(encode(bench.corpus), dtype=np.float32)
    return evaluate_vectors(bench, vectors, k), vectors


def evaluate_ranker(bench: RetrievalBenchmark, rank: Callable[[np.ndarray, int], np.ndarray], k: int = 10) -> dict:
    """Score a ranker: `rank(query_rows, n) -> (q, n)` corpus rows, best first (it may return the query itself)."""
    return evaluate_top(bench, np.asarray(rank(bench.queries, k + 1)), k)


def unseen_pair_mask(pairs: Pairs, train: Pairs) -> np.ndarray:
    """Pairs where neither question occurs in `train`, by qid or by normalized text."""
    seen_text = {normalize(t) for t in train.questions.values()}

    def seen(q: int) -> bool:
        return q in train.questions or normalize(pairs.questions[q]) in seen_text

    return np.array([not seen(a) and not seen(b) for a, b in zip(pairs.qid1.tolist(), pairs.qid2.tolist())], dtype=bool)


def pair_rows(bench: RetrievalBenchmark, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Corpus rows of both sides of each pair (all dev questions are in the corpus)."""
    row_of = {q: i for i, q in enumerate(bench.corpus_qids[: bench.n_dev].tolist())}
    try:
        a = np.array([row_of[q] for q in pairs.qid1.tolist()], dtype=np.int64)
        b = np.array([row_of[q] for q in pairs.qid2.tolist()], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"question {e} of the pairs is not a dev question of this benchmark") from None
    return a, b


def pair_scores(bench: RetrievalBenchmark, vectors: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Cosine of each pair from the corpus vectors (unit rows), without encoding anything again."""
    a, b = pair_rows(bench, pairs)
    return (vectors[a] * vectors[b]).sum(1)

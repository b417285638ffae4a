"""Batch dedup: encode once, memory-bounded self-kNN in FAISS, then clusters over the edges the
verdict accepts, and the output table (every input row, in input order, with its cluster).

Vectors are unit norm, so inner product is cosine everywhere here. The k nearest neighbours of every
question are found exactly (flat index, block by block) up to 50,000 distinct questions, and above
that by a partitioned search: spherical k-means lists, each question compared with the questions of
its nprobe nearest lists, one matrix product per list.

Edges (question pairs where one is among the other's k nearest neighbours and the verdict calls
them duplicates) are merged strongest first. Every cluster has a canonical question; when two
clusters meet, the one with more rows keeps its canonical (ties: the canonical that comes first in
the input). The linkage decides whether they meet:
  complete (default)  every question of one is a duplicate of every question of the other, so
                      each cluster's questions are pairwise duplicates (`dedup_linkage.py`)
  guard               every member of the joining cluster is a duplicate of the other's canonical:
                      a star, which lets two members on either side of the canonical differ
  single              plain union-find, which chains A ~ B ~ C into one cluster
Rows whose normalized text is identical form one group before any of this (they encode to the same
vector), so the canonical of a cluster tends to be its most repeated question.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from dupfinder.dedup_linkage import (  # noqa: F401 (re-exported)
    CHECK_TOLERANCE,
    LINKAGES,
    Clusters,
    cluster,
    cluster_edges,
)
from dupfinder.knn import exact_search
from dupfinder.text import TextConfig, normalize

ProgressFactory = Callable[[int, str], object]  # (total, label) -> object with update(n) and close()


@dataclass
class DedupConfig:
    threshold: float  # cosine at or above which two questions are duplicates (the CLI passes the model's tau)
    linkage: str = "complete"  # complete: pairwise duplicates; guard: duplicates of the canonical; single: chains
    k: int = 16  # neighbours searched per question: bounds the edges (and their memory) to n * k
    block_size: int = 8192  # questions per FAISS search call: bounds the result buffers to block_size * (k + 1)
    exact_below: int = 50_000  # exact (flat) search up to this many distinct questions, IVF above
    nlist: int | None = None  # lists of the partitioned search; None: sqrt(n * nprobe)
    nprobe: int = 8  # lists each question is compared with: recall of the near neighbours against speed
    seed: int = 0  # draws the k-means sample


@dataclass
class DedupResult:
    """Per input row: its cluster, the row of the cluster's canonical and the cosine with it.

    Rows that were not deduplicated (empty text) have cluster -1, canonical -1 and score nan.
    """

    cluster: np.ndarray  # (rows,) int64, numbered 0.. in order of each cluster's first row
    canonical: np.ndarray  # (rows,) int64 row index
    score: np.ndarray  # (rows,) float32
    match: np.ndarray | None = None  # (rows,) int64 id in the --against index, -1 for no match
    match_score: np.ndarray | None = None  # (rows,) float32, nan for no match
    stats: dict = field(default_factory=dict)

    @property
    def is_canonical(self) -> np.ndarray:
        return self.canonical == np.arange(len(self.canonical))


def group_identical(texts: Sequence[str], text_config: TextConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Texts that normalize alike share a group: (group of each text (n,), first text of each group (g,))."""
    seen: dict[str, int] = {}
    group = np.fromiter((seen.setdefault(normalize(t, text_config), len(seen)) for t in texts), dtype=np.int64, count=len(texts))
    first = np.full(len(seen), -1, dtype=np.int64)
    # reversed, so the earliest text of each group is written last
    first[group[::-1]] = np.arange(len(texts) - 1, -1, -1)
    return group, first


def ivf_params(n: int, config: DedupConfig) -> tuple[int, int]:
    """(nlist, nprobe) for n vectors. nlist = sqrt(n * nprobe) balances the cost of assigning every
    vector to its lists (n * nlist) against that of comparing each with its probed lists (n * nprobe * n / nlist)."""
    nlist = config.nlist or int(math.sqrt(n * config.nprobe))
    nlist = max(1, min(nlist, n // 16))
    return nlist, min(config.nprobe, nlist)


def knn_partitioned(x: np.ndarray, k: int, config: DedupConfig, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-k of every row of x among all rows, IVF style but one matrix product per list.

    Spherical k-means splits the vectors into nlist lists (each vector in the list of its nearest
    centroid); each vector is compared with the vectors of its nprobe nearest lists. Instead of
    scanning lists query by query (FAISS IVF, memory bound), all queries that probe a list are
    compared with it at once (BLAS), and a running top-k per vector keeps memory at n * k.
    With nprobe = nlist it is exact. Returns scores (n, k) float32 and ids (n, k) int64 (-1: none).
    """
    import faiss

    n, d = x.shape
    nlist, nprobe = ivf_params(n, config)
    rng = np.random.default_rng(config.seed)
    sample = x[np.sort(rng.choice(n, size=min(n, 16 * nlist), replace=False))]
    kmeans = faiss.Kmeans(d, nlist, niter=8, seed=config.seed, spherical=True,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    kmeans.train(sample)
    probes = np.empty((n, nprobe), np.int64)
    for start in range(0, n, config.block_size):  # blockwise: the (block, nlist) products stay small
        _, probes[start : start + config.block_size] = faiss.knn(
            x[start : start + config.block_size], kmeans.centroids, nprobe, metric=faiss.METRIC_INNER_PRODUCT)
    primary = probes[:, 0]  # the list each vector is stored in
    stored = np.argsort(primary, kind="stable")
    stored_at = np.searchsorted(primary[stored], np.arange(nlist + 1))
    probed = probes.ravel()
    asking = np.argsort(probed, kind="stable")
    asking_at = np.searchsorted(probed[asking], np.arange(nlist + 1))
    asking //= nprobe  # position in probes -> the vector that probes
    del probes, probed

    best_s = np.full((n, k), -np.inf, np.float32)
    best_i = np.full((n, k), -1, np.int64)
    done = 0
    for c in range(nlist):
        members = stored[stored_at[c] : stored_at[c + 1]]  # (m,)
        queries = asking[asking_at[c] : asking_at[c + 1]]  # (q,) distinct vectors
        if len(members) and len(queries):
            kk = min(k, len(members))
            s, i = faiss.knn(x[queries], x[members], kk, metric=faiss.METRIC_INNER_PRODUCT)  # (q, kk), (q, kk)
            cand_s = np.concatenate([best_s[queries], s], 1)  # (q, k + kk)
            cand_i = np.concatenate([best_i[queries], members[i]], 1)
            top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]  # (q, k)
            best_s[queries] = np.take_along_axis(cand_s, top, 1)
            best_i[queries] = np.take_along_axis(cand_i, top, 1)
        if progress is not None:
            now = int(asking_at[c + 1]) // nprobe
            progress(now - done)
            done = now
    return best_s, best_i


def neighbour_edges(
    x: np.ndarray, min_score: float, config: DedupConfig, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a < b) of rows of x with cosine >= min_score where one is among the other's k nearest.

    Exact search up to `exact_below` rows, partitioned (IVF-like) above. Memory is x, its copy in
    the search structure, the (n, k + 1) top-k arrays and the edges. Returns (a, b, score), each
    (e,), a pair listed once.
    """
    n = len(x)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n < 2:
        return empty
    k = min(config.k + 1, n)  # +1: a question finds itself
    if n <= config.exact_below:
        scores, ids = exact_search(x, x, k, config.block_size, progress)
    else:
        scores, ids = knn_partitioned(x, k, config, progress)
    return edges_from_knn(scores, ids, min_score)


def edges_from_knn(scores: np.ndarray, ids: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k results of every row against all rows (n, k) -> pairs (a < b) with score >= min_score, each once."""
    n = len(scores)
    rows = np.arange(n, dtype=np.int64)[:, None]  # (n, 1)
    keep = (scores >= min_score) & (ids >= 0) & (ids != rows)
    a = np.broadcast_to(rows, ids.shape)[keep]
    b = ids[keep]
    s = scores[keep]
    del keep
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # a pair found from both ends is kept once
    _, first = np.unique(lo * n + hi, return_index=True)
    return lo[first], hi[first], s[first]


def cluster_vectors(
    x: np.ndarray,
    config: DedupConfig,
    weight: np.ndarray | None = None,
    first_row: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> Clusters:
    """Self-kNN then clusters by the config's linkage: the whole method on unit vectors x (n, d) float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    a, b, s = neighbour_edges(x, config.threshold, config, progress)
    return cluster(x, a, b, s, config.threshold, config.linkage, weight, first_row)


def match_labels(store, ids: np.ndarray) -> dict[int, str]:
    """Store id -> the id to show for it: the user's id when the question had one, else the store's own."""
    records = store.get(np.unique(ids[ids >= 0]).tolist())
    return {i: str(r.user_id) if r.user_id not in (None, "") else str(i) for i, r in records.items()}


def match_index(index, x: np.ndarray, tau: float, block_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Nearest question of a store for each vector: (id, -1 if below tau or none; score, nan then)."""
    ids = np.full(len(x), -1, dtype=np.int64)
    scores = np.full(len(x), np.nan, dtype=np.float32)
    if index.count == 0:
        return ids, scores
    for start in range(0, len(x), block_size):
        s, i = index.search(x[start : start + block_size], 1)  # (bs, 1), (bs, 1)
        hit = (i[:, 0] >= 0) & (s[:, 0] >= tau)
        ids[start : start + len(s)] = np.where(hit, i[:, 0], -1)
        scores[start : start + len(s)] = np.where(hit, s[:, 0], np.nan)
    return ids, scores


@dataclass
class Encoded:
    """The distinct questions of a batch, encoded once."""

    n_rows: int  # rows of the input, empty ones included
    rows: np.ndarray  # (r,) int64 the rows that are deduplicated (non-empty text)
    group: np.ndarray  # (r,) int64 distinct question of each of those rows
    first_row: np.ndarray  # (g,) int64 input row of each distinct question (its first occurrence)
    weight: np.ndarray  # (g,) int64 rows that share each distinct question
    x: np.ndarray  # (g, d) float32 unit vectors
    seconds: dict = field(default_factory=dict)
    texts: list[str] | None = None  # (g,) each distinct question's text, for a verdict head


def encode_distinct(encoder, texts: Sequence[str], ok: np.ndarray, progress_factory: ProgressFactory | None = None) -> Encoded:
    """Encode each distinct normalized text of the rows where `ok` once."""
    t0 = time.perf_counter()
    rows = np.flatnonzero(ok)
    group, first = group_identical([texts[i] for i in rows.tolist()], getattr(encoder, "text_config", None))
    first_row = rows[first]
    weight = np.bincount(group, minlength=len(first))
    t1 = time.perf_counter()
    bar = progress_factory(len(first_row), "encoding") if progress_factory else None
    x = encoder.encode([texts[i] for i in first_row.tolist()], progress=bar.update if bar else None)  # (g, d)
    if bar:
        bar.close()
    seconds = {"group": t1 - t0, "encode": time.perf_counter() - t1}
    return Encoded(len(texts), rows, group, first_row, weight, x, seconds, [texts[i] for i in first_row.tolist()])


def dedup_encoded(
    enc: Encoded,
    config: DedupConfig,
    against=None,
    progress_factory: ProgressFactory | None = None,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    verdict=None,
    encode: Callable | None = None,
) -> DedupResult:
    """Search, cluster and map back to rows. `edges` from `neighbour_edges` at a threshold no higher
    than this one may be passed to reuse one search for several settings (benchmarks).

    With a `verdict` that has a pair head, candidate edges are the neighbours at or above the
    head's cosine floor, the head scores each, and the linkage asks the head about the other pairs
    it checks (complete: every cross pair at or above the floor; guard: each member with the
    canonical); config.threshold is then the head's threshold."""
    timings = dict(enc.seconds)
    t0 = time.perf_counter()
    head = getattr(verdict, "head", None)
    floor = head.cosine_floor if head is not None else config.threshold
    if edges is None:
        bar = progress_factory(len(enc.first_row), "searching") if progress_factory else None
        edges = neighbour_edges(enc.x, floor, config, bar.update if bar else None)
        if bar:
            bar.close()
        timings["search"] = time.perf_counter() - t0
    scorer = None
    if head is not None:
        t0 = time.perf_counter()
        a, b, s = edges
        keep = s >= floor
        a, b = a[keep], b[keep]
        read: dict[int, object] = {}

        def questions(rows):
            out = []
            for r in rows:
                q = read.get(r)
                if q is None:
                    q = read[r] = head.featurizer.question(enc.texts[r])
                out.append(q)
            return out

        p = np.empty(len(a), np.float32)
        for start in range(0, len(a), 65536):  # chunked: the gathered vectors are (chunk, d) copies
            ca, cb = a[start : start + 65536], b[start : start + 65536]
            p[start : start + len(ca)] = head.score(enc.x[ca], enc.x[cb], questions(ca.tolist()), questions(cb.tolist()))
        edges = (a, b, p)

        def scorer(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            return head.score(enc.x[u], enc.x[v], questions(u.tolist()), questions(v.tolist()))

        timings["verdict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    clusters = cluster(enc.x, *edges, config.threshold, config.linkage, enc.weight, enc.first_row, scorer, floor)
    del edges
    timings["cluster"] = time.perf_counter() - t0

    result = _rows_from_groups(enc.n_rows, enc.rows, enc.group, enc.first_row, clusters)
    if against is not None:
        t0 = time.perf_counter()
        ids, scores = match_index(against, enc.x, floor, config.block_size)
        if head is not None:
            ids, scores = verify_matches(against, head, enc, ids, scores, config.threshold, encode)
        result.match = np.full(enc.n_rows, -1, dtype=np.int64)
        result.match_score = np.full(enc.n_rows, np.nan, dtype=np.float32)
        result.match[enc.rows] = ids[enc.group]
        result.match_score[enc.rows] = scores[enc.group]
        timings["against"] = time.perf_counter() - t0

    result.stats = {
        "distinct_texts": len(enc.first_row),
        "edges": clusters.edges,
        "linkage": config.linkage,
        "merges_refused": clusters.merges_refused,
        "search": _describe_search(len(enc.first_row), config),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    return result


def dedup(
    encoder,
    texts: Sequence[str],
    ok: np.ndarray,
    config: DedupConfig,
    against=None,
    progress_factory: ProgressFactory | None = None,
    verdict=None,
) -> DedupResult:
    """Deduplicate `texts` (rows where `ok` is False are left out) with an `Encoder`.

    `against` is an open store to screen the rows against as well; `verdict` a `Verdict` with a
    pair head to decide edges with (config.threshold is then its threshold).
    """
    return dedup_encoded(encode_distinct(encoder, texts, ok, progress_factory), config, against, progress_factory, verdict=verdict,
                         encode=encoder.encode)


def verify_matches(store, head, enc: Encoded, ids: np.ndarray, scores: np.ndarray, threshold: float,
                   encode: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep the store matches (found at the head's cosine floor) that the head calls duplicates; the
    score shown stays the cosine."""
    found = np.flatnonzero(ids >= 0)
    if not len(found):
        return ids, scores
    records = store.get(ids[found].tolist())
    getter = getattr(store, "get_vectors", None)
    hit_texts = [records[i].text if i in records else "" for i in ids[found].tolist()]
    if callable(getter):
        hits = np.asarray(getter(ids[found].tolist()), np.float32)
    elif encode is not None:  # a store that keeps no vectors to hand out: the same model encodes them again
        hits = encode(hit_texts)
    else:
        raise ValueError(f"{type(store).__name__} has no get_vectors(ids); pass encode")
    feat = head.featurizer
    p = head.score(enc.x[found], hits, feat.questions([enc.texts[g] for g in found.tolist()]), feat.questions(hit_texts))
    bad = found[p < threshold]
    ids, scores = ids.copy(), scores.copy()
    ids[bad], scores[bad] = -1, np.nan
    return ids, scores


def _describe_search(n: int, config: DedupConfig) -> str:
    if n <= config.exact_below:
        return f"exact, k={config.k}"
    nlist, nprobe = ivf_params(n, config)
    return f"partitioned nlist={nlist} nprobe={nprobe}, k={config.k}"


def _rows_from_groups(n_rows: int, rows: np.ndarray, group: np.ndarray, first_row: np.ndarray, clusters: Clusters) -> DedupResult:
    canonical = np.full(n_rows, -1, dtype=np.int64)
    score = np.full(n_rows, np.nan, dtype=np.float32)
    cluster = np.full(n_rows, -1, dtype=np.int64)
    canonical[rows] = first_row[clusters.canonical[group]]
    score[rows] = clusters.score[group]
    if len(rows):
        # clusters are numbered in the order of their first row
        uniq, first_pos, inverse = np.unique(canonical[rows], return_index=True, return_inverse=True)
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first_pos, kind="stable")] = np.arange(len(uniq))
        cluster[rows] = rank[inverse]
    return DedupResult(cluster, canonical, score)

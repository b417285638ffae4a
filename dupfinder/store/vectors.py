"""The local store's in-memory vector index: FAISS (flat or HNSW, ids = the SQLite keys) that grows
one add at a time, tombstones for deletions until the next compaction, the flat index's PQ fast
scan, and snapshots on disk. Derived data: SQLite holds every vector, so a lost or damaged snapshot
is rebuilt from it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dupfinder.atomic import fsync_path

VECTORS_FILE = "vectors.faiss"
SCAN_FILE = "scan.faiss"


@dataclass
class ScanConfig:
    """The flat index's fast path for a few queries: a 4-bit PQ fast scan over every vector picks
    candidates, and exact float32 inner products with the stored vectors rank them, so the scores
    are exact cosines. Trained once the index reaches `min_count`, then grown with every add."""

    m: int = 0  # PQ subquantizers of 4 bits; 0: dimension / 2 (64 bytes per 256-d vector)
    candidates: int = 400  # rescored exactly per query: recall@10 1.0000 of exact (ties counted) on 100k Quora questions
    min_count: int = 20_000  # below it the plain exact scan is fast enough, and no scan is built
    train_sample: int = 32_768  # vectors the PQ codebooks are trained on (a fixed-seed sample)


@dataclass
class HnswConfig:
    m: int = 32  # graph degree: memory and build time grow with it, recall too
    ef_construction: int = 160  # candidate list while building: build time against graph quality (80: recall@10 0.979 at efSearch 128 on 518k)
    # candidate list per query (recorded in the manifest; `dupfinder query --ef-search` overrides it).
    # On 518k Quora questions, 2 cores: 96 gives recall@10 of exact 0.981 (0.989 counting ties) at
    # 0.8-0.9 ms p50 per whole query; 128 gives 0.987 (0.995) at about 1.0 ms
    ef_search: int = 96


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """FAISS's OpenMP threads set to n for the block, then restored."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex:
    """Unit vectors by id, searched by inner product; `deleted` ids stay in FAISS until `purge`."""

    def __init__(self, kind: str, dim: int, hnsw: HnswConfig | None = None, scan: ScanConfig | None = None, faiss_index=None, scan_index=None):
        import faiss

        self.kind, self.dim = kind, dim
        self.hnsw, self.scan_config = hnsw or HnswConfig(), scan
        if faiss_index is None:
            if kind == "flat":
                inner = faiss.IndexFlatIP(dim)
            else:
                inner = faiss.IndexHNSWFlat(dim, self.hnsw.m, faiss.METRIC_INNER_PRODUCT)
                inner.hnsw.efConstruction = self.hnsw.ef_construction
            faiss_index = faiss.IndexIDMap(inner)
        self.index = faiss_index
        self.scan = scan_index if scan_index is not None and scan_index.ntotal == faiss_index.ntotal else None
        self.deleted: set[int] = set()
        self._rows = self._ids = None  # flat: a view of the stored vectors and the row -> id map, for the scan
        if kind == "hnsw":
            self.ef_search = self.hnsw.ef_search

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def count(self) -> int:
        return self.ntotal - len(self.deleted)

    @property
    def ef_search(self) -> int:
        import faiss

        return int(faiss.downcast_index(self.index.index).hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        import faiss

        faiss.downcast_index(self.index.index).hnsw.efSearch = int(value)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        if self.scan is not None:
            with faiss_threads(1):
                self.scan.add(vectors)
        elif self.kind == "flat" and self.scan_config is not None and self.ntotal >= self.scan_config.min_count:
            self.scan = self._build_scan()
        self._rows = self._ids = None

    def delete(self, ids) -> None:
        self.deleted.update(int(i) for i in ids)

    def search(self, vectors: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live ids by inner product: scores (n, k) float32, ids (n, k) int64, -1 past the end."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
        n = len(vectors)
        scores = np.full((n, k), -np.inf, np.float32)
        ids = np.full((n, k), -1, np.int64)
        if self.count == 0 or n == 0:
            return scores, ids
        want = min(k + len(self.deleted), self.ntotal)  # deleted ids may take places in the raw top k
        # a few queries: waking OpenMP threads costs more than it saves, and on a busy machine far
        # more (100k flat, one query, 2 cores under load: 88 ms with 2 threads, 18 ms with 1)
        # the scan serves batches too: per query it costs a tenth of the exact scan's 100k dot
        # products (0.8 ms against 17 ms at 100k on a busy machine), batched by BLAS or not
        with faiss_threads(1) if n < 16 else contextlib.nullcontext():
            if self.scan is not None and not exact:
                raw_s, raw_i = self._scan_search(vectors, want)
            else:
                raw_s, raw_i = self.index.search(vectors, want)
        if not self.deleted:
            kk = min(k, raw_s.shape[1])
            scores[:, :kk], ids[:, :kk] = raw_s[:, :kk], raw_i[:, :kk]
            return scores, ids
        for row in range(n):
            keep = [j for j, i in enumerate(raw_i[row].tolist()) if i >= 0 and i not in self.deleted][:k]
            scores[row, : len(keep)], ids[row, : len(keep)] = raw_s[row, keep], raw_i[row, keep]
        return scores, ids

    def _scan_search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidates from the PQ scan, ranked by exact inner products with the stored float32 vectors."""
        import faiss

        if self._rows is None:
            inner = faiss.downcast_index(self.index.index)
            # a view, not a copy, of FAISS's own buffer
            self._rows = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal, inner.d)
            self._ids = faiss.vector_to_array(self.index.id_map)
        n_cand = min(max(self.scan_config.candidates, k), self.ntotal)
        _, cand = self.scan.search(vectors, n_cand)  # (n, c) rows of the flat index
        scores = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        for i, (q, rows) in enumerate(zip(vectors, cand)):
            rows = rows[rows >= 0]
            exact = self._rows[rows] @ q  # (c,) float32 cosines
            top = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(top)] = exact[top]
            ids[i, : len(top)] = self._ids[rows[top]]
        return scores, ids

    def _build_scan(self):
        """The PQ fast-scan index over the flat index's vectors (same row order)."""
        import faiss

        config = self.scan_config
        inner = faiss.downcast_index(self.index.index)
        stored = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal, inner.d)
        sample = np.sort(np.random.default_rng(0).choice(self.ntotal, min(self.ntotal, config.train_sample), replace=False))
        scan = faiss.IndexPQFastScan(self.dim, config.m or self.dim // 2, 4, faiss.METRIC_INNER_PRODUCT)
        # one thread: k-means over OpenMP on a busy 2-core machine took 90 s instead of 1.5 s
        with faiss_threads(1):
            scan.train(np.ascontiguousarray(stored[sample]))
            scan.add(stored)
        return scan

    def purge(self) -> None:
        """Drop the deleted ids' vectors for good: flat in place (and the scan rebuilt), HNSW rebuilt."""
        if not self.deleted:
            return
        import faiss

        doomed = np.fromiter(self.deleted, np.int64, len(self.deleted))
        if self.kind == "flat":
            self.index.remove_ids(doomed)
            self.scan = None
            if self.scan_config is not None and self.ntotal >= self.scan_config.min_count:
                self.scan = self._build_scan()
        else:
            inner = self.index.index
            all_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            vectors = inner.reconstruct_n(0, inner.ntotal)
            keep = ~np.isin(all_ids, doomed)
            ef = self.ef_search
            fresh = VectorIndex("hnsw", self.dim, self.hnsw)
            fresh.index.add_with_ids(np.ascontiguousarray(vectors[keep]), all_ids[keep])
            self.index = fresh.index
            self.ef_search = ef
        self.deleted.clear()
        self._rows = self._ids = None

    def save(self, folder: Path) -> None:
        """Write the index (and the scan) into a new folder, fsynced."""
        import faiss

        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            faiss.write_index(self.index, str(tmp / VECTORS_FILE))
            names = [VECTORS_FILE]
            if self.scan is not None:
                faiss.write_index(self.scan, str(tmp / SCAN_FILE))
                names.append(SCAN_FILE)
            for name in names:
                fsync_path(tmp / name)
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_path(folder.parent)

    @classmethod
    def load(cls, folder: Path, kind: str, dim: int, hnsw: HnswConfig | None, scan: ScanConfig | None) -> "VectorIndex":
        """A snapshot read into memory (so it can grow). Raises OSError or RuntimeError when damaged."""
        import faiss

        index = faiss.read_index(str(folder / VECTORS_FILE))
        scan_index = None
        if (folder / SCAN_FILE).is_file():
            try:
                scan_index = faiss.read_index(str(folder / SCAN_FILE))
            except RuntimeError:
                scan_index = None  # derived data: without it search is exact, only slower
        if index.d != dim:
            raise RuntimeError(f"dimension {index.d}, expected {dim}")
        return cls(kind, dim, hnsw, scan, index, scan_index)

"""The question index: L2-normalized vectors in FAISS (inner product = cosine) plus metadata in SQLite.

One directory holds immutable generations (`gen-N/vectors.faiss` + `gen-N/meta.db`, and for a
large flat index `gen-N/scan.faiss`) and `manifest.json`, which names the current one. A writer builds the next generation in a temp folder,
renames it, then replaces the manifest: that rename is the commit point, so a killed writer leaves
the last good generation and readers never see a half-written pair. FAISS ids are the SQLite keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from dupfinder.atomic import fsync_path, nearest_existing, write_atomic
from dupfinder.errors import IndexStoreError, InputError
from dupfinder.store.base import METRIC, AddReport, Question, Record, RemoveReport, fresh_questions, resolve_ids, utc_now

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
KINDS = ("flat", "hnsw")
SCAN_FILE = "scan.faiss"

# Metadata is written through sqlite-utils; the query path reads with the stdlib sqlite3 module,
# because importing sqlite-utils costs a cold `dupfinder query` about a second.
COLUMNS = {
    "id": int,  # the FAISS id
    "user_id": str,  # the id in the user's file, if it had one
    "text": str,
    "text_hash": str,  # of normalize(text): the same question, whatever its spacing or case
    "source": str,  # the file it came from
    "added": str,  # UTC, ISO 8601
}


@dataclass
class ScanConfig:
    """The flat index's fast path for a few queries: a 4-bit PQ fast scan over every vector picks
    candidates, and exact float32 inner products with the stored vectors rank them, so the scores
    are exact cosines. `scan.faiss` is derived data, rebuilt from the vectors at each write."""

    m: int = 0  # PQ subquantizers of 4 bits; 0: dimension / 2 (64 bytes per 256-d vector)
    candidates: int = 400  # rescored exactly per query: recall@10 1.0000 of exact (ties counted) on 100k Quora questions
    min_count: int = 20_000  # below it the plain exact scan is fast enough, and no scan.faiss is written
    train_sample: int = 32_768  # vectors the PQ codebooks are trained on (a fixed-seed sample)


@dataclass
class HnswConfig:
    m: int = 32  # graph degree: memory and build time grow with it, recall too
    ef_construction: int = 160  # candidate list while building: build time against graph quality (80: recall@10 0.979 at efSearch 128 on 518k)
    # candidate list per query (recorded in the manifest; `dupfinder query --ef-search` overrides it).
    # On 518k Quora questions, 2 cores: 96 gives recall@10 of exact 0.981 (0.989 counting ties) at
    # 0.8-0.9 ms p50 per whole query; 128 gives 0.987 (0.995) at about 1.0 ms
    ef_search: int = 96


def not_a_folder(directory: Path) -> IndexStoreError | None:
    """The error for an index path that is, or lies under, a file; None when it can be a folder."""
    found = nearest_existing(directory)
    return None if found.is_dir() else IndexStoreError(f"{found} is a file, not an index folder; choose another --index")


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if error := not_a_folder(directory):
        raise error
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if directory.is_dir() and any(directory.iterdir()):
            raise IndexStoreError(f"{directory} is not a dupfinder index ({MANIFEST} is missing)") from None
        raise IndexStoreError(
            f"no index at {directory}; build one with: dupfinder index FILE --index {directory}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexStoreError(f"{path} is corrupt ({e}); rebuild the index with dupfinder index") from None
    if not isinstance(manifest, dict) or "format_version" not in manifest:
        raise IndexStoreError(f"{path} is not a dupfinder index manifest")
    version = manifest["format_version"]
    if version != FORMAT_VERSION:
        hint = "upgrade dupfinder" if isinstance(version, int) and version > FORMAT_VERSION else "rebuild the index"
        raise IndexStoreError(f"{directory} has index format {version}; this dupfinder reads {FORMAT_VERSION}: {hint}")
    missing = {"generation", "kind", "dimension", "count", "model"} - manifest.keys()
    if missing:
        raise IndexStoreError(f"{path} lacks {', '.join(sorted(missing))}; rebuild the index")
    return manifest


def _generation_dir(generation: int) -> str:
    return f"gen-{generation}"


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


def _open_generation(gen: Path, mmap: bool) -> tuple[object, sqlite3.Connection, int, object]:
    """The FAISS index, a read-only SQLite connection, its row count and the scan index (or None) of one generation folder.

    With `mmap` the vectors are mapped, not copied: a cold query on 100k questions opens in a tenth
    of the time. A mapped index cannot grow (FAISS aborts the process), so writers read a copy.
    """
    import faiss

    faiss_path, meta_path = gen / "vectors.faiss", gen / "meta.db"
    if not (faiss_path.is_file() and meta_path.is_file()):
        raise IndexStoreError(f"{gen.parent} is damaged: {gen.name} is missing files; rebuild the index")
    try:
        # immutable: published generations never change, so no locks and no journal
        db = sqlite3.connect(f"file:{meta_path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        n_rows = db.execute("SELECT count(*) FROM questions").fetchone()[0]
    except sqlite3.Error as e:
        raise IndexStoreError(f"{meta_path} is corrupt ({e}); rebuild the index") from None
    try:
        index = faiss.read_index(str(faiss_path), getattr(faiss, "IO_FLAG_MMAP_IFC", 0) if mmap else 0)
    except RuntimeError as e:
        db.close()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IndexStoreError(f"{faiss_path} is corrupt ({first}); rebuild the index") from None
    scan = None
    if mmap and (gen / SCAN_FILE).is_file():  # writers rebuild it, so they need not read it
        try:
            scan = faiss.read_index(str(gen / SCAN_FILE))
        except RuntimeError:
            scan = None  # derived data: without it search is exact, only slower
        if scan is not None and scan.ntotal != index.ntotal:
            scan = None
    return index, db, n_rows, scan


class QuestionIndex:
    """A read-only view of one generation of an index: FAISS vectors and their SQLite rows.

    >>> idx = QuestionIndex.open("indexes/default")
    >>> scores, ids = idx.search(encoder.encode(["How old are you?"]), k=5)  # (1, 5), (1, 5)
    >>> idx.rows(ids[0].tolist())[int(ids[0, 0])]["text"]
    """

    def __init__(self, directory: Path, manifest: dict, faiss_index, db: sqlite3.Connection, scan_index=None):
        self.directory = directory
        self.manifest = manifest
        self.faiss_index = faiss_index
        self.db = db
        self.scan_index = scan_index  # flat only: PQ fast-scan codes in the flat index's row order, or None
        self._stored = self._id_map = None

    @classmethod
    def open(cls, directory: str | Path, mmap: bool = True) -> "QuestionIndex":
        """Open the current generation.

        `mmap=False` reads the vectors into memory, for the writers that add to or remove from them.
        """
        directory = Path(directory)
        # a writer may publish two generations (and delete the older) between our reading the
        # manifest and opening its files: then the manifest has changed, and we read it again
        for attempt in range(5):
            manifest = read_manifest(directory)
            try:
                index, db, n_rows, scan = _open_generation(directory / _generation_dir(manifest["generation"]), mmap)
                break
            except IndexStoreError:
                if attempt == 4 or read_manifest(directory)["generation"] == manifest["generation"]:
                    raise
        if index.ntotal != manifest["count"] or n_rows != manifest["count"] or index.d != manifest["dimension"]:
            db.close()
            raise IndexStoreError(
                f"{directory} is inconsistent: manifest says {manifest['count']} vectors of dimension "
                f"{manifest['dimension']}, FAISS has {index.ntotal} of {index.d}, SQLite has {n_rows} rows; rebuild the index"
            )
        if manifest["kind"] != "flat" or "scan" not in manifest:
            scan = None
        opened = cls(directory, manifest, index, db, scan)
        if opened.kind == "hnsw":
            opened.ef_search = manifest["hnsw"]["ef_search"]
        return opened

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dimension"])

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def ef_search(self) -> int | None:
        """HNSW candidate list per query (None for a flat index); set it to trade speed for recall
        in this process only: the recorded value stays in the manifest."""
        return None if self.kind != "hnsw" else int(self._graph().efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise ValueError(f"efSearch applies to HNSW indexes; {self.directory} is {self.kind}")
        if int(value) < 1:
            raise ValueError(f"efSearch must be at least 1, not {value}")
        self._graph().efSearch = int(value)

    def _graph(self):
        """The HNSW graph of an hnsw index (faiss.HNSW)."""
        import faiss

        return faiss.downcast_index(self.faiss_index.index).hnsw

    def search(self, vectors: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (cosine for unit vectors): scores (n, k) float32, ids (n, k) int64, -1 where
        the index has fewer than k questions.

        A few queries on a large flat index take the scan path (see `ScanConfig`): exact scores,
        and the exact top k but for the rare neighbour the scan ranks below its candidates;
        `exact=True` (or 16 queries and more, where BLAS makes the full scan cheap) compares every vector.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if self.count == 0:
            return np.full((len(vectors), k), -np.inf, np.float32), np.full((len(vectors), k), -1, np.int64)
        if len(vectors) >= 16:
            return self.faiss_index.search(vectors, k)
        # a few queries: waking OpenMP threads costs more than it saves, and on a busy machine
        # far more (100k flat, one query, 2 cores under load: 88 ms with 2 threads, 18 ms with 1)
        with faiss_threads(1):
            if self.scan_index is not None and not exact:
                return self._scan_search(vectors, k)
            return self.faiss_index.search(vectors, k)

    def _scan_search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidates from the PQ scan, ranked by exact inner products with the stored float32 vectors."""
        import faiss

        if self._stored is None:
            # a view, not a copy: with a mapped index it reads the page cache
            self._stored = _stored_vectors(self.faiss_index)
            self._id_map = faiss.vector_to_array(self.faiss_index.id_map)
        n_cand = min(max(int(self.manifest["scan"]["candidates"]), k), self.count)
        _, cand = self.scan_index.search(vectors, n_cand)  # (n, c) rows of the flat index
        scores = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        for i, (q, rows) in enumerate(zip(vectors, cand)):
            rows = rows[rows >= 0]
            exact = self._stored[rows] @ q  # (c,) float32 cosines
            top = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(top)] = exact[top]
            ids[i, : len(top)] = self._id_map[rows[top]]
        return scores, ids

    def rows(self, ids: Sequence[int]) -> dict[int, dict]:
        """FAISS id -> its SQLite row (id, user_id, text, text_hash, source, added); unknown and -1 ids are left out."""
        wanted = sorted({int(i) for i in ids if int(i) >= 0})
        out: dict[int, dict] = {}
        for start in range(0, len(wanted), 900):  # SQLite's limit on bound parameters
            chunk = wanted[start : start + 900]
            cursor = self.db.execute(
                f"SELECT id, user_id, text, text_hash, source, added FROM questions WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            names = [d[0] for d in cursor.description]
            for row in cursor:
                out[row[0]] = dict(zip(names, row))
        return out

    def sources(self) -> dict[str, int]:
        """Where the questions came from: source file -> number of questions, most first."""
        rows = self.db.execute("SELECT source, count(*) FROM questions GROUP BY source ORDER BY count(*) DESC, source")
        return {source or "": n for source, n in rows}

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All ids (n,) int64 and their vectors (n, d) float32, in FAISS order."""
        import faiss

        inner = self.faiss_index.index
        ids = faiss.vector_to_array(self.faiss_index.id_map).astype(np.int64)
        return ids, inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, self.dim), np.float32)

    def size_bytes(self) -> int:
        gen = self.directory / _generation_dir(self.manifest["generation"])
        return sum(p.stat().st_size for p in gen.iterdir()) + (self.directory / MANIFEST).stat().st_size

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "QuestionIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- writing


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """One writer at a time per index; the next one waits (readers take no lock: they read
    immutable generations). The kernel drops the lock of a killed writer, so none goes stale."""
    import fcntl

    if error := not_a_folder(directory):
        raise error
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _collect_garbage(directory: Path, current: int | None) -> None:
    """Remove temp folders of killed writers and generations older than the previous one.

    The previous generation is kept: a reader that read the old manifest a moment ago may be opening it.
    """
    for p in directory.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        elif p.name.startswith("gen-") and p.is_dir():
            try:
                n = int(p.name[4:])
            except ValueError:
                continue
            if current is None or n < current - 1 or n > current:
                shutil.rmtree(p, ignore_errors=True)


def _new_faiss(kind: str, dim: int, hnsw: HnswConfig):
    import faiss

    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    else:
        inner = faiss.IndexHNSWFlat(dim, hnsw.m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = hnsw.ef_construction
        inner.hnsw.efSearch = hnsw.ef_search
    return faiss.IndexIDMap(inner)


def _stored_vectors(faiss_index) -> np.ndarray:
    """The float32 vectors (n, d) of a flat IndexIDMap, in row order, as a view of FAISS's own buffer."""
    import faiss

    inner = faiss.downcast_index(faiss_index.index)
    return faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal, inner.d)


def _build_scan(manifest: dict, faiss_index):
    """The PQ fast-scan index over a flat index's vectors (same row order), or None when not wanted."""
    import faiss

    if manifest["kind"] != "flat" or "scan" not in manifest:
        return None
    config = ScanConfig(**manifest["scan"])
    n, d = faiss_index.ntotal, faiss_index.d
    if n < config.min_count:
        return None
    stored = _stored_vectors(faiss_index)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, config.train_sample), replace=False))
    scan = faiss.IndexPQFastScan(d, config.m or d // 2, 4, faiss.METRIC_INNER_PRODUCT)
    # one thread: k-means over OpenMP on a busy 2-core machine took 90 s instead of 1.5 s
    with faiss_threads(1):
        scan.train(np.ascontiguousarray(stored[sample]))
        scan.add(stored)
    return scan


def _publish(directory: Path, manifest: dict, faiss_index, write_meta: Callable[[Path], None]) -> dict:
    """Write generation manifest['generation'] in a temp folder, rename it into place, then swap the manifest."""
    import faiss

    if manifest["kind"] == "flat":  # indexes written before the scan existed get it at their next write
        manifest.setdefault("scan", asdict(ScanConfig()))
    gen_name = _generation_dir(manifest["generation"])
    tmp = directory / f".tmp-{gen_name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_meta(tmp / "meta.db")
        faiss.write_index(faiss_index, str(tmp / "vectors.faiss"))
        names = ["meta.db", "vectors.faiss"]
        scan = _build_scan(manifest, faiss_index)
        if scan is not None:
            faiss.write_index(scan, str(tmp / SCAN_FILE))
            names.append(SCAN_FILE)
        for name in names:
            fsync_path(tmp / name)
        target = directory / gen_name
        shutil.rmtree(target, ignore_errors=True)  # left by a writer killed between rename and manifest
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(directory)
    write_atomic(directory / MANIFEST, json.dumps(manifest, indent=2).encode())  # the commit point
    fsync_path(directory)
    _collect_garbage(directory, manifest["generation"])
    return manifest


def _open_writable_copy(src: Path | None, dst: Path):
    """A sqlite-utils Database on a copy of the current meta.db (or a new one), tuned for one bulk
    write: the file is private until it is fsynced and renamed, so it needs no journal."""
    import sqlite_utils

    if src is not None:
        shutil.copyfile(src, dst)
    db = sqlite_utils.Database(dst)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    if src is None:
        table = db["questions"].create(COLUMNS, pk="id", not_null={"text", "text_hash", "added"})
        table.create_index(["user_id"])
        table.create_index(["text_hash"])
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
    return db


def _versions() -> dict:
    import faiss

    from dupfinder import __version__

    return {
        "dupfinder": __version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


class LocalStore:
    """The embedded default: a folder of FAISS generations and SQLite metadata (see the module doc).

    `LocalStore(directory)` opens an existing index; `LocalStore(directory, create=...)` also
    accepts a folder with none yet, which the first `add` creates with that kind, dimension and
    model record.
    """

    def __init__(self, directory: str | Path, create: dict | None = None):
        self.directory = Path(directory)
        self.location = str(self.directory)
        if error := not_a_folder(self.directory):
            raise error
        self._create = create
        self._view: QuestionIndex | None = None
        self._ef_search: int | None = None
        if self.exists or create is None:
            self._view = QuestionIndex.open(self.directory)
            if create is not None and create.get("kind") not in (None, self.kind):
                self._view.close()
                raise InputError(f"{self.directory} is a {self.kind} index; leave out --kind to append, or use another --index")
        elif (create.get("kind") or "flat") not in KINDS:
            raise InputError(f"unknown index kind {create['kind']!r}; use one of: {', '.join(KINDS)}")

    @property
    def exists(self) -> bool:
        return (self.directory / MANIFEST).exists()

    def set_model(self, record: dict, dim: int) -> None:
        """The model record and dimension a store that does not exist yet is created with."""
        self._create = dict(self._create or {}, model=record, dim=dim)

    @property
    def manifest(self) -> dict:
        return self._view.manifest if self._view is not None else {}

    @property
    def count(self) -> int:
        return self._view.count if self._view is not None else 0

    @property
    def dim(self) -> int:
        return self._view.dim if self._view is not None else int(self._create["dim"])

    @property
    def kind(self) -> str:
        return self._view.kind if self._view is not None else self._create.get("kind") or "flat"

    @property
    def model(self) -> dict:
        return self.manifest["model"] if self._view is not None else self._create["model"]

    @property
    def ef_search(self) -> int | None:
        return self._view.ef_search if self._view is not None else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise InputError(f"--ef-search applies to HNSW indexes; {self.directory} is {self.kind}")
        self._ef_search = int(value)
        self._view.ef_search = int(value)

    def _reopen(self) -> None:
        if self._view is not None:
            self._view.close()
        self._view = QuestionIndex.open(self.directory)
        if self._ef_search is not None:
            self._view.ef_search = self._ef_search

    def known(self, questions: Sequence[Question]) -> tuple[set[str], set[str]]:
        if self._view is None:
            return set(), set()
        from dupfinder.store.base import text_hash

        ids = {q.user_id for q in questions if q.user_id is not None}
        hashes = {text_hash(q.text) for q in questions if q.text.strip()}
        return _present(self._view.db, "user_id", ids), _present(self._view.db, "text_hash", hashes)

    def add(self, questions: Sequence[Question], vectors: np.ndarray, hnsw: HnswConfig | None = None, scan: ScanConfig | None = None) -> AddReport:
        """Publish the questions not stored yet (by user id or normalized text) as a new generation."""
        with writer_lock(self.directory):
            manifest = read_manifest(self.directory) if self.exists else None
            _collect_garbage(self.directory, manifest["generation"] if manifest else None)
            report = AddReport(created=manifest is None)
            if manifest is not None:
                if manifest["model"]["fingerprint"] != self.model["fingerprint"]:
                    raise IndexStoreError(f"{self.directory} was rebuilt with another model meanwhile; run the command again")
                current = QuestionIndex.open(self.directory, mmap=False)
                seen_ids = {r[0] for r in current.db.execute("SELECT user_id FROM questions WHERE user_id IS NOT NULL")}
                seen_hashes = {r[0] for r in current.db.execute("SELECT text_hash FROM questions")}
            else:
                current, seen_ids, seen_hashes = None, set(), set()
            fresh = fresh_questions(questions, seen_ids, seen_hashes, report)
            if not fresh:
                report.count = manifest["count"] if manifest else 0
                if current is not None:
                    current.close()
                if manifest is None:
                    raise InputError("no questions to index: every one was empty")
                return report
            if manifest is None:
                manifest = self._new_manifest(hnsw, scan)
                faiss_index = _new_faiss(manifest["kind"], manifest["dimension"], hnsw or HnswConfig())
                src_meta = None
            else:
                manifest = dict(manifest)
                faiss_index = current.faiss_index
                src_meta = self.directory / _generation_dir(manifest["generation"]) / "meta.db"
            start = int(manifest["next_id"])
            ids = np.arange(start, start + len(fresh), dtype=np.int64)
            rows = np.asarray([i for i, _, _ in fresh], dtype=np.int64)
            faiss_index.add_with_ids(np.ascontiguousarray(vectors[rows], dtype=np.float32), ids)  # (n, d)
            added_at = utc_now()

            def write_meta(path: Path) -> None:
                db = _open_writable_copy(src_meta, path)
                with db.conn:  # plain executemany: sqlite-utils' insert_all spends 35 us a row building dicts and SQL
                    db.conn.executemany(
                        f"INSERT INTO questions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                        ((i, q.user_id, q.text, h, q.source, added_at) for i, (_, q, h) in zip(ids.tolist(), fresh)),
                    )
                db.close()

            manifest.update(generation=manifest["generation"] + 1, count=manifest["count"] + len(fresh),
                            next_id=start + len(fresh), updated=added_at, versions=_versions())
            if current is not None:
                current.close()
            _publish(self.directory, manifest, faiss_index, write_meta)
        self._reopen()
        report.added, report.count = len(fresh), manifest["count"]
        return report

    def _new_manifest(self, hnsw: HnswConfig | None, scan: ScanConfig | None) -> dict:
        manifest = {
            "format_version": FORMAT_VERSION, "generation": 0, "kind": self.kind, "metric": METRIC,
            "dimension": self.dim, "count": 0, "next_id": 0, "model": self.model, "created": utc_now(),
        }
        if manifest["kind"] == "hnsw":
            manifest["hnsw"] = asdict(hnsw or HnswConfig())
        else:
            manifest["scan"] = asdict(scan or ScanConfig())
        return manifest

    def remove(self, ids: Sequence[str]) -> RemoveReport:
        """Delete by the user's id (or the store's id for questions without one), all or nothing.

        A flat index drops the vectors in place; an HNSW graph cannot delete, so it is rebuilt from
        the remaining vectors (slow for large indexes, but nothing dead is kept around).
        """
        with writer_lock(self.directory):
            manifest = dict(read_manifest(self.directory))
            _collect_garbage(self.directory, manifest["generation"])
            current = QuestionIndex.open(self.directory, mmap=False)
            try:
                db = current.db
                by_user = lambda w: [r[0] for r in db.execute("SELECT id FROM questions WHERE user_id = ?", (w,))]  # noqa: E731
                by_store = lambda i: [r[0] for r in db.execute("SELECT id FROM questions WHERE id = ? AND user_id IS NULL", (i,))]  # noqa: E731
                doomed = np.asarray(resolve_ids(ids, by_user, by_store, self.location), dtype=np.int64)
                if manifest["kind"] == "flat":
                    faiss_index = current.faiss_index
                    faiss_index.remove_ids(doomed)
                else:
                    all_ids, vectors = current.vectors()
                    keep = ~np.isin(all_ids, doomed)
                    faiss_index = _new_faiss("hnsw", manifest["dimension"], HnswConfig(**manifest["hnsw"]))
                    if keep.any():
                        faiss_index.add_with_ids(np.ascontiguousarray(vectors[keep]), all_ids[keep])
                src_meta = self.directory / _generation_dir(manifest["generation"]) / "meta.db"
            finally:
                current.close()

            def write_meta(path: Path) -> None:
                db = _open_writable_copy(src_meta, path)
                doomed_list = doomed.tolist()
                with db.conn:
                    for start in range(0, len(doomed_list), 900):
                        chunk = doomed_list[start : start + 900]
                        db["questions"].delete_where(f"id IN ({','.join('?' * len(chunk))})", chunk)
                db.close()

            manifest.update(generation=manifest["generation"] + 1, count=manifest["count"] - len(doomed), updated=utc_now(), versions=_versions())
            if faiss_index.ntotal != manifest["count"]:
                raise IndexStoreError(f"{self.directory} is inconsistent (FAISS and SQLite disagree); rebuild the index")
            _publish(self.directory, manifest, faiss_index, write_meta)
        self._reopen()
        return RemoveReport(removed=list(dict.fromkeys(ids)), count=manifest["count"])

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._view is None:
            return np.full((len(vectors), k), -np.inf, np.float32), np.full((len(vectors), k), -1, np.int64)
        return self._view.search(vectors, k)

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        if self._view is None:
            return {}
        return {i: Record(**row) for i, row in self._view.rows(list(ids)).items()}

    def sources(self) -> dict[str, int]:
        return self._view.sources() if self._view is not None else {}

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All store ids (n,) and their vectors (n, d), in FAISS order."""
        return self._view.vectors()

    def info(self) -> dict:
        m = self.manifest
        return {
            "index": self.location, "count": self.count, "kind": self.kind, "metric": m.get("metric", METRIC),
            "dimension": self.dim, "size_bytes": self._view.size_bytes() if self._view is not None else 0,
            "generation": m.get("generation"), "created": m.get("created"), "updated": m.get("updated"),
            "sources": self.sources(),
        }

    def replace_with(self, other: "LocalStore") -> None:
        """Swap `other`'s folder in for this one (two renames under this one's writer lock), then
        delete the old folder; used to rebuild derived indexes such as the demo."""
        stale = self.directory.with_name(self.directory.name + ".outdated")
        shutil.rmtree(stale, ignore_errors=True)
        self.close()
        other.close()
        with writer_lock(self.directory):
            self.directory.rename(stale)
            other.directory.rename(self.directory)
        shutil.rmtree(stale, ignore_errors=True)
        self._reopen()

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None

    def __enter__(self) -> "LocalStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _present(db: sqlite3.Connection, column: str, values: set[str]) -> set[str]:
    """The values of `column` (an indexed one) among `values` that the table holds."""
    found: set[str] = set()
    wanted = sorted(values)
    for start in range(0, len(wanted), 900):  # SQLite's limit on bound parameters
        chunk = wanted[start : start + 900]
        found.update(r[0] for r in db.execute(f"SELECT DISTINCT {column} FROM questions WHERE {column} IN ({','.join('?' * len(chunk))})", chunk))
    return found

"""The embedded default store: a folder of FAISS + SQLite generations (format in `generations`),
behind the store protocol. Writers take the folder's lock and publish a new generation; readers
never lock."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dupfinder.errors import IndexStoreError, InputError
from dupfinder.store.base import METRIC, AddReport, Question, Record, RemoveReport, plan_add, resolve_ids, text_hash, utc_now
from dupfinder.store.generations import (  # noqa: F401 (MANIFEST, read_manifest, ScanConfig: part of this module's API)
    COLUMNS, FORMAT_VERSION, KINDS, MANIFEST, HnswConfig, QuestionIndex, ScanConfig, collect_garbage, generation_dir,
    new_faiss, open_writable_copy, publish, versions, not_a_folder, read_manifest, writer_lock,
)


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

    def known(self, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
        return _known(self._view.db, questions) if self._view is not None else ({}, set())

    def add(self, questions: Sequence[Question], vectors: np.ndarray, upsert: bool = False,
            hnsw: HnswConfig | None = None, scan: ScanConfig | None = None) -> AddReport:
        """Publish the questions not stored yet (by user id or normalized text) as a new generation."""
        with writer_lock(self.directory):
            manifest = read_manifest(self.directory) if self.exists else None
            collect_garbage(self.directory, manifest["generation"] if manifest else None)
            report = AddReport(created=manifest is None)
            if manifest is not None:
                if manifest["model"]["fingerprint"] != self.model["fingerprint"]:
                    raise IndexStoreError(f"{self.directory} was rebuilt with another model meanwhile; run the command again")
                current = QuestionIndex.open(self.directory, mmap=False)
                stored = _known(current.db, questions)
            else:
                current, stored = None, ({}, set())
            try:
                plan = plan_add(questions, *stored, report, upsert, self.location)
            except BaseException:
                if current is not None:
                    current.close()
                raise
            if plan.replace:  # replaced by the new rows of the same user ids (upsert)
                raise NotImplementedError("upsert in the folder store")
            fresh = plan.fresh
            if not fresh:
                report.count = manifest["count"] if manifest else 0
                if current is not None:
                    current.close()
                if manifest is None:
                    raise InputError("no questions to index: every one was empty")
                return report
            if manifest is None:
                manifest = self._new_manifest(hnsw, scan)
                faiss_index = new_faiss(manifest["kind"], manifest["dimension"], hnsw or HnswConfig())
                src_meta = None
            else:
                manifest = dict(manifest)
                faiss_index = current.faiss_index
                src_meta = self.directory / generation_dir(manifest["generation"]) / "meta.db"
            start = int(manifest["next_id"])
            ids = np.arange(start, start + len(fresh), dtype=np.int64)
            rows = np.asarray([i for i, _, _ in fresh], dtype=np.int64)
            faiss_index.add_with_ids(np.ascontiguousarray(vectors[rows], dtype=np.float32), ids)  # (n, d)
            added_at = utc_now()

            def write_meta(path: Path) -> None:
                db = open_writable_copy(src_meta, path)
                with db.conn:  # plain executemany: sqlite-utils' insert_all spends 35 us a row building dicts and SQL
                    db.conn.executemany(
                        f"INSERT INTO questions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                        ((i, q.user_id, q.text, h, q.source, added_at) for i, (_, q, h) in zip(ids.tolist(), fresh)),
                    )
                db.close()

            manifest.update(generation=manifest["generation"] + 1, count=manifest["count"] + len(fresh),
                            next_id=start + len(fresh), updated=added_at, versions=versions())
            if current is not None:
                current.close()
            publish(self.directory, manifest, faiss_index, write_meta)
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
            collect_garbage(self.directory, manifest["generation"])
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
                    faiss_index = new_faiss("hnsw", manifest["dimension"], HnswConfig(**manifest["hnsw"]))
                    if keep.any():
                        faiss_index.add_with_ids(np.ascontiguousarray(vectors[keep]), all_ids[keep])
                src_meta = self.directory / generation_dir(manifest["generation"]) / "meta.db"
            finally:
                current.close()

            def write_meta(path: Path) -> None:
                db = open_writable_copy(src_meta, path)
                doomed_list = doomed.tolist()
                with db.conn:
                    for start in range(0, len(doomed_list), 900):
                        chunk = doomed_list[start : start + 900]
                        db["questions"].delete_where(f"id IN ({','.join('?' * len(chunk))})", chunk)
                db.close()

            manifest.update(generation=manifest["generation"] + 1, count=manifest["count"] - len(doomed), updated=utc_now(), versions=versions())
            if faiss_index.ntotal != manifest["count"]:
                raise IndexStoreError(f"{self.directory} is inconsistent (FAISS and SQLite disagree); rebuild the index")
            publish(self.directory, manifest, faiss_index, write_meta)
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


def _known(db: sqlite3.Connection, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
    """The stored user ids of `questions` (-> their text hash) and their text hashes that are stored."""
    ids = sorted({q.user_id for q in questions if q.user_id is not None})
    hashes = sorted({text_hash(q.text) for q in questions if q.text.strip()})
    stored_ids: dict[str, str] = {}
    stored_hashes: set[str] = set()
    for start in range(0, max(len(ids), len(hashes)), 900):  # SQLite's limit on bound parameters
        chunk = ids[start : start + 900]
        stored_ids.update(db.execute(f"SELECT user_id, text_hash FROM questions WHERE user_id IN ({','.join('?' * len(chunk))})", chunk))
        chunk = hashes[start : start + 900]
        stored_hashes.update(r[0] for r in db.execute(f"SELECT DISTINCT text_hash FROM questions WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk))
    return stored_ids, stored_hashes

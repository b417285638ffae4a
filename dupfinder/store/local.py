"""The embedded default store: one folder, SQLite in WAL mode as the source of truth (every
question with its vector), and FAISS in memory, grown with each write.

- `manifest.json`: format, kind, dimension and the model that built the store; written once, at
  creation (its rename is the moment the store exists).
- `questions.db`: the questions and their vectors, a log of deletions, and the pointer to the
  current snapshot. A write is one SQLite transaction, committed with fsync before it returns:
  a killed process loses nothing it acknowledged, and rows and vectors cannot disagree.
- `snap-*/`: FAISS snapshots (derived data) that spare a full rebuild when a process opens the
  store; what was written after the snapshot is replayed from SQLite. Compaction writes a new
  one when enough has changed since the last.

Every process (the CLI, a server) keeps its own FAISS in memory and, before each read, replays
what other processes committed since (SQLite's data_version says whether there is anything), so a
write by one is seen by the next search of the other. Deleted ids are tombstones in memory until a
compaction purges them. Writers take SQLite's write lock (BEGIN IMMEDIATE); readers never lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from dupfinder.atomic import write_atomic
from dupfinder.errors import IndexStoreError, InputError
from dupfinder.store.base import METRIC, AddReport, Question, Record, RemoveReport, StoreHandle, plan_add, resolve_ids, text_hash, utc_now
from dupfinder.store.folder import (  # noqa: F401 (MANIFEST, read_manifest, ...: part of this module's API)
    DATABASE, FORMAT_VERSION, KINDS, MANIFEST, connect, folder_lock, not_a_folder, read_manifest,
)
from dupfinder.store.vectors import HnswConfig, ScanConfig, VectorIndex  # noqa: F401 (part of this module's API)

COMPACT_MIN = 10_000  # changes since the last snapshot before a write compacts (or a tenth of the store, if more)
ROW_COLUMNS = "id, user_id, text, text_hash, source, added"

def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class LocalStore(StoreHandle):
    """A store folder (see the module doc). `LocalStore(directory)` opens an existing one;
    `LocalStore(directory, create={"kind": ...})` also accepts a folder with none yet, which the
    first `add` creates with the model given to `set_model`."""

    def __init__(self, directory: str | Path, create: dict | None = None):
        self.directory = Path(directory)
        self.location = str(self.directory)
        if error := not_a_folder(self.directory):
            raise error
        self._create = dict(create or {})
        self.manifest: dict = {}
        self.db: sqlite3.Connection | None = None
        self.vectors: VectorIndex | None = None
        self._ef_search: int | None = None
        if self.exists or create is None:
            self._open()
            if create is not None and create.get("kind") not in (None, self.kind):
                self.close()
                raise InputError(f"{self.directory} is a {self.kind} index; leave out --kind to append, or use another --index")
        elif (create.get("kind") or "flat") not in KINDS:
            raise InputError(f"unknown index kind {create['kind']!r}; use one of: {', '.join(KINDS)}")

    # ------------------------------------------------------------ opening and syncing

    @property
    def exists(self) -> bool:
        return (self.directory / MANIFEST).exists()

    def set_model(self, record: dict, dim: int) -> None:
        self._create.update(model=record, dim=dim)

    def _open(self) -> None:
        manifest = read_manifest(self.directory)
        if manifest["format_version"] == 1:
            from dupfinder.store.migrate import migrate_generations

            with folder_lock(self.directory):
                migrate_generations(self.directory, self)
            manifest = read_manifest(self.directory)
        self.manifest = manifest
        self.db = connect(self.directory / DATABASE)
        self._load()
        try:  # a long replay (a migrated folder, a writer killed before its compaction) is saved for the next process
            self.maybe_compact()
        except (OSError, sqlite3.Error):
            pass  # a read-only folder: every open replays, slower but correct

    def _create_store(self) -> None:
        """Write questions.db, then the manifest (the commit point), under the folder lock."""
        with folder_lock(self.directory):
            if not self.exists:
                kind = self._create.get("kind") or "flat"
                manifest = {"format_version": FORMAT_VERSION, "kind": kind, "metric": METRIC, "dimension": int(self._create["dim"]),
                            "model": self._create["model"], "created": utc_now()}
                manifest["hnsw" if kind == "hnsw" else "scan"] = asdict(HnswConfig() if kind == "hnsw" else ScanConfig())
                (self.directory / DATABASE).unlink(missing_ok=True)  # left by a process killed before the manifest
                connect(self.directory / DATABASE).close()
                write_atomic(self.directory / MANIFEST, json.dumps(manifest, indent=2).encode())
        self._open()

    def _load(self) -> None:
        """The current snapshot, then every change committed after it, in one read transaction."""
        m = self.manifest
        hnsw = HnswConfig(**m["hnsw"]) if m["kind"] == "hnsw" else None
        scan = ScanConfig(**m["scan"]) if m["kind"] == "flat" and "scan" in m else None
        self.db.execute("BEGIN")
        try:
            pointer = self._pointer()
            vectors = None
            if pointer["dir"]:
                try:
                    vectors = VectorIndex.load(self.directory / pointer["dir"], m["kind"], m["dimension"], hnsw, scan)
                except (OSError, RuntimeError):
                    pointer = dict(pointer, dir=None, max_id=0, purged_seq=0)  # damaged: rebuilt from SQLite below
            if vectors is None:
                vectors = VectorIndex(m["kind"], m["dimension"], hnsw, scan)
            self.vectors, self._max_id, self._purged_seq = vectors, int(pointer["max_id"]), int(pointer["purged_seq"])
            self._del_seq = self._purged_seq
            self._apply_changes(initial=True)
        finally:
            self.db.execute("COMMIT")
        if self._ef_search is not None:
            self.vectors.ef_search = self._ef_search
        self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]

    def _pointer(self) -> dict:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'snapshot'").fetchone()
        return json.loads(row[0]) if row else {"dir": None, "max_id": 0, "del_seq": 0, "purged_seq": 0}

    def _apply_changes(self, initial: bool = False) -> None:
        """Rows added and ids deleted since this process last looked (inside a transaction)."""
        rows = self.db.execute("SELECT id, vector FROM questions WHERE id > ? ORDER BY id", (self._max_id,)).fetchall()
        if rows:
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            self.vectors.add(ids, np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), self.dim))
            self._max_id = int(ids[-1])
        deleted = self.db.execute("SELECT seq, id FROM deleted WHERE seq > ? ORDER BY seq", (self._del_seq,)).fetchall()
        if deleted:
            self._del_seq = int(deleted[-1][0])
            import faiss

            present = faiss.vector_to_array(self.vectors.index.id_map)
            doomed = np.fromiter((r[1] for r in deleted), np.int64, len(deleted))
            self.vectors.delete(doomed[np.isin(doomed, present)])

    def _sync(self) -> None:
        """Replay what other processes committed since; cheap when nothing was (one PRAGMA)."""
        if self.db is None:
            return
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self.db.execute("BEGIN")
        try:
            if int(self._pointer()["purged_seq"]) > self._del_seq:  # deletions we never saw were purged: start over
                stale = True
            else:
                stale = False
                self._apply_changes()
        finally:
            self.db.execute("COMMIT")
        if stale:
            self._load()

    # ------------------------------------------------------------ the protocol

    @property
    def count(self) -> int:
        self._sync()
        return self.vectors.count if self.vectors is not None else 0

    @property
    def dim(self) -> int:
        return int(self.manifest["dimension"]) if self.manifest else int(self._create["dim"])

    @property
    def kind(self) -> str:
        return self.manifest["kind"] if self.manifest else self._create.get("kind") or "flat"

    @property
    def model(self) -> dict:
        return self.manifest["model"] if self.manifest else self._create["model"]

    def _recorded_ef_search(self) -> int | None:
        return self.vectors.ef_search if self.vectors is not None else None

    def _apply_ef_search(self, value: int) -> None:
        if self.vectors is not None:
            self.vectors.ef_search = value

    def known(self, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
        if self.db is None:
            return {}, set()
        ids = sorted({q.user_id for q in questions if q.user_id is not None})
        hashes = sorted({text_hash(q.text) for q in questions if q.text.strip()})
        stored_ids: dict[str, str] = {}
        stored_hashes: set[str] = set()
        for start in range(0, max(len(ids), len(hashes)), 900):  # SQLite's limit on bound parameters
            chunk = ids[start : start + 900]
            stored_ids.update(self.db.execute(f"SELECT user_id, text_hash FROM questions WHERE user_id IN ({','.join('?' * len(chunk))})", chunk))
            chunk = hashes[start : start + 900]
            stored_hashes.update(r[0] for r in self.db.execute(f"SELECT text_hash FROM questions WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk))
        return stored_ids, stored_hashes

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction holding SQLite's write lock, with this process caught up first."""
        if self.db is None:
            self._create_store()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise IndexStoreError(f"{self.directory} is busy ({e}); another process holds its write lock, try again") from None
        try:
            self._apply_changes()
            yield
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('updated', ?)", (utc_now(),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._load()  # memory may hold part of the batch: read the committed state again
            raise
        self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]

    def add(self, questions: Sequence[Question], vectors: np.ndarray, upsert: bool = False) -> AddReport:
        """Store `questions` (their vectors (n, dim)) as `plan_add` decides, in one durable transaction."""
        report = AddReport(created=not self.exists)
        if report.created and not plan_add(questions, {}, set(), AddReport(), upsert, self.location).fresh:
            raise InputError("no questions to index: every one was empty")
        with self._write():
            plan = plan_add(questions, *self.known(questions), report, upsert, self.location)
            doomed = self._delete_rows("user_id", plan.replace)
            start = 1 + max(self._max_id, self.db.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'questions'").fetchone()[0])
            ids = np.arange(start, start + len(plan.fresh), dtype=np.int64)
            rows = np.asarray([i for i, _, _ in plan.fresh], dtype=np.int64)
            batch = np.ascontiguousarray(vectors[rows], dtype=np.float32) if len(rows) else np.zeros((0, self.dim), np.float32)
            now = utc_now()
            self.db.executemany(
                "INSERT INTO questions (id, user_id, text, text_hash, source, added, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((int(i), q.user_id, q.text, h, q.source, now, _blob(v)) for i, (_, q, h), v in zip(ids, plan.fresh, batch)),
            )
            self.vectors.add(ids, batch)
            self.vectors.delete(doomed)
            self._max_id = max(self._max_id, int(ids[-1])) if len(ids) else self._max_id
        report.added, report.count = len(plan.fresh), self.vectors.count
        self.maybe_compact()
        return report

    def _delete_rows(self, column: str, values: Sequence) -> list[int]:
        """Delete the rows whose `column` is in `values` (inside a write), logging their ids; returns them."""
        doomed: list[int] = []
        for start in range(0, len(values), 900):
            chunk = list(values[start : start + 900])
            doomed += [r[0] for r in self.db.execute(f"SELECT id FROM questions WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)]
        for start in range(0, len(doomed), 900):
            chunk = doomed[start : start + 900]
            self.db.execute(f"DELETE FROM questions WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        self.db.executemany("INSERT INTO deleted (id) VALUES (?)", ((i,) for i in doomed))
        if doomed:
            self._del_seq = self.db.execute("SELECT max(seq) FROM deleted").fetchone()[0]
        return doomed

    def remove(self, ids: Sequence[str]) -> RemoveReport:
        """Delete by the user's id (or the store's id for questions without one), all or nothing."""
        with self._write():
            by_user = lambda w: [r[0] for r in self.db.execute("SELECT id FROM questions WHERE user_id = ?", (w,))]  # noqa: E731
            by_store = lambda i: [r[0] for r in self.db.execute("SELECT id FROM questions WHERE id = ? AND user_id IS NULL", (i,))]  # noqa: E731
            doomed = resolve_ids(ids, by_user, by_store, self.location)
            self.vectors.delete(self._delete_rows("id", doomed))
        self.maybe_compact()
        return RemoveReport(removed=list(dict.fromkeys(ids)), count=self.vectors.count)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._sync()
        if self.vectors is None:
            return np.full((len(vectors), k), -np.inf, np.float32), np.full((len(vectors), k), -1, np.int64)
        return self.vectors.search(vectors, k)

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        return {r.id: r for r in self._records("id", sorted({int(i) for i in ids if int(i) >= 0}))}

    def lookup(self, user_ids: Iterable[str]) -> dict[str, Record]:
        return {r.user_id: r for r in self._records("user_id", sorted(set(user_ids)))}

    def _records(self, column: str, values: list) -> list[Record]:
        if self.db is None:
            return []
        out: list[Record] = []
        for start in range(0, len(values), 900):  # SQLite's limit on bound parameters
            chunk = values[start : start + 900]
            out += [Record(*row) for row in self.db.execute(f"SELECT {ROW_COLUMNS} FROM questions WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)]
        return out

    def get_vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors (n, d) float32 of store ids, in the order given (from SQLite: a verdict
        head reads the candidates' vectors, which search does not return). An unknown id is a KeyError."""
        wanted = [int(i) for i in ids]
        found: dict[int, bytes] = {}
        unique = sorted(set(wanted))
        for start in range(0, len(unique), 900):  # SQLite's limit on bound parameters
            chunk = unique[start : start + 900]
            found.update(self.db.execute(f"SELECT id, vector FROM questions WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        missing = [i for i in unique if i not in found]
        if missing:
            raise KeyError(f"not in {self.location}: store ids {missing[:10]}")
        return np.frombuffer(b"".join(found[i] for i in wanted), np.float32).reshape(len(wanted), self.dim).copy()

    def sources(self) -> dict[str, int]:
        if self.db is None:
            return {}
        rows = self.db.execute("SELECT source, count(*) FROM questions GROUP BY source ORDER BY count(*) DESC, source")
        return {source or "": n for source, n in rows}

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every store id (n,) and its vector (n, d), from SQLite, in id order."""
        rows = self.db.execute("SELECT id, vector FROM questions ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), self.dim)

    def info(self) -> dict:
        m = self.manifest
        updated = self.db.execute("SELECT value FROM meta WHERE key = 'updated'").fetchone() if self.db is not None else None
        size = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file()) if self.exists else 0
        return {
            "index": self.location, "count": self.count, "kind": self.kind, "metric": m.get("metric", METRIC), "dimension": self.dim,
            "size_bytes": size, "format_version": m.get("format_version"), "created": m.get("created"),
            "updated": updated[0] if updated else m.get("created"), "sources": self.sources(),
        }

    # ------------------------------------------------------------ snapshots

    def maybe_compact(self) -> bool:
        """Compact when the changes since the snapshot reach COMPACT_MIN or a tenth of the store."""
        pointer = self._pointer()
        pending = self._max_id - int(pointer["max_id"]) + self._del_seq - int(pointer["del_seq"])
        if pending < max(COMPACT_MIN, self.vectors.count // 10):
            return False
        return self.compact()

    def compact(self) -> bool:
        """Write the in-memory index as the new snapshot (purging deleted vectors when they are
        many); skipped when another process is compacting. Readers keep using the previous one."""
        with folder_lock(self.directory, blocking=False) as locked:
            if not locked:
                return False
            self._sync()
            vectors = self.vectors
            purge = bool(vectors.deleted) and (vectors.kind == "flat" or len(vectors.deleted) > vectors.ntotal // 10)
            if purge:
                vectors.purge()
            pointer = {"dir": f"snap-{self._max_id}-{self._del_seq}-{os.getpid()}", "max_id": self._max_id, "del_seq": self._del_seq,
                       "purged_seq": self._del_seq if purge or not vectors.deleted else self._purged_seq}
            target = self.directory / pointer["dir"]
            shutil.rmtree(target, ignore_errors=True)
            vectors.save(target)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                current = self._pointer()
                if (current["max_id"], current["del_seq"]) > (pointer["max_id"], pointer["del_seq"]):
                    self.db.execute("COMMIT")  # a newer snapshot is in place already
                    shutil.rmtree(target, ignore_errors=True)
                    return False
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('snapshot', ?)", (json.dumps(pointer),))
                self.db.execute("DELETE FROM deleted WHERE seq <= ?", (pointer["purged_seq"],))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._purged_seq = pointer["purged_seq"]
            # the WAL has served its purpose once a snapshot covers it: give its space back (a reader
            # still in a transaction makes this a no-op, which is fine)
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
            keep = {pointer["dir"], current["dir"]}  # the previous one too: a process may be loading it
            for p in self.directory.glob("snap-*"):
                if p.name not in keep:
                    shutil.rmtree(p, ignore_errors=True)
        return True

    def replace_with(self, other: "LocalStore") -> None:
        """Swap `other`'s folder in for this one (two renames under this one's lock), then delete the
        old folder; used to rebuild derived indexes such as the demo."""
        stale = self.directory.with_name(self.directory.name + ".outdated")
        shutil.rmtree(stale, ignore_errors=True)
        self.close()
        other.close()
        with folder_lock(self.directory):
            self.directory.rename(stale)
            other.directory.rename(self.directory)
        shutil.rmtree(stale, ignore_errors=True)
        self._open()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

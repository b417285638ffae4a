"""The PostgreSQL + pgvector store: the questions and their vectors in the site's own database, one
table per index with an HNSW graph on inner product, and a catalog row with the model it was built
with. `postgresql://USER@HOST:PORT/DB?table=NAME`: any libpq URI, plus `table` (ours, stripped).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np

from dupfinder.errors import IndexStoreError, InputError
from dupfinder.store.base import METRIC, AddReport, Question, Record, RemoveReport, StoreHandle, plan_add, resolve_ids, text_hash
from dupfinder.store.pg_wire import (  # noqa: F401 (HnswSettings, parse_location, BULK_MIN: part of this module's API)
    BULK_MIN, CATALOG_LOCK, HnswSettings, KINDS, LOCK_SPACE, array, graph_precision, iso, load_psycopg, megabytes, parse_location,
)
from dupfinder.store.pg_session import Connections
from dupfinder.store.pg_migrations import CATALOG

class PostgresStore(Connections, StoreHandle):
    """An index in a PostgreSQL table (see the module doc).

    `PostgresStore(uri)` opens an existing index; with `create` ({"kind": "hnsw" | "flat" | None})
    a table that is not there yet is accepted, and the first `add` creates it (with the model and
    dimension given to `set_model`). One connection, opened here; a server calls `use_pool(n)`.

    >>> store = PostgresStore("postgresql://app@db.internal/site?table=questions")
    >>> scores, ids = store.search(vectors, 10)  # (n, 10) cosines, (n, 10) store ids
    """

    def __init__(self, location: str, create: dict | None = None, hnsw: HnswSettings | None = None):
        self._pg = load_psycopg()
        self.where = parse_location(location)
        self.location = self.where.shown
        self.table = self.where.table
        from dupfinder.store.pg_migrations import Names

        self.names = Names(self.table)
        self._create = dict(create) if create is not None else None
        self._hnsw = hnsw or HnswSettings()
        self._conn = None
        self._pool = None
        self._lock = threading.Lock()  # guards opening the single connection
        self._applied_ef: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> hnsw.ef_search set on it
        self._ef_search: int | None = None
        self.last_add: dict = {}  # timings of this object's last add, for benchmarks
        kind = (create or {}).get("kind")
        if kind is not None and kind not in KINDS:
            raise InputError(f"unknown index kind {kind!r}; use one of: {', '.join(KINDS)}")
        try:
            self.meta = self._read(self._open, "opening")
            if self.meta is None and create is None:
                raise IndexStoreError(f"no index at {self.location}: build one with `dupfinder index FILE --index {self.location}`")
            if self.meta is not None and kind not in (None, self.meta["kind"]):
                raise InputError(f"{self.location} is a {self.meta['kind']} index; leave out --kind to append, or use another table")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ opening and creating

    def _open(self, conn) -> dict | None:
        """The catalog row of this table (None when there is none yet), checked, migrated if older."""
        from dupfinder.store import pg_migrations as pm

        cur = conn.cursor()
        catalog, table = cur.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                                     (pm.CATALOG, self.table)).fetchone()
        meta = self._meta(cur) if catalog else None
        if meta is None:
            if table:
                raise IndexStoreError(f"table {self.table} in {self.location} is not a dupfinder index "
                                      f"(no row in {pm.CATALOG}); choose another table with ?table=NAME")
            if self._create is not None:
                self._check_extension(cur)
            return None
        if not table:
            raise IndexStoreError(f"{pm.CATALOG} lists {self.table} but the table is gone from {self.location}; "
                                  f"delete its row from {pm.CATALOG}, or choose another table with ?table=NAME")
        if meta["schema_version"] > pm.LATEST:
            raise IndexStoreError(f"{self.location} was written by a newer dupfinder (schema version {meta['schema_version']}; "
                                  f"this one knows up to {pm.LATEST}): upgrade dupfinder")
        if meta["schema_version"] < pm.LATEST:
            with conn.transaction():
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_SPACE, self.table))
                meta = self._meta(cur)
                pm.migrate(cur, self.names, meta)
                meta = self._meta(cur)
        return meta

    def _meta(self, cur) -> dict | None:
        cur.execute(f"SELECT name, schema_version, kind, metric, dimension, model, hnsw, versions, created, updated "
                    f"FROM {CATALOG} WHERE name = %s", (self.table,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d.name for d in cur.description], row))

    def _check_extension(self, cur) -> None:
        """Fail on open, before any work, when pgvector is missing and this user cannot add it."""
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector'), "
                    "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector'), "
                    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), current_database()")
        installed, available, superuser, db = cur.fetchone()
        if installed:
            return
        if not available:
            raise IndexStoreError(f"the PostgreSQL server of {self.location} has no pgvector: install it on the server "
                                  f"(the postgresql-NN-pgvector package, or from source), then run `CREATE EXTENSION vector;` in database {db}")
        if not superuser:
            raise IndexStoreError(f"database {db} has no vector extension and user {self.where.user} may not add it: "
                                  f"ask its owner or a superuser to run `CREATE EXTENSION vector;` in database {db} ({self.location})")

    def _create_index(self, cur) -> dict:
        """Inside the writer's transaction: the extension, the catalog, this table, its migrations."""
        from pgvector.psycopg import register_vector

        from dupfinder.store import pg_migrations as pm

        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')")
        if not cur.fetchone()[0]:
            self._check_extension(cur)
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(cur.connection)  # for the cursors opened from now on
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, CATALOG_LOCK))
        pm.bootstrap(cur)
        if cur.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table,)).fetchone()[0]:
            raise IndexStoreError(f"table {self.table} in {self.location} is not a dupfinder index; choose another table with ?table=NAME")
        kind = self.kind
        versions = self._versions(cur)
        hnsw = None
        if kind == "hnsw":
            hnsw = asdict(self._hnsw)
            hnsw["precision"] = graph_precision(self._hnsw.precision, versions["pgvector"])
        meta = {"name": self.table, "schema_version": 0, "kind": kind, "metric": METRIC, "dimension": int(self.dim),
                "model": self.model, "hnsw": hnsw}
        from psycopg.types.json import Jsonb

        cur.execute(f"INSERT INTO {pm.CATALOG} (name, schema_version, kind, metric, dimension, model, hnsw, versions) "
                    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (self.table, 0, kind, METRIC, meta["dimension"], Jsonb(meta["model"]),
                     Jsonb(meta["hnsw"]) if meta["hnsw"] else None, Jsonb(versions)))
        pm.migrate(cur, self.names, meta)
        return self._meta(cur)

    def _versions(self, cur) -> dict:
        from dupfinder import __version__

        cur.execute("SELECT current_setting('server_version'), (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        server, vector = cur.fetchone()
        return {"dupfinder": __version__, "postgresql": server, "pgvector": vector, "psycopg": self._pg.__version__}

    # ------------------------------------------------------------ what it is

    @property
    def exists(self) -> bool:
        return self.meta is not None

    def set_model(self, record: dict, dim: int) -> None:
        """The model record and dimension a store that does not exist yet is created with."""
        self._create = dict(self._create or {}, model=record, dim=dim)

    @property
    def model(self) -> dict:
        return self.meta["model"] if self.meta is not None else self._create["model"]

    @property
    def dim(self) -> int:
        return int(self.meta["dimension"]) if self.meta is not None else int(self._create["dim"])

    @property
    def kind(self) -> str:
        if self.meta is not None:
            return self.meta["kind"]
        return (self._create or {}).get("kind") or "hnsw"

    def _recorded_ef_search(self) -> int:
        if self._ef_search is not None:
            return self._ef_search
        recorded = (self.meta or {}).get("hnsw") or asdict(self._hnsw)
        return int(recorded["ef_search"])

    @property
    def count(self) -> int:
        if self.meta is None:
            return 0
        return self._read(lambda conn: conn.execute(self._sql("SELECT count(*) FROM {t}")).fetchone()[0], "counting")

    def _sql(self, text: str):
        from psycopg import sql

        return sql.SQL(text).format(t=self.names.ident)

    # ------------------------------------------------------------ writes

    def known(self, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
        if self.meta is None:
            return {}, set()
        return self._read(lambda conn: self._known(conn.cursor(), questions), "reading")

    def _known(self, cur, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
        """The stored user ids of `questions` (-> their text hash) and their text hashes that are stored."""
        ids = sorted({q.user_id for q in questions if q.user_id is not None})
        hashes = sorted({text_hash(q.text) for q in questions if q.text.strip()})
        stored_ids: dict[str, str] = {}
        stored_hashes: set[str] = set()
        if ids:
            cur.execute(self._sql("SELECT t.user_id, t.text_hash FROM {t} t JOIN unnest(%s::text[]) u(id) ON t.user_id = u.id"), (ids,))
            stored_ids = dict(cur.fetchall())
        if hashes:
            cur.execute(self._sql("SELECT h FROM unnest(%s::text[]) u(h) WHERE EXISTS (SELECT 1 FROM {t} t WHERE t.text_hash = u.h)"),
                        (hashes,))
            stored_hashes = {r[0] for r in cur.fetchall()}
        return stored_ids, stored_hashes

    def add(self, questions: Sequence[Question], vectors: np.ndarray, upsert: bool = False) -> AddReport:
        """Store the questions not stored yet (by user id or normalized text), all in one transaction
        under the table's writer lock, so concurrent writers never store a question twice."""
        vectors = np.asarray(vectors, dtype=np.float32)  # (n, d)
        if len(vectors) != len(questions) or (len(vectors) and vectors.shape[1] != self.dim):
            raise ValueError(f"{len(questions)} questions need ({len(questions)}, {self.dim}) vectors, got {vectors.shape}")
        report = AddReport()
        with self._transaction("adding to") as cur:
            meta = self._meta(cur) if self._has_catalog(cur) else None
            if meta is None:
                if self._create is None:
                    raise IndexStoreError(f"{self.location} was deleted meanwhile; run the command again")
                meta = self._create_index(cur)
                report.created = True
            elif meta["model"]["fingerprint"] != self.model["fingerprint"]:
                raise IndexStoreError(f"{self.location} was rebuilt with another model meanwhile; run the command again")
            count = 0 if report.created else cur.execute(self._sql("SELECT count(*) FROM {t}")).fetchone()[0]
            plan = plan_add(questions, *self._known(cur, questions), report, upsert, self.location)
            if report.created and not plan.fresh:
                raise InputError("no questions to index: every one was empty")  # rolls back the creation
            if plan.replace:
                cur.execute(self._sql("DELETE FROM {t} WHERE user_id = ANY(%s)"), (plan.replace,))
                count -= cur.rowcount
            if plan.fresh:
                self._insert(cur, meta, plan.fresh, vectors, bulk=meta["kind"] == "hnsw" and len(plan.fresh) >= max(BULK_MIN, count))
                cur.execute(f"UPDATE {CATALOG} SET updated = now(), versions = %s WHERE name = %s",
                            (self._jsonb(self._versions(cur)), self.table))
            report.added, report.count = len(plan.fresh), count + len(plan.fresh)
        self.meta = self._read(lambda conn: self._meta(conn.cursor()), "reading")
        return report

    def _has_catalog(self, cur) -> bool:
        
        return cur.execute("SELECT to_regclass(%s) IS NOT NULL", (CATALOG,)).fetchone()[0]

    def _jsonb(self, value):
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def _insert(self, cur, meta: dict, fresh: list, vectors: np.ndarray, bulk: bool) -> None:
        """COPY the new rows in (binary). `bulk`: drop the HNSW graph first and build it again after,
        in one pass: much faster than growing it row by row, but readers wait for the commit."""
        from dupfinder.store.pg_migrations import create_hnsw, half

        started = time.perf_counter()
        if bulk:
            cur.execute(self._drop_hnsw_sql())
        added = datetime.now(timezone.utc)
        cur = cur.connection.cursor()  # a cursor that knows the vector type, even one created in this transaction
        with cur.copy(self._sql("COPY {t} (user_id, text, text_hash, source, added, embedding) FROM STDIN (FORMAT BINARY)")) as copy:
            copy.set_types(["text", "text", "text", "text", "timestamptz", "vector"])
            for i, q, h in fresh:
                # PostgreSQL text cannot hold NUL; the hash is of the text as given
                copy.write_row((q.user_id, q.text.replace("\x00", "\ufffd"), h, q.source.replace("\x00", "\ufffd"), added, vectors[i]))
        if bulk:
            n = cur.execute(self._sql("SELECT count(*) FROM {t}")).fetchone()[0]
            # the graph is built in memory when it fits: vectors plus about m * 2 neighbour slots each
            value_bytes = (2 if half(meta["hnsw"]) else 4) * int(meta["dimension"])
            need_mb = int(n * (value_bytes + 16 * int(meta["hnsw"]["m"]) * 2 + 64) / 2**20 * 1.3) + 64
            have_mb = megabytes(cur.execute("SHOW maintenance_work_mem").fetchone()[0])
            if need_mb > have_mb:
                cur.execute("SELECT set_config('maintenance_work_mem', %s, true)", (f"{min(need_mb, 8192)}MB",))
            copied = time.perf_counter()
            create_hnsw(cur, self.names, meta["hnsw"], meta["dimension"])
            self.last_add = {"rows": len(fresh), "bulk": True, "copy_s": round(copied - started, 2),
                             "hnsw_build_s": round(time.perf_counter() - copied, 2)}
        else:
            self.last_add = {"rows": len(fresh), "bulk": False, "insert_s": round(time.perf_counter() - started, 2)}

    def _drop_hnsw_sql(self):
        from psycopg import sql

        return sql.SQL("DROP INDEX IF EXISTS {h}").format(h=self.names.hnsw)

    def remove(self, ids: Sequence[str]) -> RemoveReport:
        """Delete by the user's id (or the store's id for a question without one), all or nothing."""
        wanted = [str(i) for i in dict.fromkeys(ids)]
        with self._transaction("removing from") as cur:
            cur.execute(self._sql("SELECT t.user_id, t.id FROM {t} t JOIN unnest(%s::text[]) u(id) ON t.user_id = u.id"), (wanted,))
            by_user_id: dict[str, list[int]] = {}
            for uid, i in cur.fetchall():
                by_user_id.setdefault(uid, []).append(i)
            numbers = [int(w) for w in wanted if w.lstrip("-").isdigit() and w not in by_user_id and abs(int(w)) < 2**63]
            cur.execute(self._sql("SELECT id FROM {t} WHERE id = ANY(%s) AND user_id IS NULL"), (numbers,))
            anonymous = {r[0] for r in cur.fetchall()}
            doomed = resolve_ids(wanted, lambda w: by_user_id.get(w, []), lambda i: [i] if i in anonymous else [], self.location)
            cur.execute(self._sql("DELETE FROM {t} WHERE id = ANY(%s)"), (doomed,))
            cur.execute(f"UPDATE {CATALOG} SET updated = now() WHERE name = %s", (self.table,))
            count = cur.execute(self._sql("SELECT count(*) FROM {t}")).fetchone()[0]
        self.meta = self._read(lambda conn: self._meta(conn.cursor()), "reading")
        return RemoveReport(removed=wanted, count=count)

    # ------------------------------------------------------------ reads

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (`ORDER BY embedding <#> q`, the HNSW graph at ef_search): scores
        (n, k) float32 cosines best first, store ids (n, k) int64, -1 past the end."""
        scores, ids, _ = self._search(vectors, k, records=False)
        return scores, ids

    def search_records(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict[int, Record]]:
        """`search` and `get` of what it found in one statement per query (one round trip instead of
        two): scores (n, k), store ids (n, k), store id -> record."""
        return self._search(vectors, k, records=True)

    def _search(self, vectors: np.ndarray, k: int, records: bool) -> tuple[np.ndarray, np.ndarray, dict[int, Record]]:
        vectors = np.asarray(vectors, dtype=np.float32)  # (n, d)
        scores = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        found: dict[int, Record] = {}
        if self.meta is None or not len(vectors):
            return scores, ids, found
        ef = max(self.ef_search, k) if self.kind == "hnsw" else None
        graph_half = self.kind == "hnsw" and self._graph_half()

        def run(conn):
            if ef is not None and self._applied_ef.get(conn) != ef:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
                self._applied_ef[conn] = ef
            cur = conn.cursor()
            query, params = self._search_sql(records), (lambda v: (v, v, k)) if graph_half else (lambda v: (v, k))
            if len(vectors) == 1:
                return [cur.execute(query, params(vectors[0]), binary=True).fetchall()]
            cur.executemany(query, [params(v) for v in vectors], returning=True)
            out = []
            while True:
                out.append(cur.fetchall())
                if not cur.nextset():
                    return out

        for row, hits in enumerate(self._read(run, "searching")):
            # a half-precision graph orders by the rounded vectors; the scores are the float32 ones
            for j, hit in enumerate(sorted(hits, key=lambda h: h[1]) if graph_half else hits):
                ids[row, j], scores[row, j] = hit[0], -hit[1]
                if records:
                    found[hit[0]] = Record(hit[0], hit[2], hit[3], hit[4], hit[5], iso(hit[6]))
        return scores, ids, found

    def _graph_half(self) -> bool:
        from dupfinder.store.pg_migrations import half

        return half((self.meta or {}).get("hnsw"))

    def _search_sql(self, records: bool = False):
        """Top-k by the graph's order: `embedding <#> q` itself, or its half-precision cast, which is
        what a halfvec graph is built on (the scores stay the float32 inner products); with
        `records`, the columns of a Record too."""
        from psycopg import sql

        from dupfinder.store.pg_migrations import graph_key

        columns = sql.SQL(", user_id, text, text_hash, source, added" if records else "")
        if self.kind == "hnsw" and self._graph_half():
            return sql.SQL("SELECT id, embedding <#> %s AS d{columns} FROM {t} ORDER BY {key} <#> %s::halfvec({dim}) LIMIT %s").format(
                columns=columns, t=self.names.ident, key=graph_key(self.meta["hnsw"], self.dim), dim=sql.Literal(self.dim))
        return sql.SQL("SELECT id, embedding <#> %s AS d{columns} FROM {t} ORDER BY d LIMIT %s").format(columns=columns, t=self.names.ident)

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        wanted = sorted({int(i) for i in ids if int(i) >= 0})
        if self.meta is None or not wanted:
            return {}

        def run(conn):
            cur = conn.execute(self._sql("SELECT id, user_id, text, text_hash, source, added FROM {t} WHERE id = ANY(%s)"), (wanted,))
            return cur.fetchall()

        return {r[0]: Record(r[0], r[1], r[2], r[3], r[4], iso(r[5])) for r in self._read(run, "reading")}

    def lookup(self, user_ids: Iterable[str]) -> dict[str, Record]:
        """User id -> its record; unknown ids are left out."""
        wanted = sorted({str(u) for u in user_ids})
        if self.meta is None or not wanted:
            return {}

        def run(conn):
            return conn.execute(self._sql("SELECT t.id, t.user_id, t.text, t.text_hash, t.source, t.added FROM {t} t "
                                          "JOIN unnest(%s::text[]) u(id) ON t.user_id = u.id"), (wanted,)).fetchall()

        return {r[1]: Record(r[0], r[1], r[2], r[3], r[4], iso(r[5])) for r in self._read(run, "reading")}

    def get_vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors (n, d) float32 of store ids, in the order given; an unknown id is a KeyError."""
        wanted = [int(i) for i in ids]
        if not wanted:
            return np.zeros((0, self.dim), np.float32)

        def run(conn):
            return conn.cursor(binary=True).execute(self._sql("SELECT id, embedding FROM {t} WHERE id = ANY(%s)"),
                                                    (sorted(set(wanted)),)).fetchall()

        found = {i: array(v) for i, v in (self._read(run, "reading") if self.meta is not None else [])}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"not in {self.location}: store ids {missing[:10]}")
        return np.stack([found[i] for i in wanted])  # (n, d)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All store ids (n,) and their vectors (n, d), by id."""
        def run(conn):
            return conn.cursor(binary=True).execute(self._sql("SELECT id, embedding FROM {t} ORDER BY id")).fetchall()

        rows = self._read(run, "reading") if self.meta is not None else []
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.stack([array(r[1]) for r in rows]) if rows else np.zeros((0, self.dim), np.float32)
        return ids, vecs

    def sources(self) -> dict[str, int]:
        if self.meta is None:
            return {}
        rows = self._read(lambda conn: conn.execute(self._sql(
            "SELECT source, count(*) FROM {t} GROUP BY source ORDER BY count(*) DESC, source")).fetchall(), "reading")
        return dict(rows)

    def info(self) -> dict:
        meta = self.meta or {}

        def run(conn):
            return conn.execute("SELECT pg_total_relation_size(%s::regclass)", (self.table,)).fetchone()[0] if self.meta else 0

        size = self._read(run, "reading")
        out = {
            "index": self.location, "count": self.count, "kind": self.kind, "metric": meta.get("metric", METRIC),
            "dimension": self.dim, "size_bytes": int(size or 0), "table": self.table,
            "schema_version": meta.get("schema_version"), "created": iso(meta.get("created")), "updated": iso(meta.get("updated")),
            "versions": meta.get("versions"), "sources": self.sources(),
        }
        if self.kind == "hnsw":
            out["hnsw"] = dict(meta.get("hnsw") or asdict(self._hnsw), ef_search=self.ef_search)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

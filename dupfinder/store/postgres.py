"""The PostgreSQL + pgvector store: the questions and their vectors in the site's own database, one
table per index with an HNSW graph on inner product, and a catalog row with the model it was built
with. `postgresql://USER@HOST:PORT/DB?table=NAME`: any libpq URI, plus `table` (ours, stripped).
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np

from dupfinder.errors import DupfinderError, IndexStoreError, InputError
from dupfinder.store.base import METRIC, AddReport, Question, Record, RemoveReport, plan_add, resolve_ids, text_hash
from dupfinder.store.pg_migrations import CATALOG

KINDS = ("hnsw", "flat")  # hnsw: pgvector's HNSW graph (the default); flat: exact scan, for small tables
DEFAULT_TABLE = "dupfinder_questions"
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")  # plain SQL names: the HNSW index's name adds a suffix
LOCK_SPACE = 1684434020  # first key of this store's advisory locks ("dfpd"); the second is hashtext(table)
CATALOG_LOCK = 0
# a batch at least this large, and at least as large as the table, is copied in before the HNSW graph
# is built (in one pass, in memory, in parallel) instead of being inserted into the graph row by row
BULK_MIN = 10_000
PASSWORD_FREE = ("password",)  # URI parameters never shown


@dataclass
class HnswSettings:
    """pgvector HNSW parameters, recorded in the catalog when the index is created."""

    m: int = 16  # graph degree (pgvector's default): memory and build time grow with it, recall too
    ef_construction: int = 64  # candidate list while building (pgvector's default): build time against graph quality
    # candidate list per query, set as hnsw.ef_search on each connection (`query --ef-search` overrides
    # it); pgvector returns at most ef_search rows, so a larger k raises it for that query. On 517,609
    # Quora questions (benchmarks/bench_scale.py): recall@10 of exact 0.968 at 100, 0.981 at 200
    ef_search: int = 200


def _psycopg():
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg
    except ModuleNotFoundError:
        raise IndexStoreError("PostgreSQL indexes need psycopg and pgvector: pip install 'dupfinder[postgres]'") from None
    return psycopg


# ---------------------------------------------------------------- the location


@dataclass(frozen=True)
class Location:
    conninfo: str  # for libpq: the URI without `table`
    table: str
    shown: str  # for messages: the URI without its password
    database: str
    user: str
    password: str | None


def parse_location(location: str) -> Location:
    """Split `table=` off a libpq URI, check both, and make a form to show (no password)."""
    psycopg = _psycopg()
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [v for k, v in query if k == "table"]
    rest = [(k, v) for k, v in query if k != "table"]
    table = tables[-1] if tables else DEFAULT_TABLE
    conninfo = _join(parts.scheme, parts.netloc, parts.path, urlencode(rest))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user_part = userinfo.split(":", 1)[0]
    shown = _join(parts.scheme, (f"{user_part}@" if user_part else "") + hosts, parts.path,
                  urlencode([(k, v) for k, v in rest if k not in PASSWORD_FREE] + [("table", table)], safe="/"))
    if not TABLE_NAME.fullmatch(table):
        raise InputError(f"table={table!r} in {shown}: use lower-case letters, digits and _ (at most 40, not starting with a digit)")
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as e:
        raise IndexStoreError(f"{shown} is not a valid PostgreSQL URI ({_first_line(e)}); "
                              f"use postgresql://USER@HOST:PORT/DATABASE?table=NAME") from None
    import getpass

    user = params.get("user") or getpass.getuser()
    return Location(conninfo, table, shown, params.get("dbname") or user, user, params.get("password"))


def _join(scheme: str, netloc: str, path: str, query: str) -> str:
    """A URI from its parts; unlike urlunsplit, keeps `//` when there is no host (a Unix socket)."""
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


# ---------------------------------------------------------------- the store


class PostgresStore:
    """An index in a PostgreSQL table (see the module doc).

    `PostgresStore(uri)` opens an existing index; with `create` ({"kind": "hnsw" | "flat" | None})
    a table that is not there yet is accepted, and the first `add` creates it (with the model and
    dimension given to `set_model`). One connection, opened here; a server calls `use_pool(n)`.

    >>> store = PostgresStore("postgresql://app@db.internal/site?table=questions")
    >>> scores, ids = store.search(vectors, 10)  # (n, 10) cosines, (n, 10) store ids
    """

    def __init__(self, location: str, create: dict | None = None, hnsw: HnswSettings | None = None):
        self._pg = _psycopg()
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

    # ------------------------------------------------------------ connections and errors

    def _connect(self):
        psycopg = self._pg
        from pgvector.psycopg import register_vector

        params = psycopg.conninfo.conninfo_to_dict(self.where.conninfo)
        extra = {k: v for k, v in (("application_name", "dupfinder"), ("connect_timeout", "10")) if k not in params}
        try:
            conn = psycopg.connect(self.where.conninfo, autocommit=True, **extra)
        except psycopg.Error as e:
            raise self._connect_error(e) from None
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:  # no vector type yet: registered once the extension is created
            pass
        except BaseException:
            conn.close()
            raise
        return conn

    def use_pool(self, max_size: int = 8, min_size: int = 1) -> None:
        """Serve from a pool of connections (psycopg_pool), for a multi-threaded server; each
        connection is checked when taken, so a restarted database is reconnected to."""
        from psycopg_pool import ConnectionPool

        def configure(conn) -> None:
            from pgvector.psycopg import register_vector

            register_vector(conn)
            conn.autocommit = True

        params = self._pg.conninfo.conninfo_to_dict(self.where.conninfo)
        kwargs = {k: v for k, v in (("application_name", "dupfinder"), ("connect_timeout", "10")) if k not in params}
        pool = None
        try:
            pool = ConnectionPool(self.where.conninfo, min_size=min_size, max_size=max_size, kwargs=kwargs,
                                  configure=configure, check=ConnectionPool.check_connection, open=True, name="dupfinder")
            pool.wait(timeout=30)
        except Exception as e:  # noqa: BLE001  (PoolTimeout carries no libpq message: connect once for it)
            if pool is not None:
                pool.close()
            self._connect().close()
            raise IndexStoreError(f"cannot open a connection pool to {self.location}: {_first_line(e)}") from None
        self._pool = pool
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _connection(self) -> Iterator:
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
            return
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
        yield conn

    def _drop_broken(self) -> None:
        """Forget a single connection that broke, so the next use reconnects."""
        if self._pool is None and self._conn is not None and (self._conn.broken or self._conn.closed):
            self._conn.close()
            self._conn = None

    def _read(self, fn, doing: str):
        """`fn(connection)`, reconnecting once when the connection broke (the server restarted, an idle
        connection was cut): reads are safe to repeat."""
        psycopg = self._pg
        for attempt in (0, 1):
            try:
                with self._connection() as conn:
                    return fn(conn)
            except DupfinderError:
                raise
            except psycopg.OperationalError as e:
                self._drop_broken()
                if attempt == 0 and _connection_lost(e):
                    continue
                raise self._error(e, doing) from None
            except psycopg.Error as e:
                raise self._error(e, doing) from None

    @contextmanager
    def _transaction(self, doing: str) -> Iterator:
        """A cursor in one transaction that holds this table's writer lock: all of it or none of it."""
        psycopg = self._pg
        self._read(lambda conn: conn.execute("SELECT 1"), doing)  # a dead connection is replaced before anything is sent
        try:
            with self._connection() as conn:
                with conn.transaction():
                    cur = conn.cursor()
                    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_SPACE, self.table))
                    yield cur
        except DupfinderError:
            raise
        except psycopg.Error as e:
            self._drop_broken()
            raise self._error(e, doing, write=True) from None

    def _connect_error(self, e) -> IndexStoreError:
        msg = self._clean(_first_line(e))
        reason = msg.rsplit("failed: ", 1)[-1].strip()
        low = msg.lower()
        w = self.where
        if "password authentication failed" in low:
            return IndexStoreError(f"PostgreSQL refused the password of user {w.user} at {self.location}: "
                                   f"check the user and password in the URI (or PGPASSWORD, ~/.pgpass)")
        if "no password supplied" in low or "password is required" in low:
            return IndexStoreError(f"PostgreSQL at {self.location} wants a password for user {w.user}: "
                                   f"give it in the URI (postgresql://USER:PASSWORD@...) or in PGPASSWORD or ~/.pgpass")
        if f'database "{w.database}" does not exist' in msg:
            return IndexStoreError(f"database {w.database} does not exist on the server of {self.location}: "
                                   f"create it (createdb {w.database}) or fix the URI")
        if "role" in low and "does not exist" in low:
            return IndexStoreError(f"PostgreSQL has no user {w.user} ({self.location}): fix the user in the URI")
        if any(s in low for s in ("connection refused", "no such file or directory", "timeout expired", "could not translate host",
                                  "network is unreachable", "no route to host", "could not connect")):
            return IndexStoreError(f"cannot reach PostgreSQL at {self.location} ({reason}): is the server running, "
                                   f"and are the host and port right?")
        return IndexStoreError(f"cannot connect to PostgreSQL at {self.location}: {reason}")

    def _error(self, e, doing: str, write: bool = False) -> IndexStoreError:
        psycopg = self._pg
        msg = self._clean(_first_line(e))
        if isinstance(e, psycopg.OperationalError) and _connection_lost(e):
            then = ("no partial batch is stored: run the command again (questions already stored are skipped)" if write
                    else "run the command again")
            return IndexStoreError(f"lost the connection to PostgreSQL at {self.location} while {doing} it ({msg}); {then}")
        if isinstance(e, psycopg.OperationalError) and getattr(e, "sqlstate", None) is None:
            return self._connect_error(e)
        if isinstance(e, psycopg.errors.InsufficientPrivilege):
            return IndexStoreError(f"user {self.where.user} may not do this in {self.location} ({msg}): "
                                   f"grant it the rights, or use another user")
        return IndexStoreError(f"PostgreSQL error while {doing} {self.location}: {msg}")

    def _clean(self, text: str) -> str:
        pw = self.where.password
        return text.replace(pw, "***") if pw else text

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
        meta = {"name": self.table, "schema_version": 0, "kind": kind, "metric": METRIC, "dimension": int(self.dim),
                "model": self.model, "hnsw": asdict(self._hnsw) if kind == "hnsw" else None}
        from psycopg.types.json import Jsonb

        cur.execute(f"INSERT INTO {pm.CATALOG} (name, schema_version, kind, metric, dimension, model, hnsw, versions) "
                    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (self.table, 0, kind, METRIC, meta["dimension"], Jsonb(meta["model"]),
                     Jsonb(meta["hnsw"]) if meta["hnsw"] else None, Jsonb(self._versions(cur))))
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

    @property
    def ef_search(self) -> int | None:
        if self.kind != "hnsw":
            return None
        if self._ef_search is not None:
            return self._ef_search
        recorded = (self.meta or {}).get("hnsw") or asdict(self._hnsw)
        return int(recorded["ef_search"])

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise InputError(f"--ef-search applies to HNSW indexes; {self.location} is {self.kind}")
        self._ef_search = int(value)

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
        from dupfinder.store.pg_migrations import create_hnsw

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
            need_mb = int(n * (4 * int(meta["dimension"]) + 16 * int(meta["hnsw"]["m"]) * 2 + 64) / 2**20 * 1.3) + 64
            have_mb = _megabytes(cur.execute("SHOW maintenance_work_mem").fetchone()[0])
            if need_mb > have_mb:
                cur.execute("SELECT set_config('maintenance_work_mem', %s, true)", (f"{min(need_mb, 8192)}MB",))
            copied = time.perf_counter()
            create_hnsw(cur, self.names, meta["hnsw"])
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
        vectors = np.asarray(vectors, dtype=np.float32)  # (n, d)
        scores = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        if self.meta is None or not len(vectors):
            return scores, ids
        ef = max(self.ef_search, k) if self.kind == "hnsw" else None

        def run(conn):
            if ef is not None and self._applied_ef.get(conn) != ef:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
                self._applied_ef[conn] = ef
            cur = conn.cursor()
            query = self._sql("SELECT id, embedding <#> %s AS d FROM {t} ORDER BY d LIMIT %s")
            if len(vectors) == 1:
                return [cur.execute(query, (vectors[0], k), binary=True).fetchall()]
            cur.executemany(query, [(v, k) for v in vectors], returning=True)
            out = []
            while True:
                out.append(cur.fetchall())
                if not cur.nextset():
                    return out

        for row, hits in enumerate(self._read(run, "searching")):
            for j, (i, d) in enumerate(hits):
                ids[row, j], scores[row, j] = i, -d
        return scores, ids

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        wanted = sorted({int(i) for i in ids if int(i) >= 0})
        if self.meta is None or not wanted:
            return {}

        def run(conn):
            cur = conn.execute(self._sql("SELECT id, user_id, text, text_hash, source, added FROM {t} WHERE id = ANY(%s)"), (wanted,))
            return cur.fetchall()

        return {r[0]: Record(r[0], r[1], r[2], r[3], r[4], _iso(r[5])) for r in self._read(run, "reading")}

    def lookup(self, user_ids: Iterable[str]) -> dict[str, Record]:
        """User id -> its record; unknown ids are left out."""
        wanted = sorted({str(u) for u in user_ids})
        if self.meta is None or not wanted:
            return {}

        def run(conn):
            return conn.execute(self._sql("SELECT t.id, t.user_id, t.text, t.text_hash, t.source, t.added FROM {t} t "
                                          "JOIN unnest(%s::text[]) u(id) ON t.user_id = u.id"), (wanted,)).fetchall()

        return {r[1]: Record(r[0], r[1], r[2], r[3], r[4], _iso(r[5])) for r in self._read(run, "reading")}

    def get_vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors (n, d) float32 of store ids, in the order given; an unknown id is a KeyError."""
        wanted = [int(i) for i in ids]
        if not wanted:
            return np.zeros((0, self.dim), np.float32)

        def run(conn):
            return conn.cursor(binary=True).execute(self._sql("SELECT id, embedding FROM {t} WHERE id = ANY(%s)"),
                                                    (sorted(set(wanted)),)).fetchall()

        found = {i: _array(v) for i, v in (self._read(run, "reading") if self.meta is not None else [])}
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
        vecs = np.stack([_array(r[1]) for r in rows]) if rows else np.zeros((0, self.dim), np.float32)
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
            "schema_version": meta.get("schema_version"), "created": _iso(meta.get("created")), "updated": _iso(meta.get("updated")),
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

    def __enter__(self) -> "PostgresStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _connection_lost(e) -> bool:
    """A broken connection (server gone, restarted, killed) rather than an error of the statement."""
    state = getattr(e, "sqlstate", None)
    if state in ("57P01", "57P02", "57P03", "08000", "08003", "08006"):  # shutdown, crash, cannot connect now, connection errors
        return True
    text = str(e).lower()
    return state is None and any(s in text for s in (
        "server closed the connection", "connection is closed", "connection is lost", "terminating connection",
        "consuming input failed", "sending query failed", "the connection is lost", "ssl syscall", "eof detected",
        "broken pipe", "connection reset"))


def _array(vector) -> np.ndarray:
    """A vector as pgvector loads it (a `Vector` from 0.3 on, a numpy array before) -> (d,) float32."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def _megabytes(setting: str) -> int:
    value = re.fullmatch(r"(\d+)\s*([kMGT]?B)?", setting.strip())
    if not value:
        return 0
    n, unit = int(value.group(1)), value.group(2) or "kB"
    return n * {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}[unit] // 1024


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return str(value)

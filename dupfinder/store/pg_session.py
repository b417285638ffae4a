"""How the PostgreSQL store talks to its database: one connection or a pool, reads that reconnect
once, write transactions under the table's advisory lock, and errors turned into one line that
says what to fix (never showing the password). `postgres.PostgresStore` mixes it in."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from dupfinder.errors import DupfinderError, IndexStoreError
from dupfinder.store.pg_wire import LOCK_SPACE, connection_lost, first_line


class Connections:
    """Needs `_pg` (psycopg), `where` (Location), `location`, `table`, `_lock`, `_conn` and `_pool`."""

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
            raise IndexStoreError(f"cannot open a connection pool to {self.location}: {first_line(e)}") from None
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
                if attempt == 0 and connection_lost(e):
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
        msg = self._clean(first_line(e))
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
        msg = self._clean(first_line(e))
        if isinstance(e, psycopg.OperationalError) and connection_lost(e):
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

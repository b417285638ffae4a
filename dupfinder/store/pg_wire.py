"""The PostgreSQL side of the PostgreSQL store: the connection URI, HNSW settings, loading psycopg,
and values to and from the database's shapes (`postgres.PostgresStore` is the store)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np

from dupfinder.errors import IndexStoreError, InputError

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
    # candidate list while building (pgvector's default is 64): twice that builds 1.7 times slower and
    # buys recall at a lower ef_search; on 517,609 Quora questions (research/pg_graph.py) m 16 / 128
    # reaches recall@10 0.982 at ef_search 144 in 4.6 ms (encode, search, records), where 16 / 64
    # needs ef_search 200 and 5.7 ms, and 24 / 96 builds slower for less
    ef_construction: int = 128
    # candidate list per query, set as hnsw.ef_search on each connection (`query --ef-search` overrides
    # it); pgvector returns at most ef_search rows, so a larger k raises it for that query
    ef_search: int = 144
    # the values the graph holds: "halfvec" (pgvector 0.7 and later: an index on embedding::halfvec, half
    # the memory, built faster, the same recall; the table keeps float32 vectors and scores are exact)
    # or "vector" (float32, every pgvector); "auto": halfvec where the server has it
    precision: str = "auto"


HALFVEC_SINCE = (0, 7, 0)  # the first pgvector with halfvec


def graph_precision(wanted: str, pgvector_version: str | None) -> str:
    """The precision a new HNSW graph gets on a server with this pgvector ("auto", "0.8.2" -> "halfvec")."""
    if wanted not in ("auto", "halfvec", "vector"):
        raise InputError(f"unknown HNSW precision {wanted!r}; use auto, halfvec or vector")
    if wanted != "auto":
        return wanted
    numbers = tuple(int(n) for n in re.findall(r"\d+", pgvector_version or "")[:3])
    return "halfvec" if numbers >= HALFVEC_SINCE else "vector"


def load_psycopg():
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
    psycopg = load_psycopg()
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [v for k, v in query if k == "table"]
    rest = [(k, v) for k, v in query if k != "table"]
    table = tables[-1] if tables else DEFAULT_TABLE
    conninfo = join(parts.scheme, parts.netloc, parts.path, urlencode(rest))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user_part = userinfo.split(":", 1)[0]
    shown = join(parts.scheme, (f"{user_part}@" if user_part else "") + hosts, parts.path,
                  urlencode([(k, v) for k, v in rest if k not in PASSWORD_FREE] + [("table", table)], safe="/"))
    if not TABLE_NAME.fullmatch(table):
        raise InputError(f"table={table!r} in {shown}: use lower-case letters, digits and _ (at most 40, not starting with a digit)")
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as e:
        raise IndexStoreError(f"{shown} is not a valid PostgreSQL URI ({first_line(e)}); "
                              f"use postgresql://USER@HOST:PORT/DATABASE?table=NAME") from None
    import getpass

    user = params.get("user") or getpass.getuser()
    return Location(conninfo, table, shown, params.get("dbname") or user, user, params.get("password"))


def join(scheme: str, netloc: str, path: str, query: str) -> str:
    """A URI from its parts; unlike urlunsplit, keeps `//` when there is no host (a Unix socket)."""
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


# ---------------------------------------------------------------- the store


def connection_lost(e) -> bool:
    """A broken connection (server gone, restarted, killed) rather than an error of the statement."""
    state = getattr(e, "sqlstate", None)
    if state in ("57P01", "57P02", "57P03", "08000", "08003", "08006"):  # shutdown, crash, cannot connect now, connection errors
        return True
    text = str(e).lower()
    return state is None and any(s in text for s in (
        "server closed the connection", "connection is closed", "connection is lost", "terminating connection",
        "consuming input failed", "sending query failed", "the connection is lost", "ssl syscall", "eof detected",
        "broken pipe", "connection reset"))


def array(vector) -> np.ndarray:
    """A vector as pgvector loads it (a `Vector` from 0.3 on, a numpy array before) -> (d,) float32."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def megabytes(setting: str) -> int:
    value = re.fullmatch(r"(\d+)\s*([kMGT]?B)?", setting.strip())
    if not value:
        return 0
    n, unit = int(value.group(1)), value.group(2) or "kB"
    return n * {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}[unit] // 1024


def iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return str(value)

"""The Milvus side of the Milvus store: the URI, limits of a request, retries, how a pymilvus
error is classified, and rows to and from Milvus's shape (`milvus.MilvusStore` is the store)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterator, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from dupfinder.errors import InputError
from dupfinder.store.base import Question, Record

FORMAT_VERSION = 1
DEFAULT_PORT = 19530
KINDS = ("hnsw", "flat")  # hnsw: approximate graph search (the default here); flat: exact, every vector scanned
PREFIX = "dupfinder."  # collection properties written by dupfinder
SOURCE_PREFIX = PREFIX + "source."  # one property per source file ever added (their counts are queried)

# Milvus VARCHAR lengths are in bytes (UTF-8); a longer value is refused before anything is written
MAX_BYTES = {"user_id": 1024, "text": 65_535, "source": 4096}
FIELDS = ["id", "user_id", "text", "text_hash", "source", "added"]  # what a Record is read from

# Reads use Strong consistency: the server answers only after it has applied every write
# acknowledged before the read began, whichever client made it. The next `dupfinder query` is
# another process than the `dupfinder index` before it (Session consistency would not cover it),
# and `add` looks up stored ids and text hashes to stay idempotent: a stale answer there would
# store a question twice. On a cluster it costs a wait for the latest time tick per read (tens of
# ms at most); Bounded would spare it but let a search miss what was added a moment ago.
CONSISTENCY = "Strong"

# upsert requests sent at once. One: Milvus Lite's server applies concurrent writes to one
# collection without a lock (its write-ahead log interleaves them), and with two in flight a test
# lost a batch across a server restart. A cluster takes more (the client would convert one batch
# while the server stores the other); raise it only for a server known to be safe.
IN_FLIGHT = 1
LOOKUP_CHUNK = 1000  # values per `in [...]` filter
SEARCH_CHUNK = 1024  # query vectors per search request (Milvus takes at most 16,384)
MAX_TOPK = 16_384  # Milvus's limit on k
FLUSH_MIN_ROWS = 1000  # an add of at least this many rows ends with a flush (see `add`)


@dataclass
class HnswParams:
    """The HNSW index a new collection gets (`dupfinder.index` property). The local store's values,
    so that both give the same recall: on 518k Quora questions efSearch 96 reached recall@10 0.98."""

    M: int = 32  # graph degree: memory and build time grow with it, recall too
    efConstruction: int = 160  # candidate list while building
    ef: int = 96  # candidate list per query (Milvus needs ef >= k; `query --ef-search` overrides it)


@dataclass
class Retry:
    """Transient errors (server unreachable or restarting, rate limited, timed out) are retried with
    exponential backoff: 0.5 + 1 + 2 + 4 + 8 s, about 15 s in all, covers a server restart."""

    attempts: int = 6
    first_s: float = 0.5
    cap_s: float = 8.0
    timeout_s: float = 60.0  # one request's deadline (pymilvus retries connection errors within it too)


RETRY = Retry()


@dataclass(frozen=True)
class Address:
    """A parsed milvus:// URI. `location` never holds the password."""

    host: str
    port: int
    collection: str
    db: str = ""
    user: str = ""
    password: str = ""
    secure: bool = False

    @property
    def uri(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    @property
    def location(self) -> str:
        db = f"?db={self.db}" if self.db else ""
        return f"milvus://{self.host}:{self.port}/{self.collection}{db}"

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def parse_uri(location: str) -> Address:
    """`milvus://[USER:PASSWORD@]HOST[:PORT]/COLLECTION[?db=NAME&secure=true]`; the password may also
    come from $DUPFINDER_MILVUS_TOKEN (`USER:PASSWORD`, or an API key)."""
    usage = "give --index as milvus://HOST:PORT/COLLECTION (for example milvus://localhost:19530/questions)"
    parts = urlsplit(location)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise InputError(f"bad port in {without_password(location)}; {usage}") from None
    collection = parts.path.strip("/")
    if not parts.hostname or not collection:
        raise InputError(f"{without_password(location)} names no {'host' if not parts.hostname else 'collection'}; {usage}")
    if not NAME.fullmatch(collection):
        raise InputError(f"{collection!r} is not a Milvus collection name: letters, digits and _, not starting with a digit; {usage}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"db", "secure"}
    if unknown:
        raise InputError(f"unknown option {', '.join(sorted(unknown))} in {without_password(location)}; the options are db and secure")
    return Address(parts.hostname, port, collection, query.get("db", ""), unquote(parts.username or ""),
                   unquote(parts.password or ""), query.get("secure", "").lower() in ("1", "true", "yes"))


def without_password(location: str) -> str:
    return re.sub(r"//[^/@]*@", "//", location)


# ---------------------------------------------------------------- errors


def transient(e: BaseException) -> bool:
    """Worth retrying: the server is unreachable, restarting, overloaded or slow."""
    code = getattr(e, "code", None)
    code = code() if callable(code) else code  # grpc.RpcError.code() is a method
    name = getattr(code, "name", "")
    if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"):
        return True
    if getattr(e, "retriable", False) or code in (2, 8):  # 2: pymilvus could not connect; 8: rate limited
        return True
    message = str(getattr(e, "message", "") or e).lower()
    return any(s in message for s in ("fail connecting", "unavailable", "not ready", "connection refused", "deadline exceeded",
                                      "rate limit", "socket closed", "connection reset"))


def not_loaded(e: BaseException) -> bool:
    message = str(getattr(e, "message", "") or e).lower()
    return getattr(e, "code", None) == 101 or "not loaded" in message or "state 'released'" in message


def reason(e: BaseException) -> str:
    message = str(getattr(e, "message", "") or e) or type(e).__name__
    return " ".join(message.split())[:300]  # one line


def quiet_pymilvus() -> None:
    """pymilvus logs each failed request with its traceback on stderr; the CLI says it in one line."""
    for name in ("pymilvus", "pymilvus.decorators"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def literal(value: str) -> str:
    """A Milvus filter string literal: double quotes, with backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- the store


def record_of(i: int, row: dict) -> Record:
    return Record(int(i), row.get("user_id"), row["text"], row["text_hash"], row["source"], row["added"])


def check_lengths(questions: Sequence[Question]) -> None:
    """Refuse, before anything is written, a value longer than its VARCHAR column holds."""
    for q in questions:
        for field, value in (("user_id", q.user_id), ("text", q.text), ("source", q.source)):
            if value is not None and len(value.encode("utf-8")) > MAX_BYTES[field]:
                what = {"user_id": "an id", "text": "a question", "source": "a file name"}[field]
                shown = value[:60] + "..." if len(value) > 60 else value
                raise InputError(f"{what} is longer than the {MAX_BYTES[field]:,} bytes a Milvus index holds: {shown!r}; "
                                 f"shorten it; nothing was added")

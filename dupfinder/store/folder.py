"""The local store's folder: its manifest, its lock, and its SQLite database with the named schema
migrations (`local.LocalStore` is the store itself)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from pathlib import Path
from typing import Iterator

from dupfinder.atomic import nearest_existing
from dupfinder.errors import IndexStoreError

FORMAT_VERSION = 2  # 1: immutable generations of FAISS + SQLite files, rewritten at every write
MANIFEST = "manifest.json"
DATABASE = "questions.db"
LOCK = ".lock"
KINDS = ("flat", "hnsw")
# named schema migrations of questions.db, applied in order; PRAGMA user_version counts those applied
MIGRATIONS = [
    ("questions, deletions and the snapshot pointer", """
        CREATE TABLE questions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id
            user_id TEXT UNIQUE,                   -- the id in the user's file, if it had one
            text TEXT NOT NULL,
            text_hash TEXT NOT NULL,               -- of normalize(text): the same question, whatever its spacing or case
            source TEXT,                           -- the file it came from
            added TEXT NOT NULL,                   -- UTC, ISO 8601
            vector BLOB NOT NULL                   -- float32 (dimension,), unit norm
        );
        CREATE INDEX questions_text_hash ON questions (text_hash);
        CREATE INDEX questions_source ON questions (source);
        CREATE TABLE deleted (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """),
]


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
        if directory.is_dir() and any(p.name != LOCK for p in directory.iterdir()):
            raise IndexStoreError(f"{directory} is not a dupfinder index ({MANIFEST} is missing)") from None
        raise IndexStoreError(f"no index at {directory}; build one with: dupfinder index FILE --index {directory}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexStoreError(f"{path} is corrupt ({e}); rebuild the index with dupfinder index") from None
    if not isinstance(manifest, dict) or "format_version" not in manifest:
        raise IndexStoreError(f"{path} is not a dupfinder index manifest")
    version = manifest["format_version"]
    if version not in (1, FORMAT_VERSION):
        hint = "upgrade dupfinder" if isinstance(version, int) and version > FORMAT_VERSION else "rebuild the index"
        raise IndexStoreError(f"{directory} has index format {version}; this dupfinder reads {FORMAT_VERSION}: {hint}")
    missing = {"kind", "dimension", "model"} - manifest.keys()
    if missing:
        raise IndexStoreError(f"{path} lacks {', '.join(sorted(missing))}; rebuild the index")
    return manifest


@contextlib.contextmanager
def folder_lock(directory: Path, blocking: bool = True) -> Iterator[bool]:
    """The folder's lock, for what SQLite's own locking does not cover (creating, migrating,
    compacting, swapping folders). Yields False when `blocking` is off and another process holds it.
    The kernel drops the lock of a killed process, so none goes stale."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def connect(path: Path) -> sqlite3.Connection:
    """SQLite in WAL mode, fsync at every commit (durable when acknowledged), waiting for the write lock."""
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, (name, sql) in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            if db.execute("PRAGMA user_version").fetchone()[0] < number:  # another process may have just applied it
                for statement in sql.split(";"):  # not executescript: it would commit the transaction first
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")
            db.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise IndexStoreError(f"{path} is corrupt or unreadable ({e}); rebuild the index") from None
    return db

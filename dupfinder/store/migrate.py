"""Moving a local store of index format 1 (immutable generations `gen-N/` of FAISS + SQLite
files) to format 2 (SQLite in WAL mode with the vectors, FAISS snapshots), keeping every id."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from dupfinder.atomic import write_atomic
from dupfinder.errors import IndexStoreError


def migrate_generations(directory: Path, store) -> None:
    """Rewrite a format-1 folder as format 2 (called under the folder lock). The new manifest is
    the commit point: a process killed before it leaves format 1 in place, migrated again next time."""
    from dupfinder.store import folder as local

    manifest = json.loads((directory / local.MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format_version") != 1:
        return  # another process migrated it while we waited for the lock
    gen = directory / f"gen-{manifest['generation']}"
    try:
        import faiss

        old = sqlite3.connect(f"file:{gen / 'meta.db'}?mode=ro&immutable=1", uri=True)
        rows = old.execute("SELECT id, user_id, text, text_hash, source, added FROM questions ORDER BY id").fetchall()
        old.close()
        index = faiss.read_index(str(gen / "vectors.faiss"))
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        vectors = index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, manifest["dimension"]), np.float32)
    except (sqlite3.Error, RuntimeError, OSError) as e:
        raise IndexStoreError(f"{directory} (index format 1) cannot be read to move it to format 2 ({e}); rebuild the index") from None
    by_id = dict(zip(ids.tolist(), range(len(ids))))
    if len(by_id) != len(rows) or any(r[0] not in by_id for r in rows):
        raise IndexStoreError(f"{directory} is inconsistent (FAISS and SQLite disagree); rebuild the index")
    tmp = directory / f"{local.DATABASE}.migrating"
    tmp.unlink(missing_ok=True)
    db = local.connect(tmp)
    with db:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO questions (id, user_id, text, text_hash, source, added, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((*r, np.ascontiguousarray(vectors[by_id[r[0]]], np.float32).tobytes()) for r in rows),
        )
        if manifest.get("next_id", 0) > 0:  # ids are never reused, even those of removed questions
            db.execute("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('questions', ?)", (int(manifest["next_id"]) - 1,))
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    tmp.rename(directory / local.DATABASE)
    new = {k: manifest[k] for k in ("kind", "metric", "dimension", "model", "created", "hnsw", "scan") if k in manifest}
    new["format_version"] = local.FORMAT_VERSION
    write_atomic(directory / local.MANIFEST, json.dumps(new, indent=2).encode())
    for p in directory.iterdir():
        if p.name.startswith(("gen-", ".tmp-")):
            shutil.rmtree(p, ignore_errors=True)

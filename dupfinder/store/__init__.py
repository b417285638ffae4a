"""Vector stores behind one protocol (`base.Store`): the FAISS + SQLite folder (`local`), PostgreSQL
+ pgvector (`postgres`), Milvus (`milvus`), and the brute-force reference the tests hold every
store to. `open_store` picks one from a location: a folder, or a postgresql:// or milvus:// URI."""

from __future__ import annotations

SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "milvus": "milvus"}


def open_store(location: str, create: dict | None = None):
    """The store at `location`. With `create` ({"kind": ...}), a store that does not exist yet is
    accepted; `set_model` then gives it its model, and its first write creates it."""
    from dupfinder.errors import IndexStoreError

    if "://" in location:
        scheme = location.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise IndexStoreError(f"unknown store {scheme}://; give --index a folder, a postgresql:// URI or a milvus:// URI")
        if SCHEMES[scheme] == "postgres":
            from dupfinder.store.postgres import PostgresStore

            return PostgresStore(location, create=create)
        from dupfinder.store.milvus import MilvusStore

        return MilvusStore(location, create=create)
    from dupfinder.store.local import LocalStore

    return LocalStore(location, create=create)

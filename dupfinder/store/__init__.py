"""Vector stores behind one protocol (`base.Store`): the FAISS + SQLite folder (`local`), and the
brute-force reference the tests hold every store to. `open_store` picks one from a location."""

from __future__ import annotations

from dupfinder.errors import IndexStoreError


def open_store(location: str, create: dict | None = None):
    """The store at `location` (a folder). With `create` ({"kind": ...}), a store that does not exist
    yet is accepted and created by its first write."""
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise IndexStoreError(f"{scheme}:// stores are not supported by this dupfinder; give --index a folder")
    from dupfinder.store.local import LocalStore

    return LocalStore(location, create=create)

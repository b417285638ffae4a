"""The store protocol every backend implements, the records it keeps, and the brute-force reference
store that the tests hold every backend to.

A store keeps unit vectors (inner product = cosine) with one metadata row each. It knows nothing of
models or text encoding: the engine encodes, the store stores and searches. Internal ids are
int64, assigned by the store; the user's ids are strings and never mixed with them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from dupfinder.errors import InputError
from dupfinder.text import normalize

METRIC = "inner_product"  # on unit vectors, so scores are cosines


def text_hash(text: str) -> str:
    """Of normalize(text): the same question, whatever its spacing or case."""
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=8).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Question:
    """One question to add: the user's id (or None), its text and the file it came from."""

    user_id: str | None
    text: str
    source: str = ""


@dataclass
class Record:
    """One stored question: the store's id, the user's id (or None), text, hash, source, time added."""

    id: int
    user_id: str | None
    text: str
    text_hash: str
    source: str
    added: str

    @property
    def display_id(self) -> str | int:
        """The id shown to users: theirs when the question had one, else the store's own."""
        return self.user_id if self.user_id is not None else self.id


@dataclass
class AddReport:
    added: int = 0  # new questions, replacements included
    already_indexed: int = 0  # same user id and text, or same normalized text, as a stored question (or an earlier one of the batch)
    empty: int = 0  # empty questions are never stored
    replaced: int = 0  # user ids whose text an upsert replaced (counted in `added` too)
    count: int = 0  # questions in the store afterwards
    created: bool = False

    def summary(self, where: str) -> str:
        replaced = f" ({self.replaced:,} replaced)" if self.replaced else ""
        return (
            f"{'created' if self.created else 'updated'} {where}: {self.added:,} added{replaced}, "
            f"{self.already_indexed:,} already indexed, {self.empty:,} empty skipped; {self.count:,} questions in all"
        )

    def to_dict(self) -> dict:
        return {"added": self.added, "replaced": self.replaced, "already_indexed": self.already_indexed,
                "empty": self.empty, "count": self.count}


@dataclass
class RemoveReport:
    removed: list[str] = field(default_factory=list)
    count: int = 0


@runtime_checkable
class Store(Protocol):
    """What the engine needs of a backend. Writes are all or nothing; reads never see half a write."""

    location: str  # a folder or a URI, for messages (never with a password)
    dim: int
    kind: str  # "flat", "hnsw", ...

    @property
    def exists(self) -> bool: ...  # False for a store opened with `create` that no write has created yet

    def set_model(self, record: dict, dim: int) -> None:
        """The model record (fingerprint, path, threshold, default) and dimension a new store is created with."""
        ...

    @property
    def count(self) -> int: ...

    @property
    def model(self) -> dict: ...  # the model record it was built with; the engine refuses another model

    def sources(self) -> dict[str, int]: ...  # source -> questions, most first

    def known(self, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
        """Of `questions`: the stored user ids (-> their stored text hash) and the text hashes stored already."""
        ...

    def add(self, questions: Sequence[Question], vectors: np.ndarray, upsert: bool = False) -> AddReport:
        """Store `questions` with their vectors (n, dim) as `plan_add` decides, in one transaction."""
        ...

    def remove(self, ids: Sequence[str]) -> RemoveReport:
        """Delete by the user's id (or the store's id for a question without one); all or nothing."""
        ...

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: scores (n, k) float32 best first, store ids (n, k) int64, -1 past the end."""
        ...

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        """Store id -> its record; unknown and -1 ids are left out."""
        ...

    def lookup(self, user_ids: Iterable[str]) -> dict[str, Record]:
        """User id -> its record; unknown ids are left out."""
        ...

    def get_vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors (n, dim) float32 of store ids, in the order given (what a verdict head
        reads of the candidates); an unknown id is a KeyError."""
        ...

    def info(self) -> dict: ...

    def close(self) -> None: ...


@dataclass
class AddPlan:
    """What an add will do: the questions to store (position in the batch, question, text hash) and
    the stored user ids whose old rows they replace."""

    fresh: list[tuple[int, Question, str]]
    replace: list[str]


def plan_add(questions: Sequence[Question], stored_ids: dict[str, str], stored_hashes: set[str], report: AddReport,
             upsert: bool = False, where: str = "the index") -> AddPlan:
    """Decide each question of a batch against what is stored (`stored_ids`: user id -> text hash
    of the batch's ids; `stored_hashes`: text hashes present) and earlier in the batch.

    Empty: skipped. Same user id and same text: skipped. Same user id, other text: replaced when
    `upsert`, else an error for the whole batch (nothing is written). A new or absent user id whose
    normalized text is stored already: skipped. Counts go to `report`.
    """
    fresh: list[tuple[int, Question, str]] = []
    replace: list[str] = []
    batch_ids: dict[str, str] = {}
    hashes = set(stored_hashes)
    conflicts: list[str] = []
    for i, q in enumerate(questions):
        text = q.text.strip()
        if not text:
            report.empty += 1
            continue
        h = text_hash(text)
        uid = q.user_id
        if uid is not None and uid in batch_ids:
            if batch_ids[uid] != h:
                raise InputError(f"id {uid} appears twice in the input with different text; nothing was added to {where}")
            report.already_indexed += 1
            continue
        if uid is not None and uid in stored_ids:
            if stored_ids[uid] == h:
                report.already_indexed += 1
                batch_ids[uid] = h
                continue
            if not upsert:
                conflicts.append(uid)
                continue
            replace.append(uid)
            report.replaced += 1
        elif h in hashes:
            report.already_indexed += 1
            continue
        if uid is not None:
            batch_ids[uid] = h
        hashes.add(h)
        fresh.append((i, Question(uid, text, q.source), h))
    if conflicts:
        shown = ", ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else "")
        raise InputError(f"already in {where} with other text: id {shown}; add with upsert (--upsert) to replace, "
                         f"or give new ids; nothing was added")
    return AddPlan(fresh, replace)


def resolve_ids(wanted: Sequence[str], by_user_id, by_store_id, where: str) -> list[int]:
    """Store ids for the user's ids of `remove`: a user id first; a number matches a question that
    has no user id by its store id. Raises, naming what is missing, when any is not stored."""
    found: dict[str, list[int]] = {}
    for w in dict.fromkeys(wanted):
        ids = by_user_id(w)
        if not ids and w.lstrip("-").isascii() and w.lstrip("-").isdigit():
            ids = by_store_id(int(w))
        found[w] = ids
    missing = [w for w, ids in found.items() if not ids]
    if missing:
        raise InputError(f"not in {where}: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; nothing was removed")
    return sorted(i for ids in found.values() for i in ids)


class StoreHandle:
    """What every store shares: a context manager that closes it, and the one check that an
    `ef_search` applies (HNSW only)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ef_search(self) -> int | None:
        """HNSW candidates per query (None for an exact store); set it for this process only."""
        return self._recorded_ef_search() if self.kind == "hnsw" else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise InputError(f"--ef-search applies to HNSW indexes; {self.location} is {self.kind}")
        self._ef_search = int(value)
        self._apply_ef_search(int(value))

    def _recorded_ef_search(self) -> int | None:
        return getattr(self, "_ef_search", None)

    def _apply_ef_search(self, value: int) -> None:
        pass


class BruteForceStore(StoreHandle):
    """The reference: every vector in a numpy array, search by a full sort. Obviously right, slow."""

    kind = "brute-force"

    def __init__(self, dim: int, model: dict | None = None, location: str = "memory"):
        self.dim, self.location = dim, location
        self.model = model or {}
        self.vectors = np.zeros((0, dim), np.float32)
        self.ids = np.zeros(0, np.int64)
        self.records: dict[int, Record] = {}
        self.next_id = 0
        self.exists = False  # created by the first add that stores something, as a folder or a database is

    def set_model(self, record: dict, dim: int) -> None:
        self.model, self.dim = record, dim
        self.vectors = np.zeros((0, dim), np.float32)

    @property
    def count(self) -> int:
        return len(self.ids)

    def sources(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records.values():
            counts[r.source or ""] = counts.get(r.source or "", 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def known(self, questions: Sequence[Question]) -> tuple[dict[str, str], set[str]]:
        ids = {r.user_id: r.text_hash for r in self.records.values() if r.user_id is not None}
        hashes = {r.text_hash for r in self.records.values()}
        wanted = {text_hash(q.text) for q in questions}
        return {q.user_id: ids[q.user_id] for q in questions if q.user_id in ids}, wanted & hashes

    def add(self, questions: Sequence[Question], vectors: np.ndarray, upsert: bool = False) -> AddReport:
        report = AddReport(created=not self.exists)
        plan = plan_add(questions, *self.known(questions), report, upsert, self.location)
        if report.created and not plan.fresh:
            raise InputError("no questions to index: every one was empty")
        self.exists = True
        doomed = [r.id for r in self.records.values() if r.user_id in set(plan.replace)]
        self._drop(doomed)
        now = utc_now()
        for i, q, h in plan.fresh:
            self.records[self.next_id] = Record(self.next_id, q.user_id, q.text, h, q.source, now)
            self.ids = np.r_[self.ids, self.next_id]
            self.vectors = np.vstack([self.vectors, np.asarray(vectors[i], np.float32)[None]])
            self.next_id += 1
        report.added, report.count = len(plan.fresh), self.count
        return report

    def _drop(self, doomed: list[int]) -> None:
        keep = ~np.isin(self.ids, doomed)
        self.ids, self.vectors = self.ids[keep], self.vectors[keep]
        for i in doomed:
            del self.records[i]

    def remove(self, ids: Sequence[str]) -> RemoveReport:
        by_user = lambda w: [r.id for r in self.records.values() if r.user_id == w]  # noqa: E731
        by_store = lambda i: [i] if i in self.records and self.records[i].user_id is None else []  # noqa: E731
        self._drop(resolve_ids(ids, by_user, by_store, self.location))
        return RemoveReport(list(dict.fromkeys(ids)), self.count)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.asarray(vectors, np.float32)  # (n, d)
        scores = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        for row, q in enumerate(vectors):
            s = self.vectors @ q  # (count,)
            top = np.argsort(-s, kind="stable")[:k]
            scores[row, : len(top)], ids[row, : len(top)] = s[top], self.ids[top]
        return scores, ids

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        return {int(i): self.records[int(i)] for i in ids if int(i) in self.records}

    def lookup(self, user_ids: Iterable[str]) -> dict[str, Record]:
        wanted = set(user_ids)
        return {r.user_id: r for r in self.records.values() if r.user_id in wanted}

    def get_vectors(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors (n, d) float32 of store ids, in the order given; an unknown id is a KeyError."""
        pos = {int(i): p for p, i in enumerate(self.ids.tolist())}
        wanted = [int(i) for i in ids]
        missing = [i for i in wanted if i not in pos]
        if missing:
            raise KeyError(f"not in {self.location}: store ids {missing[:10]}")
        return self.vectors[[pos[i] for i in wanted]] if wanted else np.zeros((0, self.dim), np.float32)

    def info(self) -> dict:
        return {"index": self.location, "count": self.count, "kind": self.kind, "metric": METRIC, "dimension": self.dim,
                "sources": self.sources()}

    def close(self) -> None:
        pass

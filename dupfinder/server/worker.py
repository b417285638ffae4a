"""The one thread that touches the engine. The engine is not thread-safe, so every call runs here,
one at a time, in arrival order; searches that queued up together run as one batch (one encode
and one store lookup for all of them), which is where the throughput under load comes from."""

from __future__ import annotations

import asyncio
import collections
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

_STOP = object()


@dataclass
class _Search:
    texts: list[str]
    k: int
    future: Future = field(default_factory=Future)


class EngineWorker:
    """Runs engine calls on its own thread. `await worker.call(fn, *args)` for anything;
    `await worker.search(texts, k)` for searches, which are batched with their neighbours in the queue.

    The engine sees at most `max_batch` texts a call (a larger request is split). On 100,000
    questions with the pair head (2 cores, both busy with other work) a query cost 1.6 ms of CPU
    alone and 1.0 ms each in a batch of 8; from 16 queries on, the local store lets FAISS wake its
    OpenMP threads, which on a busy machine cost more than they save.
    """

    def __init__(self, engine, max_batch: int = 8):
        self.engine = engine
        self.max_batch = max_batch
        self._jobs: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self.batches = 0  # search batches run, and the searches in them, for /metrics
        self.batched_searches = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dupfinder-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._put(_STOP)
            self._thread.join()
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _put(self, job) -> None:
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        future: Future = Future()
        self._put((future, fn, args, kwargs))
        return future

    async def call(self, fn: Callable, *args, **kwargs) -> Any:
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def search(self, texts: list[str], k: int) -> list:
        job = _Search(list(texts), k)
        self._put(job)
        return await asyncio.wrap_future(job.future)

    def _next(self) -> list:
        """The next job, or the run of searches at the head of the queue (up to max_batch texts)."""
        with self._ready:
            while not self._jobs:
                self._ready.wait()
            first = self._jobs.popleft()
            if not isinstance(first, _Search):
                return [first]
            batch, n = [first], len(first.texts)
            while self._jobs and isinstance(self._jobs[0], _Search) and n + len(self._jobs[0].texts) <= self.max_batch:
                job = self._jobs.popleft()
                batch.append(job)
                n += len(job.texts)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch[0] is _STOP:
                return
            if isinstance(batch[0], _Search):
                # a request whose client went away was cancelled: its search is dropped, and the
                # others' futures are marked running, so they can no longer be cancelled under us
                batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
                if batch:
                    self._search(batch)
                continue
            future, fn, args, kwargs = batch[0]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the awaiting request, which answers it
                future.set_exception(e)

    def _search(self, batch: list[_Search]) -> None:
        """Run `batch` (futures marked running) as one engine query."""
        texts = [t for job in batch for t in job.texts]
        k = max(job.k for job in batch)
        try:
            hits = [row for i in range(0, len(texts), self.max_batch) for row in self.engine.query(texts[i : i + self.max_batch], k)]
        except BaseException as e:
            if len(batch) > 1:  # let each search fail (or succeed) on its own
                for job in batch:
                    self._search([job])
                return
            batch[0].future.set_exception(e)
            return
        self.batches += 1
        self.batched_searches += len(batch)
        start = 0
        for job in batch:
            job.future.set_result([row[: job.k] for row in hits[start : start + len(job.texts)]])
            start += len(job.texts)

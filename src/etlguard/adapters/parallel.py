"""Work on several tables at once, each on a connection of its own: one statement runs on one
core of the server, so a set of tables is copied (and fingerprinted) in about the time of its
largest table rather than the sum of them all.

One outcome for the whole call: the first failure stops the others (their running statements
are cancelled on the server, and no worker starts another table), every worker is waited for,
and that failure is raised, so the caller drops every partial copy knowing nothing still writes
to one. Ctrl-C while waiting does the same and re-raises the interrupt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Worker = TypeVar("Worker")


class Pool(Generic[Worker]):
    """`workers` (open connections, one per thread); `cancel(worker)` stops the statement a
    worker runs (from another thread: KILL QUERY, pg_cancel_backend)."""

    def __init__(self, workers: Sequence[Worker], cancel: Callable[[Worker], None]) -> None:
        self.workers = list(workers)
        self._cancel = cancel
        self._lock = threading.Lock()
        self._failed: list[BaseException] = []

    def map(self, work: Callable[[Worker, Item], Result], items: Sequence[Item]) -> list[Result]:
        """`work(worker, item)` for every item, in the order given (the caller puts the longest
        first), each on the next free worker; results in the order of `items`."""
        results: dict[int, Result] = {}
        pending = list(reversed(range(len(items))))
        self._failed = []

        def run(worker: Worker) -> None:
            while True:
                with self._lock:
                    if self._failed or not pending:
                        return
                    i = pending.pop()
                try:
                    results[i] = work(worker, items[i])
                except BaseException as exc:  # raised by map() in the caller's thread
                    self._fail(exc)
                    return

        threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except BaseException as exc:  # Ctrl-C in the caller: stop the server's work too
            self._fail(exc)
            for t in threads:
                t.join()
            raise
        if self._failed:
            raise self._failed[0]
        return [results[i] for i in range(len(items))]

    def cancel(self) -> None:
        """Stop every worker's running statement (a signal handler may call this)."""
        for w in self.workers:
            self._cancel(w)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._failed
            self._failed.append(exc)
        if first:
            self.cancel()

"""How far a snapshot's copy is, while it runs: rows copied so far against the table's estimate.

A copy is one statement per table (INSERT ... SELECT or CREATE TABLE AS), so the copying
session cannot count for itself. A monitor thread asks the database instead, every `interval`
seconds, through the adapter's `progress_monitor()` (its own connection where the engine needs
one) and `copy_progress()`, and hands each `Reading` to a `Reporter`. The CLI draws readings as
a bar on a terminal or a line every few seconds in a log; a library user gets them as INFO
records of the `etlguard.progress` logger. Nothing here changes what is copied or how: a
monitor that cannot read anything reports the elapsed time and the estimate only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .adapters.base import Adapter, Progress
from .tables import TableRef

log = logging.getLogger("etlguard.progress")

PIPED_SECONDS = 10.0  # a line every this many seconds in a log (ETLGUARD_PROGRESS_SECONDS)
TERMINAL_SECONDS = 0.5  # a bar is redrawn this often


def interval(terminal: bool = False) -> float:
    """Seconds between readings: ETLGUARD_PROGRESS_SECONDS if set, else 0.5 s on a terminal
    and 10 s in a log."""
    text = os.environ.get("ETLGUARD_PROGRESS_SECONDS", "")
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = 0.0
    if value > 0:
        return value
    return TERMINAL_SECONDS if terminal else PIPED_SECONDS


@dataclass(frozen=True)
class Reading:
    """One table's copy at one moment. `rows_done` is None where the database cannot tell;
    the estimates are the server's statistics (None when it has none)."""

    table: TableRef
    rows_done: int | None
    rows_estimate: int | None
    bytes_estimate: int | None
    seconds: float
    done: bool = False
    verifying: bool = False  # the copy statement ended; the copy is being checked against its source

    @property
    def bytes_done(self) -> int | None:
        if self.rows_done is None or not self.rows_estimate or self.bytes_estimate is None:
            return None
        return int(self.bytes_estimate * min(self.rows_done / self.rows_estimate, 1.0))

    def text(self, what: str = "snapshot") -> str:
        """`snapshot gold.history: 420,000 of ~1,000,000 rows (~46 MiB of ~110 MiB), 12 s`."""
        head = f"{what} {self.table}: "
        secs = f"{self.seconds:.0f} s"
        if self.done:
            return f"{head}{self.rows_done or 0:,} rows copied, {secs}"
        if self.verifying:
            return f"{head}copy written, verifying it against the table, {secs}"
        of = f"~{self.rows_estimate:,}" if self.rows_estimate is not None else "?"
        rows = f"{self.rows_done:,} of {of} rows" if self.rows_done is not None else f"{of} rows"
        size = ""
        if self.bytes_estimate:
            done = self.bytes_done
            whole = size_text(self.bytes_estimate)
            size = f" (~{size_text(done) or '0 B'} of ~{whole})" if done is not None else f" (~{whole})"
        return f"{head}{rows}{size}, {secs}"


def size_text(n: int | None) -> str:
    """Bytes as people read them (`46 MiB`); "" for none."""
    if not n:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class Reporter:
    """Receives the readings of a copy. Also a plain `Progress` callback, for copies that are
    not watched (restores): then each finished table is one reading."""

    def __init__(self, on_reading: Callable[[Reading], None], seconds: float | None = None) -> None:
        self.on_reading = on_reading
        self.seconds = seconds if seconds is not None else interval()
        self.since = time.monotonic()

    def __call__(self, table: TableRef, rows: int) -> None:
        """A copy nobody watched (a restore's) finished `table` with `rows` rows: one reading
        if it took an interval or more (quick tables would only fill a log)."""
        now = time.monotonic()
        if now - self.since >= self.seconds:
            self.on_reading(Reading(table, rows, None, None, now - self.since, done=True))
        self.since = now


def log_reading(reading: Reading) -> None:
    log.info(reading.text())


@contextlib.contextmanager
def watching(db: Adapter, tables: Sequence[TableRef], progress: Progress | None) -> Iterator[Progress | None]:
    """Watch the copy of `tables` (in this order) for the length of the block; yield the
    `Progress` callback to pass to `copy_tables`. Watches when `progress` is a `Reporter`, or
    when the `etlguard.progress` logger takes INFO records (a library user's logging setup)."""
    reporter = progress if isinstance(progress, Reporter) else None
    if reporter is None and log.isEnabledFor(logging.INFO):
        reporter = Reporter(log_reading)
    if reporter is None or not tables:
        yield progress
        return
    watch = _Watch(db, list(tables), reporter, None if progress is reporter else progress)
    watch.start()
    try:
        yield watch.finished
    finally:
        watch.stop()


class _Watch:
    """The monitor thread and the bookkeeping of which table is being copied."""

    def __init__(
        self, db: Adapter, tables: list[TableRef], reporter: Reporter, inner: Progress | None
    ) -> None:
        self.db = db
        self.tables = tables
        self.reporter = reporter
        self.inner = inner
        self.current = 0
        self.most = 0  # the most rows read for the current table: a drop means its copy ended
        self.ended = False
        self.reported = False  # a reading of the current table went out
        self.began = time.monotonic()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.estimates: dict[TableRef, tuple[int | None, int | None]] = {}
        self.session = db.copy_session()
        self.monitor: Adapter | None = None
        with contextlib.suppress(Exception):  # no monitor: the readings carry time only
            self.monitor = db.progress_monitor()
        for table in tables:  # before the copy: an in-process monitor is the copying session
            self._estimate(table)
        self.thread = threading.Thread(target=self._run, name="etlguard-progress", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        if self.monitor is not None and self.monitor is not self.db:
            with contextlib.suppress(Exception):
                self.monitor.close()

    def finished(self, table: TableRef, rows: int) -> None:
        with self.lock:
            rows_est, bytes_est = self.estimates.get(table, (None, None))
            now = time.monotonic()
            reading = Reading(table, rows, rows_est, bytes_est, now - self.began, done=True)
            if self.reported:  # a table copied before the first reading needs no line
                self.reporter.on_reading(reading)
            self.current += 1
            self.began = now
            self.most, self.ended, self.reported = 0, False, False
        if self.inner is not None:
            self.inner(table, rows)

    def _estimate(self, table: TableRef) -> tuple[int | None, int | None]:
        if table not in self.estimates:
            value: tuple[int | None, int | None] = (None, None)
            if self.monitor is not None:
                with contextlib.suppress(Exception):
                    value = self.monitor.copy_estimate(table)
            self.estimates[table] = value
        return self.estimates[table]

    def _run(self) -> None:
        while not self.stopping.wait(self.reporter.seconds):
            with self.lock:
                if self.current >= len(self.tables):
                    continue
                table = self.tables[self.current]
                rows_est, bytes_est = self._estimate(table)
                rows: int | None = None
                if self.monitor is not None and self.session is not None:
                    with contextlib.suppress(Exception):
                        rows = self.monitor.copy_progress(self.session, table, rows_est)
                if self.stopping.is_set():
                    return
                seconds = time.monotonic() - self.began
                self.ended = self.ended or (rows is not None and rows < self.most)
                self.most = max(self.most, rows or 0)
                ended = self.ended  # what runs next (the checks) is not the copy
                rows = self.most if ended else rows
                self.reporter.on_reading(Reading(table, rows, rows_est, bytes_est, seconds, verifying=ended))
                self.reported = True

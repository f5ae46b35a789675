"""A guarded run: lock -> preflight -> snapshot -> execute -> audit -> commit or roll back.

The same state machine serves `etlguard run -- COMMAND` and the Python context manager
`Guard.protect()`. A failure before the ETL starts touches nothing and the ETL never runs; a
failure after it puts the whole protected set back in one atomic swap and proves it by checksum.

Why this module is long: the state machine keeps every phase's bookkeeping in one place (the
journal payload recover reads, the lock proof before acting, the lost-lock and interrupted
endings), so that no phase can be changed without seeing what the others record.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import audits as _audits
from . import capture as _capture
from . import dbt as _dbt
from . import standby as _standby
from . import zerocopy as _zerocopy
from .adapters import adapter_for
from .adapters.base import Adapter, ConnectionLost, with_retries
from .alerts import announce
from .catalog import Catalog, Snapshot, utcnow
from .errors import (
    EXIT_AUDIT_FAILED,
    EXIT_ETL_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCK_LOST,
    EXIT_OK,
    EXIT_ROLLBACK_FAILED,
    EXIT_SNAPSHOT_FAILED,
    ConfigError,
    EtlguardError,
    SnapshotFailed,
    TargetUnreachable,
)
from .execute import EtlOutcome, EtlProcess, boot_id, check_command, etl_environment, run_command, start_ticks
from .faults import fault
from .grants import check_privileges
from .others import OthersReport, WriteWatch
from .restore import (
    AsideStep,
    RestoreStep,
    counter_headroom,
    plan_aside,
    plan_restore,
    raise_counters_early,
    run_restore,
)
from .retention import prune
from .sessions import settle_sessions
from .snapshot import Membership, check_tables, how_taken, take_snapshots
from .tables import TableRef, plural

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .guard import Guard

Echo = Callable[[str], None]
KEEPALIVE_SECONDS = 30.0  # a round trip on the lock session this often while the ETL runs


@dataclass
class RunResult:
    run_id: int | None
    # ok | etl_failed | audit_failed | snapshot_failed | rollback_failed | lock_lost | interrupted
    status: str
    exit_code: int
    command: list[str]
    target: str
    protected: list[str] = field(default_factory=list)
    snapshot_ids: list[int] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # protected tables the run may create (none yet)
    moved_aside: list[str] = field(default_factory=list)  # tables the failed run created, kept aside
    etl: EtlOutcome | None = None
    dbt_failures: list[_dbt.NodeResult] = field(default_factory=list)
    audits: list[_audits.AuditResult] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    rollback_verified: list[str] = field(default_factory=list)
    message: str = ""
    recovery_command: str | None = None
    snapshot_seconds: float = 0.0
    audit_seconds: float = 0.0
    rollback_seconds: float = 0.0
    rollback_back_seconds: float = 0.0  # of which until every table was back (then verification)
    total_seconds: float = 0.0
    snapshot_bytes: int = 0  # written by this run's copies (reused snapshots write nothing)
    reused: list[dict[str, Any]] = field(default_factory=list)  # tables whose snapshot was shared
    displaced_ids: list[int] = field(default_factory=list)  # the post-ETL tables a rollback kept
    notes: list[str] = field(default_factory=list)
    others_source: str | None = None  # how writes by other clients were watched for
    others_wrote: list[dict[str, Any]] = field(default_factory=list)  # tables other clients wrote
    stopped_sessions: list[str] = field(default_factory=list)  # other sessions killed before a rollback
    etl_process: dict[str, Any] | None = None  # the ETL's process group, host and start time
    zero_copy: dict[str, Any] = field(default_factory=dict)  # dbt table models kept, not copied
    captured: list[str] = field(default_factory=list)  # tables whose changed rows were recorded instead
    capture_copied: dict[str, str] = field(default_factory=dict)  # capture on, copied anyway: why
    physical: list[str] = field(default_factory=list)  # tables copied by their tablespace files
    physical_fallback: dict[str, str] = field(default_factory=dict)  # physical on, copied by rows: why
    standby: list[dict[str, Any]] = field(default_factory=list)  # standbys rolled forward (standby.py)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed_audits(self) -> list[_audits.AuditResult]:
        return [a for a in self.audits if not a.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "target": self.target,
            "command": self.command,
            "protected": self.protected,
            "snapshot_ids": self.snapshot_ids,
            "new": self.new,
            "moved_aside": self.moved_aside,
            "etl": None
            if self.etl is None
            else {
                "exit_code": self.etl.exit_code,
                "seconds": round(self.etl.seconds, 3),
                "timed_out": self.etl.timed_out,
                "interrupted_by": self.etl.interrupted_by,
                "stragglers_killed": self.etl.stragglers,
                "process": self.etl_process,
            },
            "dbt_failures": [n.as_dict() for n in self.dbt_failures],
            "audits": [a.as_dict() for a in self.audits],
            "rolled_back": self.rolled_back,
            "rollback_verified": self.rollback_verified,
            "recovery_command": self.recovery_command,
            "snapshot_seconds": round(self.snapshot_seconds, 3),
            "snapshot_bytes": self.snapshot_bytes,
            "reused": self.reused,
            "audit_seconds": round(self.audit_seconds, 3),
            "rollback_seconds": round(self.rollback_seconds, 3),
            "rollback_back_seconds": round(self.rollback_back_seconds, 6),
            "total_seconds": round(self.total_seconds, 3),
            "stopped_sessions": self.stopped_sessions,
            "notes": self.notes,
            "others_source": self.others_source,
            "others_wrote": self.others_wrote,
            "zero_copy": self.zero_copy,
            "captured": self.captured,
            "capture_copied": self.capture_copied,
            "physical": self.physical,
            "physical_fallback": self.physical_fallback,
            "standby": self.standby,
        }


class GuardedRun:
    """One run's state. `start` (lock, preflight, snapshot), then the ETL, then `finish`."""

    checks_command = False  # `guarded_run`: the command must exist (not for Guard.protect's code)

    def __init__(
        self,
        guard: Guard,
        command: Sequence[str],
        echo: Echo | None = None,
        auto_recover: bool = False,
        drill: bool = False,
        pass_env: Sequence[str] = (),
    ) -> None:
        self.guard = guard
        self.pass_env = list(pass_env)
        self.drill = drill  # roll a good run back on purpose, to prove the rollback on real data
        self.auto_recover = auto_recover
        self.config = guard.config
        self.echo: Echo = _quiet_on_hangup(echo or log.info)
        self.command = list(command)
        self.db: Adapter = adapter_for(self.config.target, self.config.lock_wait_seconds)
        self.catalog = Catalog(self.db, self.config.catalog_schema)
        self.snapshots: list[Snapshot] = []
        self.zero_tables: list[TableRef] = []  # tables whose replaced table dbt (or the ETL) keeps
        self.zero_by_etl: list[TableRef] = []  # of those, the ones the ETL keeps (snapshot.kept_by_etl)
        self.zero_snaps: list[Snapshot] = []
        self.zero: _zerocopy.Settled | None = None
        self.capture_plan = _capture.Plan()
        self.captured: list[_capture.Captured] = []  # tables whose changed rows the triggers record
        self.hold: Any = None  # the metadata-lock hold over the captured tables during the ETL
        self.capture_problems: list[str] = []  # captured tables nothing can put back
        self.change_logs: list[_capture.Captured] = []  # captures that only roll a standby forward
        self.rolled: dict[TableRef, _standby.Rolled] = {}  # standbys rolled forward this run
        self.membership = Membership()
        self.counts_before: dict[TableRef, int] = {}
        self.journal: int | None = None
        self.payload: dict[str, Any] = {}  # the run's journal entry, as recover reads it
        self.interrupted: str | None = None
        self.started = time.monotonic()
        self.etl_started_wall = 0.0
        self.watch: WriteWatch | None = None
        self._others: Callable[[], OthersReport | None] | None = None  # see _stop_watch_beside
        self.side: _Side | None = None  # a second session for work beside the run
        self.headroom: threading.Event | None = None  # set once the counters' headroom is done
        self.triggers_done: threading.Event | None = None  # set once the side session is done with
        self.triggers_gone: list[TableRef] = []  # the standby change logs' triggers it dropped
        self._steps: list[RestoreStep] = []
        self._aside: list[AsideStep] = []
        self.result = RunResult(None, "running", EXIT_OK, self.command, self.config.target.redacted)

    # -- phase 1: lock, preflight, snapshot -----------------------------------------------------
    def start(self) -> None:
        """Raise (having touched nothing) on any problem found before the ETL would start."""
        with_retries(self.config.target, self._lock_and_preflight)
        self._snapshot()

    def _lock_and_preflight(self) -> None:
        """Lock and check; read-only apart from the catalog's creation, so a connection lost on
        the way (a failover, a restart) is retried from the lock on, as an unreachable server
        is, and ends as exit 5 if the server stays away."""
        try:
            self.db.lock(self.guard.lock_name, f"etlguard run since {utcnow():%Y-%m-%d %H:%M:%S} UTC")
            self._preflight()
        except ConnectionLost as exc:
            self.release()
            raise TargetUnreachable(f"{exc} during the checks before the ETL") from exc
        except BaseException:
            self.release()
            raise

    def _preflight(self) -> None:
        self.db.connect()
        check_privileges(self.db, [], self.config.snapshot_schema, self.config.catalog_schema, swaps=True)
        self.catalog.ensure()
        fault("run.in_preflight")
        if self.auto_recover and self.catalog.unfinished():
            from .recover import Recovery

            recovery = Recovery(
                self.db, self.catalog, self.config.snapshot_schema, grace=self.config.statement_grace_seconds
            )
            for action in recovery.run().actions:
                self.echo(f"recovered first: {action}")
        self.guard._refuse_unfinished(self.catalog)
        self.membership = self.guard.protected_set(self.db, self.command)
        if self.checks_command:  # a missing program is found before anything is locked or copied
            check_command(self.command)
        tables = self.membership.tables
        self.result.new = [str(t) for t in self.membership.new]
        check_tables(self.db, tables)
        self.db.lock_tables(tables, f"etlguard run since {utcnow():%Y-%m-%d %H:%M:%S} UTC")
        check_privileges(self.db, tables, self.config.snapshot_schema, self.config.catalog_schema, swaps=True)
        _audits.preflight(self.db, self.config.audits, self.membership.new)
        self._check_space(tables)
        self.result.protected = [str(t) for t in tables]
        self.tables = tables
        self.zero_tables = _zerocopy.eligible(self.db, self.config.dbt, self.command, tables)
        self.zero_by_etl = [
            t
            for t in _zerocopy.kept_by_etl(self.db, self.config.snapshot.kept_by_etl, tables)
            if t not in self.zero_tables
        ]
        self.zero_tables += self.zero_by_etl
        self.capture_plan = _capture.plan(
            self.db,
            self.config.snapshot.capture,
            [t for t in tables if t not in self.zero_tables],
            self.config.snapshot.capture_min_bytes,
        )
        if self.config.snapshot.physical_datadir:  # a setup that cannot work stops here
            self.db.use_physical_copies(
                self.config.snapshot.physical_datadir, self.config.snapshot_schema, tables
            )
        if self.result.new:
            self.echo(
                f"new, no table yet (a failed run's version is moved aside): {', '.join(self.result.new)}"
            )

    def _check_space(self, tables: Sequence[TableRef]) -> None:
        free = self.db.free_bytes()
        if free is None:
            return
        needed = sum(self.db.size_bytes(t) for t in tables) * 2  # the snapshot, and a rollback's staging copy
        if needed > free:
            raise ConfigError(
                f"not enough free space for the snapshots: about {needed:,} bytes needed, {free:,} free"
            )

    def _snapshot(self) -> None:
        self.result.run_id = self.catalog.start_run(self.command)
        self.payload = {"phase": "snapshot", "guard": _guard_process(), **self.membership.as_journal()}
        self.journal = self.catalog.begin("run", self.payload, self.result.run_id)
        began = time.monotonic()
        try:
            with self._interruptible():
                standby = bool(self.config.snapshot.standby and self.capture_plan.tables)
                if standby:  # the change log starts before the standby's point in time
                    self._register_capture()
                    self._roll_standbys()
                skip = {*self.zero_tables, *([] if standby else self.capture_plan.tables)}
                self.snapshots = (
                    self._copy([t for t in self.tables if t not in skip])
                    if len(self.tables) > len(self.zero_tables)
                    else []  # a first build: nothing exists yet, so nothing to copy
                )
                self._settle_standbys()
                self._register_zero_copy()
                if not standby:
                    self._register_capture()
        except SnapshotFailed as exc:
            if not self.interrupted:
                self.result.status, self.result.exit_code = "snapshot_failed", EXIT_SNAPSHOT_FAILED
                self.result.message = f"{exc}; the ETL was not started"
            self._abandon_snapshot()
            raise
        if self.interrupted:
            self._abandon_snapshot()
            raise SnapshotFailed(self.result.message)
        self.result.snapshot_seconds = time.monotonic() - began
        self.result.snapshot_ids = [s.id for s in self.snapshots]
        rolled = {r.snapshot.id: r.bytes_written for r in self.rolled.values() if r.snapshot.verified}
        self.result.snapshot_bytes = sum(
            rolled[s.id] if s.id in rolled else s.size_bytes or 0 for s in self.snapshots if s.reuses is None
        )
        self.result.reused = [
            {"table": str(s.table), "snapshot_id": s.id, "reuses": s.reuses, "note": s.note}
            for s in self.snapshots
            if s.reuses is not None
        ]
        self._note(
            phase="etl", snapshot_ids=self.result.snapshot_ids, zero_copy=_zerocopy.journal(self.zero_snaps)
        )
        by_etl = len(self.zero_by_etl)
        kept = "".join(
            f"; {plural(n, what)} kept by {who}, not copied"
            for n, what, who in [
                (len(self.zero_snaps) - by_etl, "table model", "dbt"),
                (by_etl, "table", "the ETL"),
            ]
            if n and self.zero_snaps
        )
        self.echo(
            f"snapshotted {plural(len(self.snapshots), 'table')} in {self.result.snapshot_seconds:.2f} s "
            f"(snapshots {_ids(self.result.snapshot_ids)}){kept}; run {self.result.run_id} starts the ETL"
        )
        self._report_physical()
        for s in self.snapshots:
            why = self.capture_plan.copied.get(s.table)
            self.echo(
                f"  {s.table}: snapshot {s.id}, {how_taken(s)}{self._how_copied(s)}"
                + (f" (not captured: {why})" if why else "")
            )
        for c in self.captured:
            self.echo(f"  {c.table}: changed rows captured (record {c.id}), not copied")
        self.counts_before = _audits.counts_before(self.db, self.config.audits, self.tables)
        fault("run.after_snapshot")
        if self.db.name == "duckdb":  # the ETL needs the file; our flock keeps other etlguards out
            self.db.close()
        self.etl_started_wall = time.time()

    def _report_physical(self) -> None:
        """With snapshot.physical: which copies were made by file, and why the others by rows."""
        by_file, by_rows = self.db.physical_report()
        fresh = {s.table for s in self.snapshots if s.reuses is None}
        self.result.physical = [str(t) for t in by_file if t in fresh]
        self.result.physical_fallback = {
            str(t): why for t, why in by_rows.items() if t in fresh and t not in by_file
        }

    def _how_copied(self, s: Snapshot) -> str:
        if str(s.table) in self.result.physical and s.reuses is None:
            return " by its tablespace file"
        why = self.result.physical_fallback.get(str(s.table))
        return f" by rows, not by file: {why}" if why and s.reuses is None else ""

    def _register_zero_copy(self) -> None:
        """Checksum the tables dbt will keep, and name where it keeps them (see zerocopy.py)."""
        if not self.zero_tables or self.interrupted:
            return
        try:
            self.zero_snaps = _zerocopy.register(
                self.db, self.catalog, self.zero_tables, self.config.snapshot_schema, self.result.run_id
            )
        except EtlguardError as exc:
            raise SnapshotFailed(f"zero-copy snapshot failed, the ETL was not started: {exc}") from exc
        fault("zerocopy.after_register")
        self.result.zero_copy = {"tables": [str(t) for t in self.zero_tables]}

    def _abandon_snapshot(self) -> None:
        self._abandon_zero_copy()
        self._abandon_capture()
        with contextlib.suppress(EtlguardError):
            _standby.discard_rolled(
                self.db, self.catalog, {t: r for t, r in self.rolled.items() if not r.snapshot.verified}
            )
        self._close_run()

    def _roll_standbys(self) -> None:
        """Bring each captured table's standby snapshot to the live table's rows (standby.py);
        `_copy` then proves it, or copies the table."""
        if self.interrupted:
            return
        try:
            chosen = _standby.candidates(self.db, self.catalog, self.capture_plan.tables, self.result.run_id)
            self.rolled = _standby.roll(
                self.db, self.catalog, chosen, self.config.snapshot_schema, self.result.run_id
            )
        except EtlguardError as exc:
            raise SnapshotFailed(f"rolling a standby snapshot forward failed: {exc}") from exc

    def _settle_standbys(self) -> None:
        """Each rolled standby that `_copy` proved is the run's snapshot of its table."""
        if not self.rolled:
            return
        taken = {s.table: s.id for s in self.snapshots}
        proven = [t for t, r in self.rolled.items() if taken.get(t) == r.snapshot.id]
        _standby.settle_rolled(self.db, self.catalog, self.rolled, proven)
        self.result.standby = [
            {
                "table": str(t),
                "snapshot_id": r.snapshot.id,
                "rows_written": r.rows_written,
                "bytes_written": r.bytes_written,
                "proven": t in proven,
            }
            for t, r in self.rolled.items()
        ]

    def _copy(self, tables: Sequence[TableRef]) -> list[Snapshot]:
        if not tables:
            return []
        return take_snapshots(
            self.db,
            self.catalog,
            tables,
            self.config.snapshot_schema,
            self.result.run_id,
            self.guard.progress,
            self.config.snapshot.consistency,
            reuse=self.config.snapshot_reuse,
            beside=self.config.snapshot.beside_live,
            rolled={t: r.snapshot for t, r in self.rolled.items() if t in tables},
        )

    def _register_capture(self) -> None:
        """Record the captured tables in the journal, then install their triggers (capture.py);
        a table whose triggers cannot be made is copied instead, never left unprotected."""
        if not self.capture_plan.tables or self.interrupted:
            return
        try:
            items = _capture.intend(
                self.db,
                self.catalog,
                self.capture_plan.tables,
                self.config.snapshot_schema,
                self.result.run_id,
                standby=self.config.snapshot.standby,
            )
            self.captured = items
            self._note(capture=[c.as_journal() for c in items])
            fault("capture.after_intent")
            self.captured, failed = _capture.install(self.db, self.catalog, items)
            self._note(capture=[c.as_journal() for c in self.captured])
            # fail closed: without the hold a DDL in the ETL could leave a table no capture undoes
            self.hold = _capture.hold(self.db, self.captured)
        except EtlguardError as exc:
            raise SnapshotFailed(f"changed-rows capture failed, the ETL was not started: {exc}") from exc
        self.capture_plan.copied.update(failed)
        if not self.config.snapshot.standby:  # with standby every captured table is copied anyway
            self.snapshots += self._copy(list(failed))
        self.result.captured = [str(c.table) for c in self.captured]
        self.result.capture_copied = {str(t): why for t, why in self.capture_plan.copied.items()}

    def _abandon_capture(self) -> None:
        """The ETL will not start: the triggers and capture tables go, the records are closed."""
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.stop()
        with contextlib.suppress(EtlguardError):
            for c in self.captured:
                _capture.discard(self.db, self.catalog, c, "changed-rows capture: the ETL never ran")

    def _abandon_zero_copy(self) -> None:
        """The ETL will not start: dbt keeps nothing, so the recorded names are closed."""
        with contextlib.suppress(EtlguardError):
            for snap in self.zero_snaps:
                self.catalog.update_snapshot(snap.id, status="failed", note=_zerocopy.NOT_REPLACED)

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Ctrl-C, SIGTERM or SIGHUP while snapshotting: stop the copy at once (cancel our own
        statement, so the server stops too), let the snapshot drop its partial tables, and end
        the run as `interrupted`, with nothing left in the journal."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, _frame: Any) -> None:
            if self.interrupted is None:
                self.interrupted = signal.Signals(signum).name
                self.result.status, self.result.exit_code = "interrupted", EXIT_INTERRUPTED
                self.result.message = (
                    f"interrupted by {self.interrupted} while snapshotting; the partial snapshot was "
                    "removed and the ETL was not started"
                )
                self.db.cancel_own_statement()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _note(self, **values: Any) -> None:
        assert self.journal is not None
        self.payload.update(values)
        self.catalog.note(self.journal, self.payload)

    # -- phase 2: the ETL -------------------------------------------------------------------------
    def execute(self, timeout: float | None = None) -> EtlOutcome:
        command = self.command
        if _dbt.is_dbt(command) and self.config.dbt.fail_fast:
            command = _dbt.with_fail_fast(command)
            self.result.command = command
        self._watch_others()
        env = etl_environment(self.config.target_env, self.pass_env)
        env.update(_zerocopy.environment(self.zero_snaps))
        pinger = _Keepalive(self.db)
        try:
            outcome = run_command(
                command,
                timeout or self.config.timeout_seconds,
                env=env,
                on_start=lambda p: self._started(p, pinger),
            )
        finally:
            pinger.stop()
        self.result.etl = outcome
        return outcome

    def _watch_others(self) -> None:
        """Watch for writes by other clients while the ETL runs and until the rollback: they
        would be rolled back with the ETL's, and the person on call must be told."""
        if self.db.sees_other_sessions:
            connect = functools.partial(adapter_for, self.config.target, self.config.lock_wait_seconds)
            self.watch = WriteWatch(connect, [*self.tables, *self.membership.new]).start()

    def _stop_watch(self) -> OthersReport | None:
        watch, self.watch = self.watch, None
        if watch is None:
            return None
        report = watch.stop()
        self.result.others_source = report.source or f"not watched: {report.error}"
        return report

    def _stop_watch_beside(self) -> Callable[[], OthersReport | None]:
        """`_stop_watch`, with its last sample taken by the watch's own thread on its own
        session, which a rollback need not wait for (a sample taken during the swap names
        etlguard's own statements as etlguard's, see others.classify). Returns what waits for
        it and gives its report."""
        watch, self.watch = self.watch, None  # the `finally` of _finish no longer stops it
        if watch is None:
            return lambda: None
        watch.finish()
        out: list[OthersReport] = []

        def report() -> OthersReport | None:
            if not out:
                out.append(watch.stop())
                self.result.others_source = out[0].source or f"not watched: {out[0].error}"
            return out[0]

        self._others = report  # the `finally` of _finish closes its session, whatever happens
        return report

    def _started(self, etl: EtlProcess, pinger: _Keepalive) -> None:
        """Record who the ETL is before it can write: recover checks it has ended. The write
        watch learns its pid, to tell the ETL's sessions from other clients'."""
        if self.watch is not None:
            self.watch.etl_pid = etl.pgid
        self.result.etl_process = etl.as_dict()
        if self.db.name != "duckdb":
            self._note(etl=etl.as_dict())
            pinger.start()
            self._side_session()
        else:  # the connection is closed while the ETL runs; the note waits for the reconnect
            self.payload["etl"] = etl.as_dict()

    # -- phase 3: audit, then commit or roll back -------------------------------------------------
    def finish(self, etl_ok: bool, failure: str = "") -> RunResult:
        fault("run.after_etl")
        with _hangup_ignored():
            return self._finish(etl_ok, failure)

    def _finish(self, etl_ok: bool, failure: str) -> RunResult:
        try:
            self._drop_log_triggers_beside()
            self._stop_hold()
            if not self.db.holds_lock():
                self._lock_lost(etl_ok, failure)
                return self.result
            self.db.connect()
            if self.headroom is not None:
                self.headroom.wait()  # before anything reads the seals it set
            if not etl_ok:
                self._early_rollback_work()
            if "etl" in self.payload and self.db.name == "duckdb":
                self._note(phase="etl")
            self._settle_zero_copy()
            self._settle_capture()
            reasons = self._etl_failure(failure) if not etl_ok else self._audit()
            others = self._stop_watch_beside()
            if self.drill and not reasons:
                self._rollback(["drill: a good run rolled back on purpose"], audit=True)
                if self.result.status != "rollback_failed":
                    self.result.status, self.result.exit_code = "drill", EXIT_OK
            elif reasons:
                self._rollback(reasons, audit=etl_ok)
                self._report_others(others())
            else:
                self._commit()
            others()  # joined: the run's report says how the server was watched
            self._close_run()
            return self.result
        finally:
            self._stop_watch()
            if self._others is not None:
                self._others()
            self.release()

    def _side_session(self) -> None:
        """A session opened while the ETL starts, for work beside the run (a new connection
        would take longer than the work saves): the counters' headroom now, and a failed run's
        early rollback work (`_early_rollback_work`)."""
        if self.db.name not in ("mysql", "mariadb"):
            return
        if not any(s.seal for s in self.snapshots) and not any(c.log_only for c in self.captured):
            return
        side = adapter_for(self.config.target, self.config.lock_wait_seconds)
        try:
            side.connect()
        except EtlguardError:
            return  # best effort: the swap does the work itself
        self.side = _Side(side, self.config.catalog_schema)
        snaps = [s for s in self.snapshots if s.seal and s.auto_increment is not None]
        if snaps:  # see restore.counter_headroom
            self.headroom = self.side.submit(
                lambda db, cat: raise_counters_early(db, cat, snaps, counter_headroom(db, cat, snaps))
            )

    def _drop_log_triggers_beside(self) -> None:
        """The ETL is over, whatever its outcome: the standby change logs' triggers go (every
        way on drops them; a rename swap cannot carry them across schemas), on the side
        session, while the run proves its lock and settles on its own. `_settle_capture`
        waits for them and drops any this missed."""
        logs = [c for c in self.captured if c.log_only]
        if self.side is None or not logs:
            return
        self.triggers_done = self.side.submit(
            lambda db, _catalog: _capture.drop_log_triggers(db, logs, self.triggers_gone)
        )

    def _early_rollback_work(self) -> None:
        """The ETL failed, so the run rolls back. While the run settles on its own session,
        the side session raises any snapshot's AUTO_INCREMENT counter the headroom did not
        keep ahead of its live table (restore.raise_counters_early). Joined before the
        rollback's swap. Best effort: what this misses (the session died during a long ETL),
        the swap does itself."""
        snaps = [s for s in self.snapshots if s.seal]
        if self.side is not None and snaps:
            self.side.submit(lambda db, catalog: raise_counters_early(db, catalog, snaps))

    def _stop_hold(self) -> None:
        """The ETL is over: the captured tables' DDL hold ends (a rollback or the triggers'
        removal needs their locks). Say what it stopped, and whether it held throughout."""
        hold, self.hold = self.hold, None
        if hold is None:
            return
        hold.stop()
        if hold.copied:
            self.result.notes.append(
                "changed-rows capture: a statement would change a captured table's structure during the "
                f"run ({hold.trigger}); full copies of {', '.join(str(t) for t in hold.copied)} were made "
                "before it went on"
            )
        for statement in hold.stopped:
            self.result.notes.append(
                f"changed-rows capture: stopped a statement that would change a captured table's "
                f"structure during the run (the capture could not undo it): {statement}"
            )
        if hold.lost:
            self.result.notes.append(f"changed-rows capture: {hold.lost}; a rollback is proved by checksum")

    def _settle_capture(self) -> None:
        """A table whose full copy the hold made before a DDL is now a copied snapshot; the
        others stay captured (capture.settle)."""
        if not self.captured:
            return
        if self.triggers_done is not None:
            self.triggers_done.wait()
        settled = _capture.settle_copies(self.db, self.catalog, self.captured, self.triggers_gone)
        self.change_logs = settled.standby  # their triggers are gone; the standbys are in snapshots
        self.snapshots += settled.copies
        self.result.snapshot_ids += [s.id for s in settled.copies]
        self.result.snapshot_bytes += sum(s.size_bytes or 0 for s in settled.copies)
        self.captured = settled.captured
        self.capture_problems = settled.problems
        logs = self.captured + self.change_logs  # recover commits or closes the change logs too
        noted = {"capture": [c.as_journal() for c in logs], "snapshot_ids": self.result.snapshot_ids}
        if any(self.payload.get(k) != v for k, v in noted.items()):  # a DDL's copy changed them
            self._note(**noted)

    def _settle_zero_copy(self) -> None:
        """Each table model dbt replaced is now kept: verified against its fingerprint, it is
        the run's snapshot of that table. One dbt did not replace has nothing to undo."""
        if not self.zero_snaps:
            return
        self.zero = _zerocopy.settle(self.db, self.catalog, self.payload.get("zero_copy", []))
        fault("zerocopy.after_settle")
        self.snapshots += self.zero.kept
        self.result.snapshot_ids += [s.id for s in self.zero.kept]
        self.result.zero_copy.update(self.zero.as_dict())
        self.result.notes += [f"zero-copy: {p}" for p in self.zero.problems]

    def _report_others(self, others: OthersReport | None) -> None:
        """Name every protected table another client wrote to during the run, and the displaced
        table that still holds those rows (the rollback could not keep them live)."""
        if others is None:
            return
        displaced = {s.table: s.displaced_id for s in self._steps}
        displaced.update({a.table: a.displaced_id for a in self._aside})
        for table, writers in sorted(others.writes.items()):
            kept = displaced.get(table)
            diff = f"etlguard diff {table} --snapshot {kept}" if kept else None
            self.result.others_wrote.append(
                {
                    "table": str(table),
                    "writers": [w.as_dict() for w in writers],
                    "displaced_snapshot_id": kept,
                    "diff_command": diff,
                }
            )
            self.result.notes.append(
                f"another client wrote to {table} during the run; the rollback discarded those rows "
                f"with the ETL's"
                + (f": compare with `{diff}`" if diff else "")
                + f" ({writers[0].describe()})"
            )

    def _lock_lost(self, etl_ok: bool, failure: str) -> None:
        """The lock session died during the ETL (a server or proxy timeout, a failover, a KILL).
        Another etlguard may have acted meanwhile, so neither commit nor roll back blindly:
        record the facts, alert, and leave the run to `etlguard recover`."""
        self.db.close()
        self.db.connect()
        what = "exited 0" if etl_ok else failure.removeprefix("the ETL ").strip()
        self.result.status, self.result.exit_code = "lock_lost", EXIT_LOCK_LOST
        self.result.recovery_command = self._cli("etlguard recover")
        self.result.message = (
            f"the run's lock was lost while the ETL ran (its session ended); the ETL {what}. Nothing was "
            f"committed or rolled back; a person must act: run `{self.result.recovery_command}` "
            "(it checks that the ETL has ended, then rolls the run back)"
        )
        with contextlib.suppress(EtlguardError):
            self._note(lock_lost=True, etl_outcome=("ok" if etl_ok else failure))
        self._close_run()

    def _audit(self) -> list[str]:
        began = time.monotonic()  # timed so the report can show what the audits add to a night
        reasons = self._dbt_audit()
        before = {
            **self.counts_before,
            **{s.table: s.row_count or 0 for s in [*self.snapshots, *self.zero_snaps]},
            **{c.table: r.row_count or 0 for c in self.captured if (r := self.catalog.snapshot(c.id))},
        }
        self.result.audits = _audits.run_audits(self.db, self.config.audits, before)
        reasons += [str(a) for a in self.result.failed_audits]
        self.result.audit_seconds = time.monotonic() - began
        return reasons

    def _etl_failure(self, failure: str) -> list[str]:
        self._dbt_audit()
        errors = [n for n in self.result.dbt_failures if n.status.lower() != "skipped"]
        skipped = len(self.result.dbt_failures) - len(errors)
        if errors:
            names = ", ".join(n.unique_id.split(".")[-1] for n in errors[:3])
            failure += f" (dbt: {names} failed" + (f", {skipped} skipped)" if skipped else ")")
        return [failure]

    def _dbt_audit(self) -> list[str]:
        """dbt's verdict per node. A dbt command, or a wrapper declared in the config, must
        write run_results.json; any other command is audited if it wrote one during the run
        (a script that calls dbt), so a failed model is never lost to an undetected launcher."""
        if not self.config.dbt.check_results:
            return []
        required = _dbt.is_dbt(self.result.command) or self.config.dbt.wrapper
        target = _dbt.target_dir(self.config.dbt, self.result.command)
        nodes = _dbt.read_results(target, newer_than=self.etl_started_wall - 1)
        if nodes is None:
            return (
                [f"dbt wrote no run_results.json under {target} during this run"]
                if required and self.result.etl and self.result.etl.ok
                else []
            )
        self.result.dbt_failures = [n for n in nodes if n.failed]
        return [f"dbt node {n.unique_id} {n.status}" for n in self.result.dbt_failures]

    def _commit(self) -> None:
        self._note(phase="commit")
        fault("run.before_commit")
        self.result.snapshot_bytes += _capture.commit(
            self.db, self.catalog, self.captured + self.change_logs, self.result.run_id
        )
        self.result.status, self.result.exit_code = "ok", EXIT_OK
        self.result.message = (
            f"run {self.result.run_id} succeeded; "
            f"{plural(len(self.snapshots) + len(self.captured), 'table')} protected"
        )
        self._prune()

    def _prune(self) -> None:
        """Retention after every run that ends cleanly, rolled back ones included: a night of
        failures must not pile up snapshots. The newest verified snapshot of a table stays."""
        try:
            decisions = prune(self.db, self.catalog, self.config.retention, self.db.server_now())
            pruned = [d.snapshot.id for d in decisions if d.delete]
            if pruned:
                self.result.notes.append(f"pruned snapshots {_ids(pruned)}")
        except EtlguardError as exc:  # retention must never turn a run's outcome into another
            self.result.notes.append(f"prune failed: {exc}")

    def _rollback(self, reasons: list[str], audit: bool) -> None:
        self.result.status = "audit_failed" if audit else "etl_failed"
        self.result.exit_code = EXIT_AUDIT_FAILED if audit else EXIT_ETL_FAILED
        what = "" if reasons[0].startswith("drill:") else ("audit failed: " if audit else "ETL failed: ")
        self.echo(f"{what}{reasons[0]}; rolling back")
        began = time.monotonic()
        try:
            ours = [self.side.session] if self.side is not None and self.side.session is not None else []
            stopped = settle_sessions(
                self.db, self.tables, self.config.statement_grace_seconds, self.echo, ours
            )
            self.result.stopped_sessions = stopped
            chosen = {s.table: s for s in self.snapshots}
            steps = plan_restore(self.db, self.catalog, chosen, self.config.snapshot_schema)
            hidden = [self.config.snapshot_schema, self.config.catalog_schema]
            schema = self.config.snapshot_schema
            aside = plan_aside(self.db, self.catalog, self.membership, schema, hidden, len(steps))
            if self.side is not None:
                self.side.join()
            restoring = time.monotonic()
            restored = run_restore(
                self.db,
                self.catalog,
                steps,
                self.config.snapshot_schema,
                run_id=self.result.run_id,
                op="rollback",
                aside=aside,
                replay=(replayed := _capture.replayer(self.db, self.captured)),
                journal_also=lambda: self._note(phase="rollback"),  # in the intent's commit
            )
            restored.unverified.update(_capture.settle_rollback(self.db, self.catalog, replayed))
            _capture.close_standby(self.db, self.catalog, self.change_logs)
            restored.verified += [
                str(c.table) for c in self.captured if str(c.table) not in restored.unverified
            ]
        except EtlguardError as exc:
            if self.payload.get("phase") != "rollback":  # it failed before its intent was journaled
                with contextlib.suppress(EtlguardError):
                    self._note(phase="rollback")
            self._rollback_failed(f"the rollback failed: {exc}")
            return
        self.result.rollback_seconds = time.monotonic() - began
        self.result.rollback_back_seconds = restoring - began + restored.back_seconds
        self._steps, self._aside = steps, aside
        self.result.rolled_back = [str(s.table) for s in steps] + [str(c.table) for c in self.captured]
        self.result.displaced_ids = [s.displaced_id for s in steps if s.displaced_id is not None]
        self.result.displaced_ids += [a.displaced_id for a in aside]
        self.result.moved_aside = [str(a.table) for a in aside]
        self.result.rollback_verified = restored.verified
        problems = (self.zero.problems if self.zero is not None else []) + self.capture_problems
        if problems:
            self._rollback_failed(f"rolled back all but: {'; '.join(problems)}")
            return
        if restored.unverified:
            kept = self.result.displaced_ids
            where = f"; the ETL's tables are kept as snapshots {_ids(kept)}" if kept else ""
            # a captured table that did not prove out has no snapshot to inspect: recover decides
            unproven = {str(c.table) for c in self.captured} & set(restored.unverified)
            self._rollback_failed(
                f"rolled back, but not verified: {restored.problems()}{where}",
                None if unproven else "etlguard snapshots " + " ".join(sorted(restored.unverified)),
            )
            return
        self._prune()
        self.result.message = (
            f"{reasons[0]}; rolled back {plural(len(steps) + len(self.captured), 'table')}"
            + (f" to snapshots {_ids(self.result.snapshot_ids)}" if steps else "")
            + (f" ({len(self.captured)} by replaying their captured changes)" if self.captured else "")
            + " in one swap and verified them"
            + (f", and moved aside {plural(len(aside), 'table')} the run created" if aside else "")
            + (f" (and {len(reasons) - 1} more problems)" if len(reasons) > 1 else "")
        )

    def _rollback_failed(self, message: str, command: str | None = None) -> None:
        """Exit 20. The command to run next: restore the run's snapshots, or, when they were
        swapped in but did not verify (consumed, so nothing to restore again), inspect them."""
        self.result.status, self.result.exit_code = "rollback_failed", EXIT_ROLLBACK_FAILED
        # the run's journal entry stays open, so `restore` would refuse (exit 4): recover first,
        # which finishes the run's rollback from its snapshots and records what really happened
        self.result.recovery_command = command or self._cli("etlguard recover")
        self.result.message = f"{message}; a person must act: run `{self.result.recovery_command}`"

    def _close_run(self) -> None:
        self.result.total_seconds = time.monotonic() - self.started
        self.result.notes += announce(self.config, self.result)  # never raises; failures become notes
        if self.result.run_id is not None:
            with contextlib.suppress(EtlguardError):
                self.catalog.finish_run(
                    self.result.run_id, self.result.status, self.result.exit_code, self.result.as_dict()
                )
        fault("run.before_close")
        if self.journal is not None and self.result.status in ("rollback_failed", "lock_lost"):
            with contextlib.suppress(EtlguardError):  # this etlguard is done with it: recover's turn
                self._note(handed_over=True)
        if self.journal is not None and self.result.status not in ("rollback_failed", "lock_lost"):
            with contextlib.suppress(EtlguardError):
                self.catalog.finish(self.journal, self.result.status)

    def _cli(self, command: str) -> str:
        """The command as a person can paste it: with --config when the run had one."""
        path = self.config.path
        if path is None or (not path.is_absolute() and path == Path("etlguard.yml")):
            return command
        return f"{command} --config {shlex.quote(str(path.resolve()))}"

    def release(self) -> None:
        with contextlib.suppress(EtlguardError):
            self.db.unlock()
        self.db.close()
        side, self.side = self.side, None
        if side is not None:  # an error before the swap: its session is not closed under its work
            side.close(self.config.lock_wait_seconds)


def guarded_run(
    guard: Guard,
    command: Sequence[str],
    timeout: float | None = None,
    json_report: Path | None = None,
    echo: Echo | None = None,
    auto_recover: bool = False,
    drill: bool = False,
    pass_env: Sequence[str] = (),
) -> RunResult:
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"the timeout must be a number of seconds above 0, not {timeout:g}")
    run = GuardedRun(guard, command, echo, auto_recover, drill, pass_env)
    run.checks_command = True
    try:
        run.start()
    except SnapshotFailed:
        _write_report(run.result, json_report)
        return run.result
    outcome = run.execute(timeout)
    result = run.finish(outcome.ok, outcome.describe())
    _write_report(result, json_report)
    return result


class _Side:
    """A second session and the work done on it beside the run by one thread, started with it
    (so that a failed run's work starts without waiting for a new thread to be scheduled), one
    job at a time and in the order given. Best effort: a job that fails leaves its work to the
    run's own session."""

    def __init__(self, db: Adapter, catalog_schema: str) -> None:
        self.db = db
        self.catalog = Catalog(db, catalog_schema)
        self.session: int | None = getattr(db, "session_id", None)  # not one the rollback waits for
        self.jobs: queue.Queue[tuple[Callable[[Adapter, Catalog], object], threading.Event] | None] = (
            queue.Queue()
        )
        self.thread = threading.Thread(target=self._work, name="etlguard-side", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (item := self.jobs.get()) is not None:
            job, done = item
            try:
                job(self.db, self.catalog)
            except EtlguardError:
                pass
            except Exception:  # a defect: logged, and the run does the work itself
                log.exception("etlguard's side session job failed")
            finally:
                done.set()
                self.jobs.task_done()
        self.jobs.task_done()

    def submit(self, job: Callable[[Adapter, Catalog], object]) -> threading.Event:
        """Queue `job`; the event is set once it has ended, however."""
        done = threading.Event()
        self.jobs.put((job, done))
        return done

    def join(self) -> None:
        """Until every job given so far is done."""
        self.jobs.join()

    def close(self, timeout: float | None = None) -> None:
        self.jobs.put(None)
        self.thread.join(timeout)
        self.db.close()


class _Keepalive:
    """A round trip on the lock session every KEEPALIVE_SECONDS while the ETL runs, so that a
    proxy's or NAT's idle timeout never ends it. Only this thread uses the connection then."""

    def __init__(self, db: Adapter) -> None:
        self.db = db
        self.done = threading.Event()
        self.using = threading.Lock()  # held for each round trip
        self.thread = threading.Thread(target=self._loop, name="etlguard-keepalive", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.wait(KEEPALIVE_SECONDS):
            with self.using:
                if self.done.is_set():
                    return
                try:
                    self.db.keep_alive()
                except EtlguardError:
                    return  # the session is gone: finish() proves the lock before acting

    def stop(self) -> None:
        """After this the thread never touches the connection again: a round trip in flight is
        waited for, and none starts after (the thread ends by itself; a failed run does not
        wait for it to be scheduled)."""
        self.done.set()
        with self.using:
            pass


def _quiet_on_hangup(echo: Echo) -> Echo:
    """Progress lines must not stop a rollback when the terminal is gone (a dropped ssh)."""

    def safe(message: str) -> None:
        with contextlib.suppress(OSError):
            echo(message)

    return safe


@contextlib.contextmanager
def _hangup_ignored() -> Iterator[None]:
    """A dropped terminal must not kill etlguard halfway through a rollback or a commit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def _guard_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid()), "boot_id": boot_id()}


def _write_report(result: RunResult, path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids)


__all__ = ["GuardedRun", "RunResult", "guarded_run"]

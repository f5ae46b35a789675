"""`etlguard recover`: finish or undo whatever an interrupted operation left behind.

Every multi-step operation journals its intent (with the exact names it will create) before it
acts, and notes its phase as it goes. Recovery reads those entries and, for each, either
completes it or undoes it so that every protected table is wholly in its old state or wholly in
its new one. It only ever drops tables that the journal names and that carry etlguard's random
name token in etlguard's own schemas, so it never drops a table it cannot prove it made. It is
idempotent: a second run finds nothing to do.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import capture as _capture
from .adapters import mysql_capture
from .adapters.base import Adapter
from .catalog import Catalog
from .errors import EXIT_ROLLBACK_FAILED, EtlguardError, RollbackFailed, UnfinishedOperation
from .execute import group_alive, start_ticks
from .faults import fault
from .restore import live_matches, mark_displaced, plan_aside, plan_restore, run_restore, settle_consumed
from .sessions import settle_sessions
from .snapshot import Membership, created_by_run
from .standby import SUPERSEDED
from .tables import TableRef, plural
from .zerocopy import NOT_REPLACED, settle

log = logging.getLogger(__name__)

# s12_ab3de9xz (snapshot), r12_... (MySQL staging), _etlguard_r12_... (DuckDB staging),
# _etlguard_k12_... (DuckDB: a table a dbt table model replaced, kept beside it by zero-copy),
# c12_... (a changed-rows capture table)
_OURS = re.compile(r"^(?:s|r|c|_etlguard_r|_etlguard_k)\d+_[a-z0-9]{8}$")


@dataclass
class RecoveryReport:
    actions: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not self.actions


class Recovery:
    def __init__(
        self,
        db: Adapter,
        catalog: Catalog,
        snapshot_schema: str,
        force: bool = False,
        grace: float = 10.0,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.snapshot_schema = snapshot_schema
        self.force = force  # act on a run whose ETL ran on another host, unseen from here
        self.grace = grace
        self.echo = echo or log.info
        self.report = RecoveryReport()

    def run(self, dry_run: bool = False) -> RecoveryReport:
        pending = self.catalog.unfinished()
        for entry in pending:  # never act under a live ETL or a live etlguard
            if entry["op"] == "run":
                self._refuse_if_alive(entry)
        # operations inside a run (its snapshot, its rollback) are settled before the run itself
        ordered = [e for e in pending if e["op"] != "run"] + [e for e in pending if e["op"] == "run"]
        handlers: dict[str, Callable[[dict[str, Any]], str]] = {
            "snapshot": self._snapshot,
            "restore": self._restore,
            "rollback": self._restore,
            "prune": self._prune,
            "run": self._run,
            "pitr": self._pitr,
        }
        for entry in ordered:
            if dry_run:
                self.report.actions.append(
                    f"would resolve the interrupted {entry['op']} (journal {entry['id']})"
                )
                continue
            outcome = handlers[entry["op"]](entry)
            self.report.actions.append(f"{entry['op']} (journal {entry['id']}): {outcome}")
            fault("recover.after_step")
        return self.report

    def _refuse_if_alive(self, entry: dict[str, Any]) -> None:
        """Refuse while the run's etlguard or ETL may still be running. Same host: look at the
        process and the process group. Another host: refuse unless --force."""
        payload, run_id = entry["payload"], entry["run_id"]
        guard = payload.get("guard") or {}
        if entry.get("host") == _hostname() and guard.get("start_ticks") and not payload.get("handed_over"):
            if start_ticks(int(entry["pid"])) == guard["start_ticks"]:
                raise UnfinishedOperation(
                    f"run {run_id} is still being run by etlguard pid {entry['pid']}; let it finish"
                )
        etl = payload.get("etl")
        if not etl:
            return
        alive = group_alive(etl, wait=5.0)  # the watchdog of a killed etlguard may be at work
        if alive:
            raise UnfinishedOperation(
                f"run {run_id}'s ETL (process group {etl['pgid']}) is still running; recover will not "
                f"roll back under it: wait for it to end, or stop it with `kill -TERM -{etl['pgid']}`"
            )
        if alive is None and not self.force:
            raise UnfinishedOperation(
                f"run {run_id}'s ETL ran on host {etl.get('host')} (process group {etl['pgid']}), where "
                "this etlguard cannot see whether it still runs; make sure it has ended, then run "
                "`etlguard recover --force`"
            )

    # -- helpers --------------------------------------------------------------------------------
    def _drop_ours(self, ref: TableRef) -> bool:
        """Drop a table the journal names, if it is provably one of ours; True if it existed."""
        if not _OURS.match(ref.name):
            raise EtlguardError(f"refusing to drop {ref}: its name is not one etlguard generates")
        if ref.schema != self.snapshot_schema and not ref.name.startswith(("_etlguard_r", "_etlguard_k")):
            raise EtlguardError(f"refusing to drop {ref}: it is outside etlguard's snapshot schema")
        if not self.db.table_exists(ref):
            return False
        self.db.drop_table(ref)
        return True

    # -- pitr: delete the clone a crash left behind (it holds no protected table) ---------------
    def _pitr(self, entry: dict[str, Any]) -> str:
        from .pitr import Clone, delete_clone, rds_client

        p = entry["payload"]
        clone = Clone(p["clone_cluster"], p["clone_instance"], p["source"], p.get("region"))
        deleted = delete_clone(rds_client(clone.region), clone)
        self.catalog.finish(entry["id"], "recovered")
        return f"deleted clone {', '.join(deleted)}" if deleted else f"clone {clone.cluster} was already gone"

    # -- snapshot: keep what was verified, drop what was half made ------------------------------
    def _snapshot(self, entry: dict[str, Any]) -> str:
        dropped = 0
        for item in entry["payload"].get("snapshots", []):
            snap = self.catalog.snapshot(item["id"])
            if snap is not None and snap.verified:
                continue
            dropped += self._drop_ours(TableRef(*item["snapshot"]))
            if snap is not None:
                self.catalog.update_snapshot(item["id"], status="failed")
        for schema, name in entry["payload"].get("rolled_from", []):  # a standby (standby.py)
            old = TableRef(schema, name)
            if self.db.table_exists(old):  # it died before the rename, which comes before any write
                for s in self.catalog.snapshots():
                    if s.snapshot == old and s.status == SUPERSEDED:
                        self.catalog.update_snapshot(
                            s.id, status="verified", note="standby: its roll forward died before the rename"
                        )
        self.catalog.finish(entry["id"], "recovered")
        return f"removed {dropped} half-made snapshot tables" if dropped else "nothing half-made was left"

    # -- restore and rollback: the swap either happened (complete it) or not (undo the staging) -
    def _restore(self, entry: dict[str, Any]) -> str:
        payload = entry["payload"]
        steps = payload.get("steps", [])
        aside = payload.get("aside", [])
        staged = [TableRef(*s["staging"]) for s in steps]
        swapped = payload.get("phase") in ("swapped", "recopying") or (
            payload.get("phase") == "swapping"
            and all(self._swapped(s) for s in steps)
            and all(self.db.table_exists(TableRef(*a["displaced"])) for a in aside)
        )
        if swapped:
            for s in steps:
                self._record_displaced(s)
            bad = [str(TableRef(*s["table"])) for s in steps if not self._settle(s)]
            for a in aside:
                self._record_displaced(a)
            self.catalog.finish(entry["id"], "recovered")
            if bad:
                raise RollbackFailed(
                    f"the swap had happened, but {', '.join(bad)} does not match its snapshot; "
                    "the replaced tables are kept as displaced snapshots (etlguard snapshots)"
                )
            return "the swap had happened; its bookkeeping is now complete"
        for a in aside:  # the swap is one statement or transaction: nothing was moved
            if self.catalog.snapshot(a["displaced_id"]) is not None:
                self.catalog.update_snapshot(a["displaced_id"], status="failed")
        for s, ref in zip(steps, staged, strict=True):
            if not (s.get("consume") or s.get("refill")):  # there 'staging' is the snapshot itself
                self._drop_ours(ref)
            if s.get("recopy"):
                self._drop_ours(TableRef(*s["recopy"]))
            if s.get("displaced_id") and self.catalog.snapshot(s["displaced_id"]) is not None:
                self.catalog.update_snapshot(s["displaced_id"], status="failed")
        self.catalog.finish(entry["id"], "undone")
        return "the swap had not happened; the staging copies were removed and live tables are untouched"

    def _swapped(self, step: dict[str, Any]) -> bool:
        """Did this step's swap commit? A rename moved the staging table away; a PostgreSQL restore
        (one transaction, refill or rebuild) created the displaced table in the snapshot schema,
        or the live table where there was none."""
        if step.get("refill"):
            made = step["displaced"] or step["table"]
            return self.db.table_exists(TableRef(*made))
        return not self.db.table_exists(TableRef(*step["staging"]))

    def _settle(self, step: dict[str, Any]) -> bool:
        """Finish the swap-first verification the interrupted restore may not have reached: the
        live table is proven against the snapshot, and a consumed snapshot's catalog row says
        it is now the live table (or points at the --keep-snapshot copy, verified before the
        swap was journalled). Returns whether the live table holds the snapshot."""
        snap = self.catalog.snapshot(step["snapshot_id"])
        if snap is None:
            return False
        live = TableRef(*step["table"])
        if not step.get("consume"):
            return live_matches(self.db, snap, live)
        recopy = TableRef(*step["recopy"]) if step.get("recopy") else None
        ok = live_matches(self.db, snap, live)
        if snap.status == "restored" or (snap.verified and snap.snapshot == recopy):
            return ok
        kept = recopy if recopy is not None and self.db.table_exists(recopy) else None
        settle_consumed(self.catalog, snap, live, kept, ok)
        return ok

    def _record_displaced(self, step: dict[str, Any]) -> None:
        sid = step.get("displaced_id")
        if not sid:
            return
        snap = self.catalog.snapshot(sid)
        if snap is None or snap.verified:
            return
        ref = TableRef(*step["displaced"])
        if not self.db.table_exists(ref):
            self.catalog.update_snapshot(sid, status="failed")
            return
        mark_displaced(self.db, self.catalog, [(ref, sid, None, self.db.auto_increment(ref))])

    # -- prune: finish the deletions ------------------------------------------------------------
    def _prune(self, entry: dict[str, Any]) -> str:
        for sid, schema, name in entry["payload"].get("snapshots", []):
            self._drop_ours(TableRef(schema, name))
            self.catalog.update_snapshot(sid, status="deleted")
        self.catalog.finish(entry["id"], "recovered")
        return "finished the interrupted deletions"

    # -- run: before the ETL nothing to undo; after it, roll back; at commit, keep --------------
    def _run(self, entry: dict[str, Any]) -> str:
        run_id = entry["run_id"]
        payload = entry["payload"]
        phase = payload.get("phase")
        captured = _capture.from_journal(payload)
        if phase == "snapshot":
            self._discard_captures(captured)
            for named in self.catalog.snapshots():  # zero-copy names recorded for a dbt that never ran
                if named.run_id == run_id and named.status == "pending":
                    self.catalog.update_snapshot(named.id, status="failed", note=NOT_REPLACED)
            self._close(entry, run_id, "aborted", "the run died while snapshotting; the ETL never started")
            return "the ETL never started; nothing to roll back"
        zero = settle(self.db, self.catalog, payload.get("zero_copy", []))  # what dbt kept, verified
        if phase == "commit":
            done = _capture.settle_copies(self.db, self.catalog, captured)
            _capture.commit(self.db, self.catalog, done.captured + done.standby, run_id)
            self._close(entry, run_id, "ok", "the run died after its audits passed; recover kept its result")
            return "the run had passed its audits; its result is kept"
        chosen = {}
        for sid in payload.get("snapshot_ids", []):
            snap = self.catalog.snapshot(sid)
            if snap is None or not (snap.verified or snap.status == "restored"):
                raise EtlguardError(f"run {run_id}'s snapshot {sid} is not usable; restore by hand")
            chosen[snap.table] = snap  # `restored`: the rollback swapped it in; only a check is left
        chosen.update({s.table: s for s in zero.kept})
        why = (
            "its lock was lost during the ETL"
            if payload.get("lock_lost")
            else f"it died in its {phase} phase"
        )
        created = created_by_run(
            self.db, Membership.from_journal(payload), [self.snapshot_schema, self.catalog.schema]
        )
        settled = _capture.settle_copies(self.db, self.catalog, captured)  # full copies a DDL made
        _capture.close_standby(self.db, self.catalog, settled.standby)  # their standbys are in `chosen`
        chosen.update({s.table: s for s in settled.copies})
        zero.problems += settled.problems + self._replay_captures(run_id, settled.captured)
        if (chosen or captured) and not created and all(self._matches(s) for s in chosen.values()):
            self._zero_copy_problems(entry, run_id, zero.problems, [])
            self._close(
                entry, run_id, "rolled_back", f"recover found every table back at its snapshot ({why})"
            )
            return "every table was already back at its snapshot; the run is closed as rolled back"
        consumed = sorted(str(t) for t, s in chosen.items() if not s.verified)
        if consumed:  # swapped back already, and not what the snapshot recorded: a person must look
            message = f"recover found {', '.join(consumed)} swapped back, but not matching its snapshot"
            self._record(run_id, "rollback_failed", message, [])
            raise RollbackFailed(
                f"run {run_id}: {message}; the replaced tables are kept as displaced snapshots"
            )
        tables = sorted(chosen)
        self.db.lock_tables(tables, f"etlguard recover of run {run_id}")
        stopped = settle_sessions(self.db, tables, self.grace, self.echo)
        steps = plan_restore(self.db, self.catalog, chosen, self.snapshot_schema)
        hidden = [self.snapshot_schema, self.catalog.schema]
        aside = plan_aside(
            self.db, self.catalog, Membership.from_journal(payload), self.snapshot_schema, hidden, len(steps)
        )
        try:
            result = run_restore(
                self.db, self.catalog, steps, self.snapshot_schema, run_id=run_id, op="rollback", aside=aside
            )
        except EtlguardError as exc:
            self._record(run_id, "rollback_failed", f"recover could not roll the run back: {exc}", stopped)
            raise RollbackFailed(f"run {run_id}: the rollback failed again: {exc}") from exc
        unverified = sorted(str(s.table) for s in steps if str(s.table) not in result.verified)
        if unverified:
            message = f"recover rolled back, but {', '.join(unverified)} did not match its snapshot"
            self._record(run_id, "rollback_failed", message, stopped)
            raise RollbackFailed(f"run {run_id}: {message}")
        self._zero_copy_problems(entry, run_id, zero.problems, stopped)
        self._close(
            entry,
            run_id,
            "rolled_back",
            f"recover rolled back {plural(len(steps), 'table')} after {why}",
            stopped,
        )
        return f"{why}; rolled back {plural(len(result.verified), 'table')} and verified them"

    def _discard_captures(self, captured: list[_capture.Captured]) -> None:
        """The ETL never started: the triggers go first, then the capture tables (ours by name)."""
        for c in captured:
            mysql_capture.drop_triggers(self.db, c.table, c.token)
            for ref, sid in ((c.capture, c.id), (c.lazy, c.lazy_id)):
                if ref is None or sid is None:  # a standby's change log has no empty copy
                    continue
                self._drop_ours(ref)
                if self.catalog.snapshot(sid) is not None:
                    self.catalog.update_snapshot(
                        sid, status="failed", note="changed-rows capture: the ETL never ran"
                    )

    def _replay_captures(self, run_id: int, captured: list[_capture.Captured]) -> list[str]:
        """Put the captured tables back (the replay is idempotent: a crash during or after an
        earlier one changes nothing), prove them, drop their triggers. A record already
        `restored` was proved by the rollback: only its triggers are dropped again."""
        todo = []
        for c in captured:
            snap = self.catalog.snapshot(c.id)
            if snap is not None and snap.status == "restored":
                mysql_capture.drop_triggers(self.db, c.table, c.token)
            else:
                todo.append(c)
        if not todo:
            return []
        self.db.lock_tables([c.table for c in todo], f"etlguard recover of run {run_id}")
        settle_sessions(self.db, [c.table for c in todo], self.grace, self.echo)
        replayed = _capture.replay_alone(self.db, todo)
        problems = _capture.settle_rollback(self.db, self.catalog, replayed)
        return [f"{t}: its captured changes were replayed, but {why}" for t, why in sorted(problems.items())]

    def _zero_copy_problems(
        self, entry: dict[str, Any], run_id: int, problems: list[str], stopped: list[str]
    ) -> None:
        """Every other table is back; a zero-copy table that no snapshot holds cannot be, however
        often recover runs: the run record says so, the journal entry is closed, exit 20."""
        if not problems:
            return
        message = (
            f"recover rolled back every other table, but: {'; '.join(problems)}. Put it back from an "
            "older snapshot (etlguard snapshots TABLE) or rebuild it with dbt"
        )
        self._record(run_id, "rollback_failed", message, stopped)
        self.catalog.finish(entry["id"], "recovered")
        raise RollbackFailed(f"run {run_id}: {message}")

    def _matches(self, snap: Any) -> bool:
        return self.db.table_exists(snap.table) and live_matches(self.db, snap, snap.table)

    def _record(self, run_id: int, status: str, message: str, stopped: list[str]) -> None:
        """What really happened, in the run record; the journal entry stays open."""
        rows = self.catalog.runs(run_id)
        details = rows[0]["details"] if rows else {}
        details.update(message=message, stopped_sessions=stopped)
        self.catalog.finish_run(run_id, status, EXIT_ROLLBACK_FAILED, details)

    def _close(
        self, entry: dict[str, Any], run_id: int, status: str, message: str, stopped: list[str] | None = None
    ) -> None:
        rows = self.catalog.runs(run_id)
        details = rows[0]["details"] if rows else {}
        details["message"] = message
        if stopped:
            details["stopped_sessions"] = stopped
        if status == "rolled_back":
            details["rolled_back"] = details.get("protected", [])
        self.catalog.finish_run(run_id, status, 0 if status == "ok" else 1, details)
        self.catalog.finish(entry["id"], "recovered")


def _hostname() -> str:
    return socket.gethostname()

"""`etlguard recover`: finish or undo whatever an interrupted operation left behind.

Every multi-step operation journals its intent (with the exact names it will create) before it
acts, and notes its phase as it goes. Recovery reads those entries and, for each, either
completes it or undoes it so that every protected table is wholly in its old state or wholly in
its new one. It only ever drops tables that the journal names and that carry etlguard's random
name token in etlguard's own schemas, so it never drops a table it cannot prove it made. It is
idempotent: a second run finds nothing to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .adapters.base import Adapter
from .catalog import Catalog
from .errors import EtlguardError, RollbackFailed
from .faults import fault
from .restore import live_matches, plan_aside, plan_restore, run_restore, settle_consumed
from .snapshot import Membership
from .tables import TableRef, plural

# s12_ab3de9xz (snapshot), r12_... (MySQL staging), _etlguard_r12_... (DuckDB staging)
_OURS = re.compile(r"^(?:s|r|_etlguard_r)\d+_[a-z0-9]{8}$")


@dataclass
class RecoveryReport:
    actions: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not self.actions


class Recovery:
    def __init__(self, db: Adapter, catalog: Catalog, snapshot_schema: str) -> None:
        self.db = db
        self.catalog = catalog
        self.snapshot_schema = snapshot_schema
        self.report = RecoveryReport()

    def run(self, dry_run: bool = False) -> RecoveryReport:
        pending = self.catalog.unfinished()
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

    # -- helpers --------------------------------------------------------------------------------
    def _drop_ours(self, ref: TableRef) -> bool:
        """Drop a table the journal names, if it is provably one of ours; True if it existed."""
        if not _OURS.match(ref.name):
            raise EtlguardError(f"refusing to drop {ref}: its name is not one etlguard generates")
        if ref.schema != self.snapshot_schema and not ref.name.startswith("_etlguard_r"):
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
        cs = self.db.checksum(ref)
        self.catalog.update_snapshot(
            sid, status="verified", row_count=cs.rows, checksum=cs.digest, fingerprint=cs.algorithm
        )

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
        phase = entry["payload"].get("phase")
        if phase == "snapshot":
            self._close(entry, run_id, "aborted", "the run died while snapshotting; the ETL never started")
            return "the ETL never started; nothing to roll back"
        if phase == "commit":
            self._close(entry, run_id, "ok", "the run died after its audits passed; recover kept its result")
            return "the run had passed its audits; its result is kept"
        done = [
            e
            for e in self.catalog.entries(run_id)
            if e["op"] == "rollback" and e["state"] in ("done", "recovered")
        ]
        if done:
            self._close(entry, run_id, "rolled_back", "the run's rollback had completed; recover closed it")
            return "the run had already been rolled back"
        ids = entry["payload"].get("snapshot_ids", [])
        chosen = {}
        for sid in ids:
            snap = self.catalog.snapshot(sid)
            if snap is None or not snap.verified:
                raise EtlguardError(f"run {run_id}'s snapshot {sid} is not usable; restore by hand")
            chosen[snap.table] = snap
        steps = plan_restore(self.db, self.catalog, chosen, self.snapshot_schema)
        hidden = [self.snapshot_schema, self.catalog.schema]
        membership = Membership.from_journal(entry["payload"])
        aside = plan_aside(self.db, self.catalog, membership, self.snapshot_schema, hidden, len(steps))
        result = run_restore(
            self.db, self.catalog, steps, self.snapshot_schema, run_id=run_id, op="rollback", aside=aside
        )
        bad = [str(s.table) for s in steps if str(s.table) not in result.verified]
        if bad:  # swapped back, but not the snapshot: say so, keep what was replaced
            message = f"recover rolled back, but {', '.join(bad)} does not match its snapshot"
            self._close(entry, run_id, "rollback_failed", message)
            raise RollbackFailed(f"{message}; the replaced tables are kept as displaced snapshots")
        self._close(
            entry,
            run_id,
            "rolled_back",
            f"recover rolled back {plural(len(steps), 'table')} after the run died",
        )
        return f"the run died during its {phase} phase; rolled back {plural(len(result.verified), 'table')} and verified them"

    def _close(self, entry: dict[str, Any], run_id: int, status: str, message: str) -> None:
        rows = self.catalog.runs(run_id)
        details = rows[0]["details"] if rows else {}
        details["message"] = message
        if status == "rolled_back":
            details["rolled_back"] = details.get("protected", [])
        self.catalog.finish_run(run_id, status, 0 if status == "ok" else 1, details)
        self.catalog.finish(entry["id"], "recovered")

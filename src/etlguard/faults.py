"""Named fault points, for the crash-safety suite. Inert unless ETLGUARD_FAULT is set.

`ETLGUARD_FAULT=snapshot.after_copy:kill` SIGKILLs this process when it reaches that point;
`:pause` SIGSTOPs it (a test then kills the server, or sends SIGCONT); `:raise` raises. Every
point is listed in POINTS, and the suite loops over that tuple; a test checks that the code
calls exactly these names, so the list cannot drift from the code.
"""

from __future__ import annotations

import os
import signal

POINTS: tuple[str, ...] = (
    "run.in_preflight",  # connected, run lock held, catalog ready; nothing of the run written
    "snapshot.after_intent",  # journal and 'creating' catalog rows written; nothing copied
    "copy.after_create",  # snapshot tables created, still empty (MySQL: committed DDL)
    "copy.after_export",  # MySQL physical copy: sources FLUSHed FOR EXPORT (writers wait); no file copied
    "copy.one_table_copied",  # MySQL: one table's rows copied on its own session; others may still copy
    "copy.after_rows",  # rows copied; MySQL: locks released, secondary indexes not yet rebuilt
    "snapshot.after_copy",  # copied and checksummed; not yet marked verified
    "snapshot.before_finish",  # marked verified; journal entry still open
    "snapshot.after_reuse",  # a record sharing an unchanged table's snapshot written; none copied
    "restore.after_intent",  # journal written; no staging copy yet
    "restore.after_staging",  # staging copies built and verified; live tables untouched
    "restore.before_swap",  # journal says 'swapping'
    "iceberg.before_pointer_swap",  # Iceberg: displaced tags made; no table pointer moved yet
    "restore.after_swap",  # swapped; journal does not know yet
    "capture.after_replay",  # captured tables replayed (and copies swapped); triggers still there
    "restore.before_verify",  # swapped, displaced tables recorded; live tables not yet verified
    "restore.before_finish",  # displaced tables recorded; journal entry still open
    "zerocopy.after_register",  # dbt table models checksummed, kept names recorded; not journalled
    "capture.after_intent",  # capture records and journal written; no capture table, no trigger
    "capture.after_tables",  # capture tables created; no trigger yet
    "capture.after_triggers",  # triggers installed, pre-run checksums recorded; the ETL has not started
    "standby.after_intent",  # roll-forward journal and 'creating' rows written; standby untouched
    "standby.after_roll",  # standbys renamed and rolled forward, not yet proven against the live table
    "run.after_snapshot",  # snapshots verified; the ETL has not started
    "run.during_etl",  # the ETL child is running
    "run.after_etl",  # the ETL has exited; audits not run
    "zerocopy.after_settle",  # the tables dbt kept are verified snapshots; the run has not used them
    "run.before_commit",  # audits passed; the run is not yet marked ok
    "run.before_close",  # the run record is final; its journal entry is still open
    "prune.after_intent",  # journal written; nothing dropped
    "prune.after_drop",  # a snapshot table dropped; the catalog still lists it
    "import.after_intent",  # restore --from: journal and 'creating' row written; nothing copied
    "import.after_copy",  # restore --from: rows copied from the source; not yet verified
    "recover.after_step",  # recover resolved one journal entry and is about to do the next
)


class FaultInjected(RuntimeError):
    """Raised at a fault point with the `raise` action (never in production)."""


def fault(point: str) -> None:
    spec = os.environ.get("ETLGUARD_FAULT")
    if not spec:
        return
    assert point in POINTS, f"undeclared fault point {point}"
    name, _, action = spec.partition(":")
    if name != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "raise":
        raise FaultInjected(point)

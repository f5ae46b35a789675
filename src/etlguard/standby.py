"""Standby snapshots: a captured table keeps one full snapshot that each guarded run rolls
forward by the rows the last run changed, so a rollback renames it into place in milliseconds.

With `snapshot.capture` a rollback replays the captured pre-run rows into the live table: its
cost follows what the run changed, and readers wait for it. With `snapshot.standby` as well,
each captured table also has a full snapshot taken at the start of the run (the standby), and
the capture is only the change log that brings the standby up to date before the next run:

1. Before the ETL, the capture's triggers are installed first (capture.py), so every change
   from then on is recorded; then the standby is brought to the live table's rows now.
2. The standby is the table's newest snapshot when the run that took it committed and its
   capture (`changes`, status `captured`, same run) still exists: it holds the table as it was
   before that run, and the capture names every key that run touched. The live table must
   still be as that run left it (its CHECKSUM TABLE is the post-run one the capture recorded),
   else another writer changed it since and the table is copied in full.
3. Rolling forward (journaled as a snapshot operation, so a crash anywhere leaves `recover`
   able to drop the half-made table): the old records stop being restore points (`superseded`,
   naming the new one), the table is renamed to the new record's name, the captured keys are
   rewritten from the live table (adapters/mysql_capture.roll_forward), its AUTO_INCREMENT set
   to the live table's, and its checksum and seal recorded.
4. The proof is the reuse proof of snapshot.py: the live table's CHECKSUM TABLE, structure
   and counter must equal the standby's at the run's consistency point. A standby that does
   not prove out is dropped and the table copied; one that does is this run's snapshot.

What it costs: one full copy on the first run (and after a change outside a guarded run), a
standby's storage (the newest full snapshot, which retention keeps anyway), and older nights
as `changes` records rather than as full snapshots.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .adapters import mysql_capture as sql
from .adapters.base import COPY_CHECK, Adapter, Copy
from .capture import KIND
from .catalog import Catalog, Snapshot
from .errors import ChecksumMismatch
from .faults import fault
from .snapshot import encode_check, shape_of, snapshot_name
from .tables import TableRef

_ADAPTERS = ("mysql", "mariadb")
SUPERSEDED = "superseded"


@dataclass
class Rolled:
    """A standby rolled forward this run: its new record (`creating` until proven)."""

    snapshot: Snapshot
    rows_written: int
    bytes_written: int


def candidates(
    db: Adapter, catalog: Catalog, tables: Sequence[TableRef], run_id: int | None
) -> dict[TableRef, tuple[Snapshot, Snapshot]]:
    """Each table whose newest snapshot and capture came from one committed run (before run
    `run_id`, whose own capture is being installed), with the live table still as that run
    left it: (the snapshot, the capture)."""
    out: dict[TableRef, tuple[Snapshot, Snapshot]] = {}
    if db.name not in _ADAPTERS:
        return out
    for table in tables:
        records = catalog.snapshots(table)
        taken = [s for s in records if s.kind == "snapshot"]
        changes = [s for s in records if s.kind == KIND and s.run_id != run_id]
        if not taken or not changes:
            continue
        snap, capture = taken[-1], changes[-1]
        if not snap.verified or capture.status != "captured" or snap.run_id is None:
            continue
        if capture.run_id != snap.run_id or not capture.change_check:
            continue
        if not (db.table_exists(snap.snapshot) and db.table_exists(capture.snapshot)):
            continue
        if not db.structure_matches(table, snap.structure):  # (capture.plan chose the table)
            continue
        post = db.change_check(table)  # as the run left it? (else: a writer since, copy in full)
        if post is None or encode_check(post) != capture.change_check:
            continue
        out[table] = (snap, capture)
    return out


def roll(
    db: Adapter,
    catalog: Catalog,
    chosen: dict[TableRef, tuple[Snapshot, Snapshot]],
    snapshot_schema: str,
    run_id: int | None,
) -> dict[TableRef, Rolled]:
    """Step 3 for each chosen table; the records stay `creating` until `settle_rolled`."""
    if not chosen:
        return {}
    first = catalog.next_snapshot_id()
    plan = []
    for i, (table, (snap, capture)) in enumerate(sorted(chosen.items())):
        plan.append(
            (table, snap, capture, first + i, TableRef(snapshot_schema, snapshot_name("s", first + i)))
        )
    entry = catalog.begin(
        "snapshot",
        {
            "snapshots": [
                {"id": sid, "table": str(t), "snapshot": [new.schema, new.name]} for t, _, _, sid, new in plan
            ],
            "rolled_from": [[s.snapshot.schema, s.snapshot.name] for _, s, _, _, _ in plan],
        },
        run_id=run_id,
    )
    taken_at = db.server_now()
    for table, snap, capture, sid, new in plan:
        catalog.add_snapshot(
            Snapshot(
                id=sid,
                table=table,
                snapshot=new,
                kind="snapshot",
                status="creating",
                taken_at=taken_at,
                row_count=None,
                size_bytes=None,
                checksum=None,
                auto_increment=None,
                structure="",
                run_id=run_id,
                journal_id=entry,
                note=f"standby: snapshot {snap.id} rolled forward by run {capture.run_id}'s changes",
            )
        )
    fault("standby.after_intent")
    out = {}
    for table, snap, capture, sid, new in plan:
        for old in catalog.sharing(snap):  # no longer restore points: their table becomes `new`
            catalog.update_snapshot(
                old.id,
                status=SUPERSEDED,
                note=f"rolled forward into snapshot {sid}; this state is the changes record {capture.id} away",
            )
        db.execute(f"RENAME TABLE {db.qualify(snap.snapshot)} TO {db.qualify(new)}")
        written = sql.roll_forward(db, new, table, capture.snapshot, sql.layout(db, table))
        counter = db.auto_increment(table)
        if counter is not None:
            db.execute(f"ALTER TABLE {db.qualify(new)} AUTO_INCREMENT = {int(counter)}")
        check, seal = db.sealed_checksums([(new, COPY_CHECK)])[0]
        record = catalog.snapshot(sid)
        assert record is not None
        record.row_count, record.checksum, record.fingerprint = check.rows, check.digest, check.algorithm
        record.structure, record.auto_increment, record.seal = db.structure(table), counter, seal
        record.size_bytes = db.size_bytes(new)
        record.change_check = f"{encode_check(check)} {shape_of(db, new)}"
        catalog.update_snapshot(
            sid,
            row_count=record.row_count,
            checksum=record.checksum,
            fingerprint=record.fingerprint,
            structure=record.structure,
            auto_increment=counter,
            seal=seal,
            size_bytes=record.size_bytes,
            change_check=record.change_check,
        )
        rows = max(1, check.rows or 1)
        out[table] = Rolled(record, written, int(written * record.size_bytes / rows))
    fault("standby.after_roll")
    return out


def settle_rolled(
    db: Adapter, catalog: Catalog, rolled: dict[TableRef, Rolled], proven: Sequence[TableRef]
) -> None:
    """After the proof: a proven standby is this run's verified snapshot; any other is dropped
    (its table is copied instead). Closes the journal entry."""
    if not rolled:
        return
    for table, r in rolled.items():
        if table in proven:
            catalog.update_snapshot(r.snapshot.id, status="verified")
            r.snapshot.status = "verified"
        else:
            db.drop_table(r.snapshot.snapshot)
            catalog.update_snapshot(
                r.snapshot.id,
                status="failed",
                note="standby: rolled forward, but not equal to the live table",
            )
            r.snapshot.status = "failed"
    entry = next(iter(rolled.values())).snapshot.journal_id
    if entry is not None:
        catalog.finish(entry)


_INTO = re.compile(r"rolled forward into snapshot (\d+)")


@dataclass
class Chain:
    """How a superseded snapshot's state is rebuilt: the current standby, then each run's
    changes record undone, newest first (`changes[0]` is the newest)."""

    target: Snapshot
    standby: Snapshot
    changes: list[Snapshot]


def chain(db: Adapter, catalog: Catalog, snap: Snapshot) -> Chain | str:
    """The chain from a superseded snapshot to its table's current standby, or why there is
    none. Each superseded record names the record it was rolled into; between the two lie the
    changes of the run that took it (its `changes` record, still kept)."""
    records = {s.id: s for s in catalog.snapshots(snap.table)}
    undo: list[Snapshot] = []
    at = snap
    while at.status == SUPERSEDED:
        found = _INTO.search(at.note or "")
        nxt = records.get(int(found.group(1))) if found else None
        log = [
            c for c in records.values() if c.kind == KIND and c.run_id == at.run_id and c.status == "captured"
        ]
        if nxt is None or not log or at.run_id is None:
            return f"the changes between snapshot {at.id} and the next standby are no longer kept"
        if not db.table_exists(log[-1].snapshot):
            return f"the changes record {log[-1].id} has lost its table"
        undo.append(log[-1])
        at = nxt
    if not at.verified or not db.table_exists(at.snapshot):
        return f"the standby snapshot {at.id} it was rolled into is {at.status}"
    return Chain(snap, at, list(reversed(undo)))


def rebuild(db: Adapter, chain_: Chain, staging: TableRef) -> None:
    """Build the superseded snapshot's state in `staging` (absent): a verified copy of the
    current standby, then each run's changes undone, newest first (their keys deleted, their
    pre-run images put back, as a rollback's replay does), its AUTO_INCREMENT as recorded; then
    proven against the superseded snapshot's own recorded fingerprint. Raises ChecksumMismatch
    when it does not prove out (the caller drops `staging`)."""
    standby, target = chain_.standby, chain_.target
    (copied,) = db.copy_tables([Copy(standby.snapshot, staging, None, standby.fingerprint)])
    if copied.source != copied.dest or not standby.matches(copied.fingerprint):
        raise ChecksumMismatch(
            str(target.table), standby.id, f"{standby.row_count} rows", str(copied.fingerprint)
        )
    lay = sql.layout(db, staging)
    for record in chain_.changes:
        sql.undo(db, staging, record.snapshot, lay)
    if target.auto_increment is not None:
        db.execute(f"ALTER TABLE {db.qualify(staging)} AUTO_INCREMENT = {int(target.auto_increment)}")
    actual = db.checksum(staging, target.fingerprint)
    if not target.matches(actual):
        raise ChecksumMismatch(
            str(target.table), target.id, f"{target.row_count} rows/{target.checksum}", f"rebuilt: {actual}"
        )


def discard_rolled(db: Adapter, catalog: Catalog, rolled: dict[TableRef, Rolled]) -> None:
    """The snapshot failed: every standby rolled this run is dropped (the run did not start)."""
    settle_rolled(db, catalog, rolled, [])


__all__ = [
    "SUPERSEDED",
    "Chain",
    "Rolled",
    "candidates",
    "chain",
    "discard_rolled",
    "rebuild",
    "roll",
    "settle_rolled",
]

"""Changed-rows capture: a protected MySQL/MariaDB table the ETL changes in place is not copied
before the run; triggers installed for the run record the pre-run image of every row it touches
(see adapters/mysql_capture.py), and a rollback puts those rows back in one transaction.

Opt-in (`snapshot.capture: true`). Order of work, so that a crash anywhere leaves `recover`
able to decide (modelled on zerocopy.py):
1. Before the ETL: a catalog row of kind `changes` per table (status `creating`) and the run's
   journal entry naming the capture table, the trigger token and the column layout, all written
   BEFORE any trigger exists. Then, with the captured tables write-locked (one point in time for
   them), each table's row count + CHECKSUM TABLE is recorded and its triggers are created; the
   row becomes `capturing`. A table whose triggers cannot be created (no TRIGGER privilege, binary
   logging without SUPER) is copied instead, so it is never unprotected.
2. While the ETL runs, one transaction per captured table holds its metadata lock, so a DDL on
   it waits; the holder then makes a full pre-run copy of that table (its rows, then the
   capture's inverse) into an empty copy made before the ETL, and lets the DDL go on. After the
   ETL (`settle_copies`) that copy is proved against the pre-run checksum and becomes the run's
   snapshot of the table: a capture cannot undo a changed structure, a copy can.
3. Commit: triggers dropped first, then the post-run checksum recorded; the row becomes
   `captured` (a record of what the run changed; not a restorable snapshot).
   Rollback: the replay, verified against the pre-run checksum and structure; then the triggers
   are dropped and the row becomes `restored`. The replay is idempotent, so `recover` repeats it.

Why this module is long: the capture's steps (plan, intend, install, hold, settle, commit,
replay, close) share the journal's Captured records, and `recover` resumes any of them; they
stay together.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from .adapters import adapter_for
from .adapters import mysql_capture as sql
from .adapters.base import COPY_CHECK, Adapter, Checksum, Swap
from .catalog import Catalog, Snapshot
from .errors import EtlguardError
from .faults import fault
from .snapshot import snapshot_name
from .tables import TableRef

_ADAPTERS = ("mysql", "mariadb")
KIND = "changes"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class Captured:
    """One captured table, as the run's journal entry records it."""

    id: int
    table: TableRef
    capture: TableRef
    token: str
    layout: sql.Layout
    lazy_id: int | None  # the full copy made only if a DDL comes (see mysql_capture.Hold)
    lazy: TableRef | None  # None for a standby's change log (standby.py): it needs no hold
    standby: bool = False  # only the change log that rolls the standby forward next run

    def as_journal(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table": [self.table.schema, self.table.name],
            "capture": [self.capture.schema, self.capture.name],
            "token": self.token,
            "layout": self.layout.as_journal(),
            "lazy_id": self.lazy_id,
            "lazy": [self.lazy.schema, self.lazy.name] if self.lazy is not None else None,
            "standby": self.standby,
        }

    @classmethod
    def from_journal(cls, item: dict[str, Any]) -> Captured:
        return cls(
            item["id"],
            TableRef(*item["table"]),
            TableRef(*item["capture"]),
            item["token"],
            sql.Layout.from_journal(item["layout"]),
            item["lazy_id"],
            TableRef(*item["lazy"]) if item.get("lazy") else None,
            bool(item.get("standby", False)),
        )

    def replay(self) -> sql.Replay:
        return sql.Replay(self.table, self.capture, self.layout, f"_etlguard_x{self.token}")

    @property
    def log_only(self) -> bool:
        """A standby's change log: no lazy copy and no replay; its triggers go when the ETL ends."""
        return self.lazy is None or self.lazy_id is None


@dataclass
class Plan:
    tables: list[TableRef] = field(default_factory=list)  # captured
    copied: dict[TableRef, str] = field(default_factory=dict)  # copied instead, and why


def plan(db: Adapter, enabled: bool, tables: Sequence[TableRef], min_bytes: int = 0) -> Plan:
    """Which protected tables this run captures; every other one is copied as before (one
    smaller than `min_bytes` too: its copy, or its reuse, costs less than a change log)."""
    out = Plan()
    if not enabled or db.name not in _ADAPTERS:
        return out
    for t in tables:
        if not db.table_exists(t):
            continue
        size = db.size_bytes(t) if min_bytes else 0
        why = (
            f"smaller than snapshot.capture_min_bytes ({size:,} < {min_bytes:,} bytes)"
            if size < min_bytes
            else sql.why_not_captured(db, t)
        )
        if why:
            out.copied[t] = why
        else:
            out.tables.append(t)
    return out


def intend(
    db: Adapter,
    catalog: Catalog,
    tables: Sequence[TableRef],
    snapshot_schema: str,
    run_id: int | None,
    standby: bool = False,
) -> list[Captured]:
    """Step 1a: the catalog rows, and what the journal must name before any trigger exists.
    `standby`: the captures are only change logs for standby snapshots (standby.py), which
    the run copies or rolls forward itself: no pre-run checksum, no empty copy, no hold."""
    db.ensure_schema(snapshot_schema)
    first = catalog.next_snapshot_id()
    out = []
    step = 1 if standby else 2
    for i, table in enumerate(tables):
        sid = first + step * i
        token = f"{sid}_" + "".join(secrets.choice(_ALPHABET) for _ in range(8))
        item = Captured(
            sid,
            table,
            TableRef(snapshot_schema, snapshot_name("c", sid)),
            token,
            sql.layout(db, table),
            None if standby else sid + 1,
            None if standby else TableRef(snapshot_schema, snapshot_name("s", sid + 1)),
            standby,
        )
        structure = db.structure(table)
        records = [(sid, item.capture, KIND, "changed-rows capture: installing")]
        if item.lazy is not None:
            records.append(
                (
                    sid + 1,
                    item.lazy,
                    "snapshot",
                    "changed-rows capture: the full copy made only if a DDL comes",
                )
            )
        for rid, ref, kind, note in records:
            catalog.add_snapshot(
                Snapshot(
                    id=rid,
                    table=table,
                    snapshot=ref,
                    kind=kind,
                    status="creating",
                    taken_at=db.server_now(),
                    row_count=None,
                    size_bytes=None,
                    checksum=None,
                    auto_increment=None,
                    structure=structure,
                    run_id=run_id,
                    note=note,
                    fingerprint=COPY_CHECK,
                )
            )
        out.append(item)
    return out


def install(
    db: Adapter, catalog: Catalog, items: Sequence[Captured]
) -> tuple[list[Captured], dict[TableRef, str]]:
    """Step 1b: capture tables, then under one write lock of the captured tables their checksums
    and triggers. Returns the tables captured and those to copy instead (with why)."""
    for c in items:
        sql.create_capture_table(db, c.capture, c.layout)
        if c.lazy is not None:
            db.create_like(c.lazy, c.table)  # empty: filled only if a DDL comes during the run
    fault("capture.after_tables")
    ok, failed, checks = [], {}, {}
    replayed = [c for c in items if not c.standby]
    # the checksum and the triggers of a table the replay undoes: one moment. A standby's
    # change log needs neither lock nor checksum: it only has to start before the standby's
    # consistency point, and the standby is proven against the live table anyway
    with sql.write_locked(db, [c.table for c in replayed]) if replayed else contextlib.nullcontext():
        for c in items:
            if not c.standby:
                checks[c.id] = (db.copy_check(c.table), db.auto_increment(c.table))
            try:
                sql.create_triggers(db, c.table, c.capture, c.layout, c.token)
            except EtlguardError as exc:
                with contextlib.suppress(EtlguardError):
                    sql.drop_triggers(db, c.table, c.token)
                failed[c.table] = f"its triggers could not be created ({exc})"
                continue
            ok.append(c)
    for c in ok:  # the catalog is not among the locked tables: written after the lock
        cs, counter = checks.get(c.id, (None, None))
        catalog.update_snapshot(
            c.id,
            status="capturing",
            row_count=cs.rows if cs else None,
            checksum=cs.digest if cs else None,
            note="changed-rows capture: recording the run's changes"
            + (" (the change log of its standby snapshot)" if c.standby else ""),
            auto_increment=counter,
        )
    for c in items:
        if c.table in failed:
            discard(db, catalog, c, "changed-rows capture: not installed; the table was copied")
    fault("capture.after_triggers")
    return ok, failed


def discard(db: Adapter, catalog: Catalog, c: Captured, note: str) -> None:
    """Undo step 1 for one table (the ETL never ran, or its triggers could not be made)."""
    sql.drop_triggers(db, c.table, c.token)
    db.drop_table(c.capture)
    catalog.update_snapshot(c.id, status="failed", note=note)
    if c.lazy is not None and c.lazy_id is not None:
        db.drop_table(c.lazy)
        catalog.update_snapshot(c.lazy_id, status="failed", note=note)


def drop_log_triggers(db: Adapter, items: Sequence[Captured], done: list[TableRef]) -> None:
    """The triggers of the standby change logs among `items` dropped, each table appended to
    `done` as soon as its are gone (for `settle_copies`, should this stop half way)."""
    for c in items:
        if c.log_only:
            sql.drop_triggers(db, c.table, c.token)
            done.append(c.table)


def hold(db: Adapter, items: Sequence[Captured]) -> sql.Hold | None:
    """Step 2: keep DDL off the captured tables while the ETL runs (a standby's change log
    needs no hold: the standby is a full copy, which a DDL cannot make useless)."""
    held = [(c.replay(), c.lazy) for c in items if c.lazy is not None]
    if not held:
        return None
    connect = functools.partial(adapter_for, db.target, db.lock_wait_seconds)
    return sql.Hold(connect, held).start()


@dataclass
class Settled:
    copies: list[Snapshot] = field(default_factory=list)  # full copies a DDL made the hold take
    captured: list[Captured] = field(default_factory=list)  # still captured: the replay undoes them
    standby: list[Captured] = field(default_factory=list)  # change logs: triggers gone, no replay
    problems: list[str] = field(default_factory=list)  # tables neither can put back


def settle_copies(
    db: Adapter, catalog: Catalog, items: Sequence[Captured], triggers_gone: Collection[TableRef] = ()
) -> Settled:
    """After the ETL (or in recover): each table whose full copy the hold made before a DDL
    becomes a copied snapshot once the copy proves out against the pre-run checksum, and its
    triggers go (a rename swap cannot move a table with triggers across schemas); every other
    table stays captured and its unused empty copy is dropped. Idempotent. `triggers_gone`:
    standby change logs whose triggers another session already dropped (a rollback's early
    work, see run.py)."""
    out = Settled()
    for c in items:
        if c.log_only:  # a standby's change log: the run is done with it
            if c.table not in triggers_gone:
                sql.drop_triggers(db, c.table, c.token)
            out.standby.append(c)
            continue
        assert c.lazy is not None and c.lazy_id is not None  # (log_only)
        lazy = catalog.snapshot(c.lazy_id)
        if lazy is not None and lazy.verified:
            out.copies.append(lazy)
            continue
        rows = db.table_exists(c.lazy) and db.query(f"SELECT 1 FROM {db.qualify(c.lazy)} LIMIT 1")
        if not rows:  # no DDL came (or its copy never committed): the capture undoes the run
            db.drop_table(c.lazy)
            if lazy is not None and lazy.status == "creating":
                catalog.update_snapshot(c.lazy_id, status="failed", note="changed-rows capture: no DDL came")
            out.captured.append(c)
            continue
        sql.drop_triggers(db, c.table, c.token)
        snap = _adopt(db, catalog, c)
        if snap is None:
            out.problems.append(
                f"{c.table}: the full copy made before a DDL does not match the pre-run checksum"
            )
        else:
            out.copies.append(snap)
    return out


def _adopt(db: Adapter, catalog: Catalog, c: Captured) -> Snapshot | None:
    lazy, lazy_id = c.lazy, c.lazy_id
    assert lazy is not None and lazy_id is not None  # settle_copies: not a standby's change log
    record = catalog.snapshot(c.id)
    with sql.write_locked(db, [lazy]):  # as the pre-run checksum was taken
        check = db.copy_check(lazy)
    if record is None or not record.matches(check):
        catalog.update_snapshot(
            lazy_id, status="damaged", note="changed-rows capture: the copy before a DDL differs"
        )
        return None
    fp = db.fingerprint(lazy)
    catalog.update_snapshot(
        lazy_id,
        status="verified",
        row_count=fp.rows,
        checksum=fp.digest,
        fingerprint=fp.algorithm,
        auto_increment=record.auto_increment,
        size_bytes=db.size_bytes(lazy),
        note="changed-rows capture: a full copy, made when a DDL came during the run",
    )
    catalog.update_snapshot(c.id, status="failed", note=f"superseded by the full copy {lazy_id} (a DDL came)")
    return catalog.snapshot(lazy_id)


def commit(db: Adapter, catalog: Catalog, items: Sequence[Captured], run_id: int | None) -> int:
    """Step 3, a good run: triggers first, then the post-run checksum. Returns bytes kept."""
    kept = 0
    for c in items:
        sql.drop_triggers(db, c.table, c.token)
        snap = catalog.snapshot(c.id)
        if snap is None or snap.status == "captured":
            continue
        post = db.copy_check(c.table)
        size = db.size_bytes(c.capture) if db.table_exists(c.capture) else 0
        kept += size
        catalog.update_snapshot(
            c.id,
            status="captured",
            size_bytes=size,
            change_check=f"{post.algorithm} {post.rows} {post.digest}",
            note=f"changed-rows capture of run {run_id}: the pre-run images of the rows it changed",
        )
    return kept


class Replayer:
    """Step 3, a rollback: what run_restore calls in place of its swap, so that the captured
    tables are put back, and the copied ones swapped, at one moment for readers. `checks`:
    each captured table's checksum right after the replay, under its lock."""

    def __init__(self, db: Adapter, items: Sequence[Captured]) -> None:
        self.db, self.items = db, list(items)
        self.checks: dict[TableRef, Checksum] = {}

    def __call__(self, swaps: Sequence[Swap]) -> None:
        db = self.db
        then = (lambda: db.swap(swaps)) if swaps else None
        also = [s.live for s in swaps if s.displaced is not None]
        connect = functools.partial(adapter_for, db.target, db.lock_wait_seconds)
        replays = [c.replay() for c in self.items]
        self.checks = sql.replay(connect, replays, also, then, getattr(db, "session_id", None))
        fault("capture.after_replay")


def replayer(db: Adapter, items: Sequence[Captured]) -> Replayer | None:
    return Replayer(db, items) if items else None


def settle_rollback(db: Adapter, catalog: Catalog, replayed: Replayer | None) -> dict[str, str]:
    """After the replay: each captured table proven against its pre-run checksum and structure,
    then its triggers dropped. Returns the tables that did not prove out, and how."""
    problems: dict[str, str] = {}
    if replayed is None:
        return problems
    for c in replayed.items:
        snap = catalog.snapshot(c.id)
        why = _unproven(db, snap, c.table, replayed.checks.get(c.table))
        sql.drop_triggers(db, c.table, c.token)
        if why:
            problems[str(c.table)] = why
            if snap is not None:
                catalog.update_snapshot(
                    c.id, status="damaged", note=f"changed-rows capture: replayed, but {why}"
                )
            continue
        if snap is not None and snap.status != "restored":
            catalog.update_snapshot(
                c.id, status="restored", note="changed-rows capture: replayed by the rollback"
            )
    return problems


def _unproven(db: Adapter, snap: Snapshot | None, table: TableRef, live: Checksum | None) -> str | None:
    if snap is None or snap.row_count is None:
        return "its capture record is missing"
    if not db.table_exists(table):
        return "the table is gone"
    if not db.structure_matches(table, snap.structure):
        return "its structure differs from the pre-run one, which the capture cannot undo"
    if live is None:
        return "the replay did not reach it"
    if not snap.matches(live):
        return f"its data ({live}) differs from the pre-run checksum ({snap.row_count} rows/{snap.checksum})"
    return None


def close_standby(db: Adapter, catalog: Catalog, items: Sequence[Captured]) -> None:
    """A rollback swapped each standby back in: the change logs of the run are not needed (the
    next run copies the table, or rolls forward a newer standby). Idempotent."""
    for c in items:
        sql.drop_triggers(db, c.table, c.token)
        snap = catalog.snapshot(c.id)
        if snap is not None and snap.status != "failed":
            catalog.update_snapshot(
                c.id,
                status="failed",
                note="changed-rows capture: the run was rolled back by its standby snapshot",
            )


def replay_alone(db: Adapter, items: Sequence[Captured]) -> Replayer | None:
    """The replay without a swap (recover)."""
    run = replayer(db, items)
    if run is not None:
        run([])
    return run


def from_journal(payload: dict[str, Any]) -> list[Captured]:
    return [Captured.from_journal(i) for i in payload.get("capture", [])]


__all__ = [
    "KIND",
    "Captured",
    "Plan",
    "Replayer",
    "Settled",
    "close_standby",
    "commit",
    "discard",
    "from_journal",
    "hold",
    "install",
    "intend",
    "plan",
    "replay_alone",
    "replayer",
    "settle_copies",
    "settle_rollback",
]

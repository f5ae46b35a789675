"""Taking snapshots: exact copies, one consistency point per call, verified before use.

Order of work, so that a crash at any step leaves nothing ambiguous: journal the intent with
the names we are about to create; record catalog rows as `creating`; copy; compare checksums
of source and copy taken at the same instant; only then record the copy's fingerprint and mark
it `verified`. A failure drops every
table this call created (and only those) and raises: the caller must not go on unprotected.

Reuse: a table that still holds exactly what its newest verified snapshot holds is not copied
again. Its new record shares that snapshot's table (`reuses` names the snapshot), so a night
costs what changed. "Exactly" is proven, not assumed, with the database's cheap change check
(`Adapter.change_check`, recorded for every copy): the live table's check, its structure and
its AUTO_INCREMENT counter must equal what the snapshot recorded, and the snapshot table's own
check and structure too (a snapshot table someone altered is not reused); where the engine can
show the snapshot table unwritten since it was verified (its seal, MariaDB), that stands in for
reading it again. The checks run with both tables held still (`set`) or each from a consistent
read of its own that no writer waits for (`table`: its structure read before and after, as a
copy's is); in `set` the reused tables are checked again after the other tables are copied, so
that they held the same rows across the copies' consistency point. Anything unproven is copied.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .adapters.base import (
    CONSISTENCY_SET,
    CONSISTENCY_TABLE,
    Adapter,
    Checksum,
    Copy,
    CopyResult,
    Progress,
)
from .catalog import Catalog, Snapshot
from .errors import EtlguardError, SnapshotFailed, TableNotFound, UnsupportedTable
from .faults import fault
from .progress import watching
from .tables import TableRef

_ALPHABET = string.ascii_lowercase + string.digits
# A snapshot kept in its live table's own schema (DuckDB renames only within a schema): a table
# a dbt table model replaced (zero-copy), or a live table a restore displaced.
KEPT_PREFIX = "_etlguard_k"


def snapshot_name(prefix: str, snapshot_id: int) -> str:
    """A short id plus a random token: never a user's name, and unguessable, so a table of this
    name that the journal lists is provably one etlguard created."""
    return f"{prefix}{snapshot_id}_" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def snapshot_ref(
    db: Adapter, live: TableRef, snapshot_schema: str, snapshot_id: int, beside: bool = True
) -> TableRef:
    """Where a table of `live` is kept: in the snapshot schema, or (`beside`, where the database
    renames only within a schema) beside the live table, so that moving it in or out is a
    rename. A restore keeps the live table it replaces beside it; a snapshot is taken beside it
    only with `snapshot.beside_live`."""
    if beside and db.staging_beside_live:
        return TableRef(live.schema, snapshot_name(KEPT_PREFIX, snapshot_id))
    return TableRef(snapshot_schema, snapshot_name("s", snapshot_id))


def require_table(db: Adapter, ref: TableRef, also: str = "", present: bool | None = None) -> None:
    """A representable name of an existing table, or a one-line error saying which it is not.
    `present`: whether the table exists, where the caller read that for many tables at once."""
    db.check_identifier(ref.schema)  # a name the server cannot hold is not "missing"
    db.check_identifier(ref.name)
    if not (db.table_exists(ref) if present is None else present):
        kind = db.object_kind(ref)
        if kind is not None:
            raise UnsupportedTable(
                f"{ref} is {kind}, not a base table etlguard can snapshot; remove it from protect:"
            )
        hint = "check the name" if db.schema_exists(ref.schema) else f"schema {ref.schema} does not exist"
        raise TableNotFound(str(ref), hint + (f"; {also}" if also else ""))


@dataclass
class Membership:
    """The protected set as a rollback must put it back, not only the tables that exist: the
    tables snapshotted, the tables the run may create (named in the config or selected from the
    dbt project, with no table yet), and the globs. A table that exists after a failed run but
    did not before (a new name, or a new match of a glob) was made by the run: the rollback moves
    it aside, as a displaced snapshot, so the warehouse is as it was before the run."""

    tables: list[TableRef] = field(default_factory=list)
    new: list[TableRef] = field(default_factory=list)
    globs: list[TableRef] = field(default_factory=list)

    def add(self, refs: Iterable[TableRef], new: bool = False) -> None:
        for ref in refs:
            if ref not in self.tables and ref not in self.new:
                (self.new if new else self.tables).append(ref)

    def as_journal(self) -> dict[str, Any]:
        return {k: [[t.schema, t.name] for t in getattr(self, k)] for k in ("tables", "new", "globs")}

    @classmethod
    def from_journal(cls, payload: dict[str, Any]) -> Membership:
        return cls(*([TableRef(*t) for t in payload.get(k, [])] for k in ("tables", "new", "globs")))


def match_pattern(db: Adapter, pattern: TableRef, hidden: Sequence[str]) -> list[TableRef]:
    """Existing tables that match a glob, outside etlguard's own schemas and staging names."""
    schemas = [s for s in db.list_schemas() if TableRef(s, "x").matches(TableRef(pattern.schema, "x"))]
    return sorted(
        TableRef(s, t)
        for s in schemas
        if s not in hidden
        for t in db.list_tables(s)
        if TableRef(s, t).matches(pattern) and not t.startswith("_etlguard_")
    )


def created_by_run(db: Adapter, membership: Membership, hidden: Sequence[str]) -> list[TableRef]:
    """Tables of the protected set that exist now and did not when the run started."""
    found = [t for t in membership.new if db.table_exists(t)]
    for pattern in membership.globs:
        found += match_pattern(db, pattern, hidden)
    return sorted({t for t in found if t not in membership.tables})


def check_tables(db: Adapter, tables: Sequence[TableRef]) -> None:
    """Every table exists and can be snapshotted exactly (one catalog read of each kind for
    the whole set, where the adapter can)."""
    present = db.existing(tables)
    for ref in tables:
        require_table(db, ref, present=ref in present)
    for ref, reason in zip(tables, db.unsupported_reasons(tables), strict=True):
        if reason:
            raise UnsupportedTable(f"table {ref} cannot be snapshotted exactly: {reason}")


def take_snapshots(
    db: Adapter,
    catalog: Catalog,
    tables: Sequence[TableRef],
    snapshot_schema: str,
    run_id: int | None = None,
    progress: Progress | None = None,
    consistency: str = CONSISTENCY_SET,
    reuse: bool = True,
    beside: bool = False,
    rolled: dict[TableRef, Snapshot] | None = None,
) -> list[Snapshot]:
    """A verified snapshot of each table, in the order given: a new copy, or (with `reuse`) a
    record sharing the newest snapshot's table when the table has not changed since. With
    `beside` (DuckDB), copies are made beside their live tables (see `snapshot_ref`).
    `rolled`: standby snapshots brought up to date before this call (standby.py), each proven
    here as a reused one is; a proven one is returned as it is (its record still `creating`,
    for the caller to settle), any other table is copied."""
    check_tables(db, tables)
    db.ensure_schema(snapshot_schema)
    blocking = consistency != CONSISTENCY_TABLE
    rolled = rolled or {}
    found = reusable(db, catalog, tables if reuse else [], blocking, rolled) if reuse or rolled else {}
    where = (snapshot_schema, beside)
    copied = _copy_changed(
        db, catalog, [t for t in tables if t not in found], where, run_id, progress, consistency
    )
    try:  # `table` has no point in time shared with the copies to hold the reused tables to
        still = unchanged(db, found) if copied and blocking else found
        copied += _copy_changed(
            db, catalog, [t for t in found if t not in still], where, run_id, progress, consistency
        )
    except BaseException:  # one call, one outcome: the first copies go with the failed second
        if copied and copied[0].journal_id is not None:
            _discard(db, catalog, copied, copied[0].journal_id)
        raise
    shared = _record_reuses(db, catalog, {t: s for t, s in still.items() if t not in rolled}, run_id)
    standby = [s for t, s in still.items() if t in rolled]
    by_table = {s.table: s for s in copied + shared + standby}
    return [by_table[t] for t in tables]


def encode_check(check: Checksum) -> str:
    return f"{check.algorithm} {check.rows} {check.digest}"


def how_taken(snap: Snapshot) -> str:
    """'copied', 'reused snapshot N (unchanged since ...)' or how a standby was brought up to
    date (standby.py): one line of a command's output."""
    if snap.note and snap.note.startswith("standby: "):
        return snap.note.removeprefix("standby: ")
    return f"reused snapshot {snap.reuses} ({snap.note})" if snap.reuses else "copied"


def reusable(
    db: Adapter,
    catalog: Catalog,
    tables: Sequence[TableRef],
    blocking: bool = True,
    rolled: dict[TableRef, Snapshot] | None = None,
) -> dict[TableRef, Snapshot]:
    """The tables whose newest verified snapshot they still equal, each with that snapshot
    (a table in `rolled`: that standby instead, with what it recorded when it was rolled).
    Not `blocking`: no lock keeps writers out during the checks, so a table's shape is read
    again after its check, and a table altered meanwhile is copied. Each kind of read is made
    once for the whole set (the records, which snapshot tables exist, structures, checks):
    an unchanged set costs its reads of rows, not a round trip per table and kind."""
    candidates = dict(rolled or {})
    newest = catalog.newest_snapshots([t for t in tables if t not in candidates])
    kept = db.existing([s.snapshot for s in newest.values()])
    candidates |= {
        ref: snap
        for ref, snap in newest.items()
        if snap.verified and snap.change_check and snap.snapshot in kept
    }
    if not candidates:
        return {}
    with db.held_still([*candidates, *(s.snapshot for s in candidates.values())], blocking):
        shaped = _same_shapes(db, candidates, intact=True)
        # a snapshot table its seal shows unwritten since it was verified needs no second read
        sealed = {
            ref for ref, snap in shaped.items() if snap.seal and db.seal_holds(snap.snapshot, snap.seal)
        }
        reads = [
            t for ref, snap in shaped.items() for t in (ref, *(() if ref in sealed else (snap.snapshot,)))
        ]
        checks = dict(zip(reads, db.change_checks(reads), strict=True))
        same = {
            ref: snap
            for ref, snap in shaped.items()
            if _is_recorded(snap, checks[ref])
            and (ref in sealed or _is_recorded(snap, checks[snap.snapshot]))
        }
        return same if blocking else _same_shapes(db, same, intact=True)


def unchanged(db: Adapter, found: dict[TableRef, Snapshot]) -> dict[TableRef, Snapshot]:
    """Of the tables found reusable before the copies, those still unchanged after them."""
    if not found:
        return {}
    with db.held_still(list(found)):
        shaped = _same_shapes(db, found)
        checks = db.change_checks(list(shaped))
    return {
        ref: snap
        for (ref, snap), check in zip(shaped.items(), checks, strict=True)
        if _is_recorded(snap, check)
    }


def _same_shapes(
    db: Adapter, found: dict[TableRef, Snapshot], intact: bool = False
) -> dict[TableRef, Snapshot]:
    """The cheap half of the proof, read before any row is: the live table has the exact
    structure and the AUTO_INCREMENT counter the snapshot recorded (a counter moved by an
    insert rolled back, or by ALTER TABLE, is a change: a restore puts the recorded one back);
    with `intact`, the snapshot table still has the structure it was verified with (which may
    differ from the source's by design, e.g. no column defaults on PostgreSQL). The structures
    of all the tables are read together."""
    if not found:
        return {}
    matches = db.structures_match([(ref, snap.structure) for ref, snap in found.items()])
    counters = [db.auto_increment(ref) for ref in found]
    shapes = _shapes(db, [snap.snapshot for snap in found.values()]) if intact else []
    return {
        ref: snap
        for i, (ref, snap) in enumerate(found.items())
        if matches[i]
        and counters[i] == snap.auto_increment
        and (not intact or _split_check(snap.change_check)[1] == shapes[i])
    }


def _is_recorded(snap: Snapshot, check: Checksum | None) -> bool:
    """Whether a change check (of the live table, or of the snapshot table) is the recorded one."""
    return check is not None and encode_check(check) == _split_check(snap.change_check)[0]


def shape_of(db: Adapter, ref: TableRef) -> str:
    """A short digest of a table's structure, as values (key order and spacing do not count)."""
    return _digest(db.structure(ref))


def _shapes(db: Adapter, refs: Sequence[TableRef]) -> list[str]:
    """`_shape` of each table, their structures read together."""
    return [_digest(structure) for structure in db.structures(refs)]


def _digest(structure: str) -> str:
    text = json.dumps(json.loads(structure), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _split_check(recorded: str | None) -> tuple[str, str]:
    """A recorded change check: the check of the snapshot's rows, and its table's shape."""
    check, _, shape = (recorded or "").rpartition(" ")
    return check, shape


def _record_reuses(
    db: Adapter, catalog: Catalog, still: dict[TableRef, Snapshot], run_id: int | None
) -> list[Snapshot]:
    """One verified record per reused table, sharing the snapshot's table. They are one insert
    of finished records (one commit) and create no table, so a crash leaves them whole or
    absent: there is nothing for recover to undo and nothing to journal."""
    if not still:
        return []
    first = catalog.next_snapshot_id()
    now = db.server_now()
    refs = [
        replace(
            snap,
            id=first + i,
            taken_at=now,
            run_id=run_id,
            journal_id=None,
            size_bytes=0,  # it holds no bytes of its own: the table is counted once, with its owner
            note=_since(snap),
            reuses=snap.reuses or snap.id,
        )
        for i, snap in enumerate(still.values())
    ]
    catalog.add_snapshots(refs)
    fault("snapshot.after_reuse")
    return refs


def _since(snap: Snapshot) -> str:
    """Since when the table has held the shared snapshot's rows: when its owner was taken."""
    if snap.reuses and snap.note and snap.note.startswith("unchanged since"):
        return snap.note
    return f"unchanged since {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC"


def _copy_changed(
    db: Adapter,
    catalog: Catalog,
    tables: Sequence[TableRef],
    where: tuple[str, bool],
    run_id: int | None,
    progress: Progress | None,
    consistency: str = CONSISTENCY_SET,
) -> list[Snapshot]:
    """Copy `tables` into new snapshots; `where`: the snapshot schema, and whether beside."""
    if not tables:
        return []
    first = catalog.next_snapshot_id()
    taken_at = db.server_now()
    snaps = [
        Snapshot(
            id=first + i,
            table=ref,
            snapshot=snapshot_ref(db, ref, where[0], first + i, beside=where[1]),
            kind="snapshot",
            status="creating",
            taken_at=taken_at,
            row_count=None,
            size_bytes=None,
            checksum=None,
            auto_increment=None,
            structure="",
            run_id=run_id,
        )
        for i, ref in enumerate(tables)
    ]
    entry = catalog.begin(
        "snapshot",
        {
            "snapshots": [
                {"id": s.id, "table": str(s.table), "snapshot": [s.snapshot.schema, s.snapshot.name]}
                for s in snaps
            ]
        },
        run_id=run_id,
    )
    for s in snaps:
        s.journal_id = entry
        catalog.add_snapshot(s)
    fault("snapshot.after_intent")
    try:
        with watching(db, [s.table for s in snaps], progress) as on_table:
            results = db.copy_tables([Copy(s.table, s.snapshot) for s in snaps], on_table, consistency)
    except BaseException as exc:
        _discard(db, catalog, snaps, entry)
        if isinstance(exc, EtlguardError):
            raise SnapshotFailed(f"snapshot failed, nothing was kept: {exc}") from exc
        raise
    fault("snapshot.after_copy")
    bad = [(s, r) for s, r in zip(snaps, results, strict=True) if r.source != r.dest]
    if bad:
        _discard(db, catalog, snaps, entry)
        s, r = bad[0]
        raise SnapshotFailed(
            f"snapshot of {s.table} did not verify (source {r.source}, copy {r.dest}); nothing was kept"
        )
    for s, r in zip(snaps, results, strict=True):
        s.status, s.row_count, s.checksum = "verified", r.fingerprint.rows, r.fingerprint.digest
        s.size_bytes, s.auto_increment, s.structure = r.size_bytes, r.auto_increment, r.structure
        s.fingerprint, s.seal = r.fingerprint.algorithm, r.seal
        check = _change_check(db, s, r)
        s.change_check = f"{encode_check(check)} {shape_of(db, s.snapshot)}" if check is not None else None
        catalog.update_snapshot(
            s.id,
            status=s.status,
            row_count=s.row_count,
            checksum=s.checksum,
            fingerprint=s.fingerprint,
            size_bytes=s.size_bytes,
            auto_increment=s.auto_increment,
            structure=s.structure,
            change_check=s.change_check,
            seal=s.seal,
        )
    fault("snapshot.before_finish")
    catalog.finish(entry)
    return snaps


def _change_check(db: Adapter, s: Snapshot, r: CopyResult) -> Checksum | None:
    """The copy's change check, for a later run to compare the live table with: the copy's
    verification check where that is the change check (free), else one more cheap read."""
    return db.change_check_of_copy(r) or db.change_check(s.snapshot)


def _discard(db: Adapter, catalog: Catalog, snaps: Sequence[Snapshot], entry: int) -> None:
    """Drop what this call created; leave the journal open if even that fails (recover ends it)."""
    try:
        for s in snaps:
            db.drop_table(s.snapshot)
            catalog.update_snapshot(s.id, status="failed")
        catalog.finish(entry, "failed")
    except EtlguardError:
        pass

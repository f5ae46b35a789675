"""Restores: swap first in one atomic statement, then verify.

Where the database renames across schemas (MySQL) the snapshot table itself is renamed into
place at once, and only then is the live table proven against the snapshot's recorded
fingerprint and structure: the table is back in milliseconds, and a failed proof is exit 20
with the displaced table kept. Elsewhere the snapshot is copied to a staging table and checked
before the swap. Each displaced live table is kept as a snapshot of kind `displaced`, so a
restore can itself be undone.

Why this module is long: a restore is one journaled sequence (plan, stage, record what is
displaced or moved aside, one swap, prove, settle), and every step must see the same
RestoreStep records so that `recover` can finish any of them; the steps stay together.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from . import standby as _standby
from .adapters.base import COPY_CHECK, Adapter, Checksum, Copy, Progress, Swap
from .catalog import Catalog, Snapshot, utcnow
from .errors import (
    ChecksumMismatch,
    ConfigError,
    EtlguardError,
    RestoreFailed,
    RestoreUnverified,
    SnapshotNotFound,
)
from .faults import fault
from .snapshot import Membership, created_by_run, snapshot_name, snapshot_ref
from .standby import SUPERSEDED
from .tables import TableRef


@dataclass
class RestoreStep:
    table: TableRef
    snapshot: Snapshot
    staging: TableRef
    displaced: TableRef | None
    displaced_id: int | None
    live_structure: str = ""
    live_auto_increment: int | None = None
    consume: bool = False  # the snapshot table itself is renamed into place (no staging copy)
    recopy: TableRef | None = None  # after a consuming swap, the snapshot is copied back here
    refill: bool = False  # the live table is kept and refilled from the snapshot (PostgreSQL)
    proven: bool = False  # a consumed snapshot proven before the swap (RENAME keeps data)
    proof: str = ""  # how: "seal" (O(1), unchanged since its fingerprint) or "fingerprint"
    recopy_seal: str | None = None  # the --keep-snapshot copy's seal
    structure: str = ""  # what the restored table must look like: the catalog's record
    chain: _standby.Chain | None = None  # a superseded snapshot: rebuilt from its standby

    def as_dict(self) -> dict[str, object]:
        return {
            "table": str(self.table),
            "snapshot_id": self.snapshot.id,
            "snapshot_taken_at": self.snapshot.taken_at.isoformat() + "Z",
            "rows": self.snapshot.row_count,
            "displaced_snapshot_id": self.displaced_id,
            "proof": self.proof,
        }


@dataclass
class AsideStep:
    """A table the failed run created: moved into the snapshot schema (DuckDB: renamed beside
    it) in the same swap, kept as a displaced snapshot (never dropped)."""

    table: TableRef
    displaced: TableRef
    displaced_id: int
    structure: str = ""
    auto_increment: int | None = None

    def as_journal(self) -> dict[str, object]:
        return {
            "table": [self.table.schema, self.table.name],
            "displaced": [self.displaced.schema, self.displaced.name],
            "displaced_id": self.displaced_id,
        }


@dataclass
class RestoreResult:
    steps: list[RestoreStep]
    dry_run: bool = False
    swap_seconds: float = 0.0
    back_seconds: float = 0.0  # from the start until every table is back in place
    verify_seconds: float = 0.0  # after the swap: displaced tables fingerprinted, live ones proven
    total_seconds: float = 0.0
    verified: list[str] = field(default_factory=list)
    unverified: dict[str, str] = field(default_factory=dict)  # table -> how it differs

    def problems(self) -> str:
        """One line naming every restored table that does not match its snapshot, and how."""
        return "; ".join(f"{table}: {why}" for table, why in sorted(self.unverified.items()))

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "tables": [s.as_dict() for s in self.steps],
            "swap_seconds": round(self.swap_seconds, 6),
            "back_seconds": round(self.back_seconds, 6),
            "verify_seconds": round(self.verify_seconds, 6),
            "total_seconds": round(self.total_seconds, 6),
            "verified": self.verified,
            "unverified": self.unverified,
        }


def choose_snapshots(
    catalog: Catalog,
    tables: Sequence[TableRef],
    snapshot_ids: Sequence[int] = (),
    latest: bool = False,
    as_of: dt.datetime | None = None,
) -> dict[TableRef, Snapshot]:
    """Pick one verified snapshot per table by id, newest, or newest at or before `as_of` (UTC)."""
    if sum([bool(snapshot_ids), latest, as_of is not None]) != 1:
        raise ConfigError("choose exactly one of --snapshot ID, --latest or --as-of TIME")
    if snapshot_ids:
        return _by_ids(catalog, tables, snapshot_ids)
    chosen = {}
    for table in tables:
        candidates = [  # at a time: a superseded snapshot too, rebuilt from its standby
            s
            for s in catalog.snapshots(table)
            if (s.verified or (as_of is not None and s.status == SUPERSEDED))
            and s.kind == "snapshot"
            and (as_of is None or s.taken_at <= as_of)
        ]
        if not candidates:
            when = f" taken at or before {as_of:%Y-%m-%d %H:%M:%S} UTC" if as_of else ""
            raise SnapshotNotFound(f"no verified snapshot of {table}{when}")
        chosen[table] = max(candidates, key=lambda s: s.id)
    return chosen


def _by_ids(catalog: Catalog, tables: Sequence[TableRef], ids: Sequence[int]) -> dict[TableRef, Snapshot]:
    chosen: dict[TableRef, Snapshot] = {}
    for sid in ids:
        snap = catalog.snapshot(sid)
        if snap is None or snap.status == "deleted":
            raise SnapshotNotFound(f"snapshot {sid}")
        if snap.kind == "changes":
            raise SnapshotNotFound(
                f"snapshot {sid} is a changed-rows capture (the pre-run rows run {snap.run_id} changed), "
                f"which restore cannot put back on its own; restore a full snapshot of {snap.table} "
                "instead (`etlguard snapshots TABLE` lists them)"
            )
        if not snap.verified and snap.status != SUPERSEDED:  # superseded: rebuilt (standby.py)
            raise SnapshotNotFound(f"snapshot {sid} is {snap.status}, not verified")
        if snap.table in chosen:
            raise ConfigError(f"two snapshots given for {snap.table}; give one per table")
        chosen[snap.table] = snap
    extra = [t for t in tables if t not in chosen]
    if extra:
        raise ConfigError(f"snapshot {ids[0]} is not of table {extra[0]}; pass one --snapshot per table")
    return chosen


def plan_restore(
    db: Adapter,
    catalog: Catalog,
    chosen: dict[TableRef, Snapshot],
    snapshot_schema: str,
    keep_snapshots: bool = False,
) -> list[RestoreStep]:
    """Where the database can rename across schemas (MySQL), the snapshot table itself is
    renamed into place: the table is back after one RENAME, whatever its size, and is verified
    afterwards. With `keep_snapshots` (a manual restore's --keep-snapshot) the snapshot is first
    copied aside from the snapshot table, never from the live one, so no live table is locked
    for the copy and the snapshot can be restored again; a rollback never copies.
    On PostgreSQL the snapshot is put back in one transaction, refilling the live table where
    its structure is unchanged (views keep their binding) and rebuilding it where the ETL
    changed it (see the adapter). Elsewhere (DuckDB) a staging copy is built beside the live
    table first, unless the snapshot already is beside it (a table zero-copy kept, a displaced
    one): DuckDB renames within a schema, so that one is renamed into place like MySQL's."""
    steps = []
    next_id = catalog.next_snapshot_id()
    by_pointer = db.restores_by_refill or db.snapshots_by_reference  # no staging copy to build
    present = db.existing(sorted(chosen))
    chains = {t: _standby.chain(db, catalog, s) for t, s in chosen.items() if s.status == SUPERSEDED}
    rebuilt: dict[TableRef, _standby.Chain] = {}
    for table, found in chains.items():
        if isinstance(found, _standby.Chain):
            rebuilt[table] = found
        else:
            raise SnapshotNotFound(
                f"snapshot {chosen[table].id} was rolled forward into a newer standby snapshot and "
                f"cannot be rebuilt: {found}; restore a verified snapshot of {table} instead "
                "(`etlguard snapshots TABLE` lists them)"
            )
    for i, (table, snap) in enumerate(sorted(chosen.items())):
        consume = db.renames_into_place(snap.snapshot, table) and table not in rebuilt
        displaced_id = next_id + i
        staging_schema = table.schema if db.staging_beside_live else snapshot_schema
        staging = (
            snap.snapshot
            if consume or by_pointer
            else TableRef(
                staging_schema, snapshot_name("_etlguard_r" if db.staging_beside_live else "r", displaced_id)
            )
        )
        live_exists = table in present
        steps.append(
            RestoreStep(
                table=table,
                snapshot=snap,
                chain=rebuilt.get(table),
                staging=staging,
                displaced=snapshot_ref(db, table, snapshot_schema, displaced_id) if live_exists else None,
                displaced_id=displaced_id if live_exists else None,
                consume=consume,
                refill=by_pointer,
                recopy=TableRef(snapshot_schema, snapshot_name("s", snap.id))
                if consume and keep_snapshots
                else None,
            )
        )
    return steps


def plan_aside(
    db: Adapter,
    catalog: Catalog,
    membership: Membership,
    snapshot_schema: str,
    hidden: Sequence[str],
    first: int,
) -> list[AsideStep]:
    """Displaced-snapshot names for the tables a failed run created (see Membership); ids
    follow the `first` ids a plan_restore of the same rollback takes."""
    next_id = catalog.next_snapshot_id() + first
    return [
        AsideStep(t, snapshot_ref(db, t, snapshot_schema, next_id + i), next_id + i)
        for i, t in enumerate(created_by_run(db, membership, hidden))
    ]


def check_swappable(
    db: Adapter, steps: Sequence[RestoreStep], aside: Sequence[AsideStep], fks_only: bool = False
) -> None:
    """Refuse, before anything is touched, a swap that could only half work: a live name that
    is now a view, or a trigger or foreign key the snapshot did not have (snapshots refuse
    tables with either, so the run added it). A rename would fail on a trigger (MySQL error
    1435) and carry a foreign key into the snapshot schema. `fks_only`: where the swap itself
    refuses a view or a trigger, whole (Adapter.swap_refuses_views_and_triggers), only foreign
    keys are looked for; the rest is asked after a swap that failed (`_refused_swap`)."""
    refs = [s.table for s in steps] + [a.table for a in aside]
    views = set() if fks_only else db.views_among(refs)
    # a step has a displaced table where the live one exists (plan_restore), an aside table exists
    present = [s.table for s in steps if s.displaced is not None] + [a.table for a in aside]
    found = db.swap_blockers_of(present, triggers=not fks_only)
    for ref in refs:
        if ref in views:
            raise RestoreFailed(
                f"cannot put {ref} back: it is now a view, which etlguard did not create and will not "
                f"drop; drop or rename the view (keep its definition if you need it), then retry; "
                "nothing was changed"
            )
        blockers = found.get(ref, [])
        if blockers:
            raise RestoreFailed(
                f"cannot put {ref} back: the run added {blockers[0]}, which a swap would break; "
                "remove it, then retry; nothing was changed"
            )


def run_restore(
    db: Adapter,
    catalog: Catalog,
    steps: list[RestoreStep],
    snapshot_schema: str,
    progress: Progress | None = None,
    run_id: int | None = None,
    op: str = "restore",
    aside: Sequence[AsideStep] = (),
    prove_first: bool = True,
    replay: Callable[[Sequence[Swap]], None] | None = None,
    journal_also: Callable[[], None] | None = None,
) -> RestoreResult:
    """`prove_first`: a snapshot that is renamed into place is proven before the swap, so a
    damaged or tampered one is refused with every live table untouched, and the live table is
    not read again for data after the RENAME (which keeps data), so another client writing the
    moment the table is back cannot make a good restore look unverified. The proof is the
    snapshot's seal where it holds (O(1): the engine shows the table unchanged since it was
    fingerprinted, see Adapter.sealed_checksum), else a full fingerprint. Its structure is
    still compared after the swap. `prove_first=False` swaps first and proves the data afterwards.
    `replay` (a rollback of captured tables, see capture.py) performs the swap itself, so that
    the captured tables and the swapped ones are back at one moment for readers.
    `journal_also`: a catalog write that goes with the intent (a rollback notes its run's
    phase), in the same commit where nothing has to be built first."""

    started = time.perf_counter()
    after = db.swap_refuses_views_and_triggers and replay is None  # asked only if the swap fails
    check_swappable(db, steps, aside, fks_only=after)
    _prove(db, steps, progress, prove_first)  # reads only: a damaged snapshot is refused before any write
    copying = any(not (s.consume or s.refill) or s.recopy is not None for s in steps)
    if not any(s.consume or s.refill for s in steps):  # else it holds the snapshot tables just found
        db.ensure_schema(snapshot_schema)
    if copying:
        if journal_also is not None:
            journal_also()
        entry = _staged(db, catalog, steps, aside, progress, op, run_id)
    else:  # nothing to build: the intent and what the swap will displace, in one commit
        with db.transaction():
            if journal_also is not None:
                journal_also()
            entry = catalog.begin(op, _payload("swapping", steps, aside), run_id)
            _add_aside(db, catalog, aside, entry, run_id)
            _add_displaced(db, catalog, steps, entry, run_id)
        fault("restore.after_intent")
        fault("restore.after_staging")
    fault("restore.before_swap")
    swap_started = time.perf_counter()
    _counters_ahead(db, [(s.staging, s.table) for s in steps if s.displaced is not None], COUNTER_MARGIN)
    swaps = [Swap(s.table, s.staging, s.displaced, s.structure, _expected_sum(s)) for s in steps]
    swaps += [Swap(a.table, None, a.displaced) for a in aside]
    if replay is not None:
        replay(swaps)
    elif swaps:
        try:
            db.swap(swaps)
        except EtlguardError:
            if after:
                _refused_swap(db, catalog, entry, steps, aside)
            raise
    swap_seconds = time.perf_counter() - swap_started
    back_seconds = time.perf_counter() - started
    fault("restore.after_swap")
    _counters_ahead(db, [(s.table, s.displaced) for s in steps if s.displaced is not None])
    catalog.note(entry, _payload("swapped", steps, aside))
    result = RestoreResult(steps, swap_seconds=swap_seconds, back_seconds=back_seconds)
    verify_started = time.perf_counter()
    _record_displaced(db, catalog, steps)
    _finish_aside(db, catalog, aside)
    fault("restore.before_verify")
    _verify(db, catalog, steps, result)
    result.verify_seconds = time.perf_counter() - verify_started
    fault("restore.before_finish")
    catalog.finish(entry)
    result.total_seconds = time.perf_counter() - started
    return result


def _staged(
    db: Adapter,
    catalog: Catalog,
    steps: Sequence[RestoreStep],
    aside: Sequence[AsideStep],
    progress: Progress | None,
    op: str,
    run_id: int | None,
) -> int:
    """The intent journaled, then what the swap needs built (`_stage`) and what it will
    displace recorded; the journal entry's id. A failure drops what was built, never a
    snapshot, and leaves every live table untouched."""
    entry = catalog.begin(op, _payload("staging", steps, aside), run_id)
    fault("restore.after_intent")
    try:
        _stage(db, steps, progress)
    except BaseException as exc:
        for s in steps:
            if not (s.consume or s.refill):  # never drop the snapshot itself
                _quietly_drop(db, s.staging)
            if s.recopy is not None:
                _quietly_drop(db, s.recopy)
        catalog.finish(entry, "failed")
        if isinstance(exc, EtlguardError) and not isinstance(exc, ChecksumMismatch):
            raise RestoreFailed(f"restore failed before the swap; live tables untouched: {exc}") from exc
        raise
    fault("restore.after_staging")
    _add_aside(db, catalog, aside, entry, run_id)
    _add_displaced(db, catalog, steps, entry, run_id)
    catalog.note(entry, _payload("swapping", steps, aside))
    return entry


def _refused_swap(
    db: Adapter, catalog: Catalog, entry: int, steps: Sequence[RestoreStep], aside: Sequence[AsideStep]
) -> None:
    """The swap failed. Where a view or a trigger the run added stood in its way, the database
    refused the whole statement and moved nothing: the restore ends as if refused before it
    began (its journal entry failed; the records of what it would have displaced, whose tables
    never came to be, deleted) and says why (check_swappable raises). Any other failure is
    left to `recover`, which finds out what the swap did."""
    try:
        check_swappable(db, steps, aside)
    except RestoreFailed:
        ids = [s.displaced_id for s in steps if s.displaced_id is not None] + [a.displaced_id for a in aside]
        catalog.update_snapshots(
            [(sid, {"status": "deleted", "note": "the swap was refused"}) for sid in ids]
        )
        catalog.finish(entry, "failed")
        raise


def _add_displaced(
    db: Adapter, catalog: Catalog, steps: Sequence[RestoreStep], entry: int, run_id: int | None
) -> None:
    """Before the swap, a `creating` record of each table it will displace, all in one
    statement, so that `recover` knows every table the swap moves into the snapshot schema.
    A table the swap renames away (`consume`) is the displaced table itself: its structure and
    counter are read from it after the swap (`_record_displaced`), not here, where the tables
    wait for every round trip; one that recover finishes is held to its own (`_own_structure`)."""
    moving = [s for s in steps if s.displaced is not None and s.displaced_id is not None]
    taken_at = db.server_now() if moving else None
    records = []
    for s in moving:
        assert s.displaced is not None and s.displaced_id is not None and taken_at is not None
        if not s.consume:
            s.live_structure, s.live_auto_increment = db.structure_and_counter(s.table)
        records.append(
            Snapshot(
                id=s.displaced_id,
                table=s.table,
                snapshot=s.displaced,
                kind="displaced",
                status="creating",
                taken_at=taken_at,
                row_count=None,
                size_bytes=None,
                checksum=None,
                auto_increment=None,
                structure=s.live_structure,  # kept even if recover has to finish this
                run_id=run_id,
                journal_id=entry,
                note=f"replaced by snapshot {s.snapshot.id}",
            )
        )
    catalog.add_snapshots(records)


# Rows other clients insert into the live table between reading its counter and the swap
# (milliseconds; MySQL allows no RENAME under LOCK TABLES to close that gap) take ids below
# live + margin, so the incoming table starts above them.
COUNTER_MARGIN = 1000


def raise_counters_early(
    db: Adapter, catalog: Catalog, snaps: Sequence[Snapshot], headroom: Mapping[TableRef, int] | None = None
) -> list[int]:
    """Snapshots a rollback would rename into place, raised past their live tables'
    AUTO_INCREMENT on a session of their own, so that the swap does not wait for these ALTERs
    (`_counters_ahead` then finds them ahead). Two moments (run.py):
    - while the ETL runs (`headroom`, from `counter_headroom`): each to its live counter plus
      its headroom, unless it is there already, so that a failed night's swap usually finds
      every counter ahead and waits for no ALTER at all;
    - when the ETL has failed (no `headroom`): each one still behind, to its live counter plus
      the swap's margin, while the run settles.
    Only a snapshot whose seal holds is touched, and it is sealed again after (every record of
    its table: one reused by later runs keeps its O(1) proof): the ALTER moves its CREATE_TIME,
    no stored row (`Adapter.resealed`); one that cannot be sealed again loses its seal and is
    proven by reading it. Returns the ids raised; the records in `snaps` get their new seals."""
    sealed = [s for s in snaps if s.seal and db.renames_into_place(s.snapshot, s.table)]
    if not sealed:
        return []
    holds = db.seals_hold([(s.snapshot, s.seal or "") for s in sealed])
    intact = [s for s, ok in zip(sealed, holds, strict=True) if ok]
    counters = db.auto_increments([*(s.snapshot for s in intact), *(s.table for s in intact)])
    lead = {s.id: (headroom.get(s.table, 0) if headroom is not None else 0) for s in intact}
    behind = [
        s
        for s in intact
        if (have := counters.get(s.snapshot)) is not None
        and (want := counters.get(s.table)) is not None
        and have < want + lead[s.id]
    ]
    for s in behind:
        target = int(counters[s.table] or 0) + (lead[s.id] if headroom is not None else COUNTER_MARGIN)
        db.execute(f"ALTER TABLE {db.qualify(s.snapshot)} AUTO_INCREMENT = {target}")
    seals = db.resealed([(s.snapshot, s.seal or "") for s in behind])
    for s, seal in zip(behind, seals, strict=True):
        catalog.reseal(s.snapshot, seal)
        s.seal = seal
    return [s.id for s in behind]


# How many of a table's newest snapshot records `counter_headroom` reads its growth from.
HEADROOM_RECORDS = 15


def counter_headroom(db: Adapter, catalog: Catalog, snaps: Sequence[Snapshot]) -> dict[TableRef, int]:
    """How far ahead of its live table each snapshot with an AUTO_INCREMENT counter is raised
    before the ETL runs: the swap's margin plus twice the largest growth of the table's counter
    between two of its last HEADROOM_RECORDS snapshots, i.e. twice what a night has inserted
    lately; none for a table whose counter has not grown (a rollback then leaves its counter
    as it was, and the next night can reuse its snapshot). A growth that spans a rollback is
    not counted (a rollback raises the live counter by this very headroom, which would feed
    itself). Capped at half the ids the column has left, so a narrow column near its end is
    never pushed out of range. The cost is a larger gap in the ids after a failed night; a
    night that inserts more than its headroom only makes its swap wait for the ALTER, as it
    would without one."""
    counted = [s for s in snaps if s.seal and s.auto_increment is not None]
    out: dict[TableRef, int] = {}
    for s in counted:
        records = [r for r in catalog.snapshots(s.table) if r.kind == "snapshot" and r.auto_increment]
        records = records[-HEADROOM_RECORDS:]
        growth = max(
            (
                (b.auto_increment or 0) - (a.auto_increment or 0)
                for a, b in itertools.pairwise(records)
                if a.status != "restored"
            ),
            default=0,
        )
        room = COUNTER_MARGIN + 2 * growth if growth > 0 else 0  # a table that does not grow: none
        ceiling = db.counter_ceiling(s.structure)
        if ceiling is not None:
            room = min(room, max(0, (ceiling - int(s.auto_increment or 0)) // 2))
        out[s.table] = room
    return out


def _counters_ahead(db: Adapter, pairs: Sequence[tuple[TableRef, TableRef]], margin: int = 0) -> None:
    """Never hand out an AUTO_INCREMENT id twice (ids of rows a restore discarded may be
    referenced elsewhere): just before the swap the incoming table's counter is raised past the
    live table's, and after it to at least the displaced table's final value."""
    if pairs:
        db.raise_counters(pairs, margin)


def _prove(db: Adapter, steps: Sequence[RestoreStep], progress: Progress | None, prove_first: bool) -> None:
    """Read, before the journal and before any write: each snapshot table that is renamed into
    place or refilled from exists, and with `prove_first` a consumed one is proven against the
    catalog, by its seal where the engine can tell (one round trip for all of them), else by its
    recorded fingerprint. A damaged or tampered snapshot is refused here, nothing touched."""
    for s in steps:
        s.structure = s.snapshot.structure or _own_structure(db, s.snapshot)
    consumed = [s for s in steps if prove_first and s.consume and s.recopy is None]
    sealed = [s for s in consumed if s.snapshot.seal is not None]
    holds = db.seals_hold([(s.snapshot.snapshot, s.snapshot.seal or "") for s in sealed])
    for s, ok in zip(sealed, holds, strict=True):
        s.proven, s.proof = ok, "seal" if ok else ""
    pointed = [s for s in steps if (s.consume or s.refill) and not s.proven]  # a seal that holds: it exists
    present = db.existing([s.snapshot.snapshot for s in pointed])
    for s in pointed:
        if s.snapshot.snapshot not in present:
            raise ChecksumMismatch(str(s.table), s.snapshot.id, _expected(s), "its table is missing")
    for s in steps:
        if s.refill or (s in consumed and not s.proven):
            actual = db.checksum(s.snapshot.snapshot, s.snapshot.fingerprint)
            s.proven, s.proof = s.consume, _proof(s.snapshot)
            if progress:
                progress(s.table, s.snapshot.row_count or 0)
            if not s.snapshot.matches(actual):
                raise ChecksumMismatch(str(s.table), s.snapshot.id, _expected(s), str(actual))


def _proof(snap: Snapshot) -> str:
    """How a snapshot proven by reading it was proven: its fingerprint, or (a displaced table's
    record) the engine's row count and checksum."""
    return "checksum" if snap.fingerprint == COPY_CHECK else "fingerprint"


def _stage(db: Adapter, steps: Sequence[RestoreStep], progress: Progress | None) -> None:
    """Build what the swap needs without touching a live table: staging copies (checked against
    the catalog, so a damaged snapshot is refused here), and for --keep-snapshot a copy of the
    snapshot table that outlives its consumption."""
    for s in steps:
        if s.chain is not None:  # rebuilt from the standby and the changes since, then proven
            _standby.rebuild(db, s.chain, s.staging)
            s.proven, s.proof = (
                True,
                f"rebuilt from standby {s.chain.standby.id} and {len(s.chain.changes)} changes records",
            )
    copying = [s for s in steps if not (s.consume or s.refill or s.chain)]
    copies = [
        Copy(s.snapshot.snapshot, s.staging, s.snapshot.auto_increment, s.snapshot.fingerprint)
        for s in copying
    ]
    keeping = [s for s in steps if s.recopy is not None]
    copies += [
        Copy(s.snapshot.snapshot, s.recopy, s.snapshot.auto_increment, s.snapshot.fingerprint)
        for s in keeping
        if s.recopy is not None
    ]
    results = db.copy_tables(copies, progress) if copies else []
    for s, r in zip(copying + keeping, results, strict=True):
        if r.source != r.dest:
            raise ChecksumMismatch(
                str(s.table), s.snapshot.id, _expected(s), f"{r.source}, its copy {r.dest}"
            )
        if s.recopy is not None:
            s.recopy_seal = r.seal
        if not s.snapshot.matches(r.fingerprint):
            raise ChecksumMismatch(str(s.table), s.snapshot.id, _expected(s), str(r.fingerprint))
    for s in copying:  # the staging copy is proven; the swap renames it, which keeps its data
        s.proven, s.proof = True, "fingerprint"


def _own_structure(db: Adapter, snap: Snapshot) -> str:
    """The structure a snapshot recorded without one (a displaced table that `recover` kept)
    is held to: its own table's, read before anything live is touched."""
    return db.structure(snap.snapshot) if db.table_exists(snap.snapshot) else ""


def mark_displaced(
    db: Adapter, catalog: Catalog, moved: Sequence[tuple[TableRef, int, str | None, int | None]]
) -> None:
    """Tables a swap moved into the snapshot schema, as (table, snapshot id, structure, counter),
    become verified `displaced` snapshots. What is recorded is `displaced_check` of each, with
    its seal: enough to restore it exactly later (see `_prove`), and on MySQL a CHECKSUM TABLE
    run side by side, not a fingerprint, so that a rollback does not spend seconds on the
    failed run's tables once its own are back. A structure of None leaves the recorded one."""
    if not moved:
        return
    checks = db.sealed_checksums([(table, displaced_check(db)) for table, _, _, _ in moved])
    for (table, sid, structure, auto_increment), (cs, seal) in zip(moved, checks, strict=True):
        values = {"structure": structure} if structure is not None else {}
        catalog.update_snapshot(
            sid,
            status="verified",
            row_count=cs.rows,
            checksum=cs.digest,
            fingerprint=cs.algorithm,
            seal=seal,
            size_bytes=db.size_bytes(table),
            auto_increment=auto_increment,
            **values,
        )


def displaced_check(db: Adapter) -> str | None:
    """The check a displaced table records: the engine's cheap one where it detects any change
    of a row (MySQL: row count + CHECKSUM TABLE, `COPY_CHECK`), else the fingerprint (None).
    A displaced table is only ever checked against itself (a restore renames it back, or copies
    it and compares the copy), never trusted on a reuse, so the CRC's weakness against a
    deliberate forger does not weaken any snapshot the ETL is rolled back to."""
    return COPY_CHECK if db.copy_check_detects_change else None


def _expected_sum(s: RestoreStep) -> Checksum | None:
    if s.snapshot.row_count is None or s.snapshot.checksum is None:
        return None
    return Checksum(s.snapshot.row_count, s.snapshot.checksum, s.snapshot.fingerprint)


def _expected(s: RestoreStep) -> str:
    return f"{s.snapshot.row_count} rows/{s.snapshot.checksum}"


def _record_displaced(db: Adapter, catalog: Catalog, steps: Sequence[RestoreStep]) -> None:
    """After the swap: check each displaced table and mark it a verified snapshot, so a
    restore can be undone the same way (and a failed verification keeps what it replaced)."""
    for s in steps:
        if s.consume and s.displaced is not None:  # renamed away whole: the live table it was
            s.live_structure, s.live_auto_increment = db.structure_and_counter(s.displaced)
    mark_displaced(
        db,
        catalog,
        [
            (s.displaced, s.displaced_id, s.live_structure, s.live_auto_increment)
            for s in steps
            if s.displaced is not None and s.displaced_id is not None
        ],
    )


def _verify(db: Adapter, catalog: Catalog, steps: Sequence[RestoreStep], result: RestoreResult) -> None:
    """Prove every live table holds its snapshot: the recorded fingerprint and structure. A
    refill's data was proved inside the swap's own transaction (other clients may write as soon
    as it commits), so only its structure is read again here. A snapshot proven by its seal is
    not read again either: the live table is shown to be that very table by its storage
    identity, which RENAME keeps (docs/architecture.md, "Restore: swap first"); where the
    engine cannot tell (a name its dictionary encodes) the live table's data is read."""
    for s in steps:
        proved_in_swap = (s.refill and _expected_sum(s) is not None) or s.proven
        same = db.same_storage(s.table, s.snapshot.seal) if s.proof == "seal" and s.snapshot.seal else True
        problem = _mismatch(db, s, data=not proved_in_swap or same is None)
        if problem is None and same is False:
            problem = "it is not the sealed snapshot table renamed into place (another table took its name)"
        if s.consume:
            settle_consumed(catalog, s.snapshot, s.table, s.recopy, problem is None, s.recopy_seal)
        if problem:
            result.unverified[str(s.table)] = problem
        else:
            result.verified.append(str(s.table))


def _mismatch(db: Adapter, s: RestoreStep, data: bool = True) -> str | None:
    """How the restored live table differs from its snapshot, or None. The structure is
    compared with the one the catalog recorded when the snapshot was taken (not with the
    snapshot table, which could itself have been altered since); the data with the recorded
    fingerprint. A consumed snapshot was not read before the swap, so this is its proof."""
    if not db.structure_matches(s.table, s.structure):
        return "its structure (columns, types, constraints or indexes) differs from the snapshot's"
    if not data:
        return None
    live = db.checksum(s.table, s.snapshot.fingerprint)
    if not s.snapshot.matches(live):
        return f"its data ({live}) differs from the snapshot's ({_expected(s)})"
    return None


def live_matches(db: Adapter, snap: Snapshot, live: TableRef) -> bool:
    """Whether the live table is exactly the snapshot: same fingerprint and the structure the catalog
    recorded (a swapped-in table of another shape is not a restore)."""
    if not snap.matches(db.checksum(live, snap.fingerprint)):
        return False
    return db.structure_matches(live, snap.structure)


def settle_consumed(
    catalog: Catalog,
    snap: Snapshot,
    live: TableRef,
    kept: TableRef | None,
    verified: bool,
    kept_seal: str | None = None,
) -> None:
    """A snapshot renamed into place is no longer a snapshot: it is the live table. The catalog
    says so (status `restored`, not restorable, not reusable) unless --keep-snapshot made a
    verified copy before the swap, which then becomes the snapshot's table."""
    if kept is not None:
        catalog.update_snapshot(
            snap.id, status="verified", snapshot_table=kept.name, note=None, seal=kept_seal
        )
        return
    when = f"{utcnow():%Y-%m-%d %H:%M:%S} UTC"
    proof = "" if verified else ", but did not match its snapshot"
    catalog.update_snapshot(snap.id, status="restored", note=f"became the live {live} at {when}{proof}")


def require_verified(result: RestoreResult) -> None:
    """A restore whose live table does not prove out is a person's job: exit 20 (RestoreUnverified),
    naming the displaced snapshots that hold what was replaced."""
    if not result.unverified:
        return
    kept = [str(s.displaced_id) for s in result.steps if s.displaced_id is not None]
    where = f"; the replaced tables are kept as snapshots {', '.join(kept)}" if kept else ""
    raise RestoreUnverified(
        f"restored, but not verified: {result.problems()}{where}; a person must check these tables", result
    )


def _add_aside(
    db: Adapter, catalog: Catalog, aside: Sequence[AsideStep], entry: int, run_id: int | None
) -> None:
    for a in aside:
        a.structure, a.auto_increment = db.structure_and_counter(a.table)
        catalog.add_snapshot(
            Snapshot(
                id=a.displaced_id,
                table=a.table,
                snapshot=a.displaced,
                kind="displaced",
                status="creating",
                taken_at=utcnow(),
                row_count=None,
                size_bytes=None,
                checksum=None,
                auto_increment=None,
                structure="",
                run_id=run_id,
                journal_id=entry,
                note="created by the failed run; moved aside by its rollback",
            )
        )


def _finish_aside(db: Adapter, catalog: Catalog, aside: Sequence[AsideStep]) -> None:
    mark_displaced(db, catalog, [(a.displaced, a.displaced_id, a.structure, a.auto_increment) for a in aside])


def _payload(phase: str, steps: Sequence[RestoreStep], aside: Sequence[AsideStep]) -> dict[str, object]:
    payload: dict[str, object] = {"phase": phase, "steps": [_journal_step(s) for s in steps]}
    if aside:
        payload["aside"] = [a.as_journal() for a in aside]
    return payload


def _journal_step(s: RestoreStep) -> dict[str, object]:
    return {
        "table": [s.table.schema, s.table.name],
        "snapshot_id": s.snapshot.id,
        "staging": [s.staging.schema, s.staging.name],
        "displaced": [s.displaced.schema, s.displaced.name] if s.displaced else None,
        "displaced_id": s.displaced_id,
        "consume": s.consume,
        "refill": s.refill,
        "recopy": [s.recopy.schema, s.recopy.name] if s.recopy else None,
    }


def _quietly_drop(db: Adapter, ref: TableRef) -> None:
    try:
        db.drop_table(ref)
    except EtlguardError:
        pass

"""Taking snapshots: exact copies, one consistency point per call, verified before use.

Order of work, so that a crash at any step leaves nothing ambiguous: journal the intent with
the names we are about to create; record catalog rows as `creating`; copy; compare checksums
of source and copy taken at the same instant; only then record the copy's fingerprint and mark
it `verified`. A failure drops every
table this call created (and only those) and raises: the caller must not go on unprotected.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .adapters.base import CONSISTENCY_SET, Adapter, Copy, Progress
from .catalog import Catalog, Snapshot
from .errors import EtlguardError, SnapshotFailed, TableNotFound, UnsupportedTable
from .faults import fault
from .progress import watching
from .tables import TableRef

_ALPHABET = string.ascii_lowercase + string.digits


def snapshot_name(prefix: str, snapshot_id: int) -> str:
    """A short id plus a random token: never a user's name, and unguessable, so a table of this
    name that the journal lists is provably one etlguard created."""
    return f"{prefix}{snapshot_id}_" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def require_table(db: Adapter, ref: TableRef, also: str = "") -> None:
    """A representable name of an existing table, or a one-line error saying which it is not."""
    db.check_identifier(ref.schema)  # a name the server cannot hold is not "missing"
    db.check_identifier(ref.name)
    if not db.table_exists(ref):
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
    for ref in tables:
        require_table(db, ref)
        reason = db.unsupported_reason(ref)
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
) -> list[Snapshot]:
    check_tables(db, tables)
    db.ensure_schema(snapshot_schema)
    first = catalog.next_snapshot_id()
    taken_at = db.server_now()
    snaps = [
        Snapshot(
            id=first + i,
            table=ref,
            snapshot=TableRef(snapshot_schema, snapshot_name("s", first + i)),
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
        s.fingerprint = r.fingerprint.algorithm
        catalog.update_snapshot(
            s.id,
            status=s.status,
            row_count=s.row_count,
            checksum=s.checksum,
            fingerprint=s.fingerprint,
            size_bytes=s.size_bytes,
            auto_increment=s.auto_increment,
            structure=s.structure,
        )
    fault("snapshot.before_finish")
    catalog.finish(entry)
    return snaps


def _discard(db: Adapter, catalog: Catalog, snaps: Sequence[Snapshot], entry: int) -> None:
    """Drop what this call created; leave the journal open if even that fails (recover ends it)."""
    try:
        for s in snaps:
            db.drop_table(s.snapshot)
            catalog.update_snapshot(s.id, status="failed")
        catalog.finish(entry, "failed")
    except EtlguardError:
        pass

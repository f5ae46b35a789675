"""`etlguard restore TABLE ... --from URL`: bring tables back from another server or schema (a
point-in-time clone, a replica, last week's database).

The rows are streamed from the source into new snapshot tables on the target, batch by batch
through a server-side cursor, so memory stays flat at any size. Each copy is verified by
fingerprint against the source, read at one consistency point, and recorded as a verified
snapshot of kind `imported`. From there it is an ordinary restore: one atomic swap that keeps
the displaced tables. The copy is journaled as a snapshot, so `recover` drops a half-made one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from .adapters.base import Adapter, Checksum, Progress
from .catalog import Catalog, Snapshot, utcnow
from .errors import ChecksumMismatch, ConfigError, EtlguardError
from .faults import fault
from .snapshot import require_table, snapshot_name
from .tables import TableRef

BATCH_ROWS = 5_000


@dataclass(frozen=True)
class Source:
    db: Adapter  # connected to the other server
    label: str  # printable (no password): recorded in the catalog note
    schema_map: dict[str, str]  # target schema -> source schema; missing: same name

    def table(self, live: TableRef) -> TableRef:
        return TableRef(self.schema_map.get(live.schema, live.schema), live.name)


def parse_schema_map(items: Sequence[str]) -> dict[str, str]:
    """`--schema-map gold=gold_20260201` names where the source keeps a target schema."""
    out = {}
    for item in items:
        target, sep, source = item.partition("=")
        if not sep or not target or not source:
            raise ConfigError(f"--schema-map {item!r} must be TARGET_SCHEMA=SOURCE_SCHEMA")
        out[target] = source
    return out


def import_tables(
    db: Adapter,
    catalog: Catalog,
    source: Source,
    tables: Sequence[TableRef],
    snapshot_schema: str,
    progress: Progress | None = None,
) -> dict[TableRef, Snapshot]:
    """Copy each table from the source into a verified snapshot on the target."""
    columns = {t: matching_columns(db, source, t) for t in tables}
    db.ensure_schema(snapshot_schema)
    return {t: _import_one(db, catalog, source, t, columns[t], snapshot_schema, progress) for t in tables}


def matching_columns(db: Adapter, source: Source, live: TableRef) -> list[str]:
    """The columns to copy; refuses (touching nothing) a source whose columns differ."""
    require_table(db, live)
    remote = source.table(live)
    require_table(source.db, remote)
    here = [c.name for c in db.columns(live) if not c.generated]
    there = [c.name for c in source.db.columns(remote) if not c.generated]
    if here != there:
        raise ConfigError(
            f"{remote} on {source.label} has columns ({', '.join(there)}) but {live} has "
            f"({', '.join(here)}); restore from a source with the same structure"
        )
    return here


def _import_one(
    db: Adapter,
    catalog: Catalog,
    source: Source,
    live: TableRef,
    columns: list[str],
    snapshot_schema: str,
    progress: Progress | None,
) -> Snapshot:
    snap = _intent(catalog, live, snapshot_schema, source)
    entry = catalog.begin(
        "snapshot", {"snapshots": [{"id": snap.id, "snapshot": [snap.snapshot.schema, snap.snapshot.name]}]}
    )
    fault("import.after_intent")
    try:
        expected, actual = _copy(db, source, live, snap.snapshot, columns, progress)
    except BaseException:  # a source gone mid-copy, Ctrl-C: remove the half copy, keep the error
        with contextlib.suppress(EtlguardError):
            _abandon(db, catalog, snap, entry)
        raise
    if (actual.algorithm, actual.rows, actual.digest) != (expected.algorithm, expected.rows, expected.digest):
        _abandon(db, catalog, snap, entry)
        raise ChecksumMismatch(str(live), snap.id, str(expected), str(actual))
    _verified(db, catalog, snap, actual)
    catalog.finish(entry)
    return snap


def _copy(
    db: Adapter, source: Source, live: TableRef, dest: TableRef, columns: list[str], progress: Progress | None
) -> tuple[Checksum, Checksum]:
    """Stream the rows; return the source's fingerprint (read at the same point) and the copy's."""
    db.create_like(dest, live)
    remote = source.table(live)
    with source.db.consistent_read():
        expected = source.db.checksum(remote)
        for rows in source.db.stream_rows(remote, columns, BATCH_ROWS):
            db.insert_rows(dest, columns, rows)
            if progress:
                progress(live, len(rows))
    fault("import.after_copy")
    return expected, db.checksum(dest)


def _abandon(db: Adapter, catalog: Catalog, snap: Snapshot, entry: int) -> None:
    db.drop_table(snap.snapshot)
    catalog.update_snapshot(snap.id, status="failed")
    catalog.finish(entry, "failed")


def _intent(catalog: Catalog, live: TableRef, snapshot_schema: str, source: Source) -> Snapshot:
    snap_id = catalog.next_snapshot_id()
    snap = Snapshot(
        id=snap_id,
        table=live,
        snapshot=TableRef(snapshot_schema, snapshot_name("s", snap_id)),
        kind="imported",
        status="creating",
        taken_at=utcnow(),
        row_count=None,
        size_bytes=None,
        checksum=None,
        auto_increment=None,
        structure="",
        note=f"copied from {source.table(live)} on {source.label}",
    )
    catalog.add_snapshot(snap)
    return snap


def _verified(db: Adapter, catalog: Catalog, snap: Snapshot, actual: Checksum) -> None:
    """Record the copy as verified, with the algorithm its fingerprint was taken with (the
    adapter's own: DuckDB's native one), so that a restore checks it the same way."""
    rows, digest = actual.rows, actual.digest
    snap.status, snap.row_count, snap.checksum, snap.fingerprint = "verified", rows, digest, actual.algorithm
    snap.structure = db.structure(snap.snapshot)
    snap.size_bytes = db.size_bytes(snap.snapshot)
    snap.auto_increment = db.auto_increment(snap.snapshot)
    catalog.update_snapshot(
        snap.id,
        status="verified",
        row_count=rows,
        checksum=digest,
        fingerprint=actual.algorithm,
        structure=snap.structure,
        size_bytes=snap.size_bytes,
        auto_increment=snap.auto_increment,
    )


__all__ = ["Source", "import_tables", "matching_columns", "parse_schema_map"]

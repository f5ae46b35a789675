"""Zero-copy snapshots of dbt table models: the table dbt replaces is kept as the snapshot.

A dbt `table` model (and an incremental model run with --full-refresh) builds a new table and
renames it into place; the old table is dropped. With `dbt: {zero_copy: true}` and the
project's table (and incremental) materialization set to etlguard_dbt's, the old table is kept
instead, under a name etlguard chose before dbt started, in the same atomic step that puts the
new table in place (one RENAME TABLE on MySQL/MariaDB, the model's transaction on PostgreSQL
and DuckDB). So such a table needs no copy before the run.

Order of work, so that a crash anywhere leaves nothing ambiguous:
1. Before the ETL, for each such table: take the engine's cheap checksum (CHECKSUM TABLE on
   MySQL/MariaDB, DuckDB's native hash, the fingerprint on PostgreSQL; a read, no write),
   record a catalog row `pending` with it and the kept name (an unguessable token), and
   journal the names in the run's entry.
2. dbt reads the names from ETLGUARD_ZERO_COPY. The kept name existing proves that the swap
   committed (it is one statement or one transaction); its absence proves that the live table
   is still the one checksummed, unless something else rewrote it, which `settle` detects.
3. After the ETL (or in `recover`), `settle` checks each kept table against that checksum (the
   kept table is the very table checksummed, not a copy: same stored rows), then records its
   fingerprint, as a copy's is recorded: it is a verified snapshot like a copied one, and the
   rollback swaps it back and verifies the result against that fingerprint.
   A table dbt did not replace has nothing to undo; its row is closed as `failed`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import dbt as _dbt
from .adapters.base import COPY_CHECK, Adapter, Checksum
from .catalog import Catalog, Snapshot
from .errors import ConfigError
from .snapshot import KEPT_PREFIX, snapshot_name
from .tables import TableRef

ENV = "ETLGUARD_ZERO_COPY"
_ADAPTERS = ("mysql", "mariadb", "postgresql", "duckdb")  # etlguard_dbt's materializations
_ETL_KEEPS = ("mysql", "mariadb", "duckdb")  # snapshot.kept_by_etl: one documented swap statement each
NOT_REPLACED = "zero-copy: dbt did not replace the table; nothing was kept"
_DIFFERS = "zero-copy: the kept table differs from the table checksummed before the run"


@dataclass
class Settled:
    kept: list[Snapshot] = field(default_factory=list)  # verified: the pre-run table, kept by dbt
    untouched: list[TableRef] = field(default_factory=list)  # not replaced, still as checksummed
    problems: list[str] = field(default_factory=list)  # tables no snapshot can put back

    def as_dict(self) -> dict[str, Any]:
        return {
            "kept": [str(s.table) for s in self.kept],
            "kept_snapshot_ids": [s.id for s in self.kept],
            "untouched": [str(t) for t in self.untouched],
            "problems": self.problems,
        }


def eligible(
    db: Adapter, settings: _dbt.DbtSettings, command: Sequence[str], tables: Sequence[TableRef]
) -> list[TableRef]:
    """The protected tables this run keeps instead of copying: dbt table models (and incremental
    models the command fully refreshes, when the project's incremental materialization is
    etlguard_dbt's too), when zero-copy is on, the command runs dbt, and the adapter can keep
    a table atomically. A table whose swap a trigger or a foreign key would block or bend, that
    a view reads (PostgreSQL), or that has indexes dbt-duckdb drops before renaming, is copied
    as usual."""
    if not settings.zero_copy or db.name not in _ADAPTERS or not tables:
        return []
    if not (_dbt.is_dbt(command) or settings.wrapper):
        return []
    manifest = _dbt.load_manifest(_dbt.target_dir(settings, command))
    chosen = [t for t in tables if t in _dbt.table_models(manifest)]
    if chosen and not _dbt.zero_copy_installed(manifest):
        adapter = manifest.get("metadata", {}).get("adapter_type", "<adapter>")
        raise ConfigError(
            "dbt.zero_copy is on, but the dbt project's table materialization is not etlguard_dbt's; "
            f"add `{{% materialization table, adapter='{adapter}' %}}"
            "{{ return(etlguard_dbt.zero_copy_table()) }}{% endmaterialization %}` to its macros "
            "(see docs/dbt.md) and run `dbt parse`, or set dbt.zero_copy: false"
        )
    if _dbt.zero_copy_installed(manifest, "incremental"):  # else copied, as before
        refreshed = _dbt.full_refresh_models(manifest, command)
        chosen += [t for t in tables if t in refreshed and t not in chosen]
    return [t for t in chosen if not _blocked(db, t)]


def kept_by_etl(db: Adapter, listed: Sequence[TableRef], tables: Sequence[TableRef]) -> list[TableRef]:
    """The protected tables a (non-dbt) ETL keeps itself (`snapshot.kept_by_etl`): it rebuilds
    each into a new table and swaps it in, keeping the old one under the name etlguard gives in
    ETLGUARD_ZERO_COPY. A table the swap cannot keep atomically (see `eligible`) is copied as
    usual and left out of ETLGUARD_ZERO_COPY, so the ETL replaces it its usual way."""
    if not listed:
        return []
    if db.name not in _ETL_KEEPS:
        raise ConfigError(
            f"snapshot.kept_by_etl is not available on {db.name}: only {', '.join(_ETL_KEEPS)} can keep a "
            "replaced table in the statement that swaps the new one in; remove snapshot.kept_by_etl"
        )
    stray = [str(t) for t in listed if t not in tables]
    if stray:
        raise ConfigError(
            f"snapshot.kept_by_etl names {', '.join(stray)}, which etlguard does not protect; "
            "add it to protect or remove it from snapshot.kept_by_etl"
        )
    return [t for t in tables if t in listed and not _blocked(db, t)]


def _blocked(db: Adapter, table: TableRef) -> bool:
    if db.staging_beside_live:
        return "CREATE INDEX" in db.structure(table).upper()
    return bool(db.keep_blockers(table))


def register(
    db: Adapter, catalog: Catalog, tables: Sequence[TableRef], snapshot_schema: str, run_id: int | None
) -> list[Snapshot]:
    """Checksum each table and record the name dbt will keep it under, as `pending`."""
    db.ensure_schema(snapshot_schema)
    first = catalog.next_snapshot_id()
    taken_at = db.server_now()
    made = []
    for i, table in enumerate(tables):
        sid = first + i
        kept = (
            TableRef(table.schema, snapshot_name(KEPT_PREFIX, sid))
            if db.staging_beside_live
            else TableRef(snapshot_schema, snapshot_name("s", sid))
        )
        cs = db.copy_check(table)
        snap = Snapshot(
            id=sid,
            table=table,
            snapshot=kept,
            kind="snapshot",
            status="pending",
            taken_at=taken_at,
            row_count=cs.rows,
            size_bytes=db.size_bytes(table),
            checksum=cs.digest,
            auto_increment=db.auto_increment(table),
            structure=db.structure(table),
            run_id=run_id,
            note="zero-copy: the ETL keeps the table it replaces",
            fingerprint=cs.algorithm,
        )
        catalog.add_snapshot(snap)
        made.append(snap)
    return made


def journal(snaps: Sequence[Snapshot]) -> list[dict[str, Any]]:
    return [
        {"id": s.id, "table": [s.table.schema, s.table.name], "kept": [s.snapshot.schema, s.snapshot.name]}
        for s in snaps
    ]


def environment(snaps: Sequence[Snapshot]) -> dict[str, str]:
    """What the materialization reads: the kept name of each table, by `schema.table`."""
    if not snaps:
        return {}
    return {
        ENV: json.dumps(
            {f"{s.table.schema}.{s.table.name}": [s.snapshot.schema, s.snapshot.name] for s in snaps}
        )
    }


def settle(db: Adapter, catalog: Catalog, items: Sequence[dict[str, Any]]) -> Settled:
    """Decide each zero-copy table after the ETL (or after a crash): kept and verified, not
    replaced and unchanged, or a problem. Idempotent: a decided row is read back as it is."""
    out = Settled()
    for item in items:
        snap = catalog.snapshot(item["id"])
        table = TableRef(*item["table"])
        if snap is None:
            out.problems.append(f"{table}: its zero-copy catalog row {item['id']} is missing")
            continue
        if snap.status in ("verified", "restored"):
            out.kept.append(snap)
            continue
        if snap.status == "pending" and db.table_exists(snap.snapshot):
            check = _check(db, snap.snapshot, snap)
            if snap.matches(check):
                # the database's own fingerprint (DuckDB: native, one scan); on PostgreSQL the
                # check before the run is that fingerprint already, so it is not read twice
                fp = check if check.algorithm == db.default_algorithm() else db.checksum(snap.snapshot)
                catalog.update_snapshot(
                    snap.id,
                    status="verified",
                    note=None,
                    row_count=fp.rows,
                    checksum=fp.digest,
                    fingerprint=fp.algorithm,
                )
                snap.status, snap.note, snap.row_count = "verified", None, fp.rows
                snap.checksum, snap.fingerprint = fp.digest, fp.algorithm
                out.kept.append(snap)
                continue
            catalog.update_snapshot(snap.id, status="damaged", note=_DIFFERS)
            snap.status = "damaged"
        if snap.status == "damaged":
            out.problems.append(
                f"{table}: the table dbt replaced, kept as {snap.snapshot}, is not the one checksummed "
                "before the run (another client wrote to it), so it is not used as its snapshot"
            )
            continue
        if snap.status == "pending":
            catalog.update_snapshot(snap.id, status="failed", note=NOT_REPLACED)
        if db.table_exists(table) and snap.matches(_check(db, table, snap)):
            out.untouched.append(table)
        else:
            out.problems.append(
                f"{table}: dbt did not replace it, yet it changed during the run (not by a dbt table "
                "model: a hook or another client); no snapshot holds its old content"
            )
    return out


def _check(db: Adapter, ref: TableRef, snap: Snapshot) -> Checksum:
    """The table's checksum by the algorithm the catalog row recorded before the run."""
    return db.copy_check(ref) if snap.fingerprint == COPY_CHECK else db.checksum(ref, snap.fingerprint)


__all__ = [
    "ENV",
    "NOT_REPLACED",
    "Settled",
    "eligible",
    "environment",
    "journal",
    "kept_by_etl",
    "register",
    "settle",
]

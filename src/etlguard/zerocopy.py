"""Zero-copy snapshots of dbt table models: the table dbt replaces is kept as the snapshot.

A dbt `table` model (and an incremental model run with --full-refresh) builds a new table and
renames it into place; the old table is dropped. With `dbt: {zero_copy: true}` and the
project's table (and incremental) materialization set to etlguard_dbt's, the old table is kept
instead, under a name etlguard chose before dbt started, in the same atomic step that puts the
new table in place (one RENAME TABLE on MySQL/MariaDB, the model's transaction on PostgreSQL
and DuckDB). So such a table needs no copy before the run.

Order of work, so that a crash anywhere leaves nothing ambiguous:
1. Before the ETL, for each such table: take the engine's cheap checksum (CHECKSUM TABLE on
   MySQL/MariaDB, DuckDB's native hash, the fingerprint on PostgreSQL; a read, no write), on
   MariaDB with a seal when nothing was committed to the table during the check (see
   `Adapter.sealed_copy_checks`), record a catalog row `pending` with it and the kept name
   (an unguessable token), and journal the names in the run's entry.
2. dbt reads the names from ETLGUARD_ZERO_COPY. The kept name existing proves that the swap
   committed (it is one statement or one transaction); its absence proves that the live table
   is still the one checksummed, unless something else rewrote it, which `settle` detects.
3. After the ETL (or in `recover`), `settle` checks each kept table against that checksum (the
   kept table is the very table checksummed, not a copy: same stored rows): in O(1) where its
   seal still holds across the swap's RENAME (MariaDB), else by reading it. It is then a
   verified snapshot like a copied one, and the rollback swaps it back and verifies the result.
   On MySQL/MariaDB the record stays the count and CHECKSUM TABLE taken before the run, with a
   new seal under the kept name: the kept table's claim to be the pre-run table rests on that
   check whichever way it is proven, and a fingerprint taken afterwards would only cost a
   second full read (see docs/architecture.md, "Zero-copy tables proven by seal"). Elsewhere
   the database's fingerprint is recorded, as for a copy.
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
    sealed: list[TableRef] = field(default_factory=list)  # of `kept`: proven by seal, not read
    problems: list[str] = field(default_factory=list)  # tables no snapshot can put back

    def as_dict(self) -> dict[str, Any]:
        return {
            "kept": [str(s.table) for s in self.kept],
            "kept_snapshot_ids": [s.id for s in self.kept],
            "untouched": [str(t) for t in self.untouched],
            "proven_by_seal": [str(t) for t in self.sealed],
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
    """Checksum each table, sealed where the engine can (MariaDB: see `settle`), and record
    the name dbt will keep it under, as `pending`. The structure is read first, so that the
    one recorded is never newer than the seal."""
    db.ensure_schema(snapshot_schema)
    first = catalog.next_snapshot_id()
    taken_at = db.server_now()
    structures = [db.structure(table) for table in tables]
    checks = db.sealed_copy_checks(tables)
    made = []
    for i, (table, structure, (cs, seal)) in enumerate(zip(tables, structures, checks, strict=True)):
        sid = first + i
        kept = (
            TableRef(table.schema, snapshot_name(KEPT_PREFIX, sid))
            if db.staging_beside_live
            else TableRef(snapshot_schema, snapshot_name("s", sid))
        )
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
            structure=structure,
            run_id=run_id,
            note="zero-copy: the ETL keeps the table it replaces",
            fingerprint=cs.algorithm,
            seal=seal,
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
    replaced and unchanged, or a problem. Idempotent: a decided row is read back as it is.
    A table whose seal still holds is decided without being read (`_proven_by_seal`)."""
    out = Settled()
    records = catalog.snapshots_by_id([item["id"] for item in items])
    found = [(TableRef(*item["table"]), item["id"], records.get(item["id"])) for item in items]
    resealed = _proven_by_seal(db, [s for _, _, s in found if s is not None and s.status == "pending"])
    by_seal = [snap for _, _, snap in found if snap is not None and snap.id in resealed]
    catalog.update_snapshots([(snap.id, _kept(snap, None, resealed[snap.id])) for snap in by_seal])
    for table, sid, snap in found:
        if snap is None:
            out.problems.append(f"{table}: its zero-copy catalog row {sid} is missing")
            continue
        if snap.id in resealed:  # recorded above, together
            out.kept.append(snap)
            out.sealed.append(table)
            continue
        if snap.status in ("verified", "restored"):
            out.kept.append(snap)
            continue
        if snap.status == "pending" and db.table_exists(snap.snapshot):
            checked = _full_check(db, snap)
            if checked is not None:
                _record_kept(catalog, snap, *checked)
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
        if _unchanged(db, table, snap):
            out.untouched.append(table)
        else:
            out.problems.append(
                f"{table}: dbt did not replace it, yet it changed during the run (not by a dbt table "
                "model: a hook or another client); no snapshot holds its old content"
            )
    return out


def _proven_by_seal(db: Adapter, pending: Sequence[Snapshot]) -> dict[int, str]:
    """The kept tables proven to be the very tables checksummed before the run, with nothing
    committed to them since, without reading them: the seal `register` took still holds but
    for CREATE_TIME, which the swap's RENAME sets (`Adapter.resealed`), and the structure is
    the one recorded before the check (an ALTER that rebuilds nothing changes no other seal
    fact, but it changes the structure). Each with a new seal under the kept name, which
    `restore._prove` checks in full before the rollback's RENAME, so that proof is O(1) too.
    One round trip for all of them; any doubt and the table is read in full (`_full_check`)."""
    sealed = [s for s in pending if s.seal is not None]
    seals = db.resealed([(s.snapshot, s.seal or "") for s in sealed])
    return {
        s.id: seal
        for s, seal in zip(sealed, seals, strict=True)
        if seal is not None and db.structure_matches(s.snapshot, s.structure)
    }


def _full_check(db: Adapter, snap: Snapshot) -> tuple[Checksum | None, str | None] | None:
    """The kept table read and compared with the check taken before the run: (the record to
    keep, None for the check itself; its seal) if it matches, else None. Where that check is
    the engine's count and CHECKSUM TABLE and detects any change of a row (MySQL/MariaDB), it
    stays the record, as a displaced table's does, and is taken under a read lock with a seal
    (a snapshot table: only etlguard uses it); elsewhere the database's fingerprint is recorded
    (DuckDB: the native one, one more scan; PostgreSQL: the check already is it)."""
    if snap.fingerprint == COPY_CHECK and db.copy_check_detects_change:
        [(check, seal)] = db.sealed_checksums([(snap.snapshot, COPY_CHECK)])
        return (None, seal) if snap.matches(check) else None
    check = _check(db, snap.snapshot, snap)
    if not snap.matches(check):
        return None
    return (check if check.algorithm == db.default_algorithm() else db.checksum(snap.snapshot)), None


def _record_kept(catalog: Catalog, snap: Snapshot, fp: Checksum | None, seal: str | None) -> None:
    catalog.update_snapshot(snap.id, **_kept(snap, fp, seal))


def _kept(snap: Snapshot, fp: Checksum | None, seal: str | None) -> dict[str, Any]:
    """The kept table becomes a verified snapshot: recorded by `fp`, or (None) by the check
    taken before the run, which it was just proven to hold; `seal` replaces the one taken of
    the live table (None: prove it by reading it). The record's new values, set on `snap` too."""
    values: dict[str, Any] = {"status": "verified", "note": None, "seal": seal}
    if fp is not None:
        values.update(row_count=fp.rows, checksum=fp.digest, fingerprint=fp.algorithm)
        snap.row_count, snap.checksum, snap.fingerprint = fp.rows, fp.digest, fp.algorithm
    snap.status, snap.note, snap.seal = "verified", None, seal
    return values


def _unchanged(db: Adapter, table: TableRef, snap: Snapshot) -> bool:
    """A table dbt did not replace is still the one checksummed before the run: its seal
    holds in full (no rename), else it is read again."""
    if not db.table_exists(table):
        return False
    if snap.seal is not None and db.seal_holds(table, snap.seal):
        return True
    return snap.matches(_check(db, table, snap))


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

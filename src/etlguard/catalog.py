"""etlguard's own tables in the target: snapshots, runs and the journal.

Snapshot metadata lives here and never in a snapshot table, so a snapshot has exactly the
structure of its source. The schema carries a version so that later releases can migrate it.

Why this module is long: the catalog's tables, their migrations and every read and write of
them stay in one place, so that no other module writes the catalog's SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .adapters.base import FINGERPRINT, LEGACY_FINGERPRINT, Adapter, Checksum
from .errors import EtlguardError
from .tables import TableRef

# 2: snapshots.fingerprint, the algorithm each snapshot's checksum was taken with.
# 3: snapshots.change_check (the engine's cheap checksum of the table as the snapshot holds it) and
#    snapshots.reuses (the snapshot whose table a record shares, when the table had not changed).
# 4: snapshots.seal, the engine's proof that a snapshot table is unchanged since its fingerprint.
SCHEMA_VERSION = 4

_TABLES: dict[str, list[tuple[str, str]]] = {
    "meta": [("key", "key"), ("value", "text")],
    "snapshots": [
        ("id", "id"),
        ("table_schema", "name"),
        ("table_name", "name"),
        ("snapshot_schema", "name"),
        ("snapshot_table", "name"),
        ("kind", "name"),
        ("status", "name"),
        ("run_id", "int"),
        ("journal_id", "int"),
        ("taken_at", "time"),
        ("row_count", "int"),
        ("size_bytes", "int"),
        ("checksum", "name"),
        ("auto_increment", "int"),
        ("structure", "text"),
        ("note", "text"),
        ("fingerprint", "name"),
        ("change_check", "text"),
        ("reuses", "int"),
        ("seal", "text"),
    ],
    "runs": [
        ("id", "id"),
        ("started_at", "time"),
        ("finished_at", "time"),
        ("status", "name"),
        ("command", "text"),
        ("exit_code", "int"),
        ("host", "text"),
        ("pid", "int"),
        ("details", "text"),
    ],
    "journal": [
        ("id", "id"),
        ("op", "name"),
        ("state", "name"),
        ("run_id", "int"),
        ("started_at", "time"),
        ("finished_at", "time"),
        ("host", "text"),
        ("pid", "int"),
        ("payload", "text"),
    ],
    "transactions": [
        ("id", "id"),
        ("started_at", "time"),
        ("finished_at", "time"),
        ("outcome", "name"),
        ("rows_affected", "int"),
        ("statements", "text"),
        ("validations", "text"),
        ("error", "text"),
        ("host", "text"),
        ("pid", "int"),
    ],
}
SNAPSHOT_FIELDS = [c for c, _ in _TABLES["snapshots"]]
# What a record says about its physical table rather than about itself: when several records
# share one table (a reuse), a restore that consumes it, or a kept copy that replaces it, is
# true of every one of them.
_SHARED = ("status", "note", "snapshot_schema", "snapshot_table")
_SHARED_STATUSES = ("restored", "verified")


def table_columns(name: str) -> list[tuple[str, str]]:
    """The columns of catalog table `name`, for the operations that keep a catalog table of their
    own (guarded transactions create theirs on first use)."""
    return list(_TABLES[name])


def utcnow() -> dt.datetime:
    """Naive UTC, to the microsecond: what the catalog stores on every database."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class Snapshot:
    id: int
    table: TableRef
    snapshot: TableRef
    kind: str
    status: str
    taken_at: dt.datetime
    row_count: int | None
    size_bytes: int | None
    checksum: str | None
    auto_increment: int | None
    structure: str
    run_id: int | None = None
    journal_id: int | None = None
    note: str | None = None
    fingerprint: str = FINGERPRINT  # the algorithm `checksum` was taken with
    change_check: str | None = None  # `Adapter.change_check` of the table the snapshot holds
    reuses: int | None = None  # the snapshot whose table this record shares (taken unchanged)
    seal: str | None = None  # see Adapter.sealed_checksum; None: prove by fingerprint

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def matches(self, actual: Checksum) -> bool:
        """Whether a table's fingerprint, taken with this snapshot's algorithm, is this one's."""
        return (actual.algorithm, actual.rows, actual.digest) == (
            self.fingerprint,
            self.row_count,
            self.checksum,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table": str(self.table),
            "snapshot_table": str(self.snapshot),
            "kind": self.kind,
            "status": self.status,
            "taken_at": self.taken_at.isoformat() + "Z",
            "rows": self.row_count,
            "size_bytes": self.size_bytes,
            "checksum": self.checksum,
            "fingerprint": self.fingerprint,
            "run_id": self.run_id,
            "reuses": self.reuses,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Snapshot:
        return cls(
            id=int(row["id"]),
            table=TableRef(row["table_schema"], row["table_name"]),
            snapshot=TableRef(row["snapshot_schema"], row["snapshot_table"]),
            kind=row["kind"],
            status=row["status"],
            taken_at=row["taken_at"],
            row_count=row["row_count"],
            size_bytes=row["size_bytes"],
            checksum=row["checksum"],
            auto_increment=row["auto_increment"],
            structure=row["structure"] or "",
            run_id=row["run_id"],
            journal_id=row["journal_id"],
            note=row["note"],
            # rows from before catalog version 2 have no algorithm: they were taken with v1
            fingerprint=row.get("fingerprint") or LEGACY_FINGERPRINT,
            change_check=row.get("change_check"),
            reuses=row.get("reuses"),
            seal=row.get("seal"),
        )


class Catalog:
    def __init__(self, db: Adapter, schema: str) -> None:
        self.db = db
        self.schema = schema
        self._snapshot_fields: list[str] | None = None

    def t(self, name: str) -> TableRef:
        return TableRef(self.schema, name)

    # -- schema -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.db.schema_exists(self.schema) and "meta" in self.db.list_tables(self.schema)

    def ensure(self) -> None:
        """Create the catalog if missing, migrate an older one; refuse one written by a newer
        etlguard."""
        if self.exists():
            if self.check_version() < SCHEMA_VERSION:
                self.migrate()
            return
        self.db.ensure_schema(self.schema)
        for name, columns in _TABLES.items():
            self.db.create_catalog_table(self.t(name), columns, key=columns[0][0])
        if not self.db.select(self.t("meta"), ["value"], {"key": "schema_version"}):
            self.db.insert(self.t("meta"), {"key": "schema_version", "value": str(SCHEMA_VERSION)})

    def check_version(self) -> int:
        version = self.version()
        if version > SCHEMA_VERSION:
            raise EtlguardError(
                f"the catalog in schema {self.schema} has version {version}, newer than this "
                f"etlguard understands ({SCHEMA_VERSION}); upgrade etlguard"
            )
        return version

    def version(self) -> int:
        rows = self.db.select(self.t("meta"), ["value"], {"key": "schema_version"})
        return int(rows[0]["value"]) if rows else 0

    def migrate(self) -> None:
        """Bring an older catalog to this version. 1 -> 2: add `snapshots.fingerprint` and mark
        every existing snapshot as taken with the v1 checksum, which is how it is verified from
        then on. 2 -> 3: add `snapshots.change_check` and `snapshots.reuses`, empty: a snapshot
        taken before has no change check, so it is never reused (the next run copies, and
        records one). Each step can be repeated, so a migration cut short is finished by the
        next one. 3 -> 4: add `snapshots.seal`, empty: an older snapshot is proven by its
        fingerprint."""
        present = self._snapshot_columns()
        if "fingerprint" not in present:
            self.db.add_catalog_column(self.t("snapshots"), "fingerprint", "name")
        for column, kind in (("change_check", "text"), ("reuses", "int"), ("seal", "text")):
            if column not in present:
                self.db.add_catalog_column(self.t("snapshots"), column, kind)
        self._snapshot_fields = None
        for row in self.db.select(self.t("snapshots"), ["id", "fingerprint"]):
            if row["fingerprint"] is None:
                self.db.update(self.t("snapshots"), {"fingerprint": LEGACY_FINGERPRINT}, {"id": row["id"]})
        self.db.update(self.t("meta"), {"value": str(SCHEMA_VERSION)}, {"key": "schema_version"})

    def _snapshot_columns(self) -> set[str]:
        return {c.name for c in self.db.columns(self.t("snapshots"))}

    @property
    def snapshot_fields(self) -> list[str]:
        """The snapshot columns this catalog has: a version-1 catalog, read without the lock
        (list, verify, diff), is not migrated and lacks the columns added since."""
        if self._snapshot_fields is None:
            present = self._snapshot_columns()
            self._snapshot_fields = [f for f in SNAPSHOT_FIELDS if f in present]
        return self._snapshot_fields

    # -- snapshots --------------------------------------------------------------------------
    def next_snapshot_id(self) -> int:
        return self.db.next_id(self.t("snapshots"))

    def add_snapshot(self, snap: Snapshot) -> None:
        self.add_snapshots([snap])

    def add_snapshots(self, snaps: Sequence[Snapshot]) -> None:
        """Several records in one statement (one commit: a rollback records its displaced
        tables just before its swap, where every round trip delays the tables coming back)."""
        if snaps:
            self.db.insert_many(self.t("snapshots"), [_snapshot_row(s) for s in snaps])

    def update_snapshot(self, snapshot_id: int, **values: Any) -> None:
        """Change one record. A restore consuming its table (`restored`) or a kept copy taking
        the table's place changes every record that shares the table, so that no record of a
        reuse is left pointing at a table that is now live, or is gone."""
        shared = {k: v for k, v in values.items() if k in _SHARED}
        if values.get("status") in _SHARED_STATUSES and (
            values["status"] != "verified" or "snapshot_table" in values
        ):
            before = self.snapshot(snapshot_id)
            if before is not None:
                self.db.update(
                    self.t("snapshots"),
                    shared,
                    {"snapshot_schema": before.snapshot.schema, "snapshot_table": before.snapshot.name},
                )
        self.db.update(self.t("snapshots"), values, {"id": snapshot_id})

    def update_snapshots(self, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """`update_snapshot` of several records in one transaction: one commit, where a run's
        rollback waits for each."""
        if len(changes) <= 1:
            for snapshot_id, values in changes:
                self.update_snapshot(snapshot_id, **values)
            return
        with self.db.transaction():
            for snapshot_id, values in changes:
                self.update_snapshot(snapshot_id, **values)

    def reseal(self, table: TableRef, seal: str | None) -> None:
        """A new seal (None: none) for every record of snapshot table `table` (one that reuses
        it too): something etlguard did to it moved a seal fact but no row (Adapter.resealed)."""
        self.db.update(
            self.t("snapshots"),
            {"seal": seal},
            {"snapshot_schema": table.schema, "snapshot_table": table.name},
        )

    def sharing(self, snap: Snapshot) -> list[Snapshot]:
        """Every record whose table is `snap`'s (itself included), not deleted."""
        return [s for s in self.snapshots(snap.table) if s.snapshot == snap.snapshot]

    def snapshots(self, table: TableRef | None = None, include_deleted: bool = False) -> list[Snapshot]:
        where = {"table_schema": table.schema, "table_name": table.name} if table else None
        rows = self.db.select(self.t("snapshots"), self.snapshot_fields, where, order_by="id")
        snaps = [Snapshot.from_row(r) for r in rows]
        # the database may compare names case-insensitively; table names are case-sensitive
        if table:
            snaps = [s for s in snaps if s.table == table]
        return [s for s in snaps if include_deleted or s.status != "deleted"]

    def newest_snapshots(self, tables: Sequence[TableRef]) -> dict[TableRef, Snapshot]:
        """Each table's newest record of kind `snapshot` that is not deleted, where it has one
        (what a snapshot of the set may reuse). A narrow read of the tables' records picks them
        and a second reads just those whole, so the cost does not grow with the deleted records
        the catalog keeps, one per table and night."""
        if not tables:
            return {}
        keys = self.db.select(
            self.t("snapshots"),
            ["id", "table_schema", "table_name", "status"],
            {"table_name": sorted({t.name for t in tables}), "kind": "snapshot"},
        )
        wanted = set(tables)
        newest: dict[TableRef, int] = {}
        for key in keys:  # names compared exactly: the database may compare them without case
            ref = TableRef(key["table_schema"], key["table_name"])
            if ref in wanted and key["status"] != "deleted":
                newest[ref] = max(newest.get(ref, 0), int(key["id"]))
        rows = self.db.select(self.t("snapshots"), self.snapshot_fields, {"id": list(newest.values())})
        by_id = {s.id: s for s in map(Snapshot.from_row, rows)}
        return {ref: by_id[newest[ref]] for ref in tables if ref in newest}

    def snapshot(self, snapshot_id: int) -> Snapshot | None:
        rows = self.db.select(self.t("snapshots"), self.snapshot_fields, {"id": snapshot_id})
        return Snapshot.from_row(rows[0]) if rows else None

    def snapshots_by_id(self, ids: Sequence[int]) -> dict[int, Snapshot]:
        """The records of `ids` that exist, in one read."""
        if not ids:
            return {}
        rows = self.db.select(self.t("snapshots"), self.snapshot_fields, {"id": list(ids)})
        return {s.id: s for s in map(Snapshot.from_row, rows)}

    # -- journal ----------------------------------------------------------------------------
    def begin(self, op: str, payload: dict[str, Any], run_id: int | None = None) -> int:
        """Write an operation's intent before it acts; `finish` records the outcome after."""
        entry = self.db.next_id(self.t("journal"))
        self.db.insert(
            self.t("journal"),
            {
                "id": entry,
                "op": op,
                "state": "started",
                "run_id": run_id,
                "started_at": utcnow(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "payload": json.dumps(payload, default=str),
            },
        )
        return entry

    def note(self, entry: int, payload: dict[str, Any]) -> None:
        self.db.update(self.t("journal"), {"payload": json.dumps(payload, default=str)}, {"id": entry})

    def finish(self, entry: int, state: str = "done") -> None:
        self.db.update(self.t("journal"), {"state": state, "finished_at": utcnow()}, {"id": entry})

    def entries(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.db.select(
            self.t("journal"), ["id", "op", "state", "run_id"], {"run_id": run_id}, order_by="id"
        )
        return rows

    def finished_ops(self, op: str) -> list[dict[str, Any]]:
        """Completed journal entries of one kind, with their payloads: e.g. when prune dropped what."""
        rows = self.db.select(
            self.t("journal"), ["id", "op", "state", "finished_at", "payload"], {"op": op}, order_by="id"
        )
        for r in rows:
            r["payload"] = json.loads(r["payload"] or "{}")
        return [r for r in rows if r["state"] != "started" and r["finished_at"] is not None]

    def unfinished(self) -> list[dict[str, Any]]:
        rows = self.db.select(
            self.t("journal"),
            ["id", "op", "state", "run_id", "started_at", "host", "pid", "payload"],
            {"state": "started"},
            order_by="id",
        )
        for r in rows:
            r["payload"] = json.loads(r["payload"] or "{}")
        return rows

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, command: list[str]) -> int:
        run_id = self.db.next_id(self.t("runs"))
        self.db.insert(
            self.t("runs"),
            {
                "id": run_id,
                "started_at": utcnow(),
                "status": "running",
                "command": json.dumps(command),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "details": "{}",
            },
        )
        return run_id

    def finish_run(self, run_id: int, status: str, exit_code: int, details: dict[str, Any]) -> None:
        self.db.update(
            self.t("runs"),
            {
                "status": status,
                "exit_code": exit_code,
                "finished_at": utcnow(),
                "details": json.dumps(details, default=str),
            },
            {"id": run_id},
        )

    def runs(self, run_id: int | None = None) -> list[dict[str, Any]]:
        cols = [c for c, _ in _TABLES["runs"]]
        rows = self.db.select(self.t("runs"), cols, {"id": run_id} if run_id else None, order_by="id")
        for r in rows:
            r["command"] = json.loads(r["command"] or "[]")
            r["details"] = json.loads(r["details"] or "{}")
        return rows


def _snapshot_row(snap: Snapshot) -> dict[str, Any]:
    return {
        "id": snap.id,
        "table_schema": snap.table.schema,
        "table_name": snap.table.name,
        "snapshot_schema": snap.snapshot.schema,
        "snapshot_table": snap.snapshot.name,
        "kind": snap.kind,
        "status": snap.status,
        "run_id": snap.run_id,
        "journal_id": snap.journal_id,
        "taken_at": snap.taken_at,
        "row_count": snap.row_count,
        "size_bytes": snap.size_bytes,
        "checksum": snap.checksum,
        "auto_increment": snap.auto_increment,
        "structure": snap.structure,
        "note": snap.note,
        "fingerprint": snap.fingerprint,
        "change_check": snap.change_check,
        "reuses": snap.reuses,
        "seal": snap.seal,
    }

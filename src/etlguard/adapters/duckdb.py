"""DuckDB, the embedded default.

DuckDB has transactional DDL, so a snapshot of many tables is one transaction (one consistency
point) and a restore of many tables is one transaction (all switch together). It renames only
within a schema, so the restore's staging copy is built beside the live table, and the live
table it replaces is renamed beside it (a `_etlguard_k` name), not copied. A database file
is open read-write by one process at a time: the target lock is a kernel file lock beside the
file, taken before the database is opened and held while an ETL child has the file.

Why this module is long: it is the whole DuckDB boundary. All of etlguard's DuckDB SQL text
lives here (structure from the catalog functions, copies, the fingerprint, swaps, the file lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from ..errors import LockHeld, TargetError
from ..faults import fault
from ..tables import TableRef
from .base import (
    COPY_CHECK,
    LEGACY_FINGERPRINT,
    Adapter,
    Checksum,
    Column,
    Copy,
    CopyResult,
    DatabaseError,
    Progress,
    Swap,
    fingerprint_of,
)

_IDENT = r'(?:"(?:[^"]|"")*"|[^\s."(]+)'
# DuckDB writes `CREATE TABLE t(` for tables in `main` and `CREATE TABLE s.t(` elsewhere; an
# index names its table the same way. The parsed names are checked against the table's own.
_TABLE_HEADER = re.compile(rf"^(?P<lead>CREATE TABLE )(?P<name>(?:{_IDENT}\.)*{_IDENT})\(")
_INDEX_TARGET = re.compile(
    rf"^(?P<lead>CREATE (?:UNIQUE )?INDEX {_IDENT} ON )(?P<name>(?:{_IDENT}\.)*{_IDENT})\("
)
_NAME_PART = re.compile(_IDENT)
_PLACEHOLDER = "⟨T⟩"
STRUCTURE_FORMAT = 2  # 1 (a JSON list of DDL texts) is still read: older catalogs hold it
_HELD_BY_PID = re.compile(r"PID (\d+)")
# Settings that change a value's text (TIMESTAMPTZ is printed in the session's zone), pinned on
# every connection; the TZ environment variable sets DuckDB's default.
_PINNED = {"TimeZone": "UTC", "Calendar": "gregorian"}
_MOD64 = 1 << 64
# The native fingerprint: DuckDB's own hash(), named with the release that took it and a canary
# (the hash of fixed values of every common type), since hash() may change between releases.
NATIVE_PREFIX = "duckdb-hash1"
_CANARY = (
    "SELECT hash(1::TINYINT, 2::SMALLINT, 3::INTEGER, 4::BIGINT, 5::HUGEINT, 6::UBIGINT, 1.5::FLOAT, "
    "-2.25::DOUBLE, 1.25::DECIMAL(10, 2), 'x', encode('é'), true, DATE '2020-01-02', TIME '01:02:03', "
    "TIMESTAMP '2020-01-02 01:02:03.456789', TIMESTAMPTZ '2020-01-02 01:02:03+00', INTERVAL 1 DAY, "
    "UUID '01234567-89ab-cdef-0123-456789abcdef', '\\x01'::BLOB, [1, 2], {'a': 1, 'b': 'y'}, NULL)"
)
_NESTED = re.compile(r"^(STRUCT|MAP|UNION)\(|\]$")
_OF_TABLE = "database_name = current_database() AND schema_name = ? AND table_name = ?"
# The structures of several tables in one statement: the rows of the four catalog functions for
# the tables' schemas and names (`_of_tables`; other pairs of them are left out afterwards), each
# function read once (twelve tables: about 6 ms, against 2 ms for each table read alone).
_STRUCTURES = (
    "SELECT (SELECT list({'s': schema_name, 'n': table_name, 'sql': sql}) FROM duckdb_tables() WHERE ⟨of⟩), "
    "(SELECT list({'s': schema_name, 'n': table_name, 'sql': sql} ORDER BY index_name) FROM duckdb_indexes() "
    "WHERE ⟨of⟩ AND sql IS NOT NULL), "
    "(SELECT list({'s': schema_name, 'n': table_name, 'c': {'n': column_name, 't': data_type, "
    "'d': column_default, 'null': is_nullable, 'g': generation_expression}} ORDER BY column_index) "
    "FROM duckdb_columns() WHERE ⟨of⟩), "
    "(SELECT list({'s': schema_name, 'n': table_name, 'c': {'k': constraint_type, 'c': constraint_column_names, "
    "'e': expression}}) FROM duckdb_constraints() WHERE ⟨of⟩)"
)


class DuckDBAdapter(Adapter):
    name = "duckdb"
    transactional_ddl = True
    atomic_multi_rename = True
    max_identifier_length = 255
    identifier_quote = '"'
    paramstyle = "?"
    staging_beside_live = True
    column_types: ClassVar[dict[str, str]] = {
        "id": "BIGINT NOT NULL",
        "int": "BIGINT",
        "name": "VARCHAR",
        "key": "VARCHAR NOT NULL",
        "text": "VARCHAR",
        "time": "TIMESTAMP",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: duckdb.DuckDBPyConnection | None = None
        self._lock_file: int | None = None
        self._in_transaction = False
        self._native: str | None = None  # default_algorithm(), once per adapter

    @property
    def path(self) -> str:
        return self.target.database

    @property
    def lock_path(self) -> Path:
        return Path(f"{self.path}.etlguard.lock")

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        if self.conn is not None:
            return
        try:
            self.conn = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                pid = _HELD_BY_PID.search(text)
                # while we hold the lock file it names us, not whoever has the database open
                recorded = "" if self._lock_file is not None else self._recorded_holder()
                holder = recorded or (f"process {pid.group(1)}" if pid else "another process")
                raise LockHeld(f"{holder} has {self.path} open") from exc
            raise TargetError(f"cannot open {self.path}: {text.splitlines()[0]}") from exc
        except duckdb.Error as exc:
            raise TargetError(f"cannot open {self.path}: {str(exc).splitlines()[0]}") from exc
        self._pin_session()

    def _pin_session(self) -> None:
        for name, value in _PINNED.items():
            self.execute(f"SET {name} = '{value}'")

    @contextlib.contextmanager
    def unpinned_session(self) -> Iterator[None]:
        for name in _PINNED:
            self.execute(f"RESET {name}")
        try:
            yield
        finally:
            if self.conn is not None:
                self._pin_session()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            self.connect()
            assert self.conn is not None
            cur = self.conn.execute(sql, list(params))
            if cur.description and cur.description[0][0] == "Count":
                row = cur.fetchone()
                return int(row[0]) if row else 0
            return 0
        except duckdb.Error as exc:
            raise DatabaseError(f"duckdb error: {str(exc).splitlines()[0]}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            self.connect()
            assert self.conn is not None
            return self.conn.execute(sql, list(params)).fetchall()
        except duckdb.Error as exc:
            raise DatabaseError(f"duckdb error: {str(exc).splitlines()[0]}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:  # nested use joins the outer transaction
            yield
            return
        self.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with contextlib.suppress(DatabaseError):
                self.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self.execute("COMMIT")

    # -- discovery --------------------------------------------------------------------------
    def schema_exists(self, schema: str) -> bool:
        return schema in self.list_schemas()

    def list_schemas(self) -> list[str]:
        rows = self.query("SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database()")
        return [r[0] for r in rows]

    def list_tables(self, schema: str) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND NOT temporary ORDER BY table_name",
            [schema],
        )
        return [r[0] for r in rows]

    def existing(self, refs: Sequence[TableRef]) -> set[TableRef]:
        """One catalog read for every table (names compared exactly, as `list_tables` does)."""
        schemas = sorted({r.schema for r in refs})
        if not schemas:
            return set()
        rows = self.query(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            f"AND NOT temporary AND schema_name IN ({', '.join(['?'] * len(schemas))})",
            schemas,
        )
        found = {TableRef(str(r[0]), str(r[1])) for r in rows}
        return {r for r in refs if r in found}

    def object_kind(self, ref: TableRef) -> str | None:
        for kind, catalog, column in (
            ("a view", "duckdb_views()", "view_name"),
            ("a sequence", "duckdb_sequences()", "sequence_name"),
        ):
            if self.query(
                f"SELECT 1 FROM {catalog} WHERE schema_name = ? AND {column} = ?", [ref.schema, ref.name]
            ):
                return kind
        return None

    def columns(self, ref: TableRef) -> list[Column]:
        rows = self.query(
            "SELECT column_name, is_generated FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [ref.schema, ref.name],
        )
        return [Column(r[0], r[1] == "ALWAYS") for r in rows]

    def primary_key(self, ref: TableRef) -> list[str]:
        rows = self.query(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = "
            "current_database() AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [ref.schema, ref.name],
        )
        return list(rows[0][0]) if rows else []

    def structure(self, ref: TableRef) -> str:
        """The table as DuckDB's catalog functions describe it (columns with types, defaults,
        NOT NULL and generation; PRIMARY KEY, UNIQUE and CHECK constraints), plus the CREATE
        TABLE and CREATE INDEX texts with the table's name taken out. The texts re-create the
        table (they keep what the catalog rows do not show, such as collations); the rows make
        a comparison that does not depend on how the text happens to be printed."""
        return _structure_text(self._read_structure(ref))

    def structures(self, refs: Sequence[TableRef]) -> list[str]:
        return [_structure_text(parts) for parts in self._read_structures(refs)]

    def structure_matches(self, ref: TableRef, recorded: str) -> bool:
        """Compare with a recorded structure in whichever format the catalog row holds."""
        return _is_recorded_structure(self._read_structure(ref), recorded)

    def structures_match(self, recorded: Sequence[tuple[TableRef, str]]) -> list[bool]:
        current = self._read_structures([ref for ref, _ in recorded])
        return [
            _is_recorded_structure(parts, text) for parts, (_, text) in zip(current, recorded, strict=True)
        ]

    def _read_structure(self, ref: TableRef) -> _Structure:
        return self._read_structures([ref])[0]

    def _read_structures(self, refs: Sequence[TableRef]) -> list[_Structure]:
        """Each table's DDL texts (its name taken out), column rows and sorted constraint rows,
        in one statement for them all: a snapshot or restore reads structures many times, and
        a catalog lookup costs more than the read of a small table."""
        of, params = _of_tables(refs)
        found: dict[TableRef, Any] = {ref: [None, [], [], []] for ref in refs}
        for part, rows in enumerate(self.query(_STRUCTURES.replace("⟨of⟩", of), params * 4)[0]):
            for row in rows or []:
                parts = found.get(TableRef(row["s"], row["n"]))
                if parts is not None and part == 0:
                    parts[0] = row["sql"]
                elif parts is not None:
                    parts[part].append(row["sql"] if part == 1 else row["c"])
        return [_parse_structure(ref, found[ref]) for ref in refs]

    def unsupported_reason(self, ref: TableRef) -> str | None:
        return self.unsupported_reasons([ref])[0]

    def unsupported_reasons(self, refs: Sequence[TableRef]) -> list[str | None]:
        """A table with a foreign key, or one a foreign key names (by table name, in any
        schema, as DuckDB records it), from one read of every foreign key of the database."""
        keys = self.query(
            "SELECT schema_name, table_name, referenced_table FROM duckdb_constraints() "
            "WHERE database_name = current_database() AND constraint_type = 'FOREIGN KEY'"
        )
        tied = {TableRef(str(s), str(t)) for s, t, _ in keys}
        referenced = {str(r) for _, _, r in keys}
        reason = "it has foreign keys, which DuckDB will not let a restore drop and recreate"
        return [reason if ref in tied or ref.name in referenced else None for ref in refs]

    def size_bytes(self, ref: TableRef) -> int:
        rows = self.query(
            "SELECT estimated_size * column_count * 8 FROM duckdb_tables() WHERE "
            "database_name = current_database() AND schema_name = ? AND table_name = ?",
            [ref.schema, ref.name],
        )
        return int(rows[0][0] or 0) if rows else 0

    def copy_session(self) -> str | None:
        return "" if self.conn is not None else None

    def progress_monitor(self) -> Adapter:
        # DuckDB runs in this process: the copying connection itself reports how far its
        # statement is (query_progress may be called from another thread); not printed
        self.execute("SET enable_progress_bar = true")
        self.execute("SET enable_progress_bar_print = false")
        return self

    def copy_estimate(self, ref: TableRef) -> tuple[int | None, int | None]:
        rows = self.query(
            "SELECT estimated_size, estimated_size * column_count * 8 FROM duckdb_tables() WHERE "
            "database_name = current_database() AND schema_name = ? AND table_name = ?",
            [ref.schema, ref.name],
        )
        if not rows or rows[0][0] is None:
            return None, None
        return int(rows[0][0]), int(rows[0][1] or 0)

    def copy_progress(self, session: str, ref: TableRef, rows_estimate: int | None) -> int | None:
        if self.conn is None or rows_estimate is None:
            return None
        percent = self.conn.query_progress()  # -1 when no statement runs
        if percent < 0:
            return None
        return int(rows_estimate * min(percent, 100.0) / 100)

    def free_bytes(self) -> int | None:
        folder = Path(self.path).resolve().parent
        return shutil.disk_usage(folder).free if folder.exists() else None

    # -- data -------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}")

    def create_from_structure(self, ref: TableRef, structure: str, with_indexes: bool) -> None:
        """Create `ref` from a recorded structure (either format)."""
        table_sql, index_sql = _statements(structure)
        self.execute(table_sql.replace(_PLACEHOLDER, self.qualify(ref), 1))
        for sql in index_sql if with_indexes else []:
            self.execute(sql.replace(_PLACEHOLDER, self.qualify(ref), 1))

    def _copy_table(self, source: TableRef, dest: TableRef, structure: str) -> int:
        """Create `dest` like `source` (without secondary indexes) and copy its rows. Names left
        unqualified in the DDL, such as the sequence of a `nextval('seq')` default, resolve in
        the table's own schema; DuckDB binds them again at every INSERT, so both statements
        run with `source`'s schema first on the search path (the swap does the same)."""
        with self._search_path(source.schema):
            self.create_from_structure(dest, structure, with_indexes=False)
            self._check_same_table(source, structure, dest)
            fault("copy.after_create")
            return self._copy_rows(source, dest)

    @contextlib.contextmanager
    def _search_path(self, schema: str) -> Iterator[None]:
        (before,) = self.query("SELECT current_setting('search_path')")[0]
        path = ",".join(self.quote(s) for s in (schema, "main"))
        self.execute(f"SET search_path = {_literal(path)}")
        try:
            yield
        finally:
            self.execute(f"SET search_path = {_literal(str(before or ''))}")

    def copy_tables(
        self, copies: Sequence[Copy], progress: Progress | None = None, consistency: str = "set"
    ) -> list[CopyResult]:
        """One transaction, one consistency point for every table, whatever `consistency` asks:
        DuckDB has one writer, and while etlguard holds the file nobody else writes to it."""
        results = []
        with self.transaction():
            for c in copies:
                structure = self.structure(c.source)
                rows = self._copy_table(c.source, c.dest, structure)
                fault("copy.after_rows")
                algorithm = c.algorithm or self.default_algorithm()
                if algorithm.startswith(NATIVE_PREFIX):  # the fingerprint is as cheap as copy_check
                    # a copy of a recorded snapshot (its algorithm given: a restore's staging) is
                    # proven by the caller against the record, so the source is not read again
                    if c.algorithm:
                        [dest] = self.checksums([c.dest], algorithm)
                        source = dest
                    else:  # both in one statement
                        dest, source = self.checksums([c.dest, c.source], algorithm)
                    fingerprint = None
                else:  # an older snapshot's algorithm: the cheap check, then its own fingerprint
                    source, dest = self.copy_check(c.source), self.copy_check(c.dest)
                    fingerprint = self.checksum(c.dest, algorithm)
                results.append(
                    CopyResult(
                        source=source,
                        dest=dest,
                        structure=structure,
                        auto_increment=None,
                        size_bytes=self.size_bytes(c.source),
                        dest_fingerprint=fingerprint,
                    )
                )
                if progress:
                    progress(c.source, rows)
        return results

    def _check_same_table(self, source: TableRef, structure: str, dest: TableRef) -> None:
        """Prove the copy was created exactly (indexes are added only at a restore's swap), so
        that a structure the recorded text cannot re-create fails the snapshot, not a restore.
        `structure` is the source's, read in this transaction."""
        a, b = json.loads(structure), json.loads(self.structure(dest))
        a["indexes"] = b["indexes"] = []
        if a != b:
            raise DatabaseError(
                f"the copy of {source} came out with a different structure; "
                "the table uses something etlguard cannot re-create on DuckDB"
            )

    def _copy_rows(self, source: TableRef, dest: TableRef) -> int:
        cols = ", ".join(self.quote(c.name) for c in self.columns(source) if not c.generated)
        return self.execute(
            f"INSERT INTO {self.qualify(dest)} ({cols}) SELECT {cols} FROM {self.qualify(source)}"
        )

    def create_like(self, dest: TableRef, source: TableRef) -> None:
        self.create_from_structure(dest, self.structure(source), with_indexes=False)

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[None]:
        with self.transaction():
            yield

    def stream_rows(
        self, ref: TableRef, columns: Sequence[str], batch: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        cols = ", ".join(self.quote(c) for c in columns)
        self.connect()
        assert self.conn is not None
        try:
            cur = self.conn.cursor()  # its own result, so the connection stays usable meanwhile
            cur.execute(f"SELECT {cols} FROM {self.qualify(ref)}")
            while rows := cur.fetchmany(batch):
                yield list(rows)
        except duckdb.Error as exc:
            raise DatabaseError(f"duckdb error: {str(exc).splitlines()[0]}") from exc

    def insert_rows(self, ref: TableRef, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        cols = ", ".join(self.quote(c) for c in columns)
        marks = ", ".join(["?"] * len(columns))
        try:
            self.connect()
            assert self.conn is not None
            self.conn.executemany(f"INSERT INTO {self.qualify(ref)} ({cols}) VALUES ({marks})", list(rows))
        except duckdb.Error as exc:
            raise DatabaseError(f"duckdb error: {str(exc).splitlines()[0]}") from exc

    def copy_check(self, ref: TableRef) -> Checksum:
        """DuckDB's native hash() over every column, with two seeds: 20-40x cheaper than the
        fingerprint. Good enough to show that a copy made in the same transaction equals its
        source, not more: it changes between DuckDB releases, a NOCASE collation hashes 'A' as
        'a', and -0.0 as 0.0. The catalog records the fingerprint."""
        cols = ", ".join(self.quote(c.name) for c in self.columns(ref))
        rows, first, second = self.query(
            f"SELECT count(*), sum(hash({cols})), sum(hash('etlguard', {cols})) FROM {self.qualify(ref)}"
        )[0]
        return Checksum(int(rows), f"{int(first or 0)}/{int(second or 0)}", COPY_CHECK)

    def change_check(self, ref: TableRef) -> Checksum | None:
        """The native fingerprint (`native_fingerprint`): about the cost of a scan, exact where
        hash() alone is not, and what every new copy records anyway, so a snapshot's change
        check needs no pass of its own (`change_check_of_copy`). hash() may change between
        DuckDB releases; the algorithm names the release and a canary, so after an upgrade
        nothing compares equal and the tables are copied once more."""
        return self.checksum(ref, self.default_algorithm())

    def change_check_of_copy(self, result: CopyResult) -> Checksum | None:
        fingerprint = result.fingerprint
        return fingerprint if fingerprint.algorithm == self.default_algorithm() else None

    def change_checks(self, refs: Sequence[TableRef]) -> list[Checksum | None]:
        """Every table's in one statement (`native_fingerprints`): a reuse reads the set's
        tables and their snapshot tables, and one statement spares a statement and a column
        lookup per table."""
        return list(self.native_fingerprints(refs, self.default_algorithm()))

    def _hash_terms(self, kinds: Sequence[tuple[str, str]]) -> list[str]:
        """Each column as hash() must see it to tell every stored value apart: text as its bytes
        (a NOCASE column hashes 'A' as 'a'), floats with their sign bit (-0.0 hashes as 0.0),
        intervals and nested values as text (1 month hashes as 30 days)."""
        parts = []
        for name, kind in kinds:
            column = self.quote(name)
            if kind == "VARCHAR" or kind.startswith("VARCHAR COLLATE"):
                parts.append(f"encode({column})")
            elif kind in ("DOUBLE", "FLOAT"):
                parts += [column, f"signbit({column})"]
            elif kind == "INTERVAL" or _NESTED.search(kind):
                parts.append(self._exact_text(name, kind))
            else:
                parts.append(column)
        return parts

    def default_algorithm(self) -> str:
        """`duckdb-hash1:<release>:<canary>`: the native fingerprint, 10-30x cheaper than v2."""
        if self._native is None:
            (canary,) = self.query(_CANARY)[0]
            self._native = f"{NATIVE_PREFIX}:{duckdb.__version__}:{int(canary):016x}"
        return self._native

    def checksum(self, ref: TableRef, algorithm: str | None = None) -> Checksum:
        algorithm = algorithm or self.default_algorithm()
        if not algorithm.startswith(NATIVE_PREFIX + ":"):
            return super().checksum(ref, algorithm)
        return self.checksums([ref], algorithm)[0]

    def checksums(self, refs: Sequence[TableRef], algorithm: str) -> list[Checksum]:
        """Native fingerprints of several tables, taken with this DuckDB's hash(), in one
        statement (`native_fingerprints`)."""
        if algorithm.rsplit(":", 1)[-1] != self.default_algorithm().rsplit(":", 1)[-1]:
            taken_with = algorithm.split(":")[1]
            raise DatabaseError(
                f"the fingerprint of {refs[0]} was taken with DuckDB {taken_with}, whose hash() gives other "
                f"values than this DuckDB {duckdb.__version__}; verify or restore it with DuckDB {taken_with}"
            )
        return self.native_fingerprints(refs, algorithm)

    def native_fingerprint(self, ref: TableRef, algorithm: str) -> Checksum:
        """Two sums over the rows of DuckDB's 64-bit hash() of the row's values, once in column
        order and once reversed with a salt: 128 bits, duplicates counted, order ignored, one
        pass at about the speed of a scan. What hash() alone would miss is fed in apart
        (`_hash_terms`: text bytes, float signs, intervals and nested values as text). Types
        are the structure check's business (hash(1::INTEGER) = hash(1::BIGINT)). Not
        cryptographic: on DuckDB the catalog lives in the same file as the snapshots, so whoever
        could forge a snapshot could rewrite its catalog row as well; the fingerprint is there
        for accidents, bugs and people, and those it catches."""
        return self.native_fingerprints([ref], algorithm)[0]

    def native_fingerprints(self, refs: Sequence[TableRef], algorithm: str) -> list[Checksum]:
        """`native_fingerprint` of each table, in one statement: their columns from one catalog
        read, then one aggregate per table joined by UNION ALL, each row tagged with its table's
        place. Each table is still read whole; the statement spares the round trips (twelve
        tables of the warehouse benchmark, 1.3M rows each side: 133 ms against 153 ms)."""
        if not refs:
            return []
        selects = []
        for i, (ref, kinds) in enumerate(zip(refs, self._kinds_of(refs), strict=True)):
            terms = self._hash_terms(kinds)
            forward, backward = ", ".join(terms), ", ".join([*reversed(terms), "'etlguard'"])
            selects.append(
                f"SELECT {i} AS i, count(*) AS n, sum(hash({forward})) AS high, "
                f"sum(hash({backward})) AS low FROM {self.qualify(ref)}"
            )
        sums = {int(r[0]): r[1:] for r in self.query(" UNION ALL ".join(selects))}
        return [replace(fingerprint_of(*sums[i]), algorithm=algorithm) for i in range(len(refs))]

    def fingerprint(self, ref: TableRef) -> Checksum:
        """SHA-256 of each row's length-prefixed values ('N' for NULL, which no length
        prefix can start with): an injective encoding. 128 bits of it, as two sums."""
        kinds = self._kinds(ref)
        values = ", ".join(f"{self._exact_text(name, kind)} AS v{i}" for i, (name, kind) in enumerate(kinds))
        encoded = ", ".join(f"coalesce(strlen(v{i})::VARCHAR || ':' || v{i}, 'N')" for i in range(len(kinds)))
        rows, high, low = self.query(
            f"SELECT count(*), sum(('0x' || h[1:16])::UBIGINT), sum(('0x' || h[17:32])::UBIGINT) FROM "
            f"(SELECT sha256(concat({encoded})) AS h FROM (SELECT {values} FROM {self.qualify(ref)}))"
        )[0]
        return fingerprint_of(rows, high, low)

    def _kinds(self, ref: TableRef) -> list[tuple[str, str]]:
        return self._kinds_of([ref])[0]

    def _kinds_of(self, refs: Sequence[TableRef]) -> list[list[tuple[str, str]]]:
        """Each table's (column, data type) pairs in column order, from one catalog read."""
        of, params = _of_tables(refs)
        found: dict[TableRef, list[tuple[str, str]]] = {ref: [] for ref in refs}
        for schema, table, column, kind in self.query(
            f"SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() WHERE {of} "
            "ORDER BY column_index",
            params,
        ):
            found.get(TableRef(schema, table), []).append((column, str(kind)))
        missing = [ref for ref in refs if not found[ref]]
        if missing:
            raise DatabaseError(f"cannot fingerprint {missing[0]}: the table does not exist")
        return [found[ref] for ref in refs]

    def _exact_text(self, name: str, kind: str) -> str:
        """A value's text that tells every stored value apart: DOUBLE and FLOAT print their
        shortest exact form (-0.0 included), DECIMAL its scale, TIMESTAMPTZ in the pinned UTC;
        BLOBs as hex; nested values as JSON (their VARCHAR form has changed between DuckDB
        releases; JSON quotes every string)."""
        column = self.quote(name)
        if kind == "BLOB":
            return f"hex({column})"
        if _NESTED.search(kind):
            return f"CAST(to_json({column}) AS VARCHAR)"
        return f"CAST({column} AS VARCHAR)"

    def legacy_checksum(self, ref: TableRef) -> Checksum:
        cols = [self.quote(c.name) for c in self.columns(ref)]
        values = ", ".join(f"CAST({c} AS VARCHAR)" for c in cols)
        flags = ", ".join(f"CAST({c} IS NULL AS INTEGER)" for c in cols)
        count, total = self.query(
            f"SELECT count(*), COALESCE(sum(md5_number_lower(concat_ws('#', {values}, {flags}))), 0) "
            f"FROM {self.qualify(ref)}"
        )[0]
        return Checksum(int(count), str(int(total)), LEGACY_FINGERPRINT)

    def swap(self, swaps: Sequence[Swap]) -> None:
        """One transaction of renames within each table's schema: the live table to its
        displaced name (its indexes dropped first, since DuckDB renames no table that has one;
        the displaced snapshot's recorded structure keeps them), the incoming table to the live
        name, and the incoming structure's indexes created on it. No row is copied."""
        with self.transaction():
            for s in swaps:
                if s.displaced is not None and self.table_exists(s.live):
                    self._rename_aside(s.live, s.displaced)
                if s.staging is None:  # only moved aside: a table the failed run created
                    continue
                self._rename(s.staging, s.live)
                for sql in _statements(s.structure)[1]:
                    self.execute(sql.replace(_PLACEHOLDER, self.qualify(s.live), 1))

    def renames_into_place(self, snapshot: TableRef, live: TableRef) -> bool:
        """A snapshot kept beside its live table (zero-copy's, a displaced one) has no secondary
        index (indexes are created at the swap), so it can be renamed into place."""
        return snapshot.schema == live.schema

    def _rename_aside(self, live: TableRef, displaced: TableRef) -> None:
        if displaced.schema != live.schema:
            raise DatabaseError(f"DuckDB cannot move {live} to another schema ({displaced.schema})")
        names = self.query(
            f"SELECT index_name FROM duckdb_indexes() WHERE {_OF_TABLE} AND sql IS NOT NULL",
            [live.schema, live.name],
        )
        for (index,) in names:
            self.execute(f"DROP INDEX {self.quote(live.schema)}.{self.quote(index)}")
        self._rename(live, displaced)

    def _rename(self, ref: TableRef, to: TableRef) -> None:
        self.execute(f"ALTER TABLE {self.qualify(ref)} RENAME TO {self.quote(to.name)}")

    # -- the target lock --------------------------------------------------------------------
    def lock(self, name: str, holder: str) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # e.g. the directory does not exist: say so, no traceback
            raise TargetError(
                f"cannot open {self.path}: cannot create {self.lock_path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(self._recorded_holder() or "another process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {holder}".encode())
        self._lock_file = fd

    def _recorded_holder(self) -> str:
        try:
            return self.lock_path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def holds_lock(self) -> bool:
        """The flock dies only with our descriptor; it is ours while the file is the same one."""
        if self._lock_file is None:
            return False
        try:
            return os.fstat(self._lock_file).st_ino == os.stat(self.lock_path).st_ino
        except OSError:
            return False

    def keep_alive(self) -> None:
        """A file lock needs no keeping; the connection is closed while the ETL runs."""

    def cancel_own_statement(self) -> None:
        if self.conn is not None:
            self.conn.interrupt()

    def unlock(self) -> None:
        if self._lock_file is not None:
            os.ftruncate(self._lock_file, 0)
            os.close(self._lock_file)  # closing the descriptor releases the flock
            self._lock_file = None


_Structure = tuple[str, list[str], list[list[Any]], list[list[Any]]]


def _parse_structure(ref: TableRef, found: Sequence[Any]) -> _Structure:
    """A table's structure from its catalog rows: its CREATE TABLE text (None: no such table),
    CREATE INDEX texts, columns and constraints."""
    if found[0] is None:
        raise DatabaseError(f"table {ref} does not exist")
    table_sql = _without_name(_TABLE_HEADER, found[0], ref)
    index_sql = [_without_name(_INDEX_TARGET, sql, ref) for sql in found[1]]
    columns = [[c["n"], c["t"], c["d"], c["null"], c["g"]] for c in found[2]]
    constraints = sorted([c["k"], list(c["c"]), c["e"] or ""] for c in found[3])
    return table_sql, index_sql, columns, constraints


def _structure_text(parts: _Structure) -> str:
    table_sql, index_sql, columns, constraints = parts
    return json.dumps(
        {
            "format": STRUCTURE_FORMAT,
            "table": table_sql,
            "indexes": index_sql,
            "columns": columns,
            "constraints": constraints,
        }
    )


def _is_recorded_structure(parts: _Structure, recorded: str) -> bool:
    """Whether a structure read now is the recorded one, in whichever format that was kept."""
    try:
        expected = json.loads(recorded)
    except ValueError:
        return False
    if isinstance(expected, list):  # format 1: [CREATE TABLE text, CREATE INDEX texts...]
        return bool([parts[0], *parts[1]] == expected)
    return bool(json.loads(_structure_text(parts)) == expected)


def _of_tables(refs: Sequence[TableRef]) -> tuple[str, list[str]]:
    """A condition on a catalog function's rows that takes in every table of `refs` (and the
    other pairs of their schemas and names, which the caller leaves out), with its parameters.
    Constant lists: DuckDB filters a catalog function by them as it reads it."""
    schemas, names = sorted({r.schema for r in refs}), sorted({r.name for r in refs})
    marks = lambda items: ", ".join(["?"] * len(items))  # noqa: E731
    return (
        f"database_name = current_database() AND schema_name IN ({marks(schemas)}) "
        f"AND table_name IN ({marks(names)})"
    ), [*schemas, *names]


def _statements(structure: str) -> tuple[str, list[str]]:
    """The CREATE TABLE text and the CREATE INDEX texts of a recorded structure, either format."""
    recorded = json.loads(structure)
    if isinstance(recorded, list):
        return recorded[0], list(recorded[1:])
    return recorded["table"], list(recorded["indexes"])


def _without_name(header: re.Pattern[str], sql: str, ref: TableRef) -> str:
    """`sql` with the table's name replaced by the placeholder. The name DuckDB printed (bare
    in `main`, schema-qualified elsewhere, quoted only where needed) must parse back to this
    very table, or the text is refused rather than guessed at."""
    m = header.match(sql)
    names = [_unquote(p) for p in _NAME_PART.findall(m["name"])] if m else []
    if not m or not names or names[-1] != ref.name or (len(names) > 1 and names[-2] != ref.schema):
        raise DatabaseError(f"cannot read the structure of {ref}: unexpected DDL {sql[:80]!r}")
    return f"{m['lead']}{_PLACEHOLDER}(" + sql[m.end() :]


def _unquote(part: str) -> str:
    return part[1:-1].replace('""', '"') if part.startswith('"') else part


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

"""PostgreSQL over psycopg 3.

Views and foreign keys bind to a table's OID, not its name, so a rename swap would leave views
reading the displaced table. A restore therefore keeps the live table and refills it: in ONE
transaction the live rows are copied aside (the displaced snapshot), the table is truncated and
filled from the verified snapshot. DDL and TRUNCATE are transactional here, so readers see the
old rows until the commit and the new ones after it, never an empty or missing table. A snapshot
of many tables is one REPEATABLE READ transaction: one consistency point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ..errors import EtlguardError, LockHeld, TargetError
from ..faults import fault
from ..tables import TableRef
from .base import (
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

try:  # optional: `pip install etlguard[postgres]`
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

# Settings that change a value's text, pinned on every connection so that neither the server's
# defaults, a role's or database's own settings, nor PGTZ/PGDATESTYLE/PGOPTIONS change a
# fingerprint: timestamptz in UTC, ISO dates, intervals as `1 day 02:00:00`, floats in their
# shortest exact form, bytea as hex, money without a locale.
_PINNED = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
}
_HALF = "('x' || substr(h, {0}, 16))::bit(64)::bigint"


class PostgresAdapter(Adapter):
    name = "postgresql"
    transactional_ddl = True
    atomic_multi_rename = True
    max_identifier_length = 63
    identifier_quote = '"'
    paramstyle = "%s"
    staging_beside_live = False
    snapshot_renames_into_place = False
    restores_by_refill = True
    column_types: ClassVar[dict[str, str]] = {
        "id": "BIGINT NOT NULL",
        "int": "BIGINT",
        "name": "TEXT",
        "key": "TEXT NOT NULL",
        "text": "TEXT",
        "time": "TIMESTAMP",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: Any = None
        self._lock_key: int | None = None

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        if self.conn is not None:
            return
        if psycopg is None:
            raise TargetError("PostgreSQL targets need psycopg: pip install 'etlguard[postgres]'")
        t = self.target
        try:
            self.conn = psycopg.connect(
                host=t.host,
                port=t.port or 5432,
                user=t.user or None,
                password=t.password or None,
                dbname=t.database or "postgres",
                autocommit=True,
                connect_timeout=int(t.option("connect_timeout", "10")),
            )
        except psycopg.OperationalError as exc:
            text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            if "authentication" in text or "password" in text:
                raise TargetError(
                    f"{t.redacted} refused the login for user {t.user!r}: check the user name and password"
                ) from exc
            raise TargetError(f"cannot reach {t.redacted}: {text}; check host, port and network") from exc
        self.execute(f"SET lock_timeout = '{int(self.lock_wait_seconds)}s'")
        self._pin_session()

    def _pin_session(self) -> None:
        pairs = list(_PINNED.items())
        calls = ", ".join("set_config(%s, %s, false)" for _ in pairs)
        self.query(f"SELECT {calls}", [v for pair in pairs for v in pair])

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
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
            self._lock_key = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.connect()
        try:
            cur = self.conn.execute(sql, tuple(params) or None)
            return int(cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else 0)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.connect()
        try:
            return list(self.conn.execute(sql, tuple(params) or None).fetchall())
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> EtlguardError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return TargetError(
                f"the database user was refused: {first}; grant what docs/configuration.md lists"
            )
        if (
            isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            and self.conn is not None
            and self.conn.closed
        ):
            self.conn = None
            return DatabaseError(f"lost the connection to {self.target.redacted}: {first}")
        return DatabaseError(f"postgresql error: {first}")

    # -- discovery --------------------------------------------------------------------------
    def schema_exists(self, schema: str) -> bool:
        return bool(self.query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]))

    def list_schemas(self) -> list[str]:
        return [r[0] for r in self.query("SELECT nspname FROM pg_namespace")]

    def list_tables(self, schema: str) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' ORDER BY table_name",
            [schema],
        )
        return [r[0] for r in rows]

    def columns(self, ref: TableRef) -> list[Column]:
        rows = self.query(
            "SELECT column_name, is_generated FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [ref.schema, ref.name],
        )
        return [Column(r[0], r[1] == "ALWAYS") for r in rows]

    def primary_key(self, ref: TableRef) -> list[str]:
        rows = self.query(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            [self.qualify(ref)],
        )
        return [r[0] for r in rows]

    def structure(self, ref: TableRef) -> str:
        """Columns (type, nullability, default, generation, identity), constraints and indexes,
        with the table's own name taken out, for comparing a live table with its snapshot."""
        oid = [self.qualify(ref)]
        cols = self.query(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), attgenerated, attidentity FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            oid,
        )
        cons = self.query(
            "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY 1, 2",
            oid,
        )
        idx = self.query(
            "SELECT regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', 'USING ') FROM pg_index "
            "WHERE indrelid = %s::regclass ORDER BY 1",
            oid,
        )
        return json.dumps(
            {
                "columns": [list(map(str, c)) for c in cols],
                "constraints": cons,
                "indexes": [i[0] for i in idx],
            }
        )

    def unsupported_reason(self, ref: TableRef) -> str | None:
        rows = self.query(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND (conrelid = %s::regclass "
            "OR confrelid = %s::regclass)",
            [self.qualify(ref), self.qualify(ref)],
        )
        if rows[0][0]:
            return "it has foreign keys, which a restore's TRUNCATE would cascade through"
        triggers = self.query(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            [self.qualify(ref)],
        )
        if triggers[0][0]:
            return "it has triggers, which would fire on the restore's refill"
        return None

    def size_bytes(self, ref: TableRef) -> int:
        return int(self.query("SELECT pg_total_relation_size(%s::regclass)", [self.qualify(ref)])[0][0])

    # -- data -------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        if not self.schema_exists(schema):
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}")

    def _copy_rows(self, source: TableRef, dest: TableRef) -> int:
        cols = ", ".join(self.quote(c.name) for c in self.columns(source) if not c.generated)
        return self.execute(
            f"INSERT INTO {self.qualify(dest)} ({cols}) OVERRIDING SYSTEM VALUE "
            f"SELECT {cols} FROM {self.qualify(source)}"
        )

    def copy_tables(self, copies: Sequence[Copy], progress: Progress | None = None) -> list[CopyResult]:
        results = []
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")  # one snapshot of every source
        try:
            for c in copies:
                self.execute(
                    f"CREATE TABLE {self.qualify(c.dest)} (LIKE {self.qualify(c.source)} INCLUDING ALL)"
                )
                fault("copy.after_create")
                rows = self._copy_rows(c.source, c.dest)
                source = self.checksum(c.source, c.algorithm)
                results.append(
                    CopyResult(
                        source,
                        self.checksum(c.dest, c.algorithm),
                        self.structure(c.source),
                        None,
                        self.size_bytes(c.source),
                    )
                )
                if progress:
                    progress(c.source, rows)
            self.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self.execute("ROLLBACK")
            raise
        return results

    def fingerprint(self, ref: TableRef) -> Checksum:
        """SHA-256 of each row's text as a record, `(v1,v2,...)`: record output quotes any
        value that is empty or holds a delimiter, and leaves NULL empty, so it is injective;
        every value prints in its type's own exact form under the pinned settings (numeric
        keeps its scale, floats are exact, char(n) keeps its padding). 128 bits, two sums."""
        row_hash = "encode(sha256(convert_to(ROW(r.*)::text, 'UTF8')), 'hex')"
        rows, high, low = self.query(
            f"SELECT count(*), sum({_HALF.format(1)}), sum({_HALF.format(17)}) "
            # OFFSET 0 keeps the subquery whole, so each row is hashed once, not once per half
            f"FROM (SELECT {row_hash} AS h FROM {self.qualify(ref)} r OFFSET 0) fingerprint_rows"
        )[0]
        return fingerprint_of(rows, high, low)

    def legacy_checksum(self, ref: TableRef) -> Checksum:
        cols = [self.quote(c.name) for c in self.columns(ref)]
        values = ", ".join(f"{c}::text" for c in cols)
        flags = ", ".join(f"({c} IS NULL)::int::text" for c in cols)
        row_hash = (
            f"('x' || lpad(substr(md5(concat_ws('#', {values}, {flags})), 1, 15), 16, '0'))::bit(64)::bigint"
        )
        count, total = self.query(f"SELECT count(*), COALESCE(sum({row_hash}), 0) FROM {self.qualify(ref)}")[
            0
        ]
        return Checksum(int(count), str(int(total)), LEGACY_FINGERPRINT)

    def create_like(self, dest: TableRef, source: TableRef) -> None:
        self.execute(f"CREATE TABLE {self.qualify(dest)} (LIKE {self.qualify(source)} INCLUDING ALL)")

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[None]:
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                self.execute("COMMIT")

    def stream_rows(
        self, ref: TableRef, columns: Sequence[str], batch: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        cols = ", ".join(self.quote(c) for c in columns)
        self.connect()
        try:  # a named cursor is a server-side cursor; it lives in consistent_read's transaction
            with self.conn.cursor(name="etlguard_stream") as cur:
                cur.itersize = batch
                cur.execute(f"SELECT {cols} FROM {self.qualify(ref)}")
                while rows := cur.fetchmany(batch):
                    yield list(rows)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def insert_rows(self, ref: TableRef, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        cols = ", ".join(self.quote(c) for c in columns)
        self.connect()
        try:
            with self.conn.cursor() as cur, cur.copy(f"COPY {self.qualify(ref)} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def swap(self, swaps: Sequence[Swap]) -> None:
        """Refill each live table from its verified snapshot, all in one transaction."""
        self.execute("BEGIN")
        try:
            for s in swaps:
                if s.displaced is not None and self.table_exists(s.live):
                    self.execute(
                        f"CREATE TABLE {self.qualify(s.displaced)} (LIKE {self.qualify(s.live)} INCLUDING ALL)"
                    )
                    self._copy_rows(s.live, s.displaced)
                    self.execute(f"TRUNCATE {self.qualify(s.live)}")
                else:
                    self.execute(
                        f"CREATE TABLE {self.qualify(s.live)} (LIKE {self.qualify(s.staging)} INCLUDING ALL)"
                    )
                self._copy_rows(s.staging, s.live)
            self.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self.execute("ROLLBACK")
            raise

    # -- the target lock --------------------------------------------------------------------
    def lock(self, name: str, holder: str) -> None:
        self.connect()
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        if not self.query("SELECT pg_try_advisory_lock(%s)", [key])[0][0]:
            rows = self.query(
                "SELECT a.pid, a.usename, a.client_addr, now() - a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND (l.classid::bigint << 32 | l.objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
                [key],
            )
            who = (
                f"backend pid {rows[0][0]} ({rows[0][1]}@{rows[0][2]}, connected for {rows[0][3]})"
                if rows
                else "another session"
            )
            raise LockHeld(who)
        self._lock_key = key

    def unlock(self) -> None:
        if self._lock_key is not None and self.conn is not None:
            self.query("SELECT pg_advisory_unlock(%s)", [self._lock_key])
        self._lock_key = None

"""PostgreSQL over psycopg 3.

A snapshot of many tables is one REPEATABLE READ transaction whose first statement locks every
source in SHARE mode (the transaction's snapshot is taken after the lock, so a concurrent
TRUNCATE + reload is waited for or seen, never half-seen), run with row_security off (a read
that row-level security would filter fails instead of coming out short). Snapshot tables carry
no column defaults, so they never depend on the live table's sequences; the catalog's structure
keeps the defaults and the sequences' values.

A restore is one transaction. Views and foreign keys bind to a table's OID, not its name, so a
live table whose structure still equals the snapshot's is kept and refilled (DELETE + INSERT:
readers keep reading the old rows until the commit; writers wait). A table the ETL altered or
replaced is rebuilt: a copy of the snapshot is made first, then the live table is moved aside
into the snapshot schema and the copy renamed into its place, with its index and constraint
names, defaults, sequences, owner and grants put back and dependent views recreated, all in
the same transaction; readers wait only for those renames.

Why this module is long: it is the whole PostgreSQL boundary. All of etlguard's PostgreSQL SQL
text lives here (copies, the fingerprint, refills and rebuilds, advisory locks and their proof,
other sessions stopped before a rollback), so that no other module speaks PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ..errors import EtlguardError, LockHeld, TargetError, TargetUnreachable
from ..faults import fault
from ..tables import TableRef
from .base import (
    LEGACY_FINGERPRINT,
    Activity,
    Checksum,
    Column,
    ConnectionLost,
    Copy,
    CopyResult,
    DatabaseError,
    Progress,
    Session,
    Swap,
    fingerprint_of,
    psycopg_args,
    with_retries,
)
from .pg_structure import PostgresStructure

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
# Types whose hash function gives distinct stored values distinct inputs: no scale, sign of
# zero, collation or time zone folded away (timestamptz is an instant, printed in UTC).
_EXACT_HASH = frozenset(
    {"int2", "int4", "int8", "bool", "date", "time", "timestamp", "timestamptz", "uuid", "bytea", "oid"}
)


class PostgresAdapter(PostgresStructure):
    name = "postgresql"
    transactional_ddl = True
    atomic_multi_rename = True
    max_identifier_length = 63
    identifier_quote = '"'
    paramstyle = "%s"
    staging_beside_live = False
    sees_other_sessions = True
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
        self._lock_keys: list[int] = []  # advisory locks this session holds
        self._lock_lost = False  # the session that held them died

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        if self.conn is not None:
            return
        if psycopg is None:
            raise TargetError("PostgreSQL targets need psycopg: pip install 'etlguard[postgres]'")
        self.conn = with_retries(self.target, self._open)
        self.execute(f"SET lock_timeout = '{int(self.lock_wait_seconds)}s'")
        self._pin_session()

    def _open(self) -> Any:
        t = self.target
        try:
            return psycopg.connect(**psycopg_args(t))
        except psycopg.OperationalError as exc:
            text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            if "authentication" in text or "password" in text:
                raise TargetError(
                    f"{t.redacted} refused the login for user {t.user!r}: check the user name and password"
                ) from exc
            raise TargetUnreachable(
                f"cannot reach {t.redacted}: {text}; check host, port and network"
            ) from exc

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
        self._lock_keys = []  # closed, or gone with a lost session: no lock is held any more
        self._lock_lost = False

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
        if isinstance(exc, psycopg.errors.InsufficientPrivilege) and "row-level security" in first:
            return TargetError(
                f"{first}: etlguard refuses to read a table partly; give its role BYPASSRLS "
                "or remove FORCE ROW LEVEL SECURITY for the owner"
            )
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
            self._lock_lost = self._lock_lost or bool(self._lock_keys)
            return ConnectionLost(f"lost the connection to {self.target.redacted}: {first}")
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

    def object_kind(self, ref: TableRef) -> str | None:
        rows = self.query(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [ref.schema, ref.name],
        )
        kinds = {
            "S": "a sequence",
            "v": "a view",
            "m": "a materialized view",
            "p": "a partitioned table",
            "f": "a foreign table",
            "r": "a table",
        }
        return kinds.get(str(rows[0][0]), "not a table") if rows else None

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

    def activity_source(self) -> str | None:
        return "pg_stat_activity (each session's running or latest statement)"

    def activity(self) -> list[Activity]:
        rows = self.query(
            "SELECT pid, host(client_addr), client_port, query FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
            "AND backend_type = 'client backend' AND query <> ''"
        )
        return [
            Activity(str(pid), f"{addr}:{port}" if addr and port and port > 0 else "", str(query))
            for pid, addr, port, query in rows
        ]

    # -- what cannot be snapshotted exactly ------------------------------------------------
    def unsupported_reason(self, ref: TableRef) -> str | None:
        return self._visibility_reason(ref) or self._inheritance_reason(ref) or self._dependents_reason(ref)

    def _visibility_reason(self, ref: TableRef) -> str | None:
        """Row-level security that applies to our role would filter the snapshot's reads (and a
        TRUNCATE ignores it): refuse unless the role is a superuser, has BYPASSRLS, or owns the
        table without FORCE ROW LEVEL SECURITY."""
        ((applies, role),) = self.query(
            "SELECT c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls) AND "
            "(c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')), current_user "
            "FROM pg_class c, pg_roles r WHERE c.oid = %s::regclass AND r.rolname = current_user",
            [self.qualify(ref)],
        )
        if applies:
            return (
                f"row-level security applies to role {role}, so it cannot see every row; "
                f"ALTER ROLE {role} BYPASSRLS, or protect it with the table's owner and no FORCE ROW LEVEL SECURITY"
            )
        return None

    def _inheritance_reason(self, ref: TableRef) -> str | None:
        """Plain inheritance mixes the children's rows into the parent's reads and TRUNCATE;
        declarative partitions are routed by the server and stay supported."""
        ((children, parents),) = self.query(
            "SELECT (SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE i.inhparent = c.oid AND p.relkind = 'r'), "
            "(SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE i.inhrelid = c.oid AND p.relkind = 'r') FROM pg_class c WHERE c.oid = %s::regclass",
            [self.qualify(ref)],
        )
        if children:
            return "it has inheritance children, whose rows a snapshot of the parent would absorb; protect a partitioned table instead"
        if parents:
            return "it is an inheritance child, which a restore would detach from its parent"
        return None

    def _dependents_reason(self, ref: TableRef) -> str | None:
        rows = self.query(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND (conrelid = %s::regclass "
            "OR confrelid = %s::regclass)",
            [self.qualify(ref), self.qualify(ref)],
        )
        if rows[0][0]:
            return "it has foreign keys, which a restore's swap would leave pointing at the old table"
        triggers = self.query(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            [self.qualify(ref)],
        )
        if triggers[0][0]:
            return "it has triggers, which would fire on the restore's refill"
        return None

    def keep_blockers(self, ref: TableRef) -> list[str]:
        """Besides what blocks a swap: views (plain or materialized) read the table by OID, so
        they would follow the kept table into the snapshot schema and go on reading the old
        rows; column defaults and identity columns would take their sequences along; and a
        kept table that etlguard's role does not own (nor is a member of its owner's role)
        could be neither moved back by a rollback nor dropped by retention."""
        oid = self.qualify(ref)
        ((views, defaults, ours),) = self.query(
            "SELECT (SELECT string_agg(DISTINCT v.oid::regclass::text, ', ') FROM pg_depend d "
            "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
            "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = c.oid AND v.oid <> c.oid), "
            "(SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 "
            "AND NOT a.attisdropped AND (a.atthasdef OR a.attidentity <> '')), "
            "pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = %s::regclass",
            [oid],
        )
        out = self.swap_blockers(ref)
        if views:
            out.append(f"views {views} read it")
        if defaults:
            out.append("it has column defaults or identity columns")
        if not ours:
            out.append("etlguard's role is not a member of its owner's role")
        return out

    def server_now(self) -> Any:
        return self.query("SELECT (clock_timestamp() AT TIME ZONE 'UTC')")[0][0]

    def size_bytes(self, ref: TableRef) -> int:
        return int(self.query("SELECT pg_total_relation_size(%s::regclass)", [self.qualify(ref)])[0][0])

    def copy_estimate(self, ref: TableRef) -> tuple[int | None, int | None]:
        # reltuples is -1 for a table never analysed; rows written by the copy's transaction
        # are invisible to other sessions, so PostgreSQL reports the estimate only
        rows = self.query(
            "SELECT reltuples, pg_total_relation_size(oid) FROM pg_class WHERE oid = %s::regclass",
            [self.qualify(ref)],
        )
        if not rows:
            return None, None
        return (int(rows[0][0]) if rows[0][0] is not None and rows[0][0] >= 0 else None), int(rows[0][1])

    # -- data -------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        if not self.schema_exists(schema):
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}")

    def copy_tables(
        self, copies: Sequence[Copy], progress: Progress | None = None, consistency: str = "set"
    ) -> list[CopyResult]:
        """One REPEATABLE READ transaction whose first statement locks every source in ACCESS
        SHARE mode: the transaction's snapshot is taken by the first read, after the lock, so
        another job's TRUNCATE + reload (ACCESS EXCLUSIVE) has either committed and is seen, or
        waits for us. ACCESS SHARE does not conflict with INSERT, UPDATE or DELETE: writers go on
        while every table is copied from one point in time, so `set` and `table` are the same
        here and neither blocks writers. Source and copy are fingerprinted in that snapshot."""
        results = []
        with self._transaction("REPEATABLE READ"):
            sources = ", ".join(dict.fromkeys(self.qualify(c.source) for c in copies))
            self.execute(f"LOCK TABLE {sources} IN ACCESS SHARE MODE")
            for c in copies:
                self._create_copy(c.source, c.dest)
                fault("copy.after_create")
                rows = self._copy_rows(c.source, c.dest)
                fault("copy.after_rows")
                source = self.checksum(c.source, c.algorithm)
                if rows != source.rows:
                    raise DatabaseError(
                        f"copied {rows} rows of {c.source} but it has {source.rows}; nothing was kept"
                    )
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

    def change_check(self, ref: TableRef) -> Checksum | None:
        """hash_record_extended() of each row under two seeds, summed: each type's own 64-bit
        hash, no text made, several times cheaper than the fingerprint. Only types whose hash
        tells every stored value apart are hashed as they are (integers, bool, dates and times,
        uuid, bytea; text as its bytes, so no collation folds case); every other column goes
        in as its text, as the fingerprint reads it (numeric keeps its scale: 1.0 and 1.00 hash
        alike as numbers; -0 and 0 as floats). The statistics counters (pg_stat_*) would be
        cheaper still but are reset at will and lost in a crash."""
        rows = self.query(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [self.qualify(ref)],
        )
        parts = []
        for name, kind in rows:
            column = f"r.{self.quote(name)}"
            if kind in _EXACT_HASH:
                parts.append(column)
            elif kind in ("text", "varchar", "bpchar", "name"):
                parts.append(f"convert_to({column}::text, 'UTF8')")
            else:
                parts.append(f"{column}::text")
        record = f"ROW({', '.join(parts)})"
        count, first, second = self.query(
            f"SELECT count(*), sum(hash_record_extended({record}, 0)), sum(hash_record_extended({record}, 1)) "
            f"FROM {self.qualify(ref)} r"
        )[0]
        digest = f"{int(first or 0) % (1 << 64):016x}{int(second or 0) % (1 << 64):016x}"
        return Checksum(int(count), digest, "hash-record")

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

    # -- restore ----------------------------------------------------------------------------
    def swap(self, swaps: Sequence[Swap]) -> None:
        """Put every snapshot back in one transaction. A live table whose structure still
        equals the snapshot's is refilled (DELETE, not TRUNCATE: readers keep reading the old
        rows until the commit instead of waiting on an ACCESS EXCLUSIVE lock). One whose
        structure the ETL changed, or that it dropped, is replaced whole: a copy of the snapshot
        is built first, then the live table is moved aside and the copy renamed into its place,
        with its names, defaults, sequences, grants and dependent views put back."""
        with self._transaction():
            aside = [s for s in swaps if s.staging is None]  # tables a failed run created
            swaps = [s for s in swaps if s.staging is not None]
            rebuilt = {s.live: self._stage_copy(s) for s in swaps if self._needs_rebuild(s)}
            for s in swaps:
                if s.live in rebuilt:
                    self._replace(s, rebuilt[s.live])
                else:
                    self._refill(s)
                self._prove_refill(s)
            for s in aside:
                self._put_new_aside(s.live, s.displaced)

    def _needs_rebuild(self, s: Swap) -> bool:
        return not self.table_exists(s.live) or not self.structure_matches(s.live, s.structure)

    def _refill(self, s: Swap) -> None:
        assert s.staging is not None  # a table only moved aside is not refilled
        live = self.qualify(s.live)
        self.execute(f"LOCK TABLE {live} IN EXCLUSIVE MODE")  # writers wait; readers do not
        if s.displaced is not None:
            self._create_copy(s.live, s.displaced)
            self._copy_rows(s.live, s.displaced)
        self.execute(f"DELETE FROM {live}")
        self._copy_rows(s.staging, s.live)

    def _put_new_aside(self, live: TableRef, aside: TableRef | None) -> None:
        """A table the failed run created goes into the snapshot schema, whole (its indexes,
        constraints and sequences go with it); never dropped."""
        assert aside is not None
        self.execute(f"ALTER TABLE {self.qualify(live)} RENAME TO {self.quote(aside.name)}")
        self.execute(
            f"ALTER TABLE {self.qualify(TableRef(live.schema, aside.name))} SET SCHEMA {self.quote(aside.schema)}"
        )

    def _prove_refill(self, s: Swap) -> None:
        """Check the refilled table inside the swap's transaction: afterwards other clients'
        writes (the live table takes them again at the commit) would make it differ."""
        if s.expected is None:
            return
        actual = self.checksum(s.live, s.expected.algorithm)
        if actual != s.expected:
            raise DatabaseError(f"the refilled {s.live} holds {actual}, not its snapshot's {s.expected}")

    # -- the target lock --------------------------------------------------------------------
    def lock(self, name: str, holder: str) -> None:
        self.connect()
        # the lock lives as long as this session: no idle timeout may end it during the ETL
        for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            with contextlib.suppress(EtlguardError):  # idle_session_timeout is PostgreSQL 14+
                self.execute(f"SET {setting} = 0")
        self._take(_advisory_key(name))

    def lock_tables(self, tables: Sequence[TableRef], holder: str) -> None:
        database = self.target.database or "postgres"
        keys = {_advisory_key(f"table\x00{database}\x00{t.schema}\x00{t.name}") for t in tables}
        for key in sorted(keys):
            self._take(key)

    def _take(self, key: int) -> None:
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
        self._lock_keys.append(key)

    def holds_lock(self) -> bool:
        if self._lock_lost or not self._lock_keys or self.conn is None:
            return False
        try:
            (held,) = self.query(
                "SELECT count(DISTINCT (l.classid::bigint << 32 | l.objid::bigint)) FROM pg_locks l "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.pid = pg_backend_pid() "
                "AND (l.classid::bigint << 32 | l.objid::bigint) = ANY("
                "SELECT k & x'ffffffffffffffff'::bigint FROM unnest(%s::bigint[]) k)",
                [self._lock_keys],
            )[0]
        except EtlguardError:
            return False
        return int(held) == len(set(self._lock_keys))

    def cancel_own_statement(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.cancel()

    def unlock(self) -> None:
        if self._lock_keys and self.conn is not None and not self._lock_lost:
            for key in self._lock_keys:
                self.query("SELECT pg_advisory_unlock(%s)", [key])
        self._lock_keys = []

    # -- other clients' sessions ------------------------------------------------------------
    def sessions_on(self, tables: Sequence[TableRef]) -> list[Session]:
        rows = self.query(
            "SELECT DISTINCT a.pid, a.usename, COALESCE(host(a.client_addr), 'local'), "
            "EXTRACT(EPOCH FROM now() - COALESCE(a.query_start, a.backend_start))::int, "
            "CASE WHEN a.state = 'active' THEN a.query ELSE '' END "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND a.pid <> pg_backend_pid() "
            "AND l.relation = ANY(%s::text[]::regclass[])",
            [[self.qualify(t) for t in tables if self.table_exists(t)]],
        )
        return [Session(int(r[0]), str(r[1]), str(r[2]), int(r[3] or 0), str(r[4] or "")) for r in rows]

    def cancel_session(self, session_id: int) -> None:
        with contextlib.suppress(EtlguardError):
            self.query("SELECT pg_cancel_backend(%s)", [session_id])

    def terminate_session(self, session_id: int) -> None:
        with contextlib.suppress(EtlguardError):
            self.query("SELECT pg_terminate_backend(%s)", [session_id])


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)

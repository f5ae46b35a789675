"""The database boundary. All SQL text lives in this package; capabilities are class attributes.

Generic algorithms (snapshot, restore, retention, the run state machine) are written once above
these classes and call only the methods declared here.

Why this module is long: it is the one interface every adapter implements (connection,
structure, copies, checksums, swaps, diffs, locks, catalog rows) with the SQL that is the same
on every database as default methods, and the value types those methods return; split, an
adapter author would have to piece the contract together from several files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError, EtlguardError, IdentifierError, TargetUnreachable
from ..tables import TableRef
from ..target import Target

# Table fingerprint algorithms, recorded per snapshot in the catalog so that a snapshot is always
# re-checked with the algorithm it was recorded with. See docs/architecture.md, "Fingerprint".
FINGERPRINT = "v2"  # SHA-256 of an unambiguous row encoding; 128 bits as two sums modulo 2^64
LEGACY_FINGERPRINT = "v1"  # values joined with '#', one 32/64-bit hash summed: snapshots before v2
# An engine checksum (MySQL: row count + CHECKSUM TABLE): a fresh copy against its source, and
# what a rollback records of each displaced table (re-checked against that very table, sealed).
COPY_CHECK = "copy-check"
ROW_COUNT = "row-count"  # rows read by a copy's one consistent read, against the rows it holds

# How the tables of one snapshot call are read (config `snapshot.consistency`).
CONSISTENCY_SET = "set"  # one point in time for every table of the call
CONSISTENCY_TABLE = "table"  # each table from its own consistent read, never blocking writers
CONSISTENCIES = (CONSISTENCY_SET, CONSISTENCY_TABLE)

_MOD64 = 1 << 64


@dataclass(frozen=True)
class Checksum:
    """A table's fingerprint: its row count and an order-independent digest of its rows."""

    rows: int
    digest: str
    algorithm: str = FINGERPRINT

    def __str__(self) -> str:
        return f"{self.rows} rows/{self.digest}"


def fingerprint_of(rows: Any, high: Any, low: Any) -> Checksum:
    """Two sums of 64-bit row-hash halves, each reduced modulo 2^64 (signed or unsigned sums
    agree there), as 32 hex digits: a 128-bit digest in which every row counts, duplicates too."""
    digest = f"{int(high or 0) % _MOD64:016x}{int(low or 0) % _MOD64:016x}"
    return Checksum(int(rows), digest, FINGERPRINT)


def counted(rows: int) -> Checksum:
    """A copy check that is only a row count, where no second read sees the copy's state."""
    return Checksum(int(rows), "", ROW_COUNT)


@dataclass(frozen=True)
class Column:
    name: str
    generated: bool = False


@dataclass(frozen=True)
class Copy:
    """One table copy: `source` into a new table `dest` with the same structure."""

    source: TableRef
    dest: TableRef
    auto_increment: int | None = None  # force this counter on dest (restores of MySQL tables)
    algorithm: str | None = None  # the fingerprint to take of dest: a snapshot's own on re-copies
    # (the caller then proves dest against the snapshot's record), None (new snapshots) for the
    # adapter's own (`Adapter.default_algorithm`)


@dataclass(frozen=True)
class CopyResult:
    """`source` and `dest` prove the copy equals its source (they may be a cheaper engine
    checksum, see `Adapter.copy_check`); `fingerprint` is what the catalog records."""

    source: Checksum
    dest: Checksum
    structure: str  # the source's DDL (normalised), kept in the catalog
    auto_increment: int | None
    size_bytes: int
    dest_fingerprint: Checksum | None = None  # when `dest` is not already the fingerprint
    seal: str | None = None  # proof that dest is unchanged since its fingerprint (`Adapter.seal`)

    @property
    def fingerprint(self) -> Checksum:
        return self.dest_fingerprint or self.dest


@dataclass(frozen=True)
class Swap:
    """Put `staging` in place of `live`; `live` (if it exists) becomes `displaced`. With no
    staging, `live` is only moved aside (a table a failed run created)."""

    live: TableRef
    staging: TableRef | None
    displaced: TableRef | None
    structure: str = ""  # the snapshot's DDL, for adapters that rebuild indexes at the swap
    expected: Checksum | None = None  # refilling adapters prove this before they commit


@dataclass(frozen=True)
class Activity:
    """One statement a server session ran (or is running), as the server reports it."""

    session: str  # the server's id of the session (MySQL connection id, PostgreSQL backend pid)
    client: str  # "host:port" as the server saw the client; "" for a local socket or unknown
    statement: str


Progress = Callable[[TableRef, int], None]


@dataclass(frozen=True)
class Session:
    """Another client's database session that works on a protected table."""

    id: int
    user: str
    host: str
    seconds: int
    statement: str

    def __str__(self) -> str:
        text = " ".join(self.statement.split())
        text = text if len(text) <= 80 else text[:77] + "..."
        return f"session {self.id} ({self.user}@{self.host}, {self.seconds} s: {text or 'idle in a transaction'})"


class DatabaseError(EtlguardError):
    """A database error, translated at this boundary (the driver's exception is the cause)."""


class ConnectionLost(DatabaseError):
    """The session went away under a statement (a server restart or failover, a proxy, a
    network cut); every lock it held is gone with it."""


log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_SECONDS = 30.0


def with_retries(target: Target, attempt: Callable[[], T]) -> T:
    """`attempt()`, tried again with doubling waits while the server is unreachable: an
    Aurora failover or a restart takes tens of seconds, and a nightly job should ride it out
    rather than fail. Bounded by the URL options `connect_retries` (default 3) and
    `retry_backoff` (first wait in seconds, default 1); the last failure is raised as is."""
    retries = int(target.option("connect_retries", "3"))
    wait = float(target.option("retry_backoff", "1"))
    for n in range(retries + 1):
        try:
            return attempt()
        except TargetUnreachable as exc:
            if n == retries:
                raise
            pause = min(wait * 2**n, MAX_BACKOFF_SECONDS)
            log.warning("%s; retry %d of %d in %.1f s", exc, n + 1, retries, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # the loop returns or raises


def psycopg_args(t: Target) -> dict[str, Any]:
    """psycopg.connect's arguments for a target: login, TLS (ssl_ca means verify-full) and the
    keepalives that keep an idle lock session from being dropped by a NAT or load balancer."""
    return {
        "host": t.host,
        "port": t.port or 5432,
        "user": t.user or None,
        "password": t.login_password() or None,
        "dbname": t.database or "postgres",
        "sslmode": t.option("sslmode") or ("verify-full" if t.option("ssl_ca") else None),
        "sslrootcert": t.option("ssl_ca") or None,
        "autocommit": True,
        "connect_timeout": int(t.option("connect_timeout", "10")),
        "application_name": "etlguard",
        "keepalives": 1,
        "keepalives_idle": 60,
        "keepalives_interval": 10,
        "keepalives_count": 6,
    }


class Adapter:
    """One connection to one target. Subclasses implement a database; see mysql.py, duckdb.py."""

    name: ClassVar[str] = ""
    transactional_ddl: ClassVar[bool] = False
    atomic_multi_rename: ClassVar[bool] = False
    max_identifier_length: ClassVar[int] = 64
    identifier_quote: ClassVar[str] = '"'
    paramstyle: ClassVar[str] = "?"
    # Where the restore's staging copy is built: beside the live table (DuckDB renames only
    # within a schema) or in the snapshot schema (MySQL's RENAME moves across schemas).
    staging_beside_live: ClassVar[bool] = False
    # Whether a restore can rename the snapshot table itself into the live schema (MySQL's
    # RENAME TABLE crosses schemas), instead of copying it back.
    snapshot_renames_into_place: ClassVar[bool] = False
    # Whether the swap itself fails whole, moving nothing, on a live name that is a view or a
    # table with a trigger (MySQL's atomic RENAME TABLE): then a restore looks for those only
    # after a failed swap, to say why (restore.check_swappable), not on the way to every swap.
    swap_refuses_views_and_triggers: ClassVar[bool] = False
    # Whether a restore keeps the live table (its OID: views and foreign keys stay bound) and
    # refills it from the snapshot in one transaction (PostgreSQL).
    restores_by_refill: ClassVar[bool] = False
    # Whether a second connection can watch other sessions' statements during the ETL (not
    # DuckDB: the ETL needs the file to itself, and nobody else can write while it has it).
    sees_other_sessions: ClassVar[bool] = False
    # Whether a snapshot is a reference to an immutable table version (an Iceberg tag), not a
    # copy: a restore then moves the table's pointer back, with no staging copy (Iceberg).
    snapshots_by_reference: ClassVar[bool] = False
    # Whether `copy_check` is also this database's `change_check`, so that the copy's check,
    # taken anyway to verify it, is what the catalog records for a later reuse (MySQL).
    copy_check_detects_change: ClassVar[bool] = False

    registry: ClassVar[dict[str, type[Adapter]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            Adapter.registry[cls.name] = cls

    def __init__(self, target: Target, lock_wait_seconds: float = 60.0) -> None:
        self.target = target
        self.lock_wait_seconds = lock_wait_seconds

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    # -- identifiers ------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        self.check_identifier(name)
        q = self.identifier_quote
        return q + name.replace(q, q + q) + q

    def qualify(self, ref: TableRef) -> str:
        return f"{self.quote(ref.schema)}.{self.quote(ref.name)}"

    def check_identifier(self, name: str) -> None:
        if not name:
            raise IdentifierError("an empty name cannot be used as a table or schema name")
        if len(name) > self.max_identifier_length:
            raise IdentifierError(
                f"name {name[:20]!r}... is {len(name)} characters; "
                f"{self.name} allows at most {self.max_identifier_length}"
            )
        if "\x00" in name:
            raise IdentifierError(f"name {name!r} contains a NUL character")

    # -- discovery --------------------------------------------------------------------------
    def schema_exists(self, schema: str) -> bool:
        raise NotImplementedError

    def list_tables(self, schema: str) -> list[str]:
        raise NotImplementedError

    def list_schemas(self) -> list[str]:
        raise NotImplementedError

    def table_exists(self, ref: TableRef) -> bool:
        return ref.name in self.list_tables(ref.schema)

    def existing(self, refs: Sequence[TableRef]) -> set[TableRef]:
        """Which of `refs` exist as base tables (adapters answer in one round trip where they can:
        a rollback asks this of every table before its swap)."""
        return {r for r in refs if self.table_exists(r)}

    def columns(self, ref: TableRef) -> list[Column]:
        raise NotImplementedError

    def object_kind(self, ref: TableRef) -> str | None:
        """What a name that is not a base table is (a view, a sequence...), or None if nothing
        of that name exists: so that an error can say what it is rather than 'does not exist'."""
        return None

    def structure(self, ref: TableRef) -> str:
        """The table's DDL with its own name taken out, so that two tables compare equal."""
        raise NotImplementedError

    def structure_matches(self, ref: TableRef, recorded: str) -> bool:
        """Whether the table has the structure a snapshot recorded: the proof, with the
        checksum, that a restore put back the exact table. Recorded texts are JSON, compared as
        values, so a change in how they are spaced or ordered as text is not a difference."""
        try:
            return bool(json.loads(self.structure(ref)) == json.loads(recorded))
        except ValueError:
            return False

    def structures(self, refs: Sequence[TableRef]) -> list[str]:
        """`structure` of each table, in order (in one round trip where the adapter can: a
        snapshot that reuses reads the structure of every table of the set and of its snapshot)."""
        return [self.structure(r) for r in refs]

    def structures_match(self, recorded: Sequence[tuple[TableRef, str]]) -> list[bool]:
        """`structure_matches` of each (table, recorded structure), in order (one round trip
        where the adapter can)."""
        return [self.structure_matches(ref, text) for ref, text in recorded]

    def renames_into_place(self, snapshot: TableRef, live: TableRef) -> bool:
        """Whether a restore can rename this snapshot table itself into the live name."""
        return self.snapshot_renames_into_place

    def auto_increment(self, ref: TableRef) -> int | None:
        """The table's next AUTO_INCREMENT value, where the database has such a counter."""
        return None

    def auto_increments(self, refs: Sequence[TableRef]) -> dict[TableRef, int | None]:
        """`auto_increment` of each table (in one round trip where the adapter can)."""
        return {r: self.auto_increment(r) for r in refs}

    def counter_ceiling(self, structure: str) -> int | None:
        """The largest id the AUTO_INCREMENT column of a table of this `structure` can hold,
        or None (no such column, or the adapter cannot tell)."""
        return None

    def structure_and_counter(self, ref: TableRef) -> tuple[str, int | None]:
        """`structure` and `auto_increment` together (one read of the DDL where they share it)."""
        return self.structure(ref), self.auto_increment(ref)

    def size_bytes(self, ref: TableRef) -> int:
        raise NotImplementedError

    def unsupported_reason(self, ref: TableRef) -> str | None:
        """Why this table cannot be snapshotted exactly, or None."""
        return None

    def unsupported_reasons(self, refs: Sequence[TableRef]) -> list[str | None]:
        """`unsupported_reason` of each table, in order (one round trip where the adapter can)."""
        return [self.unsupported_reason(r) for r in refs]

    def primary_key(self, ref: TableRef) -> list[str]:
        raise NotImplementedError

    def is_view(self, ref: TableRef) -> bool:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            f"{self.paramstyle} AND table_name = {self.paramstyle} AND table_type = 'VIEW'",
            [ref.schema, ref.name],
        )
        return any(r[0] == ref.name for r in rows)

    def views_among(self, refs: Sequence[TableRef]) -> set[TableRef]:
        """Which of `refs` are views (in one round trip where the adapter can)."""
        return {r for r in refs if self.is_view(r)}

    def swap_blockers_of(self, refs: Sequence[TableRef], triggers: bool = True) -> dict[TableRef, list[str]]:
        """`swap_blockers` of each table (batched where the adapter can); tables with none left
        out. `triggers=False`: where the adapter can tell them apart, foreign keys only."""
        found = {r: self.swap_blockers(r) for r in refs}
        return {r: b for r, b in found.items() if b}

    def swap_blockers(self, ref: TableRef) -> list[str]:
        """What on or around a live table would make a swap fail or go wrong, each with the
        statement that removes it: triggers, and foreign keys into or out of the table."""
        reason = self.unsupported_reason(ref)
        return [f"what its snapshot did not have ({reason})"] if reason else []

    def keep_blockers(self, ref: TableRef) -> list[str]:
        """What would stop dbt's swap from keeping this live table as its snapshot (zero-copy),
        or leave the kept table no exact snapshot: by default what would block a swap."""
        return self.swap_blockers(ref)

    # -- other sessions (writes by others during a run) -------------------------------------
    def activity_source(self) -> str | None:
        """How `activity()` sees other sessions' statements, or None where it cannot."""
        return None

    def activity(self) -> list[Activity]:
        """Statements of the server's other sessions: running ones, and where the server keeps
        them, recent finished ones. Sampled during a run to notice writes by other clients."""
        return []

    def server_port(self) -> int | None:
        return self.target.port

    def raise_counter(self, table: TableRef, at_least_as: TableRef, margin: int = 0) -> int | None:
        """Move `table`'s AUTO_INCREMENT counter up to `at_least_as`'s (plus `margin`), so that ids handed out
        before a restore are never handed out again; return the new value if it moved.
        Databases whose counters live outside the table (sequences) need nothing here."""
        return None

    def raise_counters(self, pairs: Sequence[tuple[TableRef, TableRef]], margin: int = 0) -> None:
        """`raise_counter` of each (table, at_least_as) pair (the counters read in one round trip
        where the adapter can)."""
        for table, ahead_of in pairs:
            self.raise_counter(table, ahead_of, margin)

    # -- data -------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        raise NotImplementedError

    def copy_tables(
        self, copies: Sequence[Copy], progress: Progress | None = None, consistency: str = CONSISTENCY_SET
    ) -> list[CopyResult]:
        """Copy each source into a new table of identical structure and prove each copy equals
        what it read. `set`: all at one consistency point, source and copy checked at that
        point. `table`: each source from its own consistent read, without blocking writers,
        where the database can (see docs/configuration.md, `snapshot.consistency`)."""
        raise NotImplementedError

    def use_physical_copies(
        self, datadir: str, snapshot_schema: str, tables: Sequence[TableRef]
    ) -> dict[TableRef, str]:
        """`snapshot.physical`: from now on, copy `tables` by their files where the database
        can (MySQL/MariaDB, mysql_physical.py); return why each other table is copied by rows.
        A setup that cannot work is a ConfigError, raised before anything is copied."""
        raise ConfigError(f"snapshot.physical is for MySQL/MariaDB targets, not {self.name}; remove it")

    def physical_report(self) -> tuple[list[TableRef], dict[TableRef, str]]:
        """The tables copied by file so far, and why each other one was copied by rows."""
        return [], {}

    # -- copy progress (read by a monitor thread while `copy_tables` runs) -------------------
    def copy_session(self) -> str | None:
        """The server's id of the session that copies (passed back to `copy_progress`)."""
        return None

    def progress_monitor(self) -> Adapter:
        """What a monitor thread polls from while this session copies: by default a
        connection of its own to the same target (the caller closes it)."""
        monitor = type(self)(self.target, self.lock_wait_seconds)
        monitor.connect()
        return monitor

    def copy_estimate(self, ref: TableRef) -> tuple[int | None, int | None]:
        """The server's estimate of `ref`'s rows and bytes (statistics: cheap, approximate)."""
        return None, None

    def copy_progress(self, session: str, ref: TableRef, rows_estimate: int | None) -> int | None:
        """Rows the copying `session` has written so far while it copies `ref`, or None where
        the database cannot tell. Called on the `progress_monitor()`, from another thread."""
        return None

    def default_algorithm(self) -> str:
        """The fingerprint algorithm new snapshots are recorded with on this database."""
        return FINGERPRINT

    def checksum(self, ref: TableRef, algorithm: str | None = None) -> Checksum:
        """The table's fingerprint by `algorithm` (None: `default_algorithm`): the current one,
        the legacy one that snapshots recorded before it (kept only to verify and restore those),
        or the engine's cheap check that displaced tables record (`COPY_CHECK`)."""
        algorithm = algorithm or self.default_algorithm()
        if algorithm == FINGERPRINT:
            return self.fingerprint(ref)
        if algorithm == COPY_CHECK:  # what displaced tables record: see `record_check`
            return self.copy_check(ref)
        if algorithm == LEGACY_FINGERPRINT:
            with self.unpinned_session():
                return self.legacy_checksum(ref)
        raise EtlguardError(
            f"fingerprint algorithm {algorithm!r} is unknown to this etlguard; upgrade etlguard"
        )

    def fingerprint(self, ref: TableRef) -> Checksum:
        """The strong fingerprint (FINGERPRINT): injective row encoding, 128-bit digest."""
        raise NotImplementedError

    def sealed_checksums(
        self, tables: Sequence[tuple[TableRef, str | None]]
    ) -> list[tuple[Checksum, str | None]]:
        """The fingerprints (by the given algorithms) of tables only etlguard writes (snapshots),
        each with a seal: the engine's own record of the table's identity and last change,
        taken so that nothing can write between the fingerprint and the seal. `seal_holds`
        later proves in O(1) that the table is unchanged since this fingerprint, or says it
        cannot (then the table must be fingerprinted again). None where the engine offers no
        such record."""
        return [(self.checksum(ref, algorithm), None) for ref, algorithm in tables]

    def sealed_copy_checks(self, refs: Sequence[TableRef]) -> list[tuple[Checksum, str | None]]:
        """`copy_check` of live tables that other clients may write (no lock is taken), each
        with a seal where the engine shows that nothing was committed to the table from before
        the check to after it; a table written meanwhile gets none. None where the engine
        offers no such record."""
        return [(self.copy_check(ref), None) for ref in refs]

    def resealed(self, sealed: Sequence[tuple[TableRef, str]]) -> list[str | None]:
        """For each (table, seal taken of it under another name), a seal of the table under
        its name now, if it is provably the very sealed table with nothing committed to it
        since (a RENAME in between is allowed; its structure is the caller's to compare);
        else None. None throughout where the engine cannot tell."""
        return [None] * len(sealed)

    def seal_holds(self, ref: TableRef, seal: str) -> bool:
        """Whether `ref` is provably unchanged since `seal` was taken. False when in doubt."""
        return False

    def seals_hold(self, sealed: Sequence[tuple[TableRef, str]]) -> list[bool]:
        """`seal_holds` of each (table, seal), in order (one round trip where the adapter can)."""
        return [self.seal_holds(ref, seal) for ref, seal in sealed]

    def same_storage(self, ref: TableRef, seal: str) -> bool | None:
        """Whether `ref` is the very table (the same storage, whatever its name now) that `seal`
        was taken of: after a RENAME that put a sealed snapshot in place, proof that the live
        table is that snapshot. None where the engine cannot tell (then read the data)."""
        return None

    def legacy_checksum(self, ref: TableRef) -> Checksum:
        """The v1 checksum, for snapshots recorded with it. Not injective: never for new ones."""
        raise NotImplementedError

    def deep_check(self, ref: TableRef) -> str | None:
        """What is wrong with a snapshot's stored data beyond its fingerprint, or None. Only
        where the fingerprint is an identity (Iceberg): copies are fully read by `checksum`."""
        return None

    def copy_check(self, ref: TableRef) -> Checksum:
        """What a fresh copy and its source are compared by, at one consistency point and with
        identical structure. The fingerprint unless the engine has something cheaper."""
        return self.fingerprint(ref)

    def change_check(self, ref: TableRef) -> Checksum | None:
        """A checksum of the whole table that is cheap next to the fingerprint and changes with
        any change of a row, for deciding that a table still holds what a snapshot of it holds
        (the snapshot is then reused, not copied again). Compared only between tables of
        identical structure, on the same server. None where the database has nothing cheap and
        reliable enough: every snapshot then copies."""
        return None

    def change_check_of_copy(self, result: CopyResult) -> Checksum | None:
        """The copy's `change_check` where verifying the copy already took it (free), else None
        (the caller then reads the copy once more)."""
        if self.copy_check_detects_change and result.dest.algorithm == COPY_CHECK:
            return result.dest
        return None

    def change_checks(self, refs: Sequence[TableRef]) -> list[Checksum | None]:
        """`change_check` of each table, in order (adapters may read them side by side)."""
        return [self.change_check(r) for r in refs]

    @contextlib.contextmanager
    def held_still(self, refs: Sequence[TableRef], blocking: bool = True) -> Iterator[None]:
        """No other session changes these tables inside the block, so that the checks taken in
        it describe one state of each (a read lock, or one read-only transaction). Not
        `blocking`: writers must not wait; each check is then one state of its own table."""
        with self.consistent_read():
            yield

    @contextlib.contextmanager
    def unpinned_session(self) -> Iterator[None]:
        """The session settings the server would give (what v1 checksums were taken under),
        for the length of the block; the pinned ones again afterwards."""
        yield

    def add_catalog_column(self, table: TableRef, column: str, kind: str) -> None:
        """Add a column of a generic kind to a catalog table (catalog schema migrations)."""
        self.execute(
            f"ALTER TABLE {self.qualify(table)} ADD COLUMN {self.quote(column)} {self.column_types[kind]}"
        )

    # -- copying between servers (restore --from): rows stream, memory stays flat ----------------
    def create_like(self, dest: TableRef, source: TableRef) -> None:
        """An empty table with `source`'s structure, on this server."""
        raise NotImplementedError

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[None]:
        """One read snapshot for what runs inside: a checksum and the rows streamed after it
        describe the same state, even while the source is being written to."""
        raise NotImplementedError
        yield

    def stream_rows(
        self, ref: TableRef, columns: Sequence[str], batch: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of `ref`, `batch` at a time, through a server-side cursor."""
        raise NotImplementedError

    def insert_rows(self, ref: TableRef, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def drop_table(self, ref: TableRef) -> None:
        self.execute(f"DROP TABLE IF EXISTS {self.qualify(ref)}")

    def swap(self, swaps: Sequence[Swap]) -> None:
        """Atomically put every staging table in place of its live table."""
        raise NotImplementedError

    null_safe_equal: ClassVar[str] = "{a} IS NOT DISTINCT FROM {b}"

    def row_diff(
        self, left: TableRef, right: TableRef, key: Sequence[str], limit: int
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """Up to `limit` rows present in one table and not the other, as ('-'|'+', row), in key
        order. NOT EXISTS rather than EXCEPT: MySQL before 8.0.31 (and Aurora 3) lacks EXCEPT."""
        cols = [self.quote(c.name) for c in self.columns(left) if not c.generated]
        out: list[tuple[str, tuple[Any, ...]]] = []
        for side, a, b in (("-", left, right), ("+", right, left)):
            match = " AND ".join(self.null_safe_equal.format(a=f"x.{c}", b=f"y.{c}") for c in cols)
            order = ", ".join(f"x.{self.quote(k)}" for k in key) or ", ".join(f"x.{c}" for c in cols)
            sql = (
                f"SELECT {', '.join(f'x.{c}' for c in cols)} FROM {self.qualify(a)} x WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self.qualify(b)} y WHERE {match}) ORDER BY {order} LIMIT {int(limit)}"
            )
            out += [(side, tuple(row)) for row in self.query(sql)]
        positions = [i for i, c in enumerate(self.columns(left)) if not c.generated]
        key_index = [positions.index(i) for i, c in enumerate(self.columns(left)) if c.name in key]
        out.sort(key=lambda r: (tuple(_sortable(r[1][i]) for i in key_index), r[0]))
        return out[:limit]

    def diff_counts(self, left: TableRef, right: TableRef, key: Sequence[str]) -> tuple[int, int, int | None]:
        """(rows only in `left`, rows only in `right`, rows whose key is in both with other
        values). With a key, a changed row counts once as changed, not as removed + added;
        without one, rows are matched whole and `changed` is None (unknown)."""
        cols = [self.quote(c.name) for c in self.columns(left) if not c.generated]
        keys = [self.quote(k) for k in key] or cols
        same_key = " AND ".join(self.null_safe_equal.format(a=f"x.{c}", b=f"y.{c}") for c in keys)
        same_row = " AND ".join(self.null_safe_equal.format(a=f"x.{c}", b=f"y.{c}") for c in cols)
        only = "SELECT COUNT(*) FROM {a} x WHERE NOT EXISTS (SELECT 1 FROM {b} y WHERE " + same_key + ")"
        removed = int(self.query(only.format(a=self.qualify(left), b=self.qualify(right)))[0][0])
        added = int(self.query(only.format(a=self.qualify(right), b=self.qualify(left)))[0][0])
        if not key:
            return removed, added, None
        changed = self.query(
            f"SELECT COUNT(*) FROM {self.qualify(left)} x JOIN {self.qualify(right)} y "
            f"ON {same_key} WHERE NOT ({same_row})"
        )
        return removed, added, int(changed[0][0])

    def count_rows(self, ref: TableRef) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {self.qualify(ref)}")[0][0])

    def duplicate_keys(self, ref: TableRef, key: Sequence[str], limit: int = 5) -> list[tuple[Any, ...]]:
        """Up to `limit` values of `key` that occur more than once, with their counts."""
        cols = ", ".join(self.quote(c) for c in key)
        return self.query(
            f"SELECT {cols}, COUNT(*) FROM {self.qualify(ref)} GROUP BY {cols} "
            f"HAVING COUNT(*) > 1 ORDER BY {cols} LIMIT {int(limit)}"
        )

    def missing_privileges(self, required: dict[str, set[str]]) -> list[tuple[str, str]]:
        """(schema, privilege) pairs the connected user lacks, for databases that have grants."""
        return []

    def server_now(self) -> dt.datetime:
        """The target's clock (naive UTC). Snapshot dates and retention use it, so a machine
        whose own clock is days behind cannot date fresh snapshots as old ones."""
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def free_bytes(self) -> int | None:
        """Free space where snapshots will be written, where the database can tell."""
        return None

    # -- the target lock --------------------------------------------------------------------
    def lock(self, name: str, holder: str) -> None:
        """Take the target's lock without waiting, or raise LockHeld naming the holder. The
        lock must die with this process (a server-side session lock, or a kernel file lock)."""
        raise NotImplementedError

    def unlock(self) -> None:
        raise NotImplementedError

    def lock_tables(self, tables: Sequence[TableRef], holder: str) -> None:
        """Take one lock per protected table (server + schema + table), in sorted order and
        without waiting, so that two etlguards protecting one table exclude each other
        whatever their catalogs. Released by `unlock`, or when the session dies."""

    def holds_lock(self) -> bool:
        """Prove that the locks taken by `lock` and `lock_tables` are still this session's."""
        raise NotImplementedError

    def keep_alive(self) -> None:
        """A cheap round trip, so that a proxy or NAT never sees the lock session idle."""
        self.query("SELECT 1")

    def cancel_own_statement(self) -> None:
        """From a signal handler: stop this session's running statement (Ctrl-C mid-copy)."""

    # -- other clients' sessions (stopped before a rollback) --------------------------------
    def sessions_on(self, tables: Sequence[TableRef]) -> list[Session]:
        """Other sessions that run statements against, or hold locks on, these tables."""
        return []

    def cancel_session(self, session_id: int) -> None:
        """Stop a session's running statement (KILL QUERY, pg_cancel_backend)."""

    def terminate_session(self, session_id: int) -> None:
        """End a session (KILL, pg_terminate_backend)."""

    # -- catalog support: generic DML built from quoted names -------------------------------
    column_types: ClassVar[dict[str, str]] = {}

    def create_catalog_table(self, table: TableRef, columns: Sequence[tuple[str, str]], key: str) -> None:
        """CREATE TABLE IF NOT EXISTS with generic column kinds mapped by `column_types`."""
        body = ", ".join(f"{self.quote(c)} {self.column_types[kind]}" for c, kind in columns)
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self.qualify(table)} ({body}, PRIMARY KEY ({self.quote(key)}))"
        )

    def insert(self, table: TableRef, row: dict[str, Any]) -> None:
        cols = ", ".join(self.quote(c) for c in row)
        marks = ", ".join([self.paramstyle] * len(row))
        self.execute(f"INSERT INTO {self.qualify(table)} ({cols}) VALUES ({marks})", list(row.values()))

    def insert_many(self, table: TableRef, rows: Sequence[dict[str, Any]]) -> None:
        """Rows with the same columns in one multi-row INSERT: one statement, one commit."""
        if len(rows) == 1:
            self.insert(table, rows[0])
            return
        cols = ", ".join(self.quote(c) for c in rows[0])
        marks = "(" + ", ".join([self.paramstyle] * len(rows[0])) + ")"
        values = ", ".join([marks] * len(rows))
        self.execute(
            f"INSERT INTO {self.qualify(table)} ({cols}) VALUES {values}",
            [v for r in rows for v in r.values()],
        )

    def update(self, table: TableRef, values: dict[str, Any], where: dict[str, Any]) -> int:
        sets = ", ".join(f"{self.quote(c)} = {self.paramstyle}" for c in values)
        cond = " AND ".join(f"{self.quote(c)} = {self.paramstyle}" for c in where)
        return self.execute(
            f"UPDATE {self.qualify(table)} SET {sets} WHERE {cond}",
            [*values.values(), *where.values()],
        )

    def select(
        self,
        table: TableRef,
        columns: Sequence[str],
        where: dict[str, Any] | None = None,
        order_by: str = "",
    ) -> list[dict[str, Any]]:
        """Rows as dicts; a `where` value that is a list matches any of its items (IN)."""
        cols = ", ".join(self.quote(c) for c in columns)
        sql = f"SELECT {cols} FROM {self.qualify(table)}"
        params: list[Any] = []
        if where:
            sql += " WHERE " + " AND ".join(self._condition(c, v) for c, v in where.items())
            params = [p for v in where.values() for p in (v if isinstance(v, list) else [v])]
        if order_by:
            sql += f" ORDER BY {self.quote(order_by)}"
        return [dict(zip(columns, row, strict=True)) for row in self.query(sql, params)]

    def _condition(self, column: str, value: Any) -> str:
        if not isinstance(value, list):
            return f"{self.quote(column)} = {self.paramstyle}"
        if not value:
            return "1 = 0"
        return f"{self.quote(column)} IN ({', '.join([self.paramstyle] * len(value))})"

    def next_id(self, table: TableRef) -> int:
        (value,) = self.query(f"SELECT COALESCE(MAX({self.quote('id')}), 0) + 1 FROM {self.qualify(table)}")[
            0
        ]
        return int(value)


def _sortable(value: Any) -> tuple[int, Any]:
    return (1, 0) if value is None else (0, value)

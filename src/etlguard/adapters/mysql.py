"""MySQL 8 / Aurora MySQL, and MariaDB as a subclass, over PyMySQL (pure Python: it runs in
AWS Glue 5.0 jobs, Python 3.11).

Snapshots are `CREATE TABLE ... LIKE` + `INSERT ... SELECT` (exact structure, unlike CTAS), copied
under `LOCK TABLES ... READ` so every table of one call shares one consistency point. Restores
are one multi-pair `RENAME TABLE`, which the server applies atomically: all pairs or none.

Why this module is long: it is the whole MySQL boundary. All of etlguard's MySQL SQL text lives
here (copies, the fingerprint, swaps, locks and their proof, grants, other sessions stopped
before a rollback), so that no other module speaks MySQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar

import pymysql
import pymysql.cursors

from ..errors import EtlguardError, IdentifierError, LockHeld, TargetError, TargetUnreachable
from ..faults import fault
from ..tables import TableRef
from . import mysql_physical as _physical
from .base import (
    CONSISTENCY_SET,
    CONSISTENCY_TABLE,
    COPY_CHECK,
    LEGACY_FINGERPRINT,
    Activity,
    Adapter,
    Checksum,
    Column,
    ConnectionLost,
    Copy,
    CopyResult,
    DatabaseError,
    Progress,
    Session,
    Swap,
    counted,
    fingerprint_of,
    with_retries,
)
from .parallel import Pool

_AUTO_INC = re.compile(r" AUTO_INCREMENT=(\d+)")
# The AUTO_INCREMENT column's integer type in SHOW CREATE TABLE, e.g. "  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,"
_AUTO_INC_COLUMN = re.compile(
    r"^\s*`(?:[^`]|``)*` (tinyint|smallint|mediumint|int|bigint)\b(?:\(\d+\))?( unsigned)?[^\n]*? NOT NULL AUTO_INCREMENT\b",
    re.IGNORECASE | re.MULTILINE,
)
_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
_HEADER = re.compile(r"^CREATE TABLE `(?:[^`]|``)*` \(")
# Server errors that mean "you cannot get in" rather than "that statement failed".
_DENIED = {1044, 1142, 1143, 1227, 1370}  # access denied to a schema, table, column or command
_LOGIN_ERRORS = {1044: "has no access to", 1045: "refused the login for", 1049: "has no database for"}
# sql_mode flags that change the text of a value (CHAR padding) or of SHOW CREATE TABLE (quotes,
# left-out options), and the combination modes that bring them or change functions (ORACLE's
# CONCAT skips NULLs): removed from every etlguard session, whatever the server's default.
_TEXT_MODES = frozenset(
    "PAD_CHAR_TO_FULL_LENGTH ANSI_QUOTES NO_FIELD_OPTIONS NO_KEY_OPTIONS NO_TABLE_OPTIONS "
    "ANSI ORACLE MSSQL DB2 MAXDB POSTGRESQL MYSQL323 MYSQL40".split()
)
# Skips merging the derived table, so each row is hashed once, not once per digest half.
_ALL_ROWS = "LIMIT 18446744073709551615"
# A plain or unique B-tree index line of SHOW CREATE TABLE, and its quoted name.
_SECONDARY = re.compile(r"^  ((?:UNIQUE )?KEY (`(?:[^`]|``)*`) \(.*?),?$", re.MULTILINE)


class MySQLAdapter(Adapter):
    name = "mysql"
    transactional_ddl = False
    atomic_multi_rename = True
    max_identifier_length = 64
    identifier_quote = "`"
    paramstyle = "%s"
    staging_beside_live = False
    sees_other_sessions = True
    snapshot_renames_into_place = True
    swap_refuses_views_and_triggers = True
    copy_check_detects_change = True
    copy_connections = 2  # tables copied at once, each by a session of its own
    null_safe_equal = "{a} <=> {b}"
    column_types: ClassVar[dict[str, str]] = {
        "id": "BIGINT NOT NULL",
        "int": "BIGINT NULL",
        "name": "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
        "key": "VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL",
        "text": "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
        "time": "DATETIME(6) NULL",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: pymysql.connections.Connection | None = None
        self._history: bool | None = None
        self._locks: list[str] = []  # GET_LOCK names this session holds
        self._lock_lost = False  # the session that held them died
        self._mariadb: bool | None = None
        self._perf_schema: bool | None = None
        self.session_id: int | None = None
        self._read_views = False  # change checks each from a consistent snapshot (held_still)
        self._pool: Pool[MySQLAdapter] | None = None  # the sessions of a copy in progress
        self._copying: dict[TableRef, tuple[str, TableRef]] = {}  # source -> copying session, copy
        self._physical: _physical.Physical | None = None  # snapshot.physical: tables copied by file

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        if self.conn is not None:
            return
        self.conn = with_retries(self.target, self._open)
        self.session_id = self.conn.thread_id()
        _tcp_keepalive(self.conn)
        self._setup_session()

    def _open(self) -> Any:
        t = self.target
        try:
            return pymysql.connect(
                host=t.host,
                port=t.port or 3306,
                user=t.user,
                password=t.login_password(),
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=int(t.option("connect_timeout", "10")),
                read_timeout=_optional_int(t.option("read_timeout")),
                write_timeout=_optional_int(t.option("write_timeout")),
                ssl=_ssl(t.option("ssl_ca")),
            )
        except pymysql.err.OperationalError as exc:
            raise self._login_error(exc) from exc

    def _login_error(self, exc: pymysql.err.OperationalError) -> TargetError:
        code = exc.args[0] if exc.args else 0
        where = self.target.redacted
        if code in _LOGIN_ERRORS:
            return TargetError(
                f"{where} {_LOGIN_ERRORS[code]} user {self.target.user!r}: check the user "
                "name and password (from the URL, ${VAR} in it, or the credentials block)"
            )
        if "[SSL" in _message(exc):  # a certificate that does not verify: no retry will help
            return TargetError(
                f"TLS to {where} failed: {_message(exc)}; set credentials.ssl_ca to the CA bundle "
                "that signed the server's certificate"
            )
        return TargetUnreachable(f"cannot reach {where}: {_message(exc)}; check host, port and network")

    def _setup_session(self) -> None:
        self.execute(f"SET SESSION lock_wait_timeout = {int(self.lock_wait_seconds)}")
        if not self._row_binlog_possible():
            return  # REPEATABLE READ: the copy runs under LOCK TABLES ... READ, so it costs nothing
        # A locking INSERT ... SELECT under REPEATABLE READ stalls writers for the whole copy.
        self.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        self._pin_session()

    def _pin_session(self) -> None:
        """Fix what changes a value's text, so a fingerprint never depends on the server's or
        the user's defaults: TIMESTAMPs read in UTC, no CHAR padding, backtick DDL."""
        (mode,) = self.query("SELECT @@SESSION.sql_mode")[0]
        kept = ",".join(m for m in str(mode).split(",") if m and m not in _TEXT_MODES)
        self.execute("SET SESSION time_zone = '+00:00', SESSION sql_mode = %s", [kept])

    @contextlib.contextmanager
    def unpinned_session(self) -> Iterator[None]:
        self.execute("SET SESSION time_zone = @@GLOBAL.time_zone, SESSION sql_mode = @@GLOBAL.sql_mode")
        try:
            yield
        finally:
            if self.conn is not None:
                self._pin_session()

    def _row_binlog_possible(self) -> bool:
        """READ COMMITTED writes need row or mixed binary logging: with binlog_format=STATEMENT
        every InnoDB write fails (error 1665). Switch this session to MIXED where the user
        may (SUPER or BINLOG ADMIN); otherwise stay at the server's REPEATABLE READ."""
        # @@performance_schema rides along (see _performance_schema): a rollback asks it, and
        # every round trip between the ETL's exit and the swap delays the tables coming back
        fmt, log_bin, perf = self.query(
            "SELECT @@SESSION.binlog_format, @@GLOBAL.log_bin, @@performance_schema"
        )[0]
        self._perf_schema = bool(perf)
        if not log_bin or str(fmt).upper() != "STATEMENT":
            return True
        try:
            self.execute("SET SESSION binlog_format = 'MIXED'")
        except EtlguardError:
            return False
        return True

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except pymysql.err.Error:
                pass
            self.conn = None
        # closed, or already gone with a lost session: either way no lock is held, and a new
        # session starts with none lost
        self._locks = []
        self._lock_lost = False

    def _cursor(self) -> Any:
        if self.conn is None:
            self.connect()
        assert self.conn is not None
        return self.conn.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            with self._cursor() as cur:
                return int(cur.execute(sql, tuple(params) or None))
        except pymysql.err.Error as exc:
            raise self._translate(exc) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._cursor() as cur:
                cur.execute(sql, tuple(params) or None)
                return list(cur.fetchall())
        except pymysql.err.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: pymysql.err.Error) -> EtlguardError:
        if exc.args and exc.args[0] in _DENIED:
            return TargetError(
                f"the database user was refused: {_message(exc)}; grant what docs/configuration.md lists"
            )
        if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
            if (exc.args and exc.args[0] in (2006, 2013, 0)) or isinstance(exc, pymysql.err.InterfaceError):
                self.conn = None  # the session is gone; so is every lock it held
                self._lock_lost = self._lock_lost or bool(self._locks)
                return ConnectionLost(f"lost the connection to {self.target.redacted}: {_message(exc)}")
        return DatabaseError(f"{self.name} error: {_message(exc)}")

    # -- discovery --------------------------------------------------------------------------
    def schema_exists(self, schema: str) -> bool:
        rows = self.query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [schema]
        )
        return any(r[0] == schema for r in rows)

    def list_schemas(self) -> list[str]:
        return [r[0] for r in self.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")]

    def list_tables(self, schema: str) -> list[str]:
        # information_schema compares case-insensitively; names on Linux are case-sensitive.
        rows = self.query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
            [schema],
        )
        return sorted(r[1] for r in rows if r[0] == schema)

    def existing(self, refs: Sequence[TableRef]) -> set[TableRef]:
        # a name the server cannot hold names no table, and would fail the batched lookup
        # (utf8mb3 against a 4-byte parameter): left out, for require_table to refuse by name
        refs = [r for r in refs if _holdable(r.schema) and _holdable(r.name)]
        if not refs:
            return set()
        rows = self.query(
            _each_table(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE IN "
                "('BASE TABLE', 'SYSTEM VERSIONED') AND",
                len(refs),
            ),
            _table_params(refs),
        )
        found = {TableRef(str(r[0]), str(r[1])) for r in rows}  # exact case: the query's is not
        return {r for r in refs if r in found}

    def views_among(self, refs: Sequence[TableRef]) -> set[TableRef]:
        if not refs:
            return set()
        rows = self.query(
            _each_table(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'VIEW' AND",
                len(refs),
            ),
            _table_params(refs),
        )
        found = {TableRef(str(r[0]), str(r[1])) for r in rows}
        return {r for r in refs if r in found}

    def check_identifier(self, name: str) -> None:
        super().check_identifier(name)
        if not _holdable(name):  # identifiers are utf8mb3: no emoji, no astral plane
            raise IdentifierError(
                f"name {name!r} has a character outside Unicode's basic plane, which {self.name} "
                "cannot hold in a table or schema name; rename it"
            )

    def object_kind(self, ref: TableRef) -> str | None:
        rows = self.query(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            [ref.schema, ref.name],
        )
        kinds = {"VIEW": "a view", "SYSTEM VERSIONED": "a system-versioned table", "SEQUENCE": "a sequence"}
        kind = [r[1] for r in rows if r[0] == ref.name]
        return kinds.get(str(kind[0]), str(kind[0]).lower()) if kind else None

    def columns(self, ref: TableRef) -> list[Column]:
        rows = self.query(
            "SELECT TABLE_NAME, COLUMN_NAME, GENERATION_EXPRESSION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            [ref.schema, ref.name],
        )
        return [Column(r[1], bool(r[2])) for r in rows if r[0] == ref.name]

    def primary_key(self, ref: TableRef) -> list[str]:
        rows = self.query(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            [ref.schema, ref.name],
        )
        return [r[1] for r in rows if r[0] == ref.name]

    def show_create(self, ref: TableRef) -> str:
        return str(self.query(f"SHOW CREATE TABLE {self.qualify(ref)}")[0][1])

    def structure(self, ref: TableRef) -> str:
        ddl = _AUTO_INC.sub("", self.show_create(ref))
        return json.dumps([_HEADER.sub("CREATE TABLE ⟨T⟩ (", ddl, count=1)])

    def auto_increment(self, ref: TableRef) -> int | None:
        m = _AUTO_INC.search(self.show_create(ref))
        return int(m.group(1)) if m else None

    def counter_ceiling(self, structure: str) -> int | None:
        try:
            ddl = str(json.loads(structure)[0])
        except (ValueError, IndexError, TypeError):
            return None
        m = _AUTO_INC_COLUMN.search(ddl)
        if m is None:
            return None
        bits = _INT_BITS[m.group(1).lower()]
        return (1 << bits) - 1 if m.group(2) else (1 << (bits - 1)) - 1

    def structure_and_counter(self, ref: TableRef) -> tuple[str, int | None]:
        ddl = self.show_create(ref)
        m = _AUTO_INC.search(ddl)
        return json.dumps([_HEADER.sub("CREATE TABLE ⟨T⟩ (", _AUTO_INC.sub("", ddl), count=1)]), (
            int(m.group(1)) if m else None
        )

    def auto_increments(self, refs: Sequence[TableRef]) -> dict[TableRef, int | None]:
        """MariaDB: information_schema.TABLES in one query (it asks InnoDB for the live
        counter). MySQL 8 caches that column (information_schema_stats_expiry), so there each
        table's SHOW CREATE TABLE is read."""
        if not refs or not self._is_mariadb():
            return super().auto_increments(refs)
        rows = self.query(
            _each_table(
                "SELECT TABLE_SCHEMA, TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE",
                len(refs),
            ),
            _table_params(refs),
        )
        found = {TableRef(str(r[0]), str(r[1])): (None if r[2] is None else int(r[2])) for r in rows}
        return {r: found.get(r) for r in refs}

    def raise_counter(self, table: TableRef, at_least_as: TableRef, margin: int = 0) -> int | None:
        want, have = self.auto_increment(at_least_as), self.auto_increment(table)
        return self._raise_to(table, have, want, margin)

    def raise_counters(self, pairs: Sequence[tuple[TableRef, TableRef]], margin: int = 0) -> None:
        counters = self.auto_increments(list(dict.fromkeys(r for pair in pairs for r in pair)))
        for table, ahead_of in pairs:
            self._raise_to(table, counters[table], counters[ahead_of], margin)

    def _raise_to(self, table: TableRef, have: int | None, want: int | None, margin: int) -> int | None:
        if want is None or have is None or want <= have:
            return None
        want += margin
        self.execute(f"ALTER TABLE {self.qualify(table)} AUTO_INCREMENT = {int(want)}")
        return want

    def activity_source(self) -> str | None:
        if self._statement_history():
            return "performance_schema.events_statements_history (recent statements of every session)"
        return (
            "information_schema.PROCESSLIST (running statements only: turn on performance_schema and its "
            "events_statements_current and events_statements_history consumers to see finished ones)"
        )

    def _performance_schema(self) -> bool:
        """@@performance_schema, read once per adapter (it only changes with a server restart)."""
        if self._perf_schema is None:
            (on,) = self.query("SELECT @@performance_schema")[0]
            self._perf_schema = bool(on)
        return self._perf_schema

    def _statement_history(self) -> bool:
        if not self._performance_schema():
            return False
        # the history consumer records only what the `current` one does (MariaDB: both off by default)
        (enabled,) = self.query(
            "SELECT COUNT(*) FROM performance_schema.setup_consumers WHERE ENABLED = 'YES' AND NAME IN "
            "('events_statements_current', 'events_statements_history')"
        )[0]
        return int(enabled) == 2

    def activity(self) -> list[Activity]:
        rows = self.query(
            "SELECT ID, HOST, INFO FROM information_schema.PROCESSLIST "
            "WHERE INFO IS NOT NULL AND ID <> CONNECTION_ID()"
        )
        if self._history is None:
            self._history = self._statement_history()
        if self._history:
            rows += self.query(
                "SELECT t.PROCESSLIST_ID, p.HOST, h.SQL_TEXT FROM performance_schema.events_statements_history h "
                "JOIN performance_schema.threads t ON t.THREAD_ID = h.THREAD_ID "
                "JOIN information_schema.PROCESSLIST p ON p.ID = t.PROCESSLIST_ID "
                "WHERE h.SQL_TEXT IS NOT NULL AND t.PROCESSLIST_ID <> CONNECTION_ID()"
            )
        return [Activity(str(r[0]), _client(str(r[1] or "")), _text(r[2])) for r in rows]

    def swap_blockers_of(self, refs: Sequence[TableRef], triggers: bool = True) -> dict[TableRef, list[str]]:
        """One query for the triggers of all `refs` (unless `triggers` is False), one for their
        foreign keys; only a table that has either is looked at again, for the messages."""
        if not refs:
            return {}
        wanted = set(refs)
        named = []
        if triggers:
            rows = self.query(
                _each_table(
                    "SELECT EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE",
                    len(refs),
                    "EVENT_OBJECT_SCHEMA",
                    "EVENT_OBJECT_TABLE",
                ),
                _table_params(refs),
            )
            named = [TableRef(str(r[0]), str(r[1])) for r in rows]
        if self._may_have_foreign_keys(refs):
            # the incoming side cannot be looked up by table: this reads every table's constraints
            fks = self.query(
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME "
                "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
                + " OR ".join(["(CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s)"] * len(refs))
                + " OR "
                + " OR ".join(["(UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s)"] * len(refs)),
                _table_params(refs) * 2,
            )
            named += [TableRef(str(r[i]), str(r[i + 1])) for r in fks for i in (0, 2)]
        found = {r: self.swap_blockers(r) for r in dict.fromkeys(named) if r in wanted}
        return {r: b for r, b in found.items() if b}

    def _may_have_foreign_keys(self, refs: Sequence[TableRef]) -> bool:
        """False only when InnoDB's dictionary (in memory, one lookup) shows no foreign key from
        or to any of `refs`: then information_schema's REFERENTIAL_CONSTRAINTS, which reads every
        table of the server, is not needed. Names are compared in lower case (a false match only
        costs the full read), and a name the dictionary would encode, or no PROCESS privilege,
        means asking the full way. Foreign keys exist only on InnoDB tables."""
        if not all(_PLAIN_NAME.fullmatch(r.schema) and _PLAIN_NAME.fullmatch(r.name) for r in refs):
            return True
        names = [f"{r.schema}/{r.name}".lower() for r in refs]
        marks = ", ".join(["%s"] * len(names))
        try:
            (found,) = self.query(
                "SELECT COUNT(*) FROM information_schema.INNODB_SYS_FOREIGN "
                f"WHERE LOWER(FOR_NAME) IN ({marks}) OR LOWER(REF_NAME) IN ({marks})",
                names * 2,
            )[0]
        except EtlguardError:
            return True
        return int(found) > 0

    def swap_blockers(self, ref: TableRef) -> list[str]:
        triggers = self.query(
            "SELECT TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS "
            "WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s",
            [ref.schema, ref.name],
        )
        fks = self.query(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME "
            "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
            "(CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s) OR "
            "(UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s)",
            [ref.schema, ref.name, ref.schema, ref.name],
        )
        out = [
            f"trigger {TableRef(s, n)} (remove it with DROP TRIGGER {self.qualify(TableRef(s, n))})"
            for s, n in triggers
        ]
        for schema, table, name, parent in fks:
            child = TableRef(str(schema), str(table))
            where = f"from {child} into {ref}" if table != ref.name else f"from {ref} to {parent}"
            out.append(
                f"foreign key {name} {where} (remove it with ALTER TABLE {self.qualify(child)} "
                f"DROP FOREIGN KEY {self.quote(str(name))})"
            )
        return out

    def unsupported_reason(self, ref: TableRef) -> str | None:
        (versioned,) = self.query(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "AND TABLE_TYPE = 'SYSTEM VERSIONED'",
            [ref.schema, ref.name],
        )[0]
        if versioned:
            return (
                "it is system-versioned (WITH SYSTEM VERSIONING): a copy cannot keep its history or "
                "row_start/row_end values; protect it by another means and name the other tables "
                "instead of a glob that matches it"
            )
        (triggers,) = self.query(  # not a changed-rows capture's own (mysql_capture.trigger_names)
            "SELECT COUNT(*) FROM information_schema.TRIGGERS "
            "WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s AND TRIGGER_NAME NOT LIKE %s",
            [ref.schema, ref.name, r"\_etlguard\_t%"],
        )[0]
        if triggers:
            return "it has triggers, which CREATE TABLE ... LIKE does not copy"
        (fks,) = self.query(
            "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
            "(CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s) OR "
            "(UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s)",
            [ref.schema, ref.name, ref.schema, ref.name],
        )[0]
        if fks:
            return "it has foreign keys, which would follow a renamed table rather than its name"
        return None

    def missing_privileges(self, required: dict[str, set[str]]) -> list[tuple[str, str]]:
        """Read the user's global and schema-level grants from information_schema (which shows a
        user its own), add those of its enabled roles, and report what `required` lacks."""
        user, _, host = str(self.query("SELECT CURRENT_USER()")[0][0]).rpartition("@")
        grantee = f"'{user}'@'{host}'"
        held_global = {
            r[0]
            for r in self.query(
                "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s", [grantee]
            )
        }
        by_pattern: dict[str, set[str]] = {}
        for pattern, priv in self.query(
            "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = %s",
            [grantee],
        ):
            by_pattern.setdefault(pattern, set()).add(priv)
        for pattern, privs in self._role_grants():
            if pattern == "*":
                held_global |= privs
            else:
                by_pattern.setdefault(pattern, set()).update(privs)
        missing = []
        for schema, privs in sorted(required.items()):
            held = set(held_global)
            for pattern, granted in by_pattern.items():
                if _grant_pattern(pattern).fullmatch(schema):
                    held |= granted
            missing += [(schema, p) for p in sorted(privs - held)]
        return missing

    def server_now(self) -> Any:
        return self.query("SELECT UTC_TIMESTAMP(6)")[0][0]

    def _role_grants(self) -> list[tuple[str, set[str]]]:
        """(schema pattern or '*', privileges) granted through the session's enabled roles
        (default roles included, nested roles too): information_schema does not list them.
        MariaDB's SHOW GRANTS includes the enabled roles' grants; MySQL 8 needs USING."""
        try:
            roles = [r[0] for r in self.query("SELECT ROLE_NAME FROM information_schema.ENABLED_ROLES")]
        except EtlguardError:
            return []
        if not roles:
            return []
        lines = [r[0] for r in self.query("SHOW GRANTS")]
        for role in roles:
            with contextlib.suppress(EtlguardError):
                lines += [r[0] for r in self.query(f"SHOW GRANTS FOR {self.quote(role)}")]
        return [g for g in (_parse_grant(line) for line in lines) if g is not None]

    def size_bytes(self, ref: TableRef) -> int:
        rows = self.query(
            "SELECT COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            [ref.schema, ref.name],
        )
        return int(rows[0][0]) if rows else 0

    def copy_session(self) -> str | None:
        return None if self.session_id is None else str(self.session_id)

    def progress_monitor(self) -> Adapter:
        monitor = super().progress_monitor()
        if isinstance(monitor, MySQLAdapter):
            monitor._copying = self._copying  # which session copies which table, as it starts
        return monitor

    def copy_estimate(self, ref: TableRef) -> tuple[int | None, int | None]:
        rows = self.query(
            "SELECT TABLE_ROWS, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            [ref.schema, ref.name],
        )
        if not rows:
            return None, None
        return (None if rows[0][0] is None else int(rows[0][0])), int(rows[0][1])

    def copy_progress(self, session: str, ref: TableRef, rows_estimate: int | None) -> int | None:
        """The copy is one INSERT ... SELECT on one of the copy's own sessions (`_copy_pool`),
        the one `_copying` names. Into an empty table outside LOCK TABLES, MariaDB (10.6+)
        inserts in bulk and its transaction counts no rows, but InnoDB's row count of the copy
        rises as rows go in (a statistic: a background recount can move it off by a few, so it
        is held to the source's estimate); MySQL counts the rows in the transaction."""
        if ref not in self._copying:
            return None  # its copy has not started
        copier, dest = self._copying[ref]
        if self._is_mariadb():
            rows = self.query(
                "SELECT NUM_ROWS FROM information_schema.INNODB_SYS_TABLESTATS WHERE NAME = %s",
                [f"{dest.schema}/{dest.name}"],
            )
            if rows:
                return min(int(rows[0][0]), rows_estimate) if rows_estimate else int(rows[0][0])
        rows = self.query(
            "SELECT trx_rows_modified FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s",
            [int(copier)],
        )
        return int(rows[0][0]) if rows else None

    # -- data -------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        if not self.schema_exists(schema):
            self.execute(f"CREATE DATABASE IF NOT EXISTS {self.quote(schema)}")

    def copy_tables(
        self, copies: Sequence[Copy], progress: Progress | None = None, consistency: str = CONSISTENCY_SET
    ) -> list[CopyResult]:
        """CREATE TABLE ... LIKE, its secondary indexes dropped while it is empty; the rows in
        one INSERT ... SELECT each; then the indexes built again, sorted, in one ALTER TABLE
        (InnoDB builds an index from sorted rows several times faster than it maintains one
        row by row). The copy's structure must then equal its source's, or nothing is kept.
        Rows, index builds and fingerprints run for `copy_connections` tables at once, each on
        a connection of its own (`_copy_pool`), the largest tables first.

        `set`: every source under LOCK TABLES ... READ, taken on this session before any row
        is read and held until the last copy statement has ended, so every copy reads the same
        instant (the copying sessions read through it; writers wait); the copy's CHECKSUM TABLE
        is compared with its source's under that lock. `table`: each INSERT ... SELECT is one
        statement under READ COMMITTED, a consistent non-locking read of its source, so writers
        are never blocked; no second read of the source can see the same state, so the copy is
        verified by its row count and structure, and the catalog records the copy's own
        fingerprint as always. With `snapshot.physical`, the tables it chose are copied by
        their tablespace files instead (`_copy_files`), before the row copies."""
        deferred: dict[TableRef, list[str]] = {}
        files: list[_physical.Exported] = []
        for c in copies:  # CREATE TABLE commits implicitly, so it cannot sit under LOCK TABLES
            self.execute(f"CREATE TABLE {self.qualify(c.dest)} LIKE {self.qualify(c.source)}")
            if self._physical is not None and c.source in self._physical.tables:
                files.append(_physical.discard_tablespace(self, self._physical, c))
                deferred[c.dest] = []
            else:
                deferred[c.dest] = self._drop_secondary_indexes(c.dest)
        fault("copy.after_create")
        order = sorted(copies, key=lambda c: -self.size_bytes(c.source))  # the longest first
        with self._copy_pool(len(copies)) as pool:
            if consistency == CONSISTENCY_TABLE:
                imported = self._copy_files(pool, files, together=False)
                by_rows = [c for c in order if c.dest not in imported]
                done = pool.map(MySQLAdapter._copy_each, by_rows)
            else:
                with self.held_still([c.source for c in copies]):
                    imported = self._copy_files(pool, files, together=True)
                    by_rows = [c for c in order if c.dest not in imported]
                    done = pool.map(MySQLAdapter._copy_locked, by_rows)
            fault("copy.after_rows")
            checked = pool.map(_physical.verify_copy, list(imported.values()))
            by_file = {d: (r.source.rows, r) for d, r in zip(imported, checked, strict=True)}
            by_dest = {**by_file, **{c.dest: d for c, d in zip(by_rows, done, strict=True)}}
            copied = [by_dest[c.dest] for c in copies]
            pool.map(lambda db, c: db._finish_copy(c, deferred[c.dest], by_dest[c.dest][1].structure), order)
            # Only etlguard writes to the copies: their fingerprints (what the catalog records)
            # are taken after writers are let go, each with its seal (see sealed_checksums).
            sealed = self.sealed_checksums([(c.dest, c.algorithm) for c in copies], pool)
        results = []
        for c, (rows, check), (fingerprint, seal) in zip(copies, copied, sealed, strict=True):
            same = fingerprint.rows == rows and (consistency != CONSISTENCY_TABLE or c.dest in by_file)
            dest = check.dest if same else counted(fingerprint.rows)
            results.append(replace(check, dest=dest, dest_fingerprint=fingerprint, seal=seal))
            if progress:
                progress(c.source, rows)
        return results

    def use_physical_copies(
        self, datadir: str, snapshot_schema: str, tables: Sequence[TableRef]
    ) -> dict[TableRef, str]:
        self._physical = _physical.choose(self, datadir, snapshot_schema, tables)
        return dict(self._physical.logical)

    def physical_report(self) -> tuple[list[TableRef], dict[TableRef, str]]:
        if self._physical is None:
            return [], {}
        return list(self._physical.copied), dict(self._physical.logical)

    def _copy_files(
        self, pool: Pool[MySQLAdapter], files: list[_physical.Exported], together: bool
    ) -> dict[TableRef, _physical.Exported]:
        """The physical copies (mysql_physical.py), on the pool's first session: exported all
        at once (`together`, while this session holds every source still, so that a refused
        import is copied by rows at the same instant) or each on its own, then imported; each
        copy's check is taken later, with no lock (`verify_copy`). A copy the server will not
        import is made again, empty, and left to the row copy; the reason is kept for the
        run's report."""
        if not files or self._physical is None:
            return {}
        session, out = pool.workers[0], {}
        for group in [files] if together else [[e] for e in files]:
            _physical.export(session, self._physical, group)
            for e in group:
                refused = _physical.import_copy(session, e)
                if refused:
                    self._physical.logical[e.copy.source] = refused
                    _physical.redo_as_rows(session, e.copy)
                    continue
                self._physical.copied.append(e.copy.source)
                out[e.copy.dest] = e
                fault("copy.one_table_copied")
        return out

    @contextlib.contextmanager
    def _copy_pool(self, tables: int) -> Iterator[Pool[MySQLAdapter]]:
        """Up to `copy_connections` sessions of their own, set up like this one (READ
        COMMITTED, pinned text settings, lock_wait_timeout), for the length of one copy call.
        Ctrl-C's `cancel_own_statement` cancels their statements too; the monitor of a
        watched copy finds each table's copying session through `_copying`."""
        workers: list[MySQLAdapter] = []
        try:
            for _ in range(max(1, min(self.copy_connections, tables))):
                worker = type(self)(self.target, self.lock_wait_seconds)
                worker._copying = self._copying
                workers.append(worker)
                worker.connect()
            self._pool = Pool(workers, self._cancel_worker)
            yield self._pool
        finally:
            self._pool = None
            self._copying.clear()
            for worker in workers:
                worker.close()

    def _cancel_worker(self, worker: MySQLAdapter) -> None:
        if worker.session_id is not None:
            self._side_statement(f"KILL QUERY {int(worker.session_id)}")

    def _finish_copy(self, c: Copy, clauses: list[str], structure: str) -> None:
        """The secondary indexes added back, then the copy's structure proven its source's."""
        if clauses:
            self.execute(f"ALTER TABLE {self.qualify(c.dest)} " + ", ".join(clauses))
        if self.structure(c.dest) != structure:
            raise DatabaseError(
                f"the copy of {c.source} came out with a different structure than its source "
                "(was the table altered during the snapshot?); nothing was kept"
            )

    def _drop_secondary_indexes(self, dest: TableRef) -> list[str]:
        """Drop the secondary B-tree indexes of an empty fresh copy; return the ALTER clauses
        that add them back, as SHOW CREATE TABLE wrote them and in its order. Only for a table
        with a primary key (else InnoDB clusters on the first unique key), and only when every
        index the server lists was read from the DDL text."""
        ddl = self.show_create(dest)
        if "\n  PRIMARY KEY (" not in ddl:
            return []
        found = [m.group(1, 2) for m in _SECONDARY.finditer(ddl)]
        (listed,) = self.query(
            "SELECT COUNT(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME <> 'PRIMARY'",
            [dest.schema, dest.name],
        )[0]
        if not found or len(found) != int(listed) or any("USING HASH" in line for line, _ in found):
            return []
        drops = ", ".join(f"DROP INDEX {name}" for _, name in found)
        self.execute(f"ALTER TABLE {self.qualify(dest)} {drops}")
        return [f"ADD {line}" for line, _ in found]

    def _copy_rows(self, c: Copy) -> int:
        if self.session_id is not None:
            self._copying[c.source] = (str(self.session_id), c.dest)
        cols = ", ".join(self.quote(col.name) for col in self.columns(c.source) if not col.generated)
        return self.execute(
            f"INSERT INTO {self.qualify(c.dest)} ({cols}) SELECT {cols} FROM {self.qualify(c.source)}"
        )

    def _set_counter(self, c: Copy) -> int | None:
        counter = c.auto_increment or self.auto_increment(c.source)
        if counter:
            self.execute(f"ALTER TABLE {self.qualify(c.dest)} AUTO_INCREMENT = {int(counter)}")
        return counter

    def _copy_each(self, c: Copy) -> tuple[int, CopyResult]:
        """One table from its own consistent read; the counter is read after the copy, so it is
        past every id the copy holds. The source's structure is read before and after: an
        ALTER between the CREATE ... LIKE and the copy could have converted values."""
        structure = self.structure(c.source)
        rows = self._copy_rows(c)
        counter = self._set_counter(c)
        if self.structure(c.source) != structure:
            raise DatabaseError(f"{c.source} was altered during its copy; nothing was kept")
        read = counted(rows)
        fault("copy.one_table_copied")
        return rows, CopyResult(read, read, structure, counter, self.size_bytes(c.source))

    def _copy_locked(self, c: Copy) -> tuple[int, CopyResult]:
        """The rows, and the engine checksums of source and copy at the lock's instant. The
        INSERT's row count is the source's (it read them all, under the lock), so neither
        table is counted again; the copy's fingerprint, taken after the lock, must agree."""
        rows = self._copy_rows(c)
        counter = self._set_counter(c)
        source, dest = self._engine_checksum(c.source, rows), self._engine_checksum(c.dest, rows)
        if source != dest:  # CHECKSUM TABLE reads stored bytes, not only values: ask the values
            source, dest = self.checksum(c.source, c.algorithm), self.checksum(c.dest, c.algorithm)
        result = CopyResult(source, dest, self.structure(c.source), counter, self.size_bytes(c.source))
        fault("copy.one_table_copied")
        return rows, result

    def _engine_checksum(self, ref: TableRef, rows: int) -> Checksum:
        (_, crc) = self.query(f"CHECKSUM TABLE {self.qualify(ref)}")[0]
        if crc is None:
            raise DatabaseError(f"CHECKSUM TABLE gave no checksum for {ref}")
        return Checksum(rows, str(int(crc)), COPY_CHECK)

    def copy_check(self, ref: TableRef) -> Checksum:
        """CHECKSUM TABLE: a CRC over the stored rows, 5-10x cheaper than the fingerprint. Good
        enough to show that a fresh copy (CREATE TABLE ... LIKE: same columns, row format) holds
        what its source held at the same instant; it proves nothing against a forger, so the
        catalog records the fingerprint instead. It covers stored bytes that are not values
        (a STORED generated column's bytes when it is NULL differ between a table and its
        copy), so a mismatch is settled by comparing fingerprints."""
        try:
            with self._cursor() as cur:
                return _count_and_checksum(cur, self.qualify(ref), ref, read_view=self._read_views)
        except pymysql.err.Error as exc:
            raise self._translate(exc) from exc

    def change_check(self, ref: TableRef) -> Checksum | None:
        """The row count and CHECKSUM TABLE (a CRC of every stored row, combined over the
        table): any change of a row's bytes changes it, short of a 1 in 2^32 collision, and it
        runs about 10x faster than the fingerprint. The same value the copy compares, so a
        snapshot records its copy's for free (`copy_check_detects_change`)."""
        return self.copy_check(ref)

    def change_checks(self, refs: Sequence[TableRef]) -> list[Checksum | None]:
        """The first table on this session, each other one at the same time on a connection of
        its own: CHECKSUM TABLE reads one table on one core, so a live table and its snapshot
        table take the time of one. The caller's LOCK TABLES ... READ lets these reads through
        and keeps writers out."""
        if len(refs) < 2:
            return [self.change_check(r) for r in refs]
        with ThreadPoolExecutor(max_workers=min(len(refs) - 1, 3)) as pool:
            others = [pool.submit(self._side_change_check, r) for r in refs[1:]]
            first = self.change_check(refs[0])
            return [first, *(f.result() for f in others)]

    def _side_change_check(self, ref: TableRef) -> Checksum:
        """On a connection of its own, always from one consistent snapshot: under the caller's
        LOCK TABLES that changes nothing, without it the count and the CRC are of one state."""
        side = with_retries(self.target, self._open)
        try:
            with side.cursor() as cur:
                return _count_and_checksum(cur, self.qualify(ref), ref, read_view=True)
        except pymysql.err.Error as exc:
            raise self._translate(exc) from exc
        finally:
            side.close()

    @contextlib.contextmanager
    def held_still(self, refs: Sequence[TableRef], blocking: bool = True) -> Iterator[None]:
        """LOCK TABLES ... READ: writers wait for the length of the checks. Not `blocking`: no
        lock; each change check is then read from a consistent snapshot of its own instead
        (`_count_and_checksum`), and writers never wait."""
        if not blocking:
            self._read_views = True
            try:
                yield
            finally:
                self._read_views = False
            return
        self.execute("LOCK TABLES " + ", ".join(f"{self.qualify(r)} READ" for r in dict.fromkeys(refs)))
        try:
            yield
        finally:
            with contextlib.suppress(EtlguardError):
                if self.conn is not None:
                    self.execute("UNLOCK TABLES")

    def fingerprint(self, ref: TableRef) -> Checksum:
        """SHA-256 of each row's QUOTE()d values, bytes as stored (no collation, trailing
        spaces kept; QUOTE escapes quotes and gives NULL unquoted, so the encoding is
        injective); FLOAT widened to DOUBLE, whose text is exact. 128 bits of it, as two sums."""
        values = ", ".join(f"QUOTE({self._exact_text(name, kind)})" for name, kind in self._column_kinds(ref))
        row_hash = f"CAST(LEFT(SHA2(CONCAT({values}), 256), 32) AS BINARY)"
        half = "SUM(CAST(CONV(SUBSTRING(h, {0}, 16), 16, 10) AS UNSIGNED))"
        rows, high, low = self.query(
            f"SELECT COUNT(*), {half.format(1)}, {half.format(17)} FROM "
            f"(SELECT {row_hash} AS h FROM {self.qualify(ref)} {_ALL_ROWS}) AS fingerprint_rows"
        )[0]
        return fingerprint_of(rows, high, low)

    def sealed_checksums(
        self, tables: Sequence[tuple[TableRef, str | None]], pool: Pool[MySQLAdapter] | None = None
    ) -> list[tuple[Checksum, str | None]]:
        """The fingerprints taken under one LOCK TABLES ... READ of them all (nobody writes
        between a fingerprint and its seal; these are snapshot tables, which only etlguard
        uses, so the lock holds nobody up), then the seals (`_seals`). With a `pool`, its
        sessions take the fingerprints side by side, reading through this session's lock."""
        if not tables:
            return []
        refs = [ref for ref, _ in tables]
        self.execute("LOCK TABLES " + ", ".join(f"{self.qualify(ref)} READ" for ref in refs))
        try:
            cheap = all(algorithm == COPY_CHECK for _, algorithm in tables)
            if cheap:  # side by side, see change_checks
                sums = [c for c in self.change_checks(refs) if c is not None]
            elif pool is None:
                sums = [self.checksum(ref, algorithm) for ref, algorithm in tables]
            else:
                sums = pool.map(lambda db, t: db.checksum(*t), tables)
            # a cheap check is cheap to take again: no waiting out the second for its seal
            seals = self._seals(refs, wait=not cheap)
        finally:
            with contextlib.suppress(EtlguardError):
                self.execute("UNLOCK TABLES")
        return list(zip(sums, seals, strict=True))

    def _seals(self, refs: Sequence[TableRef], wait: bool = True) -> list[str | None]:
        """Seals of read-locked tables. A table last written in the current second (a small
        copy) could be changed within that second after the lock goes without its UPDATE_TIME
        moving, so the lock is first held into the next second (at most once per call, and
        only when copy and fingerprints took less than a second). Without `wait` such a table
        gets no seal (`_seal`), and is checked again in full when it is next needed."""
        if not self._is_mariadb():
            return [None] * len(refs)
        facts = self._seal_facts_of(refs)
        if wait and any(f["updated"] is not None and f["updated"] >= f["now"] for f in facts.values()):
            (now,) = self.query("SELECT NOW(6)")[0]
            time.sleep(1.02 - now.microsecond / 1e6)
            facts = self._seal_facts_of(refs)
        return [_seal(facts.get(ref)) for ref in refs]

    def sealed_copy_checks(self, refs: Sequence[TableRef]) -> list[tuple[Checksum, str | None]]:
        """Each table's facts, then its count and CHECKSUM TABLE, then its facts again: a
        commit to the table after the first read sets its UPDATE_TIME to that second or later,
        past a first UPDATE_TIME that `_seal` requires to be in an earlier second, so equal
        facts on both sides mean that the checksum is of the sealed state; else no seal."""
        if not refs or not self._is_mariadb():
            return super().sealed_copy_checks(refs)
        before = self._seal_facts_of(refs)
        sums = [self.copy_check(ref) for ref in refs]
        after = self._seal_facts_of(refs)
        return [
            (cs, _seal(after.get(ref)) if _same_facts(before.get(ref), after.get(ref)) else None)
            for ref, cs in zip(refs, sums, strict=True)
        ]

    def resealed(self, sealed: Sequence[tuple[TableRef, str]]) -> list[str | None]:
        """RENAME TABLE keeps a table's TABLE_ID, space and UPDATE_TIME, across schemas too,
        and sets CREATE_TIME to the second of the rename (checked on MariaDB 10.11), so all
        but CREATE_TIME are compared; an ALTER that leaves the first three alone changes the
        structure, which the caller compares. The new seal is of the same facts read."""
        if not sealed or not self._is_mariadb():
            return super().resealed(sealed)
        facts = self._seal_facts_of([ref for ref, _ in sealed])
        return [
            _seal(facts.get(ref)) if _seal_matches(facts.get(ref), seal, _RENAMED) else None
            for ref, seal in sealed
        ]

    def seal_holds(self, ref: TableRef, seal: str) -> bool:
        return self.seals_hold([(ref, seal)])[0]

    def seals_hold(self, sealed: Sequence[tuple[TableRef, str]]) -> list[bool]:
        """Every seal against its table's facts, read for all tables in one query."""
        if not sealed or not self._is_mariadb():
            return [False] * len(sealed)
        facts = self._seal_facts_of([ref for ref, _ in sealed])
        return [_seal_matches(facts.get(ref), seal) for ref, seal in sealed]

    def same_storage(self, ref: TableRef, seal: str) -> bool | None:
        """The InnoDB TABLE_ID and tablespace stay with a table through RENAME TABLE (a
        rename moves the table, it does not rebuild it) and are never reused while the server
        runs: equal ones mean that `ref` is the table the seal was taken of. None when the
        facts are out of reach (a name the dictionary encodes, no PROCESS privilege, a restart)."""
        try:
            sealed = json.loads(seal)
        except ValueError:
            return None
        facts = self._seal_facts(ref) if self._is_mariadb() else None
        if facts is None or abs(facts["boot"] - sealed.get("boot", -9)) > 1:
            return None
        return all(facts[k] == sealed.get(k) for k in ("table_id", "space"))

    def _seal_facts(self, ref: TableRef) -> dict[str, Any] | None:
        return self._seal_facts_of([ref]).get(ref)

    def _seal_facts_of(self, refs: Sequence[TableRef]) -> dict[TableRef, dict[str, Any]]:
        """Each table's InnoDB TABLE_ID and space, CREATE_TIME and UPDATE_TIME (seconds since
        the epoch), the server's boot time and uptime, and now. A table is left out if any is
        out of reach (no PROCESS privilege for INNODB_SYS_TABLES, not InnoDB, a name the
        dictionary encodes)."""
        refs = list(dict.fromkeys(refs))
        try:
            rows = self.query(
                # one lookup per table (UNION ALL): an OR of several would make the server open
                # every table it has to read their times
                _each_table(
                    "SELECT t.TABLE_SCHEMA, t.TABLE_NAME, s.TABLE_ID, s.SPACE, UNIX_TIMESTAMP(t.CREATE_TIME), "
                    "UNIX_TIMESTAMP(t.UPDATE_TIME), NULL, NULL FROM information_schema.TABLES t "
                    "JOIN information_schema.INNODB_SYS_TABLES s ON s.NAME = CONCAT(t.TABLE_SCHEMA, '/', t.TABLE_NAME) "
                    "WHERE t.ENGINE = 'InnoDB' AND",
                    len(refs),
                    "t.TABLE_SCHEMA",
                    "t.TABLE_NAME",
                )
                # the clock and the uptime once, in a part of their own: joined into each table's
                # part, GLOBAL_STATUS was read in full once per table (half of the query's time)
                + " UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, UNIX_TIMESTAMP(NOW()), VARIABLE_VALUE "
                "FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'",
                _table_params(refs),
            )
        except EtlguardError:
            return {}
        clock = [r[6:] for r in rows if r[0] is None]
        if len(clock) != 1:
            return {}
        by_table: dict[TableRef, list[tuple[Any, ...]]] = {}
        for r in rows:
            if r[0] is not None:
                by_table.setdefault(TableRef(str(r[0]), str(r[1])), []).append((*r[2:6], *clock[0]))
        return {
            ref: _facts(found[0])
            for ref, found in by_table.items()
            if ref in refs and len(found) == 1 and found[0][2] is not None
        }

    def _is_mariadb(self) -> bool:
        if self._mariadb is None:
            (version,) = self.query("SELECT VERSION()")[0]
            self._mariadb = "mariadb" in str(version).lower()
        return self._mariadb

    def _column_kinds(self, ref: TableRef) -> list[tuple[str, str]]:
        rows = self.query(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            [ref.schema, ref.name],
        )
        kinds = [(r[1], str(r[2]).lower()) for r in rows if r[0] == ref.name]
        if not kinds:
            raise DatabaseError(f"cannot fingerprint {ref}: the table does not exist")
        return kinds

    def _exact_text(self, name: str, kind: str) -> str:
        """A column's value as bytes that tell every stored value apart. A FLOAT prints 6
        digits (1234567 = 1234568); widened to DOUBLE it prints its exact shortest form."""
        column = self.quote(name)
        return f"CAST(CAST({column} AS DOUBLE) AS BINARY)" if kind == "float" else f"CAST({column} AS BINARY)"

    def legacy_checksum(self, ref: TableRef) -> Checksum:
        cols = [self.quote(c.name) for c in self.columns(ref)]
        values = ", ".join(f"CAST({c} AS BINARY)" for c in cols)
        flags = ", ".join(f"ISNULL({c})" for c in cols)
        # v1: separator-joined values (not injective), CRC32 per row, summed.
        row_hash = f"CRC32(CONCAT_WS('#', {values}, {flags}))"
        count, total = self.query(f"SELECT COUNT(*), COALESCE(SUM({row_hash}), 0) FROM {self.qualify(ref)}")[
            0
        ]
        return Checksum(int(count), str(int(total)), LEGACY_FINGERPRINT)

    def create_like(self, dest: TableRef, source: TableRef) -> None:
        self.execute(f"CREATE TABLE {self.qualify(dest)} LIKE {self.qualify(source)}")

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[None]:
        self.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            yield
        finally:
            with contextlib.suppress(EtlguardError):
                self.execute("COMMIT")

    def stream_rows(
        self, ref: TableRef, columns: Sequence[str], batch: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        cols = ", ".join(self.quote(c) for c in columns)
        self.connect()
        assert self.conn is not None
        try:
            with self.conn.cursor(pymysql.cursors.SSCursor) as cur:  # rows arrive as they are read
                cur.execute(f"SELECT {cols} FROM {self.qualify(ref)}")
                while rows := cur.fetchmany(batch):
                    yield list(rows)
        except pymysql.err.Error as exc:
            raise self._translate(exc) from exc

    def insert_rows(self, ref: TableRef, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        cols = ", ".join(self.quote(c) for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        try:
            with self._cursor() as cur:  # PyMySQL sends this as multi-row INSERTs
                cur.executemany(f"INSERT INTO {self.qualify(ref)} ({cols}) VALUES ({marks})", rows)
        except pymysql.err.Error as exc:
            raise self._translate(exc) from exc

    def swap(self, swaps: Sequence[Swap]) -> None:
        pairs = []
        for s in swaps:
            if s.displaced is not None:
                pairs.append(f"{self.qualify(s.live)} TO {self.qualify(s.displaced)}")
            if s.staging is not None:
                pairs.append(f"{self.qualify(s.staging)} TO {self.qualify(s.live)}")
        self.execute("RENAME TABLE " + ", ".join(pairs))

    # -- the target lock --------------------------------------------------------------------
    def lock(self, name: str, holder: str) -> None:
        self.connect()
        # the lock lives as long as this session: keep the session through the longest ETL
        self.execute("SET SESSION wait_timeout = 31536000, interactive_timeout = 31536000")
        self._take(name[:64])

    def lock_tables(self, tables: Sequence[TableRef], holder: str) -> None:
        for key in sorted({_table_lock_key(t) for t in tables}):
            self._take(key)

    def _take(self, key: str) -> None:
        (got,) = self.query("SELECT GET_LOCK(%s, 0)", [key])[0]
        if got != 1:
            (session,) = self.query("SELECT IS_USED_LOCK(%s)", [key])[0]
            raise LockHeld(self._describe_session(session))
        self._locks.append(key)

    def holds_lock(self) -> bool:
        if self._lock_lost or not self._locks or self.conn is None:
            return False
        proofs = ", ".join(["IS_USED_LOCK(%s) = CONNECTION_ID()"] * len(self._locks))
        try:
            row = self.query(f"SELECT {proofs}", self._locks)[0]
        except EtlguardError:
            return False
        return all(r == 1 for r in row)

    def cancel_own_statement(self) -> None:
        if self.session_id is not None:
            self._side_statement(f"KILL QUERY {int(self.session_id)}")
        pool = self._pool
        if pool is not None:  # the copying sessions of a copy in progress
            pool.cancel()

    def _side_statement(self, sql: str) -> None:
        """Run one statement on a second connection (to stop a statement of the first)."""
        t = self.target
        try:
            side = pymysql.connect(
                host=t.host,
                port=t.port or 3306,
                user=t.user,
                password=t.login_password(),
                connect_timeout=5,
                ssl=_ssl(t.option("ssl_ca")),
            )
            try:
                with side.cursor() as cur:
                    cur.execute(sql)
            finally:
                side.close()
        except pymysql.err.Error:
            pass

    def _describe_session(self, session: Any) -> str:
        rows = self.query(
            "SELECT USER, HOST, TIME, INFO FROM information_schema.PROCESSLIST WHERE ID = %s", [session]
        )
        if not rows:
            return f"connection {session}"
        user, host, seconds, _ = rows[0]
        return f"connection {session} ({user}@{host}, connected for {seconds}s)"

    def unlock(self) -> None:
        if self._locks and self.conn is not None and not self._lock_lost:
            self.query("SELECT RELEASE_ALL_LOCKS()")
        self._locks = []

    # -- other clients' sessions ------------------------------------------------------------
    def sessions_on(self, tables: Sequence[TableRef]) -> list[Session]:
        """Sessions whose running statement names a protected table, plus holders of its
        metadata locks where performance_schema is on (it is off by default on MariaDB)."""
        rows = self.query(
            "SELECT ID, USER, HOST, DB, TIME, INFO FROM information_schema.PROCESSLIST "
            "WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump')"
        )
        holders = self._metadata_lock_holders(tables)
        found = []
        for sid, user, host, db, seconds, info in rows:
            statement = info.decode() if isinstance(info, bytes) else (info or "")
            if int(sid) in holders or any(_statement_names(statement, db, t) for t in tables):
                found.append(Session(int(sid), str(user), str(host), int(seconds or 0), statement))
        return found

    def _metadata_lock_holders(self, tables: Sequence[TableRef]) -> set[int]:
        if not self._performance_schema():  # MariaDB's default: nothing to ask, skip the round trip
            return set()
        marks = " OR ".join(["(m.OBJECT_SCHEMA = %s AND m.OBJECT_NAME = %s)"] * len(tables))
        try:
            rows = self.query(
                "SELECT t.PROCESSLIST_ID FROM performance_schema.metadata_locks m JOIN "
                "performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID "
                f"WHERE t.PROCESSLIST_ID <> CONNECTION_ID() AND ({marks})",
                [v for t in tables for v in (t.schema, t.name)],
            )
        except EtlguardError:  # performance_schema disabled or not readable
            return set()
        return {int(r[0]) for r in rows if r[0] is not None}

    def cancel_session(self, session_id: int) -> None:
        with contextlib.suppress(EtlguardError):
            self.execute(f"KILL QUERY {int(session_id)}")

    def terminate_session(self, session_id: int) -> None:
        with contextlib.suppress(EtlguardError):
            self.execute(f"KILL {int(session_id)}")

    # -- guarded transactions and stored procedures (etlguard.transaction, etlguard.procedures)
    def set_statement_timeout(self, seconds: float) -> str:
        """Limit the run time of this session's statements; return what the limit covers.
        MariaDB's max_statement_time covers every statement; MySQL 8's max_execution_time
        covers read-only SELECT statements only, so it cannot stop a long UPDATE there."""
        (version,) = self.query("SELECT VERSION()")[0]
        if "mariadb" in str(version).lower():
            self.execute(f"SET SESSION max_statement_time = {float(seconds)!r}")
            return f"max_statement_time = {seconds:g} s (every statement)"
        millis = max(1, round(seconds * 1000))
        self.execute(f"SET SESSION max_execution_time = {millis}")
        return f"max_execution_time = {millis} ms (SELECT statements only: MySQL limits nothing else)"

    def safe_update_procedure(self, schema: str) -> list[str]:
        """DROP and CREATE of `run_safe_incremental_update` in `schema`: two statements, each
        sent whole (DELIMITER is a command of the mysql client, not of the server)."""
        name = f"{self.quote(schema)}.{self.quote(SAFE_UPDATE_PROCEDURE)}"
        return [f"DROP PROCEDURE IF EXISTS {name}", SAFE_UPDATE_BODY.replace("<NAME>", name, 1)]


class MariaDBAdapter(MySQLAdapter):
    name = "mariadb"


def _holdable(name: str) -> bool:
    """Whether an identifier fits MySQL's utf8mb3 (no character outside the basic plane)."""
    return all(ord(ch) <= 0xFFFF for ch in name)


def _seal(facts: dict[str, Any] | None) -> str | None:
    """MariaDB's record of an InnoDB table's identity and last change, as a seal.

    What it rests on (tests/test_fast_restore.py tampers in each of these ways):
    - every committed INSERT, UPDATE, DELETE, REPLACE, multi-table or XA change sets the
      table's UPDATE_TIME to the commit's second;
    - TRUNCATE, OPTIMIZE and every rebuilding ALTER give the table a new InnoDB TABLE_ID (and
      space); an ALTER that does not rebuild (an instant column, an index, the counter)
      rewrites the definition and so its CREATE_TIME; a table dropped and made again under
      the name has a new TABLE_ID.
    UPDATE_TIME lives in memory only: it is lost on a restart (the server's boot time is in
    the seal) and when the server evicts the table's definition (it then reads NULL). Any of
    those and `seal_holds` says no, and the snapshot is fingerprinted instead. A change in the
    second the seal was taken could leave UPDATE_TIME unchanged, so a table last written in
    that second gets no seal (`_seals` waits it out). MySQL 8 caches these columns
    (information_schema_stats_expiry), so seals are MariaDB's only."""
    if facts is None or facts["updated"] is None or facts["updated"] >= facts["now"]:
        return None
    if facts["uptime"] < 3:  # a restart must move the boot time by more than rounding
        return None
    kept = ("table_id", "space", "created", "updated", "boot")
    return json.dumps({k: facts[k] for k in kept}, sort_keys=True)


def _facts(row: Sequence[Any]) -> dict[str, Any]:
    """A seal's facts from (TABLE_ID, SPACE, created, updated, now, uptime)."""
    table_id, space, created, updated, now, uptime = row
    return {
        "table_id": int(table_id),
        "space": int(space),
        "created": int(created),
        "updated": None if updated is None else int(updated),
        "now": int(now),
        "uptime": int(uptime),
        "boot": int(now) - int(uptime),
    }


_SEALED = ("table_id", "space", "created", "updated")
_RENAMED = ("table_id", "space", "updated")  # what a RENAME keeps (see MySQLAdapter.resealed)


def _seal_matches(facts: dict[str, Any] | None, seal: str, keys: Sequence[str] = _SEALED) -> bool:
    """Whether a table's facts now are the ones sealed (same boot, table, space, times)."""
    try:
        sealed = json.loads(seal)
    except ValueError:
        return False
    if facts is None or facts["updated"] is None or abs(facts["boot"] - sealed.get("boot", -9)) > 1:
        return False
    return all(facts[k] == sealed.get(k) for k in keys)


def _same_facts(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """Both reads found the table, sealable, with the same identity, times and boot (now less
    uptime, which rounding may move by a second between two reads)."""
    if before is None or after is None or _seal(before) is None:
        return False
    return abs(before["boot"] - after["boot"]) <= 1 and all(before[k] == after[k] for k in _SEALED)


def _each_table(select: str, n: int, schema: str = "TABLE_SCHEMA", name: str = "TABLE_NAME") -> str:
    """`select` (ending in WHERE or AND) once per table, its (schema, name) as %s placeholders,
    joined by UNION ALL: one round trip, and each part an information_schema lookup of one
    table, where an OR of several pairs would make the server read every table it has."""
    return " UNION ALL ".join([f"{select} {schema} = %s AND {name} = %s"] * n)


# Names InnoDB's dictionary spells as given (others are encoded, e.g. '-' as '@002d').
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


def _table_params(refs: Sequence[TableRef]) -> list[str]:
    return [v for r in refs for v in (r.schema, r.name)]


def _count_and_checksum(cur: Any, table: str, ref: TableRef, read_view: bool) -> Checksum:
    """COUNT(*) and CHECKSUM TABLE of one table. With `read_view`, both inside one REPEATABLE
    READ transaction WITH CONSISTENT SNAPSHOT: CHECKSUM TABLE reads that snapshot like any
    plain read (measured on MariaDB 10.11), so they describe one state without a lock."""
    if read_view:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    try:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        (count,) = cur.fetchone()
        cur.execute(f"CHECKSUM TABLE {table}")
        (_, crc) = cur.fetchone()
    except BaseException:
        if read_view:
            with contextlib.suppress(pymysql.err.Error):
                cur.execute("ROLLBACK")
        raise
    if read_view:
        cur.execute("COMMIT")
    if crc is None:
        raise DatabaseError(f"CHECKSUM TABLE gave no checksum for {ref}")
    return Checksum(int(count), str(int(crc)), COPY_CHECK)


def _message(exc: BaseException) -> str:
    args: tuple[object, ...] = tuple(exc.args)
    if len(args) >= 2:
        return f"({args[0]}) {args[1]}"
    return str(exc) or type(exc).__name__


def _grant_pattern(pattern: str) -> re.Pattern[str]:
    """A schema-level grant's name pattern (`%` and `_` wildcards, `\\_` a literal) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out))


def _client(host: str) -> str:
    """PROCESSLIST's HOST is `host:port` for TCP clients and `localhost` for a local socket."""
    return host if ":" in host else ""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


_GRANT_LINE = re.compile(r"^GRANT (.+?) ON (\*|`(?:[^`]|``)*`|[^.\s`]+)\.\* TO ")
_ALL = {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "LOCK TABLES", "INDEX"}


def _parse_grant(line: str) -> tuple[str, set[str]] | None:
    """`GRANT SELECT, INSERT ON `db%`.* TO ...` as ('db%', {'SELECT', 'INSERT'})."""
    m = _GRANT_LINE.match(line)
    if m is None or m.group(1).startswith("`"):  # a role grant, not a privilege
        return None
    privs = {p.strip().upper() for p in m.group(1).split(",")}
    if "ALL PRIVILEGES" in privs or "ALL" in privs:
        privs |= _ALL
    where = m.group(2)
    pattern = where[1:-1].replace("``", "`") if where.startswith("`") else where
    return pattern, privs


def _table_lock_key(ref: TableRef) -> str:
    """A GET_LOCK name (64 characters at most) for one table of this server."""
    return "etlguard:table:" + hashlib.sha256(f"{ref.schema}\x00{ref.name}".encode()).hexdigest()[:40]


def _statement_names(statement: str, db: str | None, ref: TableRef) -> bool:
    """Does this statement text refer to the table? Bare names count in the table's schema."""
    text = statement.lower()
    if not text or ref.name.lower() not in text:
        return False
    return ref.schema.lower() in text or (db or "").lower() == ref.schema.lower()


def _tcp_keepalive(conn: Any) -> None:
    """TCP keepalives, so that a NAT or load balancer does not drop an idle lock session."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)


def _optional_int(value: str) -> int | None:
    return int(value) if value else None


def _ssl(ca: str) -> dict[str, str] | None:
    return {"ca": ca} if ca else None


# The guarded update of the design note's Layer 3, corrected: the note's `EXECUTE stmt INTO @var`
# is not MySQL, and its check let a NULL validation result commit. The validation runs as a
# prepared `SELECT (<validation>) INTO @etlguard_validation`. Errors inside the inner block are
# rolled back and re-raised as SQLSTATE 45000 with the original message; the validation's own
# SIGNAL sits outside that block so that it keeps its message. SQL SECURITY INVOKER: the
# procedure runs arbitrary SQL text, which must run with the caller's privileges, not the
# installer's. DDL cannot be protected: it commits implicitly before the validation runs.
SAFE_UPDATE_PROCEDURE = "run_safe_incremental_update"
SAFE_UPDATE_BODY = """CREATE PROCEDURE <NAME>(IN update_query LONGTEXT, IN validation_query LONGTEXT)
    MODIFIES SQL DATA
    SQL SECURITY INVOKER
    COMMENT 'etlguard: run update_query; commit only if validation_query returns a true value'
BEGIN
    DECLARE passed BOOLEAN DEFAULT FALSE;
    BEGIN
        DECLARE EXIT HANDLER FOR SQLEXCEPTION
        BEGIN
            DECLARE errno INT DEFAULT 0;
            DECLARE message TEXT DEFAULT '';
            GET DIAGNOSTICS CONDITION 1 errno = MYSQL_ERRNO, message = MESSAGE_TEXT;
            ROLLBACK;
            SET message = LEFT(CONCAT('rolled back: (', errno, ') ', message), 128);
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = message;
        END;
        START TRANSACTION;
        SET @etlguard_update = update_query;
        PREPARE etlguard_update FROM @etlguard_update;
        EXECUTE etlguard_update;
        DEALLOCATE PREPARE etlguard_update;
        SET @etlguard_validation = NULL;
        SET @etlguard_check = CONCAT('SELECT (', validation_query, CHAR(10), ') INTO @etlguard_validation');
        PREPARE etlguard_check FROM @etlguard_check;
        EXECUTE etlguard_check;
        DEALLOCATE PREPARE etlguard_check;
        SET passed = COALESCE(@etlguard_validation <> 0, FALSE);
    END;
    IF NOT passed THEN
        ROLLBACK;
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'validation failed, rolled back';
    END IF;
    COMMIT;
END"""

"""The database an Iceberg target keeps etlguard's catalog in, and the target lock on it.

A SQL catalog's own database holds etlguard's catalog beside pyiceberg's `iceberg_tables`, so a
restore moves the pointers and writes the journal in one transaction: on SQLite (a file, locked
with `flock` beside it) and on PostgreSQL (locked with an advisory lock held by the adapter's
session for as long as it is open). A Glue target keeps etlguard's catalog in a local SQLite file.
All the SQL that differs between the two lives here; the adapter writes portable SQL with `?`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import LockHeld, TargetError, TargetUnreachable
from ..target import Target
from .base import DatabaseError, psycopg_args

sqlite3.register_adapter(dt.datetime, lambda v: v.isoformat(" "))
sqlite3.register_converter("TIMESTAMP", lambda b: dt.datetime.fromisoformat(b.decode()))


class Store:
    """One connection to the catalog database: statements, the tables it holds, the lock."""

    paramstyle = "?"
    max_table_name = 255

    def __init__(self, target: Target) -> None:
        self.target = target

    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def portable(self, sql: str) -> str:
        """The adapter's own SQL, written with `?` placeholders, in this driver's style."""
        return sql

    def table_names(self) -> list[str]:
        raise NotImplementedError

    def table_columns(self, name: str) -> list[str]:
        raise NotImplementedError

    def sqlalchemy_uri(self) -> str:
        raise NotImplementedError

    def lock(self, holder: str) -> None:
        raise NotImplementedError

    def unlock(self) -> None:
        raise NotImplementedError

    def holds_lock(self) -> bool:
        raise NotImplementedError

    def keep_alive(self) -> None:
        """Nothing to keep by default."""


class SqliteStore(Store):
    """A SQLite file: pyiceberg's SQL catalog, or etlguard's own catalog for a Glue target."""

    def __init__(self, target: Target, create: bool = False) -> None:
        super().__init__(target)
        self.path = target.database
        self.create = create
        self.conn: sqlite3.Connection | None = None
        self._lock_file: int | None = None

    def connect(self) -> None:
        if not self.create and not Path(self.path).exists():
            raise TargetError(f"no Iceberg SQL catalog at {self.path}; create it or fix the target URL")
        if self.create and not Path(self.path).resolve().parent.is_dir():
            raise TargetError(
                f"no directory for etlguard's catalog file {self.path}; create it or fix the target URL"
            )
        try:
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, detect_types=sqlite3.PARSE_DECLTYPES, timeout=30
            )
        except (sqlite3.Error, OSError) as exc:
            raise TargetError(f"cannot open the Iceberg catalog database {self.path}: {exc}") from exc

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise TargetError("not connected to the Iceberg catalog")
        return self.conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._conn().execute(sql, list(params)).rowcount
        except sqlite3.Error as exc:
            raise DatabaseError(f"Iceberg catalog database: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self._conn().execute(sql, list(params)).fetchall()]
        except sqlite3.Error as exc:
            raise DatabaseError(f"Iceberg catalog database: {exc}") from exc

    def table_names(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def table_columns(self, name: str) -> list[str]:
        return [r[1] for r in self.query("SELECT * FROM pragma_table_info(?)", [name])]

    def sqlalchemy_uri(self) -> str:
        return f"sqlite:///{self.path}"

    # the target lock: a kernel file lock beside the database file
    def lock(self, holder: str) -> None:
        fd = os.open(f"{self.path}.etlguard.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = os.read(fd, 500).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeld(held_by) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{holder} (pid {os.getpid()} on {socket.gethostname()})".encode())
        self._lock_file = fd

    def unlock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                os.close(self._lock_file)
            self._lock_file = None

    def holds_lock(self) -> bool:
        """The flock dies only with our descriptor; it is ours while the file is the same one."""
        if self._lock_file is None:
            return False
        try:
            return os.fstat(self._lock_file).st_ino == os.stat(f"{self.path}.etlguard.lock").st_ino
        except OSError:
            return False


class PostgresStore(Store):
    """A PostgreSQL database holding pyiceberg's SQL catalog (psycopg 3, autocommit session)."""

    paramstyle = "%s"
    max_table_name = 63

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.conn: Any = None
        self._lock_conn: Any = None  # a session of its own: it lives from lock() to unlock()
        self._lock_key: int | None = None

    def connect(self) -> None:
        self.conn = self._open()

    def _open(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise TargetError(
                "a PostgreSQL Iceberg catalog needs psycopg: pip install 'etlguard[postgres]'"
            ) from None
        t = self.target
        try:
            return psycopg.connect(**psycopg_args(t))  # the same login, TLS and keepalives as a target
        except psycopg.OperationalError as exc:
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise TargetUnreachable(
                f"cannot reach the Iceberg catalog database {t.redacted}: {text}; check host, port and database"
            ) from exc

    def close(self) -> None:
        """The statement session; the lock's session lives on until unlock()."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    def _run(self, sql: str, params: Sequence[Any], conn: Any = None) -> Any:
        import psycopg

        conn = conn or self.conn
        if conn is None:
            raise TargetError("not connected to the Iceberg catalog")
        try:
            return conn.execute(sql, tuple(params) or None)
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseError(f"Iceberg catalog database: {first}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._run(sql, params)
        return int(cur.rowcount) if cur.rowcount is not None and cur.rowcount >= 0 else 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._run(sql, params).fetchall())

    def portable(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def table_names(self) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return [r[0] for r in rows]

    def table_columns(self, name: str) -> list[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s ORDER BY ordinal_position",
            [name],
        )
        return [r[0] for r in rows]

    def sqlalchemy_uri(self) -> str:
        t = self.target
        password = t.login_password()
        auth = quote(t.user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"postgresql+psycopg://{auth}@{t.host}:{t.port or 5432}/{quote(t.database or 'postgres', safe='')}"

    # the target lock: a session-level advisory lock, held by a session kept open for it
    def lock(self, holder: str) -> None:
        key = int.from_bytes(
            hashlib.sha256(f"etlguard-iceberg\x00{self.target.database}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        conn = self._lock_conn or self._open()
        for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            with contextlib.suppress(DatabaseError):  # idle_session_timeout is PostgreSQL 14+
                self._run(f"SET {setting} = 0", (), conn)
        self._run("SELECT set_config('application_name', %s, false)", [f"etlguard: {holder}"[:63]], conn)
        if not self._run("SELECT pg_try_advisory_lock(%s)", [key], conn).fetchone()[0]:
            rows = self._run(
                "SELECT a.application_name, a.pid, a.usename FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND (l.classid::bigint << 32 | l.objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
                [key],
                conn,
            ).fetchall()
            if self._lock_conn is None:
                conn.close()
            raise LockHeld(
                f"{rows[0][0]} (backend pid {rows[0][1]}, {rows[0][2]})" if rows else "another session"
            )
        self._lock_conn, self._lock_key = conn, key

    def unlock(self) -> None:
        """Closing the lock's session releases the lock with it."""
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                self._lock_conn.close()
        self._lock_conn, self._lock_key = None, None

    def holds_lock(self) -> bool:
        if self._lock_key is None or self._lock_conn is None:
            return False
        try:
            rows = self._run(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
                "AND (classid::bigint << 32 | objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
                [self._lock_key],
                self._lock_conn,
            ).fetchall()
        except DatabaseError:
            return False
        return bool(rows)

    def keep_alive(self) -> None:
        if self._lock_conn is not None:
            with contextlib.suppress(DatabaseError):
                self._run("SELECT 1", (), self._lock_conn)

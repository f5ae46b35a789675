"""Writes by others: notice, during a run, that a client other than the ETL wrote to a
protected table, so that a rollback (which cannot tell the ETL's rows from anyone else's)
says which tables lost someone else's writes and where those rows were kept.

How a session is judged "another client", without help from the ETL:
- the server reports each session's statements (`Adapter.activity`: PostgreSQL's
  pg_stat_activity shows a session's latest statement even when it is idle; MySQL/MariaDB's
  performance_schema statement history when enabled, else the running statements only);
- a statement counts when it is a write (INSERT, UPDATE, DELETE, ...) that names a protected
  table;
- the session's client address is looked up in this host's socket table (/proc/net/tcp) and its
  owning process: a descendant of etlguard is the ETL, etlguard's own process is etlguard, and
  anything else (another process, another host) is another client. A session whose client cannot
  be seen (a local Unix socket) is reported as unattributed rather than guessed.

A watch samples every `interval` seconds in a thread with its own connection. What it can miss
is said in the report (`source`): a session that connects, writes and disconnects between two
samples, or, without performance_schema on MySQL, a statement that finishes between them.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapters.base import Activity, Adapter
from .errors import EtlguardError
from .tables import TableRef

_WRITE = re.compile(
    r"^(?:\s|/\*.*?\*/|--[^\n]*\n|#[^\n]*\n)*(?:with\b.*?\b)?"
    r"(insert|update|delete|replace|truncate|load|merge|alter|drop|rename|copy)\b",
    re.IGNORECASE | re.DOTALL,
)
_LOCAL = {"127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"}


@dataclass
class Writer:
    session: str
    client: str
    who: str  # "another client" | "unattributed"
    pid: int | None
    statement: str

    def describe(self) -> str:
        where = f" from {self.client}" if self.client else ""
        pid = f", process {self.pid}" if self.pid else ""
        return f"session {self.session}{where}{pid} ({self.who}): {self.statement[:120]}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "client": self.client,
            "who": self.who,
            "pid": self.pid,
            "statement": self.statement[:500],
        }


@dataclass
class OthersReport:
    source: str | None  # how the server was watched; None where it could not be
    writes: dict[TableRef, list[Writer]] = field(default_factory=dict)
    error: str | None = None  # why the server could not be watched


def writes_to(statement: str, tables: Sequence[TableRef]) -> list[TableRef]:
    """The protected tables a write statement names: by name, quoted or not, and when the
    name is qualified, with the table's own schema (`other.orders` is not `shop.orders`; an
    unqualified `orders` may be, through the session's default schema)."""
    if not _WRITE.match(statement):
        return []
    return [t for t in tables if any(_names(statement, m.start(), t) for m in _finds(statement, t.name))]


def _finds(text: str, name: str) -> Iterator[re.Match[str]]:
    return re.finditer(rf"(?<![\w$]){re.escape(name)}(?![\w$])", text, re.I)


def _names(text: str, at: int, table: TableRef) -> bool:
    """Is the name found at `at` unqualified, or qualified by the table's schema?"""
    if at and text[at - 1] in '"`':
        at -= 1
    if not at or text[at - 1] != ".":
        return True
    before = text[: at - 1]
    quoted = re.search(r'(["`])((?:(?!\1).)*)\1$', before)
    schema = quoted.group(2) if quoted else (re.search(r"[\w$]+$", before) or [""])[0]
    return str(schema).lower() == table.schema.lower()


class WriteWatch:
    """Samples the server's sessions in a thread until `stop()`; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], Adapter],
        tables: Sequence[TableRef],
        interval: float = 0.1,
    ) -> None:
        self.connect = connect
        self.etl_pid: int | None = None  # set once the ETL has started
        self.tables = list(tables)
        self.interval = interval
        self.report = OthersReport(None)
        self.sessions: dict[str, tuple[str, int | None]] = {}  # session -> (who, pid)
        self.seen: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.db: Adapter | None = None

    def start(self) -> WriteWatch:
        try:
            self.db = self.connect()
            self.db.connect()
            self.report.source = self.db.activity_source()
        except EtlguardError as exc:  # e.g. no grant to read other sessions: the run goes on
            self.report.source = None
            self.report.error = str(exc)
            return self
        if self.report.source is not None:
            self._thread = threading.Thread(target=self._loop, name="etlguard-write-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> OthersReport:
        """One last sample (writes after the ETL ended count too), then end the thread."""
        self.finish()
        if self._thread is not None:
            self._thread.join()
        if self.db is not None:
            self.db.close()
        return self.report

    def finish(self) -> None:
        """Ask the watching thread for its last sample and to end, without waiting for it
        (a rollback need not): `stop` then waits and gives the report."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
        self._sample()  # the last one, after stop() or finish()

    def _sample(self) -> None:
        assert self.db is not None
        try:
            activity = self.db.activity()
        except EtlguardError:  # a lost connection: watching is best effort, the run goes on
            return
        for a in activity:
            for table in writes_to(a.statement, self.tables):
                self._note(table, a)

    def _note(self, table: TableRef, a: Activity) -> None:
        if a.session not in self.sessions:
            port = self.db.server_port() if self.db else None
            self.sessions[a.session] = classify(a.client, port, self.etl_pid)
        who, pid = self.sessions[a.session]
        if who in ("etlguard", "the ETL") or (str(table), a.session) in self.seen:
            return
        self.seen.add((str(table), a.session))
        self.report.writes.setdefault(table, []).append(Writer(a.session, a.client, who, pid, a.statement))


def classify(client: str, server_port: int | None, etl_pid: int | None) -> tuple[str, int | None]:
    """Whose session is this: ("etlguard" | "the ETL" | "another client" | "unattributed", pid).
    The ETL is the child etlguard started, its descendants, and whatever stays in its session
    or process group after its parent is gone."""
    host, _, port = client.rpartition(":")
    if not port.isdigit() or not Path("/proc/net/tcp").exists():
        return "unattributed", None
    if host.strip("[]") not in _LOCAL:
        return "another client", None  # the ETL runs here, as etlguard's child
    pid = _socket_owner(int(port), server_port)
    if pid is None:
        return "another client", None  # another user's process (the ETL runs as our user)
    if pid == os.getpid():
        return "etlguard", pid
    return ("the ETL" if etl_pid is not None and _in_etl(pid, etl_pid) else "another client"), pid


def _in_etl(pid: int, etl_pid: int) -> bool:
    with contextlib.suppress(OSError):
        if etl_pid in (os.getsid(pid), os.getpgid(pid)):
            return True
    return _descends_from(pid, etl_pid)


def _socket_owner(port: int, server_port: int | None) -> int | None:
    inode = _socket_inode(port, server_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return int(proc.name)
    return None


def _socket_inode(port: int, server_port: int | None) -> str | None:
    """The inode of the local TCP socket whose own port is `port` (connected to the server)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                local, remote, inode = cols[1], cols[2], cols[9]
                if int(local.rsplit(":", 1)[1], 16) != port:
                    continue
                if server_port is None or int(remote.rsplit(":", 1)[1], 16) == server_port:
                    return inode
    return None


def _descends_from(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state is the parent
        seen += 1
    return False


__all__ = ["OthersReport", "WriteWatch", "Writer", "classify", "writes_to"]

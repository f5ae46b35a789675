"""MySQL/MariaDB SQL of changed-rows capture (see etlguard.capture): the capture table, the
three triggers that fill it, the replay that undoes a run, and the metadata-lock hold that keeps
DDL off captured tables while the ETL runs.

The capture table keeps, per key of the table, the FIRST image the run touched: its key is the
table's key, and every trigger writes with `ON DUPLICATE KEY UPDATE` as a no-op, so a later touch
of the same key leaves the first one. That first image is the row's pre-run state (present, or
absent for a key the run inserted), whatever happened to the key afterwards. The replay deletes
every touched key and inserts the present pre-images: the pre-run table, and running it twice
gives the same table. Its own writes fire the triggers, but every key they touch is already in
the capture, so they change nothing there (the replay reads a temporary copy of the capture,
since a statement may not read a table its triggers write: error 1442).

Why this module is long: the capture, the replay and the hold must agree on one naming of the
capture table's columns, so they stay together, apart from the MySQL adapter, which they use
only through the Adapter interface.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import EtlguardError
from ..tables import TableRef
from .base import Adapter, Checksum

SEQ, OP, PRESENT = "_etlguard_seq", "_etlguard_op", "_etlguard_present"
KEY = "_etlguard_k{}"
EVENTS = ("i", "u", "d")  # AFTER INSERT, AFTER UPDATE, AFTER DELETE
_WAITING = "Waiting for table metadata lock"
POLL_SECONDS = 0.2
# what waits for a captured table's metadata lock while the hold has it: DDL, and LOCK TABLES
# (a DML statement waits only behind a pending DDL, and goes on once that is stopped)
_DML = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(select|insert|update|delete|replace|with)\b", re.I | re.S)
_IDENT = re.compile(r"`((?:[^`]|``)+)`|([^\s`.,;()='\"]+)")
_DDL = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*(alter|rename|drop|truncate|create|optimize|repair|lock)\b", re.I | re.S
)


@dataclass(frozen=True)
class Layout:
    """What a capture of one table records: its key columns (with their types) and every
    stored column (with its type), read from information_schema before the triggers exist."""

    key: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]  # generated columns left out: the server computes them

    def as_journal(self) -> dict[str, list[list[str]]]:
        return {"key": [list(k) for k in self.key], "columns": [list(c) for c in self.columns]}

    @classmethod
    def from_journal(cls, data: dict[str, list[list[str]]]) -> Layout:
        return cls(tuple((a, b) for a, b in data["key"]), tuple((a, b) for a, b in data["columns"]))


def why_not_captured(db: Adapter, ref: TableRef) -> str | None:
    """Why `ref` cannot be captured (it is copied instead), or None."""
    rows = db.query(
        "SELECT TABLE_NAME, ENGINE, TABLE_TYPE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        [ref.schema, ref.name],
    )
    rows = [r for r in rows if r[0] == ref.name]
    if not rows or str(rows[0][2]) != "BASE TABLE" or str(rows[0][1]).lower() != "innodb":
        return "not a base InnoDB table"
    if db.swap_blockers(ref):
        return "it has triggers or foreign keys"
    names = {c.name for c in db.columns(ref)}
    if any(n.startswith("_etlguard_") for n in names):
        return "a column name starts with _etlguard_, which the capture table uses"
    if _key(db, ref) is None:
        return "no primary key, nor a unique key over NOT NULL columns"
    return None


def layout(db: Adapter, ref: TableRef) -> Layout:
    key = _key(db, ref)
    if key is None:
        raise EtlguardError(f"{ref} has no key to capture changes by")
    types = _types(db, ref)
    kinds = dict(types)
    return Layout(tuple((k, kinds[k]) for k in key), tuple((n, t) for n, t in types if t))


def _key(db: Adapter, ref: TableRef) -> list[str] | None:
    """The primary key, else the first unique key whose columns are all NOT NULL; never a key
    on a column prefix (two rows may share a prefix)."""
    rows = db.query(
        "SELECT s.TABLE_NAME, s.INDEX_NAME, s.COLUMN_NAME, s.SUB_PART, c.IS_NULLABLE "
        "FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c "
        "ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME "
        "WHERE s.TABLE_SCHEMA = %s AND s.TABLE_NAME = %s AND s.NON_UNIQUE = 0 "
        "ORDER BY s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX",
        [ref.schema, ref.name],
    )
    keys: dict[str, list[tuple[str, bool]]] = {}
    for table, index, column, sub_part, nullable in rows:
        if table == ref.name:
            keys.setdefault(str(index), []).append((str(column), sub_part is None and nullable == "NO"))
    for cols in keys.values():
        if all(ok for _, ok in cols):
            return [c for c, _ in cols]
    return None


def _types(db: Adapter, ref: TableRef) -> list[tuple[str, str]]:
    """(name, type with character set and collation) of every column; '' for a generated one."""
    rows = db.query(
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, "
        "GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION",
        [ref.schema, ref.name],
    )
    out = []
    for table, name, kind, charset, collation, generated in rows:
        if table != ref.name:
            continue
        text = str(kind.decode() if isinstance(kind, bytes) else kind)
        if charset and collation:
            text += f" CHARACTER SET {charset} COLLATE {collation}"
        out.append((str(name), "" if generated else text))
    return out


# -- the capture table and its triggers -------------------------------------------------------
@contextlib.contextmanager
def write_locked(db: Adapter, tables: Sequence[TableRef]) -> Iterator[None]:
    """LOCK TABLES ... WRITE: no other session reads or writes these tables inside the block,
    and CREATE TRIGGER is allowed on them (a read lock would refuse it)."""
    db.execute("LOCK TABLES " + ", ".join(f"{db.qualify(t)} WRITE" for t in dict.fromkeys(tables)))
    try:
        yield
    finally:
        with contextlib.suppress(EtlguardError):
            db.execute("UNLOCK TABLES")


def create_capture_table(db: Adapter, dest: TableRef, lay: Layout) -> None:
    keys = [f"{db.quote(KEY.format(i))} {t} NOT NULL" for i, (_, t) in enumerate(lay.key)]
    cols = [f"{db.quote(n)} {t} NULL DEFAULT NULL" for n, t in lay.columns]
    pk = ", ".join(db.quote(KEY.format(i)) for i in range(len(lay.key)))
    db.execute(
        f"CREATE TABLE {db.qualify(dest)} ({db.quote(SEQ)} BIGINT NOT NULL AUTO_INCREMENT, "
        f"{db.quote(OP)} CHAR(1) NOT NULL, {db.quote(PRESENT)} TINYINT NOT NULL, "
        + ", ".join(keys + cols)
        + f", PRIMARY KEY ({pk}), UNIQUE KEY ({db.quote(SEQ)})) ENGINE=InnoDB"
    )


def trigger_names(table: TableRef, token: str) -> list[TableRef]:
    """The triggers live in the table's schema (the server requires it); `token` is random."""
    return [TableRef(table.schema, f"_etlguard_t{token}_{e}") for e in EVENTS]


def create_triggers(db: Adapter, table: TableRef, capture: TableRef, lay: Layout, token: str) -> None:
    names = dict(zip(EVENTS, trigger_names(table, token), strict=True))
    live = db.qualify(table)
    db.execute(
        f"CREATE TRIGGER {db.qualify(names['i'])} AFTER INSERT ON {live} FOR EACH ROW "
        + _record(db, capture, lay, "i", "NEW", image=False)
    )
    moved = " AND ".join(f"NEW.{db.quote(k)} <=> OLD.{db.quote(k)}" for k, _ in lay.key)
    db.execute(
        f"CREATE TRIGGER {db.qualify(names['u'])} AFTER UPDATE ON {live} FOR EACH ROW BEGIN "
        + _record(db, capture, lay, "u", "OLD", image=True)
        + f"; IF NOT ({moved}) THEN "
        + _record(db, capture, lay, "k", "NEW", image=False)
        + "; END IF; END"
    )
    db.execute(
        f"CREATE TRIGGER {db.qualify(names['d'])} AFTER DELETE ON {live} FOR EACH ROW "
        + _record(db, capture, lay, "d", "OLD", image=True)
    )


def _record(db: Adapter, capture: TableRef, lay: Layout, op: str, row: str, image: bool) -> str:
    """The first touch of a key wins: a later one is a no-op on the capture's primary key."""
    cols = [OP, PRESENT] + [KEY.format(i) for i in range(len(lay.key))]
    values = [f"'{op}'", "1" if image else "0"] + [f"{row}.{db.quote(k)}" for k, _ in lay.key]
    if image:
        cols += [n for n, _ in lay.columns]
        values += [f"{row}.{db.quote(n)}" for n, _ in lay.columns]
    return (
        f"INSERT INTO {db.qualify(capture)} ({', '.join(db.quote(c) for c in cols)}) "
        f"VALUES ({', '.join(values)}) ON DUPLICATE KEY UPDATE {db.quote(SEQ)} = {db.quote(SEQ)}"
    )


def drop_triggers(db: Adapter, table: TableRef, token: str) -> None:
    """Idempotent (IF EXISTS), so recover can repeat it after a crash at any point."""
    for name in trigger_names(table, token):
        db.execute(f"DROP TRIGGER IF EXISTS {db.qualify(name)}")


# -- the replay -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replay:
    table: TableRef
    capture: TableRef
    layout: Layout
    scratch: str  # a temporary table's name, unique to this replay


def replay(
    connect: Callable[[], Adapter],
    replays: Sequence[Replay],
    also_lock: Sequence[TableRef] = (),
    then: Callable[[], None] | None = None,
    then_session: int | None = None,
) -> dict[TableRef, Checksum]:
    """Put every captured table back in one transaction under LOCK TABLES ... WRITE on its own
    connection, which also write-locks `also_lock` (the live tables a RENAME swaps back). After
    the commit, `then` (that RENAME, on the caller's connection) is started and, once it is
    queued behind these locks, the locks are released: a queued exclusive lock is granted
    before any reader's, so no reader sees some tables of the set back and others not.
    Returns each table's row count and CHECKSUM TABLE as of right after the commit. A table
    with a generated column is checked under the same write lock: MariaDB's CHECKSUM TABLE of a
    STORED generated column differs between a write-locked table and an unlocked one, and the
    pre-run checksum was write-locked too. The others are checked after the locks are gone, in
    a read view opened between the commit and the unlock (CHECKSUM TABLE reads it like any
    plain read), so readers get the set back without waiting for a full read of each table."""
    side = connect()
    side.connect()
    error: list[BaseException] = []
    worker: threading.Thread | None = None
    checks = {}
    view: Adapter | None = None
    done = False
    try:
        generated = {r.table for r in replays if any(not kind for _, kind in _types(side, r.table))}
        side.execute("SET autocommit = 0")
        locked = [db_w for r in replays for db_w in (r.table, r.capture)] + list(also_lock)
        side.execute("LOCK TABLES " + ", ".join(f"{side.qualify(t)} WRITE" for t in dict.fromkeys(locked)))
        try:
            for r in replays:
                _replay_one(side, r)
            side.execute("COMMIT")
            checks = {r.table: side.copy_check(r.table) for r in replays if r.table in generated}
            if len(checks) < len(replays):
                view = _read_view(connect)
        except BaseException:
            with contextlib.suppress(EtlguardError):
                side.execute("ROLLBACK")
            raise
        if then is not None:
            worker = threading.Thread(target=_capture_error(then, error), name="etlguard-swap", daemon=True)
            worker.start()
            _wait_queued(side, then_session, worker)
        side.execute("UNLOCK TABLES")
        done = True
    finally:
        with contextlib.suppress(EtlguardError):
            if getattr(side, "conn", None) is not None:
                side.execute("UNLOCK TABLES")
        side.close()
        if worker is not None:
            worker.join()
        if view is not None and (error or not done):
            view.close()
    if error:
        raise error[0]
    if view is not None:
        try:
            checks.update({r.table: view.copy_check(r.table) for r in replays if r.table not in checks})
        finally:
            view.close()
    return checks


def _read_view(connect: Callable[[], Adapter]) -> Adapter:
    """A session holding a REPEATABLE READ snapshot of the server as of now."""
    view = connect()
    view.connect()
    try:
        view.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        view.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    except BaseException:
        view.close()
        raise
    return view


def _replay_one(db: Adapter, r: Replay) -> None:
    scratch = TableRef(r.capture.schema, r.scratch)
    live, tmp = db.qualify(r.table), db.qualify(scratch)
    db.execute(f"CREATE TEMPORARY TABLE {tmp} SELECT * FROM {db.qualify(r.capture)}")
    on = " AND ".join(
        f"{live}.{db.quote(k)} = {tmp}.{db.quote(KEY.format(i))}" for i, (k, _) in enumerate(r.layout.key)
    )
    db.execute(f"DELETE {live} FROM {live} JOIN {tmp} ON {on}")
    cols = ", ".join(db.quote(n) for n, _ in r.layout.columns)
    db.execute(f"INSERT INTO {live} ({cols}) SELECT {cols} FROM {tmp} WHERE {db.quote(PRESENT)} = 1")
    db.execute(f"DROP TEMPORARY TABLE {tmp}")


def _capture_error(action: Callable[[], None], into: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            action()
        except BaseException as exc:  # handed to the caller's thread
            into.append(exc)

    return run


def _wait_queued(side: Adapter, session: int | None, worker: threading.Thread) -> None:
    """Until the caller's session waits for a metadata lock (or its statement is done)."""
    for _ in range(int(30 / 0.005)):
        if not worker.is_alive() or session is None:
            return
        rows = side.query("SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s", [session])
        if rows and rows[0][0] == _WAITING:
            return
        worker.join(0.005)


# -- the hold: no DDL on a captured table while the ETL runs unnoticed ---------------------------
@dataclass
class Hold:
    """One READ COMMITTED transaction per captured table, each of which has read its table,
    holds that table's shared metadata lock, so ALTER, RENAME, DROP and TRUNCATE of it wait. A
    watcher looks for such a waiting statement; when one appears, the table's holder makes a
    full pre-run copy of it IN ITS OWN TRANSACTION (other sessions would queue behind the waiting
    DDL): the rows into an empty copy made before the ETL, then the capture's inverse applied to
    it (first-touch images are the pre-run state, whatever moment the rows were read), then
    COMMIT, which lets the DDL go on; the other tables stay held. The caller proves each copy
    against the pre-run checksum. If the copy fails, the waiting statement is stopped instead
    (KILL QUERY, before the holder lets go): the ETL fails, and the capture still undoes it. A
    waiting statement that names no captured table but is not plain DML (a procedure, say)
    counts, after a second, for every table still held: an unneeded copy costs bytes, a missed
    DDL the undo. A killed watcher is replaced by a new session; a killed holder cannot be
    (a DDL may already have passed): `lost` says so, and the rollback's proof decides."""

    connect: Callable[[], Adapter]
    items: Sequence[tuple[Replay, TableRef]]  # each captured table's replay and its empty copy
    stopped: list[str] = field(default_factory=list)
    copied: list[TableRef] = field(default_factory=list)  # tables whose full copy was made
    trigger: str | None = None  # the first statement that made a copy
    lost: str | None = None  # why the hold ended early (a session died)
    _holders: dict[TableRef, Adapter] = field(default_factory=dict)
    _watcher: Adapter | None = None
    _unsure: dict[int, int] = field(default_factory=dict)  # session -> polls seen waiting
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def tables(self) -> list[TableRef]:
        return [r.table for r, _ in self.items]

    def start(self) -> Hold:
        for t in self.tables:
            holder = self.connect()
            self._holders[t] = holder
            holder.connect()
            holder.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            holder.execute("START TRANSACTION")
            holder.query(f"SELECT 1 FROM {holder.qualify(t)} LIMIT 0")
        self._watcher = self.connect()
        self._watcher.connect()
        self._thread = threading.Thread(target=self._watch, name="etlguard-capture-hold", daemon=True)
        self._thread.start()
        return self

    def sessions(self) -> list[int]:
        return [int(getattr(h, "session_id", 0) or 0) for h in self._holders.values()]

    def _watch(self) -> None:
        failed = False  # the previous poll failed too
        while self._holders and not self._done.wait(POLL_SECONDS):
            try:
                assert self._watcher is not None
                for table, statements in self._waiting(self._watcher).items():
                    self._copy_or_stop(table, statements)
                failed = False
            except EtlguardError as exc:
                if failed or not self._rewatch():
                    self.lost = f"the hold lost its watcher's connection: {exc}"
                    self._release()
                    return
                failed = True

    def _rewatch(self) -> bool:
        """A new session for the watcher (its own was killed, or timed out): the holders still
        hold, so without one a DDL would wait for their locks until its lock_wait_timeout."""
        if self._watcher is not None:
            self._watcher.close()
        try:
            self._watcher = self.connect()
            self._watcher.connect()
        except EtlguardError:
            return False
        return True

    def _release(self) -> None:
        """No watcher: let the held tables go rather than leave a DDL waiting for a day (the
        rollback then proves each table by checksum and structure)."""
        for db in self._holders.values():
            with contextlib.suppress(EtlguardError):
                db.execute("COMMIT")
            db.close()
        self._holders = {}

    def _waiting(self, db: Adapter) -> dict[TableRef, list[tuple[int, str]]]:
        """Held tables that a waiting statement names (or may reach), with those statements."""
        marks = ", ".join(["%s"] * len(self.sessions()))
        rows = db.query(
            f"SELECT ID, DB, INFO FROM information_schema.PROCESSLIST WHERE STATE = %s AND ID NOT IN ({marks})",
            [_WAITING, *self.sessions()],
        )
        out: dict[TableRef, list[tuple[int, str]]] = {}
        seen = set()
        for sid, schema, info in rows:
            text = info.decode() if isinstance(info, bytes) else str(info or "")
            named = [t for t in self._holders if names(text, schema, t)]
            if named and _DDL.match(text):
                hit = named
            elif not named and not _DML.match(text):
                seen.add(int(sid))
                self._unsure[int(sid)] = self._unsure.get(int(sid), 0) + 1
                hit = list(self._holders) if self._unsure[int(sid)] > 5 else []
            else:
                hit = []
            for t in hit:
                out.setdefault(t, []).append((int(sid), text[:200]))
        self._unsure = {k: v for k, v in self._unsure.items() if k in seen}
        return out

    def _copy_or_stop(self, table: TableRef, waiting: list[tuple[int, str]]) -> None:
        assert self._watcher is not None
        holder = self._holders.pop(table)
        replay, copy = next((r, c) for r, c in self.items if r.table == table)
        try:
            materialise(holder, replay, copy)
            holder.execute("COMMIT")
        except EtlguardError as exc:
            self.lost = f"the hold of {table} ended: the copy before a DDL failed ({exc})"
            # stopped while the holder still holds the table: its ROLLBACK lets a waiting DDL go
            # on at once, and an instant ALTER is done before a KILL sent after it arrives
            for sid, text in waiting:  # keep the table undoable: the DDL does not go on
                self._watcher.execute(f"KILL QUERY {int(sid)}")
                self.stopped.append(f"{text} (a full copy could not be made: {exc})")
            with contextlib.suppress(EtlguardError):
                holder.execute("ROLLBACK")
            return
        finally:
            holder.close()
        self.trigger = self.trigger or waiting[0][1]
        self.copied.append(table)

    def stop(self) -> None:
        """End the hold; `lost` says whether it held to the end."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        for table, db in self._holders.items():
            try:
                db.execute("COMMIT")
            except EtlguardError as exc:
                self.lost = f"the metadata-lock hold of {table} ended during the run: {exc}"
            db.close()
        self._holders = {}
        if self._watcher is not None:  # autocommit, no transaction: a dead one is not reopened
            self._watcher.close()


def materialise(db: Adapter, r: Replay, copy: TableRef) -> None:
    """The pre-run table into `copy` (made empty before the run, CREATE TABLE ... LIKE): its
    current rows, then, for each key the capture holds, that key's first-touch image."""
    cols = ", ".join(db.quote(n) for n, _ in r.layout.columns)
    db.execute(f"INSERT INTO {db.qualify(copy)} ({cols}) SELECT {cols} FROM {db.qualify(r.table)}")
    undo(db, copy, r.capture, r.layout)


def undo(db: Adapter, table: TableRef, capture: TableRef, lay: Layout) -> None:
    """Undo one run's changes in `table` (a copy of the table as that run left it): every key
    the capture holds is deleted, then each key's first-touch image that was present is put
    back. The replay of a rollback, on a table no trigger watches (no scratch copy needed)."""
    cols = ", ".join(db.quote(n) for n, _ in lay.columns)
    _delete_captured_keys(db, table, capture, lay)
    db.execute(
        f"INSERT INTO {db.qualify(table)} ({cols}) SELECT {cols} FROM {db.qualify(capture)} "
        f"WHERE {db.quote(PRESENT)} = 1"
    )


def _delete_captured_keys(db: Adapter, table: TableRef, capture: TableRef, lay: Layout) -> int:
    """Every row of `table` whose key the capture holds is deleted; returns how many."""
    dest = db.qualify(table)
    on = " AND ".join(
        f"{dest}.{db.quote(k)} = c.{db.quote(KEY.format(i))}" for i, (k, _) in enumerate(lay.key)
    )
    return db.execute(f"DELETE {dest} FROM {dest} JOIN {db.qualify(capture)} AS c ON {on}")


def roll_forward(db: Adapter, standby: TableRef, live: TableRef, capture: TableRef, lay: Layout) -> int:
    """Bring a standby copy of `live` (its state before the run that filled `capture`) to the
    live table's rows now: every key the capture holds is deleted from the standby, then the
    live table's current row for that key (if any) is copied in. Only those keys are written.
    The caller proves the result against the live table (CHECKSUM TABLE of both) before it is
    used: a change the capture did not see (another client after the run, a TRUNCATE, which
    fires no trigger) makes the proof fail and the table is copied in full instead. Returns the
    rows written (deleted plus inserted)."""
    cols = [db.quote(n) for n, _ in lay.columns]
    dest, cap, src = db.qualify(standby), db.qualify(capture), db.qualify(live)
    on_live = " AND ".join(
        f"l.{db.quote(k)} = c.{db.quote(KEY.format(i))}" for i, (k, _) in enumerate(lay.key)
    )
    removed = _delete_captured_keys(db, standby, capture, lay)
    added = db.execute(
        f"INSERT INTO {dest} ({', '.join(cols)}) SELECT {', '.join('l.' + c for c in cols)} "
        f"FROM {src} AS l JOIN {cap} AS c ON {on_live}"
    )
    return removed + added


def names(statement: str, schema: object, ref: TableRef) -> bool:
    """Whether a statement's text names the table: its name as an identifier (bare or quoted),
    qualified by its schema or run in that schema (case-insensitively: a loose match costs an
    unneeded copy, a missed one the undo)."""
    words = {w.lower() for w in _identifiers(statement)}
    if ref.name.lower() not in words:
        return False
    return str(schema or "").lower() == ref.schema.lower() or ref.schema.lower() in words


def _identifiers(text: str) -> list[str]:
    return [q.replace("``", "`") if q else bare for q, bare in _IDENT.findall(text)]


__all__ = [
    "Hold",
    "Layout",
    "Replay",
    "create_capture_table",
    "create_triggers",
    "drop_triggers",
    "layout",
    "materialise",
    "replay",
    "roll_forward",
    "trigger_names",
    "undo",
    "why_not_captured",
    "write_locked",
]

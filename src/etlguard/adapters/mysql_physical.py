"""Physical snapshots of InnoDB tables by transportable tablespaces (opt-in, `snapshot.physical`).

Where etlguard runs on the database host and can read the data directory, a table's snapshot
can be its tablespace file copied byte for byte instead of its rows inserted one by one: about
15x faster for a 1M-row table (docs/performance.md). The steps, per copy: `CREATE TABLE dest
LIKE src` and `ALTER TABLE dest DISCARD TABLESPACE` (done by `MySQLAdapter.copy_tables`, inside
the snapshot's journal entry, so the table is `creating` and recover drops it: a table whose
tablespace is discarded can be dropped, and DROP removes the files copied for it); `FLUSH
TABLES src FOR EXPORT` on a session of its own, which read-locks src (writers wait) and writes
its pages and a `.cfg` description to disk: the consistency point, with every table of the set
at once under `consistency: set`; the source's row count and CHECKSUM TABLE under that lock;
`src.ibd` and `src.cfg` copied into dest's file names (fsynced, with the source files' owner
and mode); UNLOCK TABLES, in a `finally`, so a failed file copy never leaves the lock behind
(the session's end would release it too); `ALTER TABLE dest IMPORT TABLESPACE` and dest's
counter (set again if the import did not keep it), in `set` mode still while etlguard's own
session holds every source (so a refused import is copied by rows at the same instant); then,
with no lock (only etlguard uses the copy), dest's row count and CHECKSUM TABLE, which must
equal the source's. The caller fingerprints and seals the copy like any other.

A table the server cannot export or import this way (not InnoDB, partitioned, a FULLTEXT index,
encrypted, its own DATA DIRECTORY, a name whose file name etlguard does not derive) is copied
by rows instead, and `Physical.logical` says why; so is a table whose import the server refuses
at copy time (its copy is made again, empty, for the row copy).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, EtlguardError
from ..faults import fault
from ..tables import TableRef
from .base import COPY_CHECK, Adapter, Checksum, ConnectionLost, Copy, CopyResult, DatabaseError

_PLAIN = re.compile(r"[A-Za-z0-9_]")
_BUFFER = 8 << 20


@dataclass
class Physical:
    """What `choose` chose: the data directory, the tables copied by file, and why each other
    protected table is copied by rows (copy-time refusals are added as they happen)."""

    datadir: Path
    tables: set[TableRef] = field(default_factory=set)
    logical: dict[TableRef, str] = field(default_factory=dict)
    copied: list[TableRef] = field(default_factory=list)  # copied by file, verified


@dataclass
class Exported:
    """One table's files and what was read of it under the FOR EXPORT lock."""

    copy: Copy
    dest_file: Path
    check: Checksum | None = None
    counter: int | None = None
    structure: str = ""


def choose(db: Adapter, datadir: str, snapshot_schema: str, tables: Sequence[TableRef]) -> Physical:
    """Check the setup (one-line ConfigErrors, nothing touched but the snapshot schema's
    creation), then sort the protected tables into file copies and row copies."""
    root = _check_datadir(db, datadir)
    _check_server(db, snapshot_schema)
    db.ensure_schema(snapshot_schema)
    folder = _schema_dir(root, snapshot_schema)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"etlguard cannot write to {folder or root} (the snapshot schema's directory); run it as "
            "the server's OS user (or root), or remove snapshot.physical"
        )
    out = Physical(root)
    for ref in tables:
        why = why_not_physical(db, root, ref)
        if why:
            out.logical[ref] = why
        else:
            out.tables.add(ref)
    return out


def _check_datadir(db: Adapter, datadir: str) -> Path:
    path = Path(datadir)
    if not path.is_dir():
        raise ConfigError(
            f"snapshot.physical.datadir {datadir} is not a directory here; set it to the server's "
            "data directory (SELECT @@datadir) on the database host, or remove snapshot.physical"
        )
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(
            f"etlguard cannot read snapshot.physical.datadir {datadir}; run it as the server's OS "
            "user (or root), or remove snapshot.physical"
        )
    ((server,),) = db.query("SELECT @@datadir")
    if os.path.realpath(path) != os.path.realpath(str(server)):
        raise ConfigError(
            f"snapshot.physical.datadir {datadir} is not the server's data directory ({server}); "
            "etlguard must run on the database host and name that directory"
        )
    return Path(os.path.realpath(path))


def _check_server(db: Adapter, snapshot_schema: str) -> None:
    ((per_table,),) = db.query("SELECT @@innodb_file_per_table")
    if not int(per_table):
        raise ConfigError(
            "innodb_file_per_table is OFF on the server, so tables have no file of their own to "
            "copy; turn it on (and rebuild the tables) or remove snapshot.physical"
        )
    if db.missing_privileges({snapshot_schema: {"RELOAD"}}):
        raise ConfigError(
            "FLUSH TABLES ... FOR EXPORT needs the RELOAD privilege; GRANT RELOAD ON *.* to "
            "etlguard's user, or remove snapshot.physical"
        )


def why_not_physical(db: Adapter, root: Path, ref: TableRef) -> str | None:
    """Why `ref` cannot be copied by its tablespace file, or None if it can."""
    rows = db.query(
        "SELECT TABLE_NAME, ENGINE, COALESCE(CREATE_OPTIONS, '') FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        [ref.schema, ref.name],
    )
    rows = [r for r in rows if r[0] == ref.name]
    if not rows or str(rows[0][1]).lower() != "innodb":
        return f"it is not an InnoDB table ({rows[0][1] if rows else 'no engine'})"
    options = str(rows[0][2]).lower()
    if "partitioned" in options:
        return "it is partitioned (each partition has a file of its own)"
    if "encrypted=yes" in options or "page_compressed" in options:
        return "it is encrypted or page-compressed"
    (fulltext,) = db.query(
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND INDEX_TYPE = 'FULLTEXT'",
        [ref.schema, ref.name],
    )[0]
    if fulltext:
        return "it has a FULLTEXT index, whose auxiliary tables the server does not import"
    file = tablespace_file(db, root, ref, prove=False)  # page 0 may not be on disk before the export
    if file is None:
        return "its tablespace file was not found in the data directory (a name with non-ASCII characters?)"
    if not os.access(file, os.R_OK):
        return f"etlguard cannot read its tablespace file {file}"
    return None


def tablespace_file(db: Adapter, root: Path, ref: TableRef, prove: bool = True) -> Path | None:
    """The table's .ibd file, as the server names it (MariaDB: INNODB_SYS_TABLESPACES;
    MySQL 8: INNODB_TABLESPACES and INNODB_DATAFILES), only if it lies in the schema's own
    directory (not a DATA DIRECTORY table's), exists and (`prove`, once FOR EXPORT has written
    it) holds the server's tablespace of that table: its first page names the same space id. A
    directory of the same path on another host (or a stale copy) is caught there."""
    name = _space_name(ref)
    if name is None:
        return None
    try:
        rows = db.query(
            "SELECT SPACE, FILENAME FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME = %s", [name]
        )
    except EtlguardError:  # MySQL 8
        rows = db.query(
            "SELECT t.SPACE, d.PATH FROM information_schema.INNODB_TABLESPACES t "
            "JOIN information_schema.INNODB_DATAFILES d ON d.SPACE = t.SPACE WHERE t.NAME = %s",
            [name],
        )
    if len(rows) != 1:
        return None
    file = Path(os.path.normpath(root / str(rows[0][1])))
    folder = _schema_dir(root, ref.schema)
    if folder is None or file.parent != folder or file.name != f"{name.split('/', 1)[1]}.ibd":
        return None
    if not file.is_file():
        return None
    return file if not prove or _space_id(file) == int(rows[0][0]) else None


def _space_id(file: Path) -> int | None:
    """The space id in an InnoDB file's first page header (FIL_PAGE_SPACE_ID, offset 34)."""
    try:
        with file.open("rb") as f:
            head = f.read(38)
    except OSError:
        return None
    return int.from_bytes(head[34:38], "big") if len(head) == 38 else None


def _space_name(ref: TableRef) -> str | None:
    """`schema/table` in the server's file-name encoding: letters, digits and `_` as they
    are, other ASCII characters as @ and four hex digits. Non-ASCII names: None."""
    parts = [_file_name(ref.schema), _file_name(ref.name)]
    return None if None in parts else "/".join(p for p in parts if p is not None)


def _file_name(name: str) -> str | None:
    if any(ord(ch) > 127 for ch in name):
        return None
    return "".join(ch if _PLAIN.fullmatch(ch) else f"@{ord(ch):04x}" for ch in name)


def _schema_dir(root: Path, schema: str) -> Path | None:
    encoded = _file_name(schema)
    return None if encoded is None else root / encoded


def discard_tablespace(db: Adapter, physical: Physical, c: Copy) -> Exported:
    """Step 1, after CREATE TABLE dest LIKE src: note dest's file name, drop its tablespace."""
    dest_file = tablespace_file(db, physical.datadir, c.dest, prove=False)
    if dest_file is None:
        raise DatabaseError(f"the new snapshot table {c.dest} has no tablespace file in the data directory")
    db.execute(f"ALTER TABLE {db.qualify(c.dest)} DISCARD TABLESPACE")
    return Exported(c, dest_file)


def export(session: Adapter, physical: Physical, items: Sequence[Exported]) -> None:
    """Step 2, on `session` (no LOCK TABLES of its own): FLUSH TABLES ... FOR EXPORT of all
    `items` at once, each source's check, counter and structure under that lock, the files
    copied; UNLOCK TABLES whatever happens."""
    if not items:
        return
    sources = ", ".join(session.qualify(e.copy.source) for e in items)
    session.execute(f"FLUSH TABLES {sources} FOR EXPORT")
    try:
        fault("copy.after_export")
        for e in items:
            e.check = session.copy_check(e.copy.source)
            e.counter = session.auto_increment(e.copy.source)
            e.structure = session.structure(e.copy.source)
            source_file = tablespace_file(session, physical.datadir, e.copy.source)
            if source_file is None:
                raise DatabaseError(
                    f"the tablespace file of {e.copy.source} under {physical.datadir} is gone or holds "
                    "another tablespace; is snapshot.physical.datadir this server's data directory?"
                )
            for suffix in (".ibd", ".cfg"):
                _copy_file(source_file.with_suffix(suffix), e.dest_file.with_suffix(suffix))
        _sync_dirs({e.dest_file.parent for e in items})
    finally:
        with contextlib.suppress(EtlguardError):
            session.execute("UNLOCK TABLES")


def _copy_file(source: Path, dest: Path) -> None:
    """Byte for byte into a new file (never over an existing one), fsynced, with the source's
    owner and mode so that the server can open it."""
    try:
        st = source.stat()
        with source.open("rb") as src, open(dest, "xb") as out:
            shutil.copyfileobj(src, out, _BUFFER)
            out.flush()
            os.fsync(out.fileno())
        if os.geteuid() == 0 or st.st_uid != os.geteuid():
            os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, st.st_mode & 0o7777)
    except OSError as exc:
        raise DatabaseError(f"copying {source} to {dest} failed: {exc.strerror or exc}") from exc


def _sync_dirs(folders: set[Path]) -> None:
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def import_copy(session: Adapter, e: Exported) -> str | None:
    """Step 3: IMPORT TABLESPACE and the counter. The server's refusal to import is returned
    as text (the caller copies that table by rows instead); anything else raises."""
    dest = e.copy.dest
    try:
        session.execute(f"ALTER TABLE {session.qualify(dest)} IMPORT TABLESPACE")
    except ConnectionLost:  # not a refusal: the snapshot fails
        raise
    except DatabaseError as exc:
        return f"the server refused to import its tablespace: {exc}"
    finally:
        with contextlib.suppress(OSError):
            e.dest_file.with_suffix(".cfg").unlink()
    if e.counter and session.auto_increment(dest) != e.counter:
        session.execute(f"ALTER TABLE {session.qualify(dest)} AUTO_INCREMENT = {int(e.counter)}")
    if session.auto_increment(dest) != e.counter:
        raise DatabaseError(f"the physical copy of {e.copy.source} did not keep its AUTO_INCREMENT counter")
    return None


def verify_copy(session: Adapter, e: Exported) -> CopyResult:
    """Step 4, no lock needed (only etlguard uses the copy): the copy's row count and CHECKSUM
    TABLE, against the source's read under the FOR EXPORT lock."""
    copied = session.copy_check(e.copy.dest)
    assert e.check is not None
    source = Checksum(e.check.rows, e.check.digest, COPY_CHECK)
    return CopyResult(source, copied, e.structure, e.counter, session.size_bytes(e.copy.source))


def redo_as_rows(db: Adapter, c: Copy) -> None:
    """A copy whose import was refused: made again, empty, for the row copy."""
    db.drop_table(c.dest)
    db.create_like(c.dest, c.source)

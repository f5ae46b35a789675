"""Snapshot and restore: etlguard against the design note's Layer 1 backup and its restore.

Builds a table shaped like the note's `silver.tenant_status_history` in scratch schemas of their
own, then, in the same run and repeated `--repeat` times (medians reported):

  a) the note's backup:  CREATE TABLE b AS SELECT * FROM t;
                         ALTER TABLE b ADD COLUMN backup_created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
  b) etlguard's snapshot: Guard.snapshot()  (CREATE TABLE ... LIKE + INSERT ... SELECT under
                         LOCK TABLES, checksum of source and copy)
  c) the note's restore: DROP TABLE t; RENAME TABLE b TO t; ALTER TABLE t DROP COLUMN backup_created_at
                         (on a scratch copy of the table, so the original survives for the next round)
  d) etlguard's restore: Guard.restore([t], latest=True)  (one RENAME TABLE, then verify)
  e) after each restore: point lookups by id, the table's structure against the original, and two
     INSERTs that leave `id` to the table
  f) during each restore: a reader on its own connection polling the table every 10 ms, counting
     "Table doesn't exist" (1146) errors

Usage:
  .venv/bin/python benchmarks/snapshot_restore.py [--rows 1000000] [--repeat 3]
      [--url mariadb+pymysql://root@127.0.0.1:3306]
Quick check:  .venv/bin/python benchmarks/snapshot_restore.py --rows 100000 --repeat 1

Every schema it creates is named bench_<random>_* and dropped at the end, also on Ctrl-C.
See benchmarks/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import re
import secrets
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql

from etlguard import Guard
from etlguard.adapters.mysql import MySQLAdapter
from etlguard.target import Target, parse_target

DEFAULT_URL = "mariadb+pymysql://root@127.0.0.1:3306"
TABLE = "tenant_status_history"

DDL = """
CREATE TABLE {table} (
  id BIGINT NOT NULL AUTO_INCREMENT,
  tenant_id INT NOT NULL,
  room_id INT NOT NULL,
  status VARCHAR(32) NOT NULL,
  valid_from DATE NOT NULL,
  valid_to DATE NULL,
  is_current TINYINT(1) NOT NULL DEFAULT 0,
  notes VARCHAR(255) NULL,
  updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_tenant_valid_from (tenant_id, valid_from),
  KEY ix_current_tenant (is_current, tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

# Ten status rows per tenant (SCD2: the last one is current, the others are closed), from
# MariaDB's SEQUENCE engine, so a million rows take seconds and need nothing from the client.
FILL = """
INSERT INTO {table} (tenant_id, room_id, status, valid_from, valid_to, is_current, notes, updated_at)
SELECT tenant,
       1 + (tenant * 7919) % 5000,
       ELT(1 + k % 5, 'applied', 'contracted', 'moved_in', 'notice_given', 'moved_out'),
       DATE '2019-01-01' + INTERVAL (k * 30 + tenant % 30) DAY,
       IF(k = 9, NULL, DATE '2019-01-01' + INTERVAL ((k + 1) * 30 + tenant % 30 - 1) DAY),
       k = 9,
       IF(seq % 4 = 0, NULL, CONCAT('status change ', seq, ': ', MD5(seq))),
       TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND
FROM (SELECT seq, (seq - 1) DIV 10 + 1 AS tenant, (seq - 1) % 10 AS k FROM {seq}) AS s
"""

LOOKUP_BUDGET_SECONDS = 5.0  # a table without a primary key scans every row per lookup
LOOKUP_MINIMUM = 5
POLL_INTERVAL = 0.010


# -- small helpers ---------------------------------------------------------------------------
def q(*names: str) -> str:
    return ".".join("`" + n.replace("`", "``") + "`" for n in names)


def connect(target: Target) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=target.host,
        port=target.port or 3306,
        user=target.user,
        password=target.password,
        charset="utf8mb4",
        autocommit=True,  # a reader must not hold a metadata lock between its statements
    )


def run(conn: pymysql.connections.Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, tuple(params) or None)
        return list(cur.fetchall())


def timed(conn: pymysql.connections.Connection, sql: str) -> float:
    started = time.perf_counter()
    run(conn, sql)
    return time.perf_counter() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def secs(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def ratio(etlguard: float, note: float) -> str:
    if not note or note != note or etlguard != etlguard:
        return "-"
    r = etlguard / note
    return f"{r:.2f}x" if r >= 0.1 else f"1/{1 / r:,.0f}"


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


# -- structure -------------------------------------------------------------------------------
@dataclass
class Structure:
    ddl: str  # SHOW CREATE TABLE without the table name and the AUTO_INCREMENT counter
    primary_key: bool
    indexes: int
    auto_increment: bool
    columns: list[str]

    def summary(self) -> str:
        return (
            f"PK {'yes' if self.primary_key else 'no'}, {self.indexes} indexes, "
            f"AUTO_INCREMENT {'yes' if self.auto_increment else 'no'}"
        )


def structure(conn: pymysql.connections.Connection, schema: str, table: str) -> Structure:
    ddl = str(run(conn, f"SHOW CREATE TABLE {q(schema, table)}")[0][1])
    ddl = re.sub(r" AUTO_INCREMENT=\d+", "", ddl)
    ddl = re.sub(r"^CREATE TABLE `(?:[^`]|``)*`", "CREATE TABLE T", ddl)
    indexes = run(
        conn,
        "SELECT COUNT(DISTINCT INDEX_NAME), SUM(INDEX_NAME = 'PRIMARY') FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        [schema, table],
    )[0]
    cols = run(
        conn,
        "SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        [schema, table],
    )
    return Structure(
        ddl=ddl,
        primary_key=bool(indexes[1]),
        indexes=int(indexes[0] or 0),
        auto_increment=any("auto_increment" in str(extra).lower() for _, extra in cols),
        columns=[str(c) for c, _ in cols],
    )


# -- probes ------------------------------------------------------------------------------------
def point_lookups(conn: pymysql.connections.Connection, table: str, ids: Sequence[int]) -> list[float]:
    """Per-lookup latency of SELECT * ... WHERE id = ?, up to len(ids) lookups or the time budget."""
    times: list[float] = []
    started = time.perf_counter()
    with conn.cursor() as cur:
        for i in ids:
            t0 = time.perf_counter()
            cur.execute(f"SELECT * FROM {table} WHERE id = %s", (i,))
            cur.fetchall()
            times.append(time.perf_counter() - t0)
            if len(times) >= LOOKUP_MINIMUM and time.perf_counter() - started > LOOKUP_BUDGET_SECONDS:
                break
    return times


def insert_probe(conn: pymysql.connections.Connection, table: str) -> str:
    """Two INSERTs that leave `id` to the table, inside a transaction that is rolled back."""
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            for day in ("2030-01-01", "2030-01-02"):
                cur.execute(
                    f"INSERT INTO {table} (tenant_id, room_id, status, valid_from) "
                    f"VALUES (-1, 1, 'bench_probe', %s)",
                    (day,),
                )
            cur.execute(f"SELECT id FROM {table} WHERE tenant_id = -1 ORDER BY valid_from")
            ids = [str(r[0]) for r in cur.fetchall()]
            return "ids " + ", ".join(ids)
        except pymysql.err.MySQLError as exc:
            return f"error {exc.args[0]}"
        finally:
            cur.execute("ROLLBACK")


class Reader(threading.Thread):
    """Polls `SELECT COUNT(*) FROM t WHERE id = x` every 10 ms on its own connection."""

    def __init__(self, target: Target, table: str, probe_id: int) -> None:
        super().__init__(daemon=True)
        self.conn = connect(target)
        self.sql = f"SELECT COUNT(*) FROM {table} WHERE id = %s"
        self.probe_id = probe_id
        self.stop_event = threading.Event()
        self.first_poll = threading.Event()
        self.polls = 0
        self.missing = 0  # error 1146: table doesn't exist
        self.other: Counter[int] = Counter()
        self.longest = 0.0

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                while not self.stop_event.is_set():
                    t0 = time.perf_counter()
                    try:
                        cur.execute(self.sql, (self.probe_id,))
                        cur.fetchall()
                    except pymysql.err.MySQLError as exc:
                        code = int(exc.args[0]) if exc.args else 0
                        if code == 1146:
                            self.missing += 1
                        else:
                            self.other[code] += 1
                    self.polls += 1
                    self.longest = max(self.longest, time.perf_counter() - t0)
                    self.first_poll.set()
                    time.sleep(POLL_INTERVAL)
        finally:
            self.first_poll.set()
            self.conn.close()


@contextlib.contextmanager
def reader_during(target: Target, table: str, probe_id: int, enabled: bool) -> Iterator[Reader | None]:
    if not enabled:
        yield None
        return
    reader = Reader(target, table, probe_id)
    reader.start()
    reader.first_poll.wait(10)
    time.sleep(0.05)
    try:
        yield reader
    finally:
        time.sleep(0.05)
        reader.stop_event.set()
        reader.join(60)


# -- where etlguard's time goes ----------------------------------------------------------------
class Profile:
    """Times the adapter's statements during Guard.snapshot()/restore() by wrapping two methods of
    MySQLAdapter for this process only (etlguard's code is not changed)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.swapped_at = 0.0  # perf_counter() when the RENAME TABLE returned

    @staticmethod
    def classify(sql: str) -> str | None:
        head = sql.lstrip().upper()
        if head.startswith("INSERT INTO") and " SELECT " in head:
            return "copy rows: INSERT ... SELECT"
        if head.startswith("CREATE TABLE") and " LIKE " in head:
            return "CREATE TABLE ... LIKE"
        if head.startswith("RENAME TABLE"):
            return "swap: RENAME TABLE"
        if head.startswith("ALTER TABLE") and "AUTO_INCREMENT" in head:
            return "ALTER TABLE ... AUTO_INCREMENT"
        if head.startswith(("LOCK TABLES", "UNLOCK TABLES")):
            return "LOCK / UNLOCK TABLES"
        return None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Profile]:
        original_execute = MySQLAdapter.execute
        original_checksum = MySQLAdapter.checksum
        profile = self

        def execute(adapter: MySQLAdapter, sql: str, params: Sequence[Any] = ()) -> int:
            t0 = time.perf_counter()
            try:
                return original_execute(adapter, sql, params)
            finally:
                kind = profile.classify(sql)
                if kind:
                    profile.seconds[kind] += time.perf_counter() - t0
                    profile.calls[kind] += 1
                if kind == "swap: RENAME TABLE":
                    profile.swapped_at = time.perf_counter()

        def checksum(adapter: MySQLAdapter, ref: Any, *algorithm: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original_checksum(adapter, ref, *algorithm)
            finally:
                kind = "fingerprints (SHA-256 sum over every row)"
                if profile.swapped_at:
                    kind = "fingerprints after the swap (displaced; live table verified)"
                profile.seconds[kind] += time.perf_counter() - t0
                profile.calls[kind] += 1

        MySQLAdapter.execute = execute  # type: ignore[method-assign]
        MySQLAdapter.checksum = checksum  # type: ignore[method-assign]
        try:
            yield self
        finally:
            MySQLAdapter.execute = original_execute  # type: ignore[method-assign]
            MySQLAdapter.checksum = original_checksum  # type: ignore[method-assign]


# -- results -------------------------------------------------------------------------------------
@dataclass
class RestoreFindings:
    lookups: list[float] = field(default_factory=list)
    structure: Structure | None = None
    inserts: str = ""
    polls: int = 0
    missing: int = 0
    other_errors: Counter[int] = field(default_factory=Counter)
    longest_poll: float = 0.0


@dataclass
class Round:
    note_backup: float = 0.0
    note_ctas: float = 0.0
    note_add_column: float = 0.0
    note_restore: float = 0.0
    note_drop: float = 0.0
    note_rename: float = 0.0
    note_drop_column: float = 0.0
    guard_snapshot: float = 0.0
    guard_restore_wall: float = 0.0
    guard_restore_total: float = 0.0
    guard_swap: float = 0.0
    guard_until_swapped: float = 0.0
    snapshot_profile: dict[str, float] = field(default_factory=dict)
    snapshot_calls: Counter[str] = field(default_factory=Counter)
    restore_profile: dict[str, float] = field(default_factory=dict)
    restore_calls: Counter[str] = field(default_factory=Counter)
    note: RestoreFindings = field(default_factory=RestoreFindings)
    guard: RestoreFindings = field(default_factory=RestoreFindings)


class Bench:
    def __init__(self, url: str, rows: int, repeat: int, lookups: int, reader: bool) -> None:
        self.url = url
        self.target = parse_target(url)
        if self.target.dialect not in ("mysql", "mariadb"):
            raise SystemExit("this benchmark needs a MariaDB target (mariadb+pymysql://...)")
        self.rows = rows
        self.repeat = repeat
        self.lookups = lookups
        self.with_reader = reader
        token = secrets.token_hex(3)
        self.token = f"bench_{token}_"
        self.silver = f"bench_{token}_silver"  # the protected table, snapshotted and restored by etlguard
        self.note_schema = f"bench_{token}_note"  # scratch copies for the note's backup and restore
        self.catalog = f"bench_{token}_etlguard"
        self.snapshots = f"bench_{token}_snapshots"
        self.schemas = [self.silver, self.note_schema, self.catalog, self.snapshots]
        self.conn = connect(self.target)
        self.rng = random.Random(20260206)
        self.max_id = 0
        self.next_id = 0

    # -- setup ------------------------------------------------------------------------------------
    def guard(self) -> Guard:
        return Guard.from_url(
            self.url,
            catalog_schema=self.catalog,
            snapshot_schema=self.snapshots,
            protect=[f"{self.silver}.{TABLE}"],
        )

    def build(self) -> float:
        run(self.conn, f"CREATE DATABASE {q(self.silver)}")
        run(self.conn, DDL.format(table=q(self.silver, TABLE)))
        started = time.perf_counter()
        run(self.conn, FILL.format(table=q(self.silver, TABLE), seq=q(self.silver, f"seq_1_to_{self.rows}")))
        seconds = time.perf_counter() - started
        run(self.conn, f"ANALYZE TABLE {q(self.silver, TABLE)}")
        self.max_id = int(run(self.conn, f"SELECT MAX(id) FROM {q(self.silver, TABLE)}")[0][0])
        self.next_id = self.auto_increment(self.silver, TABLE)
        return seconds

    def auto_increment(self, schema: str, table: str) -> int:
        return int(
            run(
                self.conn,
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s",
                [schema, table],
            )[0][0]
        )

    def sizes(self) -> tuple[int, int]:
        data, index = run(
            self.conn,
            "SELECT DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            [self.silver, TABLE],
        )[0]
        return int(data), int(index)

    def warm(self, schema: str, table: str) -> None:
        """Read the whole table once before a timed copy, so each side starts from the same cache state."""
        run(self.conn, f"SELECT COUNT(*), SUM(LENGTH(notes)) FROM {q(schema, table)}")

    def reset_etlguard(self) -> None:
        run(self.conn, f"DROP DATABASE IF EXISTS {q(self.snapshots)}")
        run(self.conn, f"DROP DATABASE IF EXISTS {q(self.catalog)}")
        self.guard().init()  # the catalog exists before a real night's snapshot, so not timed

    def ids(self) -> list[int]:
        return [self.rng.randint(1, self.max_id) for _ in range(self.lookups)]

    # -- one round ----------------------------------------------------------------------------------
    def one_round(self) -> Round:
        r = Round()
        live = q(self.note_schema, TABLE)
        backup_name = f"{TABLE}_backup_{dt.datetime.now():%Y%m%d_%H%M%S}"
        backup = q(self.note_schema, backup_name)

        # Not timed: a scratch copy of the table (same structure) for the note to back up and restore.
        run(self.conn, f"DROP DATABASE IF EXISTS {q(self.note_schema)}")
        run(self.conn, f"CREATE DATABASE {q(self.note_schema)}")
        run(self.conn, f"CREATE TABLE {live} LIKE {q(self.silver, TABLE)}")
        run(self.conn, f"INSERT INTO {live} SELECT * FROM {q(self.silver, TABLE)}")
        self.reset_etlguard()

        # a) the note's backup, exactly as Layer 1 writes it
        self.warm(self.note_schema, TABLE)
        r.note_ctas = timed(self.conn, f"CREATE TABLE {backup} AS SELECT * FROM {live}")
        r.note_add_column = timed(
            self.conn,
            f"ALTER TABLE {backup} ADD COLUMN backup_created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP",
        )
        r.note_backup = r.note_ctas + r.note_add_column

        # b) etlguard's snapshot
        self.warm(self.silver, TABLE)
        # (each round's INSERT probe uses up two ids, so the counter to expect moves on by two)
        self.next_id = self.auto_increment(self.silver, TABLE)
        profile = Profile()
        with profile.installed():
            started = time.perf_counter()
            self.guard().snapshot()
            r.guard_snapshot = time.perf_counter() - started
        r.snapshot_profile, r.snapshot_calls = dict(profile.seconds), profile.calls

        # c) the note's restore ("Recovery Procedures", scenario 1), with a reader polling
        probe = self.rng.randint(1, self.max_id)
        with reader_during(self.target, live, probe, self.with_reader) as reader:
            r.note_drop = timed(self.conn, f"DROP TABLE {live}")
            r.note_rename = timed(self.conn, f"RENAME TABLE {backup} TO {live}")
            r.note_drop_column = timed(self.conn, f"ALTER TABLE {live} DROP COLUMN backup_created_at")
        r.note_restore = r.note_drop + r.note_rename + r.note_drop_column
        self.findings(r.note, reader, self.note_schema, TABLE)

        # d) etlguard's restore, with a reader polling
        probe = self.rng.randint(1, self.max_id)
        profile = Profile()
        with reader_during(self.target, q(self.silver, TABLE), probe, self.with_reader) as reader:
            with profile.installed():
                started = time.perf_counter()
                result = self.guard().restore([f"{self.silver}.{TABLE}"], latest=True)
                r.guard_restore_wall = time.perf_counter() - started
        r.guard_until_swapped = profile.swapped_at - started
        r.guard_restore_total, r.guard_swap = result.total_seconds, result.swap_seconds
        r.restore_profile, r.restore_calls = dict(profile.seconds), profile.calls
        if result.verified != [f"{self.silver}.{TABLE}"]:
            raise SystemExit(f"etlguard did not verify the restored table: {result.verified}")
        self.findings(r.guard, reader, self.silver, TABLE)
        return r

    def findings(self, out: RestoreFindings, reader: Reader | None, schema: str, table: str) -> None:
        out.lookups = point_lookups(self.conn, q(schema, table), self.ids())
        out.structure = structure(self.conn, schema, table)
        out.inserts = insert_probe(self.conn, q(schema, table))
        if reader is not None:
            out.polls, out.missing, out.longest_poll = reader.polls, reader.missing, reader.longest
            out.other_errors = reader.other

    # -- cleanup --------------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Drop every schema this run created. After Ctrl-C a statement of ours may still be running
        on the server and would hold the schema's locks: kill only sessions whose statement names our
        own random schema prefix, then drop."""
        conn = connect(self.target)
        try:
            rows = run(
                conn,
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
                [f"%{self.token}%"],
            )
            for (session,) in rows:
                with contextlib.suppress(pymysql.err.MySQLError):
                    run(conn, f"KILL QUERY {int(session)}")
            for schema in self.schemas:
                run(conn, f"DROP DATABASE IF EXISTS {q(schema)}")
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                self.conn.close()


# -- report ------------------------------------------------------------------------------------------
def report(bench: Bench, rounds: list[Round], baseline: list[float], fill_seconds: float) -> None:
    def med(get: Callable[[Round], float]) -> float:
        return median([get(r) for r in rounds])

    def line(label: str, note: str, guard: str, rat: str = "") -> None:
        print(f"{label:<50} {note:>22} {guard:>22} {rat:>10}")

    last = rounds[-1]
    original = structure(bench.conn, bench.silver, TABLE)

    print()
    print(f"{'':<50} {'design note':>22} {'etlguard':>22} {'etlguard/':>10}")
    print(f"{'operation (median of ' + str(len(rounds)) + ')':<50} {'':>22} {'':>22} {'note':>10}")
    print("-" * 107)
    nb, gs = med(lambda r: r.note_backup), med(lambda r: r.guard_snapshot)
    line("backup / snapshot", secs(nb), secs(gs), ratio(gs, nb))
    line("  note: CREATE TABLE AS SELECT", secs(med(lambda r: r.note_ctas)), "", "")
    line("  note: ALTER TABLE ADD COLUMN", secs(med(lambda r: r.note_add_column)), "", "")
    nr, gt = med(lambda r: r.note_restore), med(lambda r: r.guard_restore_total)
    line("restore, start to finish (total_seconds)", secs(nr), secs(gt), ratio(gt, nr))
    gap = med(lambda r: r.note_drop + r.note_rename)
    gsw = med(lambda r: r.guard_swap)
    line("restore: switch window (swap_seconds)", secs(gap), secs(gsw), ratio(gsw, gap))
    line("  note: DROP TABLE (table gone from here ...)", secs(med(lambda r: r.note_drop)), "", "")
    line("  note: RENAME TABLE (... to here)", secs(med(lambda r: r.note_rename)), "", "")
    line("  note: ALTER TABLE DROP COLUMN", secs(med(lambda r: r.note_drop_column)), "", "")
    gu = med(lambda r: r.guard_until_swapped)
    line("restore: from start until the table is back", secs(gap), secs(gu), ratio(gu, gap))
    nl = median([x for r in rounds for x in r.note.lookups])
    gl = median([x for r in rounds for x in r.guard.lookups])
    n_note = sum(len(r.note.lookups) for r in rounds)
    n_guard = sum(len(r.guard.lookups) for r in rounds)
    line(
        "point lookup by id after restore (median)",
        f"{secs(nl)} (n={n_note})",
        f"{secs(gl)} (n={n_guard})",
        ratio(gl, nl),
    )
    print("-" * 107)
    assert last.note.structure is not None and last.guard.structure is not None

    def same(s: Structure | None) -> str:
        return "yes" if s is not None and s.ddl == original.ddl else "no"

    line(
        "same structure as the original (SHOW CREATE)", same(last.note.structure), same(last.guard.structure)
    )
    line("  PRIMARY KEY", yn(last.note.structure.primary_key), yn(last.guard.structure.primary_key))
    line(
        "  indexes (original: " + str(original.indexes) + ")",
        str(last.note.structure.indexes),
        str(last.guard.structure.indexes),
    )
    line(
        "  AUTO_INCREMENT on id",
        yn(last.note.structure.auto_increment),
        yn(last.guard.structure.auto_increment),
    )
    line(f"two INSERTs without id (next id was {bench.next_id})", last.note.inserts, last.guard.inserts)
    if bench.with_reader:
        line(
            "reader every 10 ms: 'doesn't exist' (1146)",
            f"{sum(r.note.missing for r in rounds)} of {sum(r.note.polls for r in rounds)} polls",
            f"{sum(r.guard.missing for r in rounds)} of {sum(r.guard.polls for r in rounds)} polls",
        )
        line(
            "  restores where the reader saw no table",
            f"{sum(1 for r in rounds if r.note.missing)} of {len(rounds)}",
            f"{sum(1 for r in rounds if r.guard.missing)} of {len(rounds)}",
        )
        other_note = sum((r.note.other_errors for r in rounds), Counter())
        other_guard = sum((r.guard.other_errors for r in rounds), Counter())
        if other_note or other_guard:
            line("  other reader errors", fmt_errors(other_note), fmt_errors(other_guard))
        line(
            "  longest single reader query",
            secs(max(r.note.longest_poll for r in rounds)),
            secs(max(r.guard.longest_poll for r in rounds)),
        )
    print("-" * 107)
    print(f"original table before any restore: point lookup by id {secs(median(baseline))} (median)")
    if last.note.structure.ddl != original.ddl:
        print("\nthe note's restored table (SHOW CREATE TABLE, name left out):")
        print(indent(last.note.structure.ddl))

    for title, get_profile, get_calls, get_total in (
        (
            "etlguard snapshot",
            lambda r: r.snapshot_profile,
            lambda r: r.snapshot_calls,
            lambda r: r.guard_snapshot,
        ),
        (
            "etlguard restore",
            lambda r: r.restore_profile,
            lambda r: r.restore_calls,
            lambda r: r.guard_restore_wall,
        ),
    ):
        # the breakdown of the median round, so that its parts add up to its total
        by_total = sorted(rounds, key=get_total)
        mid = by_total[(len(by_total) - 1) // 2]
        total, parts = get_total(mid), get_profile(mid)
        print(f"\nwhere the {title}'s {secs(total)} go (median round; statements per round):")
        for kind, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:<44} {secs(seconds):>10}  x{get_calls(mid)[kind]:<3} {seconds / total:6.1%}")
        rest = total - sum(parts.values())
        print(f"  {'rest: catalog, journal, checks, connect':<44} {secs(rest):>10}       {rest / total:6.1%}")
    print(f"\n(table built in {secs(fill_seconds)}; every bench_* schema is dropped on exit)")


def load() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def yn(value: bool) -> str:
    return "yes" if value else "no"


def fmt_errors(errors: Counter[int]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in sorted(errors.items())) or "none"


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# -- main ----------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (default 1000000)")
    p.add_argument(
        "--url",
        default=os.environ.get("ETLGUARD_BENCH_URL", DEFAULT_URL),
        help=f"MariaDB target URL (default $ETLGUARD_BENCH_URL or {DEFAULT_URL})",
    )
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    p.add_argument(
        "--lookups",
        type=int,
        default=200,
        help=f"point lookups after each restore (default 200; stops after {LOOKUP_BUDGET_SECONDS:.0f} s)",
    )
    p.add_argument("--no-reader", action="store_true", help="skip the concurrent reader during restores")
    args = p.parse_args(argv)
    if args.rows < 10 or args.repeat < 1 or args.lookups < 1:
        p.error("--rows must be at least 10, --repeat and --lookups at least 1")
    return args


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while exc is not None and seen < 20:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args.url, args.rows, args.repeat, args.lookups, reader=not args.no_reader)
    try:
        version = run(bench.conn, "SELECT VERSION()")[0][0]
        pool = int(run(bench.conn, "SELECT @@innodb_buffer_pool_size")[0][0])
        cpus = os.cpu_count()
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
        print("etlguard benchmark: snapshot/restore against the design note's Layer 1 backup/restore")
        print(f"server   {version} at {bench.target.redacted}, innodb_buffer_pool_size {mb(pool)}")
        print(
            f"machine  {cpus} CPUs ({usable} usable by this process), Python {sys.version.split()[0]}, "
            f"load average {load()} at start"
        )
        print(f"schemas  {bench.token}* (dropped on exit)")
        fill = bench.build()
        data, index = bench.sizes()
        print(
            f"table    {TABLE}: {args.rows:,} rows, data {mb(data)} + indexes {mb(index)}, "
            f"built in {secs(fill)}"
        )
        baseline = point_lookups(bench.conn, q(bench.silver, TABLE), bench.ids())
        rounds = []
        for i in range(args.repeat):
            started = time.perf_counter()
            rounds.append(bench.one_round())
            r = rounds[-1]
            print(
                f"round {i + 1}/{args.repeat}: backup {secs(r.note_backup)} vs snapshot "
                f"{secs(r.guard_snapshot)}; restore {secs(r.note_restore)} vs {secs(r.guard_restore_total)} "
                f"(swap {secs(r.guard_swap)}); round took {secs(time.perf_counter() - started)}",
                flush=True,
            )
        report(bench, rounds, baseline, fill)
        print(
            f"(load average {load()} at the end; other work on the machine or the server skews the figures)"
        )
        return 0
    except BaseException as exc:
        # etlguard may report a Ctrl-C that cut its connection as a failed snapshot or restore
        if not any(isinstance(e, KeyboardInterrupt) for e in _chain(exc)):
            raise
        print("\ninterrupted; dropping the bench_* schemas", file=sys.stderr)
        return 130
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())

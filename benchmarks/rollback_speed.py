"""Rollback speed: how soon a failed guarded run's tables are back, and what the whole rollback costs.

MariaDB: a protected set shaped like the example pipeline (the SCD2 history table of
snapshot_restore.py, `--rows` rows, and a 10,000-row dimension). Each round, interleaved:
  a) the design note's CTAS backups of the set (CTAS + ADD COLUMN per table), timed, then dropped;
  b) a guarded run (Guard.protect) whose "ETL" changes every table and then fails. A reader on its
     own connection polls one statement over all tables every 10 ms; "time until back" runs from
     the ETL's failure to the first poll that sees every table in its pre-run state. "Rollback
     total" is the whole rollback, verification included (RunResult.rollback_seconds);
     "back (internal)" is the rollback's own clock up to its RENAME (rollback_back_seconds).
DuckDB (`--duck-rows`, 0 to skip): etlguard's snapshot and restore of one table against a plain
CTAS of it and a plain copy back (CREATE OR REPLACE TABLE t AS SELECT * FROM copy).
`--trace` prints every statement etlguard sent from the ETL's failure to the end of the last
round's rollback, with its time, and how many came before the RENAME.

    .venv/bin/python benchmarks/rollback_speed.py                   # 1M rows, 3 rounds, DuckDB 10M
    .venv/bin/python benchmarks/rollback_speed.py --rows 4000000 --duck-rows 0
    .venv/bin/python benchmarks/rollback_speed.py --rows 100000 --repeat 1 --duck-rows 0 --trace
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pymysql
import pymysql.cursors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from snapshot_restore import DDL, FILL, TABLE, connect, median, q, run, secs

from etlguard import Guard
from etlguard.target import parse_target

DEFAULT_URL = "mariadb+pymysql://root@127.0.0.1:3306"
DIM = "dim_room"
POLL = 0.010


class Trace:
    """Every statement etlguard's own thread sends through PyMySQL, with when and how long."""

    def __init__(self) -> None:
        self.on = False
        self.statements: list[tuple[float, float, str]] = []
        self.thread = threading.current_thread()
        original = pymysql.cursors.Cursor.execute

        def execute(cursor: Any, query: str, args: Any = None) -> Any:
            started = time.perf_counter()
            try:
                return original(cursor, query, args)
            finally:
                if self.on and threading.current_thread() is self.thread:
                    took = time.perf_counter() - started
                    self.statements.append((started, took, " ".join(str(query).split())))

        pymysql.cursors.Cursor.execute = execute  # type: ignore[method-assign]

    def report(self, since: float) -> None:
        shown = [s for s in self.statements if s[0] >= since]
        rename = next((i for i, s in enumerate(shown) if s[2].startswith("RENAME TABLE")), len(shown))
        print(f"trace: {rename} statements from the ETL's failure to the RENAME, {len(shown)} in all")
        for i, (started, took, sql) in enumerate(shown):
            mark = "*" if i == rename else " "
            print(f"  {(started - since) * 1000:9.1f} ms {took * 1000:8.2f} ms {mark} {sql[:140]}")


class Reader(threading.Thread):
    """Polls every table's marker in one statement every 10 ms; records when each state shows."""

    def __init__(self, url: str, sql: str) -> None:
        super().__init__(daemon=True)
        self.conn = connect(parse_target(url))
        self.sql = sql
        self.stop = threading.Event()
        self.seen: list[tuple[float, tuple[object, ...]]] = []
        self.missing = 0  # error 1146, table doesn't exist
        self.other = 0

    def run(self) -> None:
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                try:
                    cur.execute(self.sql)
                    row = tuple(cur.fetchone() or ())
                    self.seen.append((time.perf_counter(), row))
                except pymysql.err.MySQLError as exc:
                    if exc.args and exc.args[0] == 1146:
                        self.missing += 1
                    else:
                        self.other += 1
                time.sleep(POLL)
        self.conn.close()

    def first(self, state: tuple[object, ...], after: float) -> float:
        return next((t for t, row in self.seen if t >= after and row == state), float("nan"))


def mariadb(url: str, rows: int, repeat: int, trace: Trace | None = None) -> None:
    token = f"bench_{secrets.token_hex(3)}"
    silver, note, catalog, snaps = (f"{token}_{s}" for s in ("silver", "note", "etlguard", "snapshots"))
    conn = connect(parse_target(url))
    try:
        for schema in (silver, note):
            run(conn, f"CREATE DATABASE {q(schema)}")
        run(conn, DDL.format(table=q(silver, TABLE)))
        run(conn, FILL.format(table=q(silver, TABLE), seq=q(silver, f"seq_1_to_{rows}")))
        run(conn, f"CREATE TABLE {q(silver, DIM)} (id INT PRIMARY KEY, name VARCHAR(40), note VARCHAR(40))")
        run(
            conn,
            f"INSERT INTO {q(silver, DIM)} SELECT seq, CONCAT('room ', seq), 'base' FROM {q(silver, 'seq_1_to_10000')}",
        )
        run(conn, f"UPDATE {q(silver, TABLE)} SET notes = 'base' WHERE id = 1")
        tables = [TABLE, DIM]
        markers = {TABLE: "notes", DIM: "note"}
        sql = "SELECT " + ", ".join(f"(SELECT {markers[t]} FROM {q(silver, t)} WHERE id = 1)" for t in tables)
        guard = Guard.from_url(
            url, catalog_schema=catalog, snapshot_schema=snaps, protect=[f"{silver}.{t}" for t in tables]
        )
        guard.init()
        rounds: list[dict[str, float]] = []
        for _ in range(repeat):
            r: dict[str, float] = {}
            started = time.perf_counter()
            for t in tables:  # a) the note's Layer 1 backup of the set
                run(conn, f"CREATE TABLE {q(note, t)} AS SELECT * FROM {q(silver, t)}")
                run(
                    conn,
                    f"ALTER TABLE {q(note, t)} ADD COLUMN backup_created_at DATETIME DEFAULT CURRENT_TIMESTAMP",
                )
            r["ctas"] = time.perf_counter() - started
            for t in tables:
                run(conn, f"DROP TABLE {q(note, t)}")
            reader = Reader(url, sql)
            reader.start()
            failed_at = 0.0
            result = None
            try:
                with guard.protect() as result:  # b) a guarded run that fails
                    for t in tables:
                        run(conn, f"UPDATE {q(silver, t)} SET {markers[t]} = 'etl' WHERE id = 1")
                        run(conn, f"DELETE FROM {q(silver, t)} WHERE id > 1 AND id % 100 = 0")
                    time.sleep(0.1)
                    if trace:
                        trace.statements.clear()
                        trace.on = True
                    failed_at = time.perf_counter()
                    raise RuntimeError("the ETL failed")
            except RuntimeError:
                pass
            if trace:
                trace.on = False
            time.sleep(0.1)
            reader.stop.set()
            reader.join(30)
            assert result is not None and result.rollback_verified, result
            r["back"] = reader.first(("base",) * len(tables), failed_at) - failed_at
            r["back_internal"] = result.rollback_back_seconds
            r["rollback"] = result.rollback_seconds
            r["snapshot"] = result.snapshot_seconds
            r["missing"] = reader.missing + reader.other
            rounds.append(r)
        med = {k: median([r[k] for r in rounds]) for k in rounds[0]}
        print(f"MariaDB, {rows:,} + 10,000 rows, {repeat} rounds (medians)")
        print(f"  note's CTAS backups of the set      {secs(med['ctas'])}")
        print(f"  etlguard snapshot of the set        {secs(med['snapshot'])}")
        print(
            f"  time until every table is back      {secs(med['back'])} (10 ms reader; internal {secs(med['back_internal'])})"
        )
        print(
            f"  rollback total, verification incl. {secs(med['rollback'])}  = {med['rollback'] / med['ctas']:.2f}x CTAS"
        )
        print(f"  reader errors (1146 and other)      {int(max(r['missing'] for r in rounds))}")
        if trace:
            trace.report(failed_at)
    finally:
        for schema in (silver, note, catalog, snaps):
            run(conn, f"DROP DATABASE IF EXISTS {q(schema)}")
        conn.close()


def duck(rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        con = duckdb.connect(str(path))
        con.execute("CREATE SCHEMA silver")
        con.execute(
            "CREATE TABLE silver.h AS SELECT i AS id, i % 100000 AS tenant_id, 'status ' || (i % 5) AS status, "
            "DATE '2019-01-01' + CAST(i % 3000 AS INTEGER) AS valid_from, i % 10 = 9 AS is_current, "
            "md5(CAST(i AS VARCHAR)) AS notes FROM range(?) r(i)",
            [rows],
        )
        con.close()
        url = f"duckdb:///{path}"
        guard = Guard.from_url(
            url, catalog_schema="etlguard", snapshot_schema="snapshots", protect=["silver.h"]
        )
        guard.init()
        out: dict[str, list[float]] = {"ctas": [], "copy": [], "snapshot": [], "restore": []}
        for _ in range(repeat):
            con = duckdb.connect(str(path))
            started = time.perf_counter()
            con.execute("CREATE TABLE silver.h_backup AS SELECT * FROM silver.h")
            out["ctas"].append(time.perf_counter() - started)
            started = time.perf_counter()
            con.execute("CREATE OR REPLACE TABLE silver.h_back AS SELECT * FROM silver.h_backup")
            out["copy"].append(time.perf_counter() - started)
            con.execute("DROP TABLE silver.h_backup")
            con.execute("DROP TABLE silver.h_back")
            con.close()
            started = time.perf_counter()
            guard.snapshot()
            out["snapshot"].append(time.perf_counter() - started)
            con = duckdb.connect(str(path))
            con.execute("DELETE FROM silver.h WHERE id % 10 = 0")
            con.close()
            started = time.perf_counter()
            result = guard.restore(["silver.h"], latest=True)
            out["restore"].append(time.perf_counter() - started)
            assert result.verified == ["silver.h"]
        m = {k: median(v) for k, v in out.items()}
        print(f"DuckDB, {rows:,} rows, {repeat} rounds (medians)")
        print(
            f"  plain CTAS {secs(m['ctas'])}; etlguard snapshot {secs(m['snapshot'])} = {m['snapshot'] / m['ctas']:.2f}x"
        )
        print(
            f"  plain copy back {secs(m['copy'])}; etlguard restore {secs(m['restore'])} = {m['restore'] / m['copy']:.2f}x"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the history table (default 1000000)")
    p.add_argument(
        "--duck-rows", type=int, default=10_000_000, help="DuckDB table rows; 0 skips (default 10000000)"
    )
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    p.add_argument("--url", default=os.environ.get("ETLGUARD_BENCH_URL", DEFAULT_URL), help="MariaDB target")
    p.add_argument("--trace", action="store_true", help="print the last rollback's statements, timed")
    args = p.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if args.rows:
        mariadb(args.url, args.rows, args.repeat, Trace() if args.trace else None)
    if args.duck_rows:
        duck(args.duck_rows, args.repeat)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long a PostgreSQL restore blocks readers: the previous refill (TRUNCATE + INSERT in one
transaction) against etlguard's refill (DELETE + INSERT) and its rebuild (a copy built first,
then a short rename swap), on the same table in the same run.

A reader on its own connection looks one row up by primary key every 10 ms during each restore;
the longest single lookup is the longest time a reader was blocked. The same reader runs for a
while with nothing else happening first: that is the baseline the figures are set against.

Usage:
  .venv/bin/python benchmarks/pg_restore_readers.py [--rows 300000] [--repeat 3]
      [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Everything lives in schemas named bench_<random>_*, dropped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import psycopg

from etlguard import Config, Guard
from etlguard.target import parse_target

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class Reader(threading.Thread):
    """Point lookups every 10 ms; records each lookup's latency in seconds."""

    def __init__(self, connect: Callable[[], psycopg.Connection], table: str, rows: int) -> None:
        super().__init__(daemon=True)
        self.connect, self.table, self.rows = connect, table, rows
        self.latencies: list[float] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.connect() as conn:
            conn.prepare_threshold = None  # a prepared SELECT fails once its table's columns change
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(
                        f"SELECT id, tenant, amount, note FROM {self.table} WHERE id = %s",
                        [random.randint(1, self.rows)],
                    )
                except psycopg.Error:
                    self.errors += 1
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.01)


@contextlib.contextmanager
def reading(connect: Callable[[], psycopg.Connection], table: str, rows: int) -> Iterator[Reader]:
    reader = Reader(connect, table, rows)
    reader.start()
    time.sleep(0.1)
    try:
        yield reader
    finally:
        time.sleep(0.1)
        reader.stop.set()
        reader.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("ETLGUARD_BENCH_PG_URL", DEFAULT_URL))
    args = parser.parse_args()
    target = parse_target(args.url)
    prefix = f"bench_{secrets.token_hex(3)}"

    def connect() -> psycopg.Connection:
        return psycopg.connect(
            host=target.host,
            port=target.port or 5432,
            user=target.user or None,
            password=target.password or None,
            dbname=target.database or "postgres",
            autocommit=True,
        )

    admin = connect()
    schemas = [f"{prefix}_{s}" for s in ("gold", "etlguard", "snaps")]
    gold = schemas[0]
    table = f'"{gold}".facts'
    try:
        for s in schemas:
            admin.execute(f'CREATE SCHEMA "{s}"')
        build(admin, table, args.rows)
        guard = Guard(
            Config.from_dict(
                {
                    "target": args.url,
                    "catalog_schema": schemas[1],
                    "snapshot_schema": schemas[2],
                    "protect": [f"{gold}.facts"],
                }
            )
        )
        [snap] = guard.snapshot()
        snapshot = f'"{snap.snapshot.schema}"."{snap.snapshot.name}"'
        report(admin, connect, table, snapshot, guard, args)
    finally:
        for s in schemas:
            admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        admin.close()


def build(conn: psycopg.Connection, table: str, rows: int) -> None:
    conn.execute(
        f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, tenant INT NOT NULL, amount NUMERIC(12,2), "
        "note TEXT, updated TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    conn.execute(f"CREATE INDEX ON {table} (tenant)")
    conn.execute(
        f"INSERT INTO {table} (id, tenant, amount, note) SELECT i, i % 1000, i / 7.0, md5(i::text) "
        f"FROM generate_series(1, {rows}) i"
    )
    conn.execute(f"VACUUM ANALYZE {table}")


def report(
    admin: psycopg.Connection,
    connect: Callable[[], psycopg.Connection],
    table: str,
    snapshot: str,
    guard: Guard,
    args: argparse.Namespace,
) -> None:
    with reading(connect, table, args.rows) as idle:
        time.sleep(2)
    baseline = max(idle.latencies)

    def change_rows() -> None:  # what the failed ETL did, before the restore (not measured)
        admin.execute(f"UPDATE {table} SET note = 'changed' WHERE id % 10 = 0")

    def change_structure() -> None:
        admin.execute(f"ALTER TABLE {table} ADD COLUMN extra INT")

    def old_refill() -> None:  # what etlguard did before: TRUNCATE holds ACCESS EXCLUSIVE throughout
        with admin.transaction():
            admin.execute(f"TRUNCATE {table}")
            admin.execute(f"INSERT INTO {table} SELECT * FROM {snapshot}")

    def restore() -> None:
        guard.restore([table.replace('"', "")], latest=True)

    version = admin.execute("SHOW server_version").fetchone()
    print(f"PostgreSQL {version[0] if version else '?'}, {args.rows:,} rows, {args.repeat} rounds")
    print(
        f"baseline, nothing else running: point lookup median {statistics.median(idle.latencies) * 1000:.1f} ms, "
        f"longest {baseline * 1000:.1f} ms"
    )
    print(f"{'restore':<44}{'total (median)':>16}{'longest reader wait':>22}{'x baseline':>12}")
    for label, before, action in (
        ("previous refill, its two statements only", change_rows, old_refill),
        ("etlguard refill: DELETE + INSERT", change_rows, restore),
        ("etlguard rebuild: copy, then rename swap", change_structure, restore),
    ):
        totals, waits, errors = [], [], 0
        for _ in range(args.repeat):
            before()
            admin.execute(f"VACUUM {table}")
            with reading(connect, table, args.rows) as reader:
                started = time.perf_counter()
                action()
                totals.append(time.perf_counter() - started)
            waits.append(max(reader.latencies))
            errors += reader.errors
        wait = max(waits)
        print(
            f"{label:<44}{statistics.median(totals):>14.2f} s{wait * 1000:>19.1f} ms"
            f"{wait / baseline:>11.1f}x" + (f"  ({errors} reader errors)" if errors else "")
        )
    print(f"(load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end)")


if __name__ == "__main__":
    main()

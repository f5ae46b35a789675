"""restore --from: memory stays flat however many rows are copied from the other server.

Builds a source table of N rows in one scratch schema and a live table of the same shape in
another, then runs `Guard.restore_from` twice in the same process: first with a baseline of
`--baseline` rows, then with `--rows` rows. For each it reports the Python heap peak seen by
tracemalloc during the copy and the growth of the process's peak RSS, and prints the ratio of
the large run to the baseline. Streaming means the ratio stays near 1 while the rows grow 10x.

The source may be another server (`--source-url`); by default it is a second schema on the
target, which exercises the same code path (server-side cursor, batched inserts, fingerprint).

Usage:
  .venv/bin/python benchmarks/restore_from_memory.py [--rows 1000000] [--baseline 100000]
      [--url mariadb+pymysql://root@127.0.0.1:3306] [--source-url URL]

Every schema it creates is named bench_<random>_* and dropped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import secrets
import time
import tracemalloc
from collections.abc import Iterator

import pymysql

from etlguard import Guard
from etlguard.target import parse_target

DEFAULT_URL = "mariadb+pymysql://root@127.0.0.1:3306"
DDL = (
    "CREATE TABLE {t} (id BIGINT PRIMARY KEY, tenant_id INT NOT NULL, status VARCHAR(32) NOT NULL, "
    "valid_from DATE NOT NULL, notes VARCHAR(255), updated_at DATETIME NOT NULL)"
)
FILL = (
    "INSERT INTO {t} SELECT seq, seq % 5000, ELT(1 + seq % 3, 'active', 'notice', 'moved_out'), "
    "DATE '2024-01-01' + INTERVAL (seq % 700) DAY, REPEAT('n', seq % 80), NOW() FROM {s}.seq_1_to_{n}"
)


def connect(url: str) -> pymysql.connections.Connection:
    t = parse_target(url)
    return pymysql.connect(
        host=t.host, port=t.port or 3306, user=t.user, password=t.password, autocommit=True
    )


@contextlib.contextmanager
def scratch(conn: pymysql.connections.Connection, *names: str) -> Iterator[list[str]]:
    tag = f"bench_{secrets.token_hex(4)}"
    schemas = [f"{tag}_{n}" for n in names]
    try:
        for s in schemas:
            conn.cursor().execute(f"CREATE DATABASE `{s}`")
        yield schemas
    finally:
        for s in schemas:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{s}`")


def fill(conn: pymysql.connections.Connection, schema: str, rows: int) -> None:
    t = f"`{schema}`.`history`"
    conn.cursor().execute(f"DROP TABLE IF EXISTS {t}")
    conn.cursor().execute(DDL.format(t=t))
    conn.cursor().execute(FILL.format(t=t, s=f"`{schema}`", n=rows))


def measure(
    guard: Guard, live: str, source_url: str, schema_map: dict[str, str]
) -> tuple[float, float, float]:
    """Seconds, tracemalloc peak (MiB) and peak-RSS growth (MiB) of one restore --from."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    guard.restore_from([live], source_url, schema_map)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    return seconds, peak / 2**20, rss_growth / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=100_000)
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--source-url", default=None, help="Another server (default: the target).")
    args = ap.parse_args()
    source_url = args.source_url or args.url
    target, source = connect(args.url), connect(source_url)
    with (
        scratch(target, "live", "catalog", "snaps") as (live, catalog, snaps),
        scratch(source, "src") as (src,),
    ):
        guard = Guard.from_url(args.url, catalog_schema=catalog, snapshot_schema=snaps, protect=[])
        results = {}
        for rows in (args.baseline, args.rows):
            fill(target, live, 10)
            fill(source, src, rows)
            results[rows] = measure(guard, f"{live}.history", source_url, {live: src})
            print(
                f"{rows:>10,} rows: {results[rows][0]:7.1f} s, python heap peak {results[rows][1]:6.1f} MiB, "
                f"peak RSS growth {results[rows][2]:6.1f} MiB"
            )
        small, large = results[args.baseline], results[args.rows]
        print(
            f"{args.rows / args.baseline:.0f}x the rows: {large[1] / max(small[1], 0.01):.2f}x the heap peak, "
            f"{large[0] / max(small[0], 0.001):.1f}x the time"
        )


if __name__ == "__main__":
    main()

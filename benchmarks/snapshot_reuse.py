"""A second snapshot of an unchanged table: etlguard's reuse against a CTAS of the table.

Builds the table of snapshot_restore.py (the note's `silver.tenant_status_history`: primary
key, two secondary indexes, AUTO_INCREMENT; ten SCD2 rows per tenant) in scratch schemas, takes
one snapshot with etlguard (a full copy), then, interleaved `--repeat` times (medians reported):

  a) the note's backup of the same table:  CREATE TABLE b AS SELECT * FROM t  (then dropped)
  b) etlguard's second snapshot:           Guard.snapshot() with nothing changed in between,
                                           which reuses the first snapshot (no table written)
  c) the same with snapshot.reuse off:     a full copy, for scale

and reports the ratio b/a (the issue's target is <= 0.35) and what b wrote: tables and bytes in
the snapshot schema before and after, and the server's redo log bytes (Innodb_os_log_written;
other sessions on a shared server add to it; the delta is read around b alone).

Usage:
  .venv/bin/python benchmarks/snapshot_reuse.py [--rows 1000000] [--repeat 3]
      [--url mariadb+pymysql://root@127.0.0.1:3306]

Every schema it creates is named bench_<random>_* and dropped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable

from snapshot_restore import DDL, FILL, TABLE, connect, median, q, run, secs

from etlguard import Guard
from etlguard.target import parse_target


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mariadb+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    conn = connect(parse_target(args.url))
    tag = f"bench_{secrets.token_hex(4)}"
    data, catalog, snaps = f"{tag}_silver", f"{tag}_etlguard", f"{tag}_snaps"

    def guard(reuse: bool) -> Guard:
        return Guard.from_url(
            args.url,
            catalog_schema=catalog,
            snapshot_schema=snaps,
            protect=[f"{data}.{TABLE}"],
            snapshot={"reuse": reuse},
        )

    def written() -> tuple[int, int]:
        tables, size = run(
            conn,
            "SELECT COUNT(*), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s",
            [snaps],
        )[0]
        return int(tables), int(size)

    def redo_bytes() -> int:
        return int(run(conn, "SHOW GLOBAL STATUS LIKE 'Innodb_os_log_written'")[0][1])

    try:
        run(conn, f"CREATE DATABASE {q(data)}")
        run(conn, DDL.format(table=q(data, TABLE)))
        run(conn, FILL.format(table=q(data, TABLE), seq=q(data, f"seq_1_to_{args.rows}")))
        run(conn, f"ANALYZE TABLE {q(data, TABLE)}")
        first = timed(lambda: guard(True).snapshot())
        print(f"{args.rows:,} rows; first snapshot (a full copy): {secs(first)}")
        ctas, reuse, copy, inserted = [], [], [], []
        reused_all = True
        for n in range(args.repeat):
            run(conn, f"SELECT COUNT(*) FROM {q(data, TABLE)}")  # same cache state for both sides
            ctas.append(
                timed(lambda: run(conn, f"CREATE TABLE {q(data, 'b')} AS SELECT * FROM {q(data, TABLE)}"))
            )
            run(conn, f"DROP TABLE {q(data, 'b')}")
            before, counter = written(), redo_bytes()
            started = time.perf_counter()
            took = guard(True).snapshot()
            reuse.append(time.perf_counter() - started)
            inserted.append(redo_bytes() - counter)
            after = written()
            reused_all &= all(s.reuses is not None for s in took) and after == before
            print(
                f"round {n + 1}: CTAS {secs(ctas[-1])}, reused snapshot {secs(reuse[-1])} "
                f"(snapshot schema {before[0]} tables/{before[1]:,} B before, {after[0]}/{after[1]:,} B after)"
            )
            copy.append(timed(lambda: guard(False).snapshot()))
        print()
        print("| measure | median | against CTAS |")
        print("|---|---|---|")
        print(f"| CTAS of the table (the note's backup) | {secs(median(ctas))} | 1.00x |")
        r = median(reuse) / median(ctas)
        print(f"| second snapshot, unchanged (reused) | {secs(median(reuse))} | {r:.2f}x |")
        print(
            f"| second snapshot, reuse off (full copy) | {secs(median(copy))} | {median(copy) / median(ctas):.2f}x |"
        )
        print()
        print(
            f"reused every round: {'yes' if reused_all else 'NO'}; snapshot tables/bytes unchanged by a reuse; "
            f"server-wide redo log bytes during a reuse (all sessions; a reuse itself writes one catalog row): {sorted(inserted)}"
        )
    finally:
        for schema in (data, catalog, snaps):
            run(conn, f"DROP DATABASE IF EXISTS {q(schema)}")


if __name__ == "__main__":
    main()

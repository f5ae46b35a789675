"""Full-copy speed and writer waits: etlguard's snapshot in each consistency mode against CTAS
and an exact LIKE + INSERT copy, on the table of `snapshot_restore.py` (the design note's
`silver.tenant_status_history`: BIGINT AUTO_INCREMENT primary key, a unique and a secondary
index; 1M rows by default).

Each round (`--repeat`, default 3; medians reported) runs, interleaved, after one warming read:

  ctas          CREATE TABLE c AS SELECT * FROM t   (the design note's backup; not exact: no keys)
  like+insert   CREATE TABLE c LIKE t; INSERT INTO c SELECT * FROM t   (exact, unverified)
  set           Guard.snapshot() with snapshot.consistency: set   (exact, verified)
  table         Guard.snapshot() with snapshot.consistency: table (exact, verified)
  export+import with --physical DATADIR: CREATE TABLE c LIKE t; ALTER TABLE c DISCARD
                TABLESPACE; FLUSH TABLES t FOR EXPORT; copy t.ibd and t.cfg; UNLOCK TABLES;
                ALTER TABLE c IMPORT TABLESPACE   (exact, unverified: like+insert's peer)
  physical set, physical table   with --physical DATADIR: the same with snapshot.physical
                (the table copied by its tablespace file: FLUSH TABLES ... FOR EXPORT, copy
                the .ibd and .cfg, IMPORT TABLESPACE; exact, verified). Needs etlguard on the
                database host, able to read and write DATADIR (SELECT @@datadir).

During each etlguard snapshot a writer on its own connection runs single-row UPDATEs by primary
key back to back (autocommit); the longest one that overlapped the snapshot is reported per mode.

Usage:
  .venv/bin/python benchmarks/copy_speed.py [--rows 1000000] [--repeat 3]
      [--url mariadb+pymysql://root@127.0.0.1:3306] [--physical /var/lib/mysql]
Quick check:  .venv/bin/python benchmarks/copy_speed.py --rows 100000 --repeat 1

Every schema it creates is named bench_<random>_* and dropped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import sys
import threading
import time
from collections import defaultdict

import pymysql
from snapshot_restore import DDL, FILL, TABLE, connect, q, run

from etlguard import Config, Guard
from etlguard.target import parse_target

DEFAULT_URL = "mariadb+pymysql://root@127.0.0.1:3306"
MODES = ("set", "table")


class Writer:
    """Single-row UPDATEs by primary key, back to back, on their own connection."""

    def __init__(self, url: str, table: str, max_id: int) -> None:
        self.conn = connect(parse_target(url))
        self.table, self.max_id = table, max_id
        self.stop = threading.Event()
        self.waits: list[tuple[float, float]] = []  # (start, end) of each UPDATE
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            key = rng.randint(1, self.max_id)
            started = time.perf_counter()
            run(self.conn, f"UPDATE {self.table} SET room_id = room_id + 1 WHERE id = {key}")
            self.waits.append((started, time.perf_counter()))

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.conn.close()

    def longest_during(self, begin: float, end: float) -> float:
        return max((b - a for a, b in self.waits if b >= begin and a <= end), default=0.0)


def transport(
    conn: pymysql.connections.Connection, datadir: str, schemas: tuple[str, str], source: str, copy: str
) -> None:
    """A bare transportable-tablespace copy of `source` into `copy` (scratch.c), unverified."""
    run(conn, f"CREATE TABLE {copy} LIKE {source}")
    run(conn, f"ALTER TABLE {copy} DISCARD TABLESPACE")
    run(conn, f"FLUSH TABLES {source} FOR EXPORT")
    try:
        for suffix in (".ibd", ".cfg"):
            src = os.path.join(datadir, schemas[0], TABLE + suffix)
            dest = os.path.join(datadir, schemas[1], "c" + suffix)
            shutil.copyfile(src, dest)
            st = os.stat(src)
            os.chown(dest, st.st_uid, st.st_gid)
    finally:
        run(conn, "UNLOCK TABLES")
    run(conn, f"ALTER TABLE {copy} IMPORT TABLESPACE")
    os.remove(os.path.join(datadir, schemas[1], "c.cfg"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--physical", metavar="DATADIR", help="also time snapshot.physical copies")
    args = parser.parse_args()
    modes = [*MODES, *([f"physical {m}" for m in MODES] if args.physical else [])]
    plain = ["ctas", "like+insert", *(["export+import"] if args.physical else [])]
    token = f"bench_{secrets.token_hex(3)}"
    data, scratch, catalog, snaps = (f"{token}_{s}" for s in ("silver", "scratch", "etlguard", "snapshots"))
    conn = connect(parse_target(args.url))
    source = q(data, TABLE)
    times: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    try:
        for schema in (data, scratch):
            run(conn, f"CREATE DATABASE {q(schema)}")
        run(conn, DDL.format(table=source))
        run(conn, FILL.format(table=source, seq=q(data, f"seq_1_to_{args.rows}")))
        run(conn, f"ANALYZE TABLE {source}")
        max_id = int(run(conn, f"SELECT MAX(id) FROM {source}")[0][0])
        (size,) = run(
            conn,
            "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            [data, TABLE],
        )[0]
        print(
            f"{args.rows:,} rows, {int(size) / 2**20:.0f} MiB; {args.repeat} interleaved rounds", flush=True
        )
        guards = {
            mode: Guard(
                Config.from_dict(
                    {
                        "target": args.url,
                        "catalog_schema": catalog,
                        "snapshot_schema": snaps,
                        "protect": [f"{data}.{TABLE}"],
                        "snapshot": {
                            "consistency": mode.split()[-1],
                            **({"physical": {"datadir": args.physical}} if "physical" in mode else {}),
                        },
                    }
                )
            )
            for mode in modes
        }
        guards["set"].init()
        for n in range(args.repeat):
            for variant in (*plain, *modes):
                run(conn, f"SELECT COUNT(*), SUM(LENGTH(notes)) FROM {source}")  # same cache state
                copy = q(scratch, "c")
                run(conn, f"DROP TABLE IF EXISTS {copy}")
                if variant in modes:
                    with Writer(args.url, source, max_id) as writer:
                        time.sleep(0.2)
                        began = time.perf_counter()
                        (snap,) = guards[variant].snapshot()
                        ended = time.perf_counter()
                        time.sleep(0.2)
                    waits[variant].append(writer.longest_during(began, ended))
                    run(conn, f"DROP TABLE {q(snap.snapshot.schema, snap.snapshot.name)}")
                else:
                    began = time.perf_counter()
                    if variant == "ctas":
                        run(conn, f"CREATE TABLE {copy} AS SELECT * FROM {source}")
                    elif variant == "export+import":
                        transport(conn, args.physical, (data, scratch), source, copy)
                    else:
                        run(conn, f"CREATE TABLE {copy} LIKE {source}")
                        run(conn, f"INSERT INTO {copy} SELECT * FROM {source}")
                    ended = time.perf_counter()
                times[variant].append(ended - began)
                print(f"  round {n + 1} {variant:12} {ended - began:6.2f} s", flush=True)
    finally:
        for schema in (data, scratch, catalog, snaps):
            run(conn, f"DROP DATABASE IF EXISTS {q(schema)}")
        conn.close()
    ctas, like = statistics.median(times["ctas"]), statistics.median(times["like+insert"])
    print()
    print("| copy | median | vs CTAS | vs LIKE+INSERT | longest single-row UPDATE during it |")
    print("|---|---|---|---|---|")
    for variant in (*plain, *modes):
        m = statistics.median(times[variant])
        name = (
            f"etlguard snapshot, {variant.replace('physical ', 'physical, consistency: ')}"
            if variant.startswith("physical")
            else f"etlguard snapshot, consistency: {variant}"
            if variant in modes
            else variant
        )
        wait = "-"
        if waits[variant]:
            worst, typical = max(waits[variant]), statistics.median(waits[variant])
            wait = f"{worst * 1000:.0f} ms (median of rounds {typical * 1000:.0f} ms)"
        print(f"| {name} | {m:.2f} s | {m / ctas:.2f}x | {m / like:.2f}x | {wait} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

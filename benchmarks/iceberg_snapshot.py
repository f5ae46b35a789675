"""Iceberg: etlguard's snapshot (a tag per table) and rollback (pointers moved in one SQL-catalog
transaction) against a copy of the same three tables, measured in the same run.

    python benchmarks/iceberg_snapshot.py --rows 2000000

A SQL catalog on SQLite and local files in a temporary directory, removed at the end. The copy
is what a copy-shaped snapshot costs here: read each table with pyarrow, write a new table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from etlguard import Config, Guard

NAMES = ("orders", "customers", "events")


def build(catalog: SqlCatalog, rows: int) -> None:
    catalog.create_namespace("gold")
    data = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "tenant": pa.array([i % 997 for i in range(rows)], pa.int32()),
            "amount": pa.array([i * 0.25 for i in range(rows)], pa.float64()),
        }
    )
    for name in NAMES:
        catalog.create_table(("gold", name), schema=data.schema).append(data)


def copy_all(catalog: SqlCatalog, suffix: str) -> None:
    for name in NAMES:
        data = catalog.load_table(("gold", name)).scan().to_arrow()
        catalog.create_table(("gold", f"{name}_{suffix}"), schema=data.schema).append(data)


def change_two(catalog: SqlCatalog) -> None:
    """What a failed run leaves: rows appended to one table, rows deleted from another."""
    orders = catalog.load_table(("gold", "orders"))
    orders.append(orders.scan(limit=1000).to_arrow())
    catalog.load_table(("gold", "customers")).delete("id < 1000")


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="etlguard-iceberg-bench-") as tmp:
        db = Path(tmp) / "catalog.db"
        (Path(tmp) / "warehouse").mkdir()
        catalog = SqlCatalog("default", uri=f"sqlite:///{db}", warehouse=(Path(tmp) / "warehouse").as_uri())
        build(catalog, args.rows)
        guard = Guard(Config.from_dict({"target": f"iceberg+sql:///{db}", "protect": ["gold.*"]}))
        guard.snapshot()  # creates etlguard's catalog; not timed
        snap = timed(guard.snapshot)
        copy = timed(lambda: copy_all(catalog, "copy"))
        change_two(catalog)
        back = timed(lambda: guard.restore([f"gold.{n}" for n in NAMES], latest=True))
    print(f"3 tables x {args.rows:,} rows")
    print(f"  etlguard snapshot (tags, recorded)  {snap * 1000:9.1f} ms")
    print(f"  copy of the three tables            {copy * 1000:9.1f} ms   ({copy / snap:.0f}x the snapshot)")
    print(f"  etlguard restore of all three       {back * 1000:9.1f} ms   (one SQL-catalog transaction)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Iceberg: etlguard's snapshot (a tag per table) and rollback (pointers moved in one SQL-catalog
transaction, or table by table on Glue) against a copy of the same three tables, in the same run.

    python benchmarks/iceberg_snapshot.py --rows 2000000 --catalog sqlite
    python benchmarks/iceberg_snapshot.py --rows 8000000 --catalog postgresql
    python benchmarks/iceberg_snapshot.py --rows 200000 --catalog glue

sqlite: a SQL catalog on SQLite; postgresql: a SQL catalog in a throwaway database on the
PostgreSQL server of --pg (dropped at the end); glue: the Glue Data Catalog and S3 served by a
local moto server (in memory, so only small row counts are sensible). Table files live in a
temporary directory (S3 on moto for glue), removed at the end. The copy is what a copy-shaped
snapshot costs here: read each table with pyarrow, write a new table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from etlguard import Config, Guard

NAMES = ("orders", "customers", "events")


def build(catalog: Any, rows: int) -> None:
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


def copy_all(catalog: Any, suffix: str) -> None:
    for name in NAMES:
        data = catalog.load_table(("gold", name)).scan().to_arrow()
        catalog.create_table(("gold", f"{name}_{suffix}"), schema=data.schema).append(data)


def change_two(catalog: Any) -> None:
    """What a failed run leaves: rows appended to one table, rows deleted from another."""
    orders = catalog.load_table(("gold", "orders"))
    orders.append(orders.scan(limit=1000).to_arrow())
    catalog.load_table(("gold", "customers")).delete("id < 1000")


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


@contextlib.contextmanager
def lake(kind: str, tmp: Path, pg: str) -> Iterator[tuple[Any, str]]:
    """(the pyiceberg catalog, etlguard's target URL) for one kind of catalog."""
    warehouse = (tmp / "warehouse").as_uri()
    (tmp / "warehouse").mkdir()
    if kind == "sqlite":
        db = tmp / "catalog.db"
        yield SqlCatalog("default", uri=f"sqlite:///{db}", warehouse=warehouse), f"iceberg+sql:///{db}"
    elif kind == "postgresql":
        import psycopg

        name = f"etlguard_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"postgresql://{pg}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            catalog = SqlCatalog("default", uri=f"postgresql+psycopg://{pg}/{name}", warehouse=warehouse)
            try:
                yield catalog, f"iceberg+postgresql://{pg}/{name}?warehouse={warehouse}"
            finally:
                catalog.engine.dispose()
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        import boto3
        from moto.server import ThreadedMotoServer
        from pyiceberg.catalog.glue import GlueCatalog

        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(key, "testing")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            ep = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=ep, region_name="us-east-1").create_bucket(Bucket="lake")
            props = {
                "glue.endpoint": ep,
                "s3.endpoint": ep,
                "glue.region": "us-east-1",
                "s3.region": "us-east-1",
            }
            catalog = GlueCatalog("default", **props, warehouse="s3://lake/wh")
            yield (
                catalog,
                f"iceberg+glue:///{tmp}/etlguard.db?region=us-east-1&glue.endpoint={ep}&s3.endpoint={ep}",
            )
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--catalog", choices=("sqlite", "postgresql", "glue"), default="sqlite")
    parser.add_argument(
        "--pg", default="postgres@127.0.0.1:5432", help="user@host:port of the PostgreSQL server"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="etlguard-iceberg-bench-") as tmp,
        lake(args.catalog, Path(tmp), args.pg) as (catalog, url),
    ):
        build(catalog, args.rows)
        guard = Guard(Config.from_dict({"target": url, "protect": ["gold.*"]}))
        guard.snapshot()  # creates etlguard's catalog; not timed
        snap = timed(guard.snapshot)
        copy = timed(lambda: copy_all(catalog, "copy"))
        change_two(catalog)
        back = timed(lambda: guard.restore([f"gold.{n}" for n in NAMES], latest=True))
    how = "tables one by one, journaled" if args.catalog == "glue" else "one SQL-catalog transaction"
    print(f"3 tables x {args.rows:,} rows, {args.catalog} catalog")
    print(f"  etlguard snapshot (tags, recorded)  {snap * 1000:9.1f} ms")
    print(f"  copy of the three tables            {copy * 1000:9.1f} ms   ({copy / snap:.0f}x the snapshot)")
    print(f"  etlguard restore of all three       {back * 1000:9.1f} ms   ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

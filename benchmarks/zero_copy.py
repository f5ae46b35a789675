"""Snapshot cost of one dbt table model: a copy before the run against zero-copy (docs/dbt.md).

A table model's table is rebuilt whole by dbt. etlguard either copies it before the run (exact
copy, verified), or, with `dbt: {zero_copy: true}`, fingerprints it before the run, lets dbt keep
the replaced table instead of dropping it (one atomic RENAME on MariaDB, one transaction on
PostgreSQL and DuckDB), and verifies the kept table afterwards. Both sides run here in the same process, on the
same table, interleaved per round, through etlguard's own functions:

  copy       take_snapshots(): the copy, its verification and its catalog rows
  zero-copy  register() (engine checksum + catalog row) + the swap statement the materialization
             runs instead of dbt's drop-then-rename + settle() (checksum and fingerprint of the kept table)

The new table dbt builds (`t__dbt_tmp`) is built in both cases by dbt itself and is not timed.

    .venv/bin/python benchmarks/zero_copy.py [--rows 1000000] [--repeat 3] [--targets mariadb,duckdb,postgresql]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from etlguard.adapters import adapter_for
from etlguard.adapters.base import Adapter
from etlguard.catalog import Catalog
from etlguard.snapshot import take_snapshots
from etlguard.tables import TableRef
from etlguard.target import parse_target
from etlguard.zerocopy import journal, register, settle

DEFAULT_URL = os.environ.get("ETLGUARD_BENCH_URL", "mariadb+pymysql://root@127.0.0.1:3306")
PG_URL = os.environ.get("ETLGUARD_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def fill(db: Adapter, table: TableRef, rows: int) -> None:
    t = db.qualify(table)
    if db.name == "duckdb":
        db.execute(
            f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, tenant_id INTEGER, status VARCHAR, "
            "amount DECIMAL(12,2), notes VARCHAR)"
        )
        db.execute(
            f"INSERT INTO {t} SELECT i, i % 50000, 'status_' || (i % 7), (i % 100000) / 100.0, "
            f"'note ' || i FROM range(1, {rows + 1}) r(i)"
        )
        return
    if db.name == "postgresql":
        db.execute(
            f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, tenant_id INTEGER, status VARCHAR(20), "
            "amount NUMERIC(12,2), notes VARCHAR(100))"
        )
        db.execute(
            f"INSERT INTO {t} SELECT i, i % 50000, 'status_' || (i % 7), (i % 100000) / 100.0, "
            f"'note ' || i FROM generate_series(1, {rows}) i"
        )
        return
    db.execute(
        f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, tenant_id INT, status VARCHAR(20), "
        "amount DECIMAL(12,2), notes VARCHAR(100)) ENGINE=InnoDB"
    )
    db.execute(
        f"INSERT INTO {t} SELECT seq, seq % 50000, CONCAT('status_', seq % 7), (seq % 100000) / 100, "
        f"CONCAT('note ', seq) FROM {db.quote(table.schema)}.seq_1_to_{rows}"
    )


def build_new(db: Adapter, table: TableRef, new: TableRef) -> None:
    """What dbt's CTAS builds (untimed: stock dbt and zero-copy both build it)."""
    if db.name in ("duckdb", "postgresql"):
        db.execute(f"CREATE TABLE {db.qualify(new)} AS SELECT * FROM {db.qualify(table)}")
    else:
        db.execute(f"CREATE TABLE {db.qualify(new)} LIKE {db.qualify(table)}")
        db.execute(f"INSERT INTO {db.qualify(new)} SELECT * FROM {db.qualify(table)}")


def swap(db: Adapter, table: TableRef, new: TableRef, kept: TableRef) -> None:
    """The statement etlguard_dbt's materialization runs instead of dbt's drop-then-rename."""
    if db.name == "duckdb":
        with db.transaction():
            db.execute(f"ALTER TABLE {db.qualify(table)} RENAME TO {db.quote(kept.name)}")
            db.execute(f"ALTER TABLE {db.qualify(new)} RENAME TO {db.quote(table.name)}")
    elif db.name == "postgresql":  # postgres_keep in etlguard_dbt's macros, then dbt's rename
        with db.transaction():
            db.execute(f"LOCK TABLE {db.qualify(table)} IN ACCESS EXCLUSIVE MODE")
            for i, (index,) in enumerate(
                db.query(
                    "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
                    [db.qualify(table)],
                )
            ):
                db.execute(f"ALTER INDEX {index} RENAME TO {db.quote(f'{kept.name}_i{i + 1}')}")
            db.execute(f"ALTER TABLE {db.qualify(table)} RENAME TO {db.quote(kept.name)}")
            db.execute(
                f"ALTER TABLE {db.qualify(TableRef(table.schema, kept.name))} SET SCHEMA {db.quote(kept.schema)}"
            )
            db.execute(f"ALTER TABLE {db.qualify(new)} RENAME TO {db.quote(table.name)}")
    else:
        db.execute(
            f"RENAME TABLE {db.qualify(table)} TO {db.qualify(kept)}, {db.qualify(new)} TO {db.qualify(table)}"
        )


def measure(target: str, rows: int, repeat: int, url: str) -> dict[str, list[float]]:
    tag = f"bench_{secrets.token_hex(3)}"
    if target == "postgresql":
        url = PG_URL
    if target == "duckdb":
        url = f"duckdb:///{Path(tempfile.mkdtemp(prefix='etlguard-zc-')) / 'bench.duckdb'}"
    db = adapter_for(parse_target(url))
    db.connect()
    data, snaps_schema, cat_schema = f"{tag}_data", f"{tag}_snaps", f"{tag}_etlguard"
    table, new = TableRef(data, "model"), TableRef(data, "model__dbt_tmp")
    out: dict[str, list[float]] = {k: [] for k in ("copy", "zero", "fingerprint", "swap", "verify")}
    out["copy_bytes"] = []
    try:
        db.ensure_schema(data)
        fill(db, table, rows)
        catalog = Catalog(db, cat_schema)
        catalog.ensure()
        for _ in range(repeat):
            db.count_rows(table)  # same cache state for both sides
            began = time.perf_counter()
            taken = take_snapshots(db, catalog, [table], snaps_schema)
            out["copy"].append(time.perf_counter() - began)
            out["copy_bytes"].append(float(taken[0].size_bytes or 0))
            db.drop_table(taken[0].snapshot)

            build_new(db, table, new)
            db.count_rows(table)
            began = time.perf_counter()
            made = register(db, catalog, [table], snaps_schema, None)
            registered = time.perf_counter()
            swap(db, table, new, made[0].snapshot)
            swapped = time.perf_counter()
            settled = settle(db, catalog, journal(made))
            verified = time.perf_counter()
            assert settled.kept and not settled.problems, settled
            out["fingerprint"].append(registered - began)
            out["swap"].append(swapped - registered)
            out["verify"].append(verified - swapped)
            out["zero"].append(verified - began)
            db.drop_table(made[0].snapshot)
    finally:
        for schema in (data, snaps_schema, cat_schema):
            if db.schema_exists(schema):
                for name in db.list_tables(schema):
                    db.drop_table(TableRef(schema, name))
                if db.name == "postgresql":
                    db.execute(f"DROP SCHEMA IF EXISTS {db.quote(schema)}")
                elif db.name != "duckdb":
                    db.execute(f"DROP DATABASE IF EXISTS {db.quote(schema)}")
        db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", default="mariadb,duckdb")
    parser.add_argument(
        "--url", default=DEFAULT_URL, help="the MariaDB/MySQL server (needs the SEQUENCE engine)"
    )
    args = parser.parse_args()
    print(f"snapshot of one table model, {args.rows:,} rows, medians of {args.repeat} rounds")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(
        "| target | copy before the run | zero-copy (check before + swap + verify after) | ratio | bytes written: copy / zero-copy |"
    )
    print("|---|---|---|---|---|")
    for target in args.targets.split(","):
        m = {k: statistics.median(v) for k, v in measure(target, args.rows, args.repeat, args.url).items()}
        print(
            f"| {target} | {m['copy']:.2f} s | {m['zero']:.2f} s ({m['fingerprint']:.2f} + {m['swap'] * 1000:.0f} ms "
            f"+ {m['verify']:.2f}) | {m['zero'] / m['copy']:.2f}x | {m['copy_bytes'] / 2**20:.0f} MiB / 0 |"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

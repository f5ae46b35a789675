"""`etlguard demo`: a one-minute tour on an embedded DuckDB warehouse shaped like the design
note's (bronze -> silver -> gold), showing what a bad night looks like and how etlguard undoes it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb
import yaml
from rich.console import Console

from .demo_dbt import etlguard_cli, find_dbt, run_dbt_tour

PROTECT = ["silver.tenant_status_history", "silver.int_contracts", "gold.*"]

_WAREHOUSE = """
CREATE SCHEMA bronze; CREATE SCHEMA silver; CREATE SCHEMA gold;
CREATE TABLE bronze.tenants AS
  SELECT i AS tenant_id, 'tenant ' || i AS name, 1 + i % 40 AS room_id FROM range(1, 401) r(i);
CREATE TABLE silver.int_contracts (
  contract_id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, room_id INTEGER NOT NULL,
  rent DECIMAL(10, 2) NOT NULL, starts_on DATE NOT NULL, ends_on DATE);
INSERT INTO silver.int_contracts
  SELECT tenant_id, tenant_id, room_id, 50000 + (tenant_id % 7) * 2500,
         DATE '2025-01-01' + CAST(tenant_id % 300 AS INTEGER),
         CASE WHEN tenant_id % 9 = 0 THEN DATE '2026-02-01' + CAST(tenant_id % 20 AS INTEGER) END
  FROM bronze.tenants;
CREATE TABLE silver.tenant_status_history (
  tenant_id INTEGER NOT NULL, status VARCHAR NOT NULL, valid_from DATE NOT NULL,
  valid_to DATE, is_current BOOLEAN NOT NULL, PRIMARY KEY (tenant_id, valid_from));
INSERT INTO silver.tenant_status_history
  SELECT tenant_id, 'active', DATE '2025-01-01' + CAST(tenant_id % 300 AS INTEGER),
         CASE WHEN tenant_id % 5 = 0 THEN DATE '2026-01-15' END, tenant_id % 5 <> 0
  FROM bronze.tenants;
INSERT INTO silver.tenant_status_history
  SELECT tenant_id, 'notice_given', DATE '2026-01-15', NULL, TRUE FROM bronze.tenants WHERE tenant_id % 5 = 0;
CREATE INDEX tsh_current ON silver.tenant_status_history (is_current);
CREATE TABLE gold.daily_activity_summary AS
  SELECT DATE '2026-02-03' AS activity_date, count(*) AS active_tenants,
         sum(CASE WHEN status = 'notice_given' THEN 1 ELSE 0 END) AS notices
  FROM silver.tenant_status_history WHERE is_current;
CREATE TABLE gold.moveouts AS
  SELECT contract_id, tenant_id, room_id, ends_on AS moveout_date FROM silver.int_contracts WHERE ends_on IS NOT NULL;
CREATE TABLE gold.moveout_notices AS
  SELECT tenant_id, valid_from AS notice_date FROM silver.tenant_status_history WHERE status = 'notice_given';
CREATE TABLE gold.new_contracts AS
  SELECT contract_id, tenant_id, starts_on FROM silver.int_contracts WHERE starts_on >= DATE '2025-10-01';
"""

# A run that dies halfway, as the design note describes: the incremental model inserted today's
# rows but its post-hook never closed yesterday's versions, and a gold table was rebuilt empty.
_BAD_NIGHT = """
INSERT INTO silver.tenant_status_history
  SELECT tenant_id, 'moved_out', DATE '2026-02-04', NULL, TRUE FROM bronze.tenants WHERE tenant_id % 5 = 0;
DELETE FROM gold.moveouts;
"""

_HEALTH = """
SELECT
  (SELECT count(*) FROM (SELECT tenant_id FROM silver.tenant_status_history WHERE is_current
                         GROUP BY tenant_id HAVING count(*) > 1)) AS tenants_with_two_current_rows,
  (SELECT count(*) FROM gold.moveouts) AS moveouts_rows
"""


def run_demo(
    out: Console,
    path: Path | None = None,
    keep: bool = False,
    dbt: Path | None = None,
    project: Path | None = None,
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="etlguard-demo-"))
    db_path = path or workdir / "warehouse.duckdb"
    if db_path.exists():
        db_path.unlink()
    try:
        _tour(out, db_path, workdir)
        found = find_dbt(dbt, project)
        if isinstance(found, str):
            out.print(f"\n{found}", markup=False)
        else:
            run_dbt_tour(out, lambda n, title: _step(out, n, title), *found, workdir)
        _next(out)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
            if path is not None:
                for p in (db_path, Path(f"{db_path}.wal"), Path(f"{db_path}.etlguard.lock")):
                    p.unlink(missing_ok=True)
        else:
            out.print(f"\nThe demo warehouse is kept at {db_path}")


def _step(out: Console, n: int, title: str) -> None:
    out.print(f"\n[bold cyan]{n}. {title}[/]")


def _tour(out: Console, db_path: Path, workdir: Path) -> None:
    out.print("[bold]etlguard demo[/]")
    out.print(
        "etlguard wraps your nightly ETL: it snapshots the tables that matter, and when a run\n"
        "fails halfway it puts every protected table back in one atomic swap, in milliseconds,\n"
        "instead of a 30-minute cluster restore. This tour runs on an embedded DuckDB file;\n"
        "each `$ etlguard ...` below is the real command, and what it printed."
    )
    _step(out, 1, f"A warehouse shaped like the design note's: bronze -> silver -> gold ({db_path.name})")
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(_WAREHOUSE)
    config = {"target": f"duckdb:///{db_path}", "protect": PROTECT}
    (workdir / "etlguard.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    out.print("   etlguard.yml:", highlight=False)
    for line in yaml.safe_dump(config, sort_keys=False).splitlines():
        out.print(f"     {line}", markup=False, highlight=False)

    _step(out, 2, "Before the ETL: snapshot the protected set, verified by checksum")
    etlguard_cli(out, workdir, "snapshot")

    _step(out, 3, "A bad night: the run dies halfway")
    with duckdb.connect(str(db_path)) as conn:
        before = conn.execute(_HEALTH).fetchone()
        conn.execute(_BAD_NIGHT)
        after = conn.execute(_HEALTH).fetchone()
    assert before is not None and after is not None
    out.print("   tenant_status_history got today's rows, but the post-hook never closed yesterday's:")
    out.print(f"     tenants with two 'current' rows: {before[0]} -> [bold red]{after[0]}[/]")
    out.print(f"     gold.moveouts rows:              {before[1]} -> [bold red]{after[1]}[/]")

    _step(out, 4, "What changed? Compare with the snapshot, row by row")
    etlguard_cli(out, workdir, "diff", "silver.tenant_status_history", "--limit", "3")

    _step(out, 5, "Put both tables back, in one atomic swap")
    etlguard_cli(out, workdir, "restore", "silver.tenant_status_history", "gold.moveouts", "--latest")
    with duckdb.connect(str(db_path)) as conn:
        healed = conn.execute(_HEALTH).fetchone()
    assert healed is not None
    out.print(
        f"     tenants with two 'current' rows: [bold green]{healed[0]}[/]; gold.moveouts rows: [bold green]{healed[1]}[/]"
    )
    out.print("   the broken tables are kept as snapshots (kind 'displaced'): a restore can itself be undone")

    _step(out, 6, "The catalog")
    etlguard_cli(out, workdir, "snapshots")


def _next(out: Console) -> None:
    out.print("\n[bold]Next[/]")
    out.print(
        "In production, `etlguard run -- dbt run --target prod` does steps 2 to 5 for you: snapshot,\n"
        "run, audit, and roll the whole protected set back if anything fails. Start with:\n"
        "  etlguard init --target 'mysql+pymysql://etl:${DB_PASSWORD}@host:3306' --protect 'gold.*'",
        markup=False,
    )

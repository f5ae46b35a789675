"""The second half of `etlguard demo`: the example dbt pipeline (examples/warehouse) under guard
on DuckDB with dbt-duckdb: a good day, then a day on which a model fails after others committed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from .config import Config
from .errors import ConfigError
from .guard import Guard

PROTECT = [{"dbt": "materialized:incremental"}, {"dbt": "schema:gold"}, "silver.int_contracts"]
ONE_CURRENT = (
    "SELECT tenant_id FROM silver.tenant_status_history WHERE is_current "
    "GROUP BY tenant_id HAVING COUNT(*) <> 1"
)


def run_dbt_tour(out: Console, step: Callable[..., None], dbt: Path, project: Path, workdir: Path) -> None:
    if not dbt.exists() or not (project / "dbt_project.yml").exists():
        raise ConfigError(f"--dbt {dbt} or --project {project} not found; run `make demo`, which sets both")
    db = workdir / "pipeline.duckdb"
    env = {**os.environ, "WAREHOUSE_DUCKDB_PATH": str(db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

    def dbt_cmd(verb: str, **variables: object) -> list[str]:
        return [
            str(dbt),
            verb,
            "--quiet",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target",
            "duckdb",
            "--target-path",
            str(workdir / "target"),
            "--log-path",
            str(workdir / "logs"),
            "--vars",
            json.dumps(variables),
        ]

    step(7, "The real thing: the example dbt pipeline (bronze -> silver -> gold) on dbt-duckdb")
    if not (project / "dbt_packages" / "etlguard_dbt").exists():
        subprocess.run(
            [str(dbt), "deps", "--project-dir", str(project), "--profiles-dir", str(project)],
            env=env,
            capture_output=True,
            check=False,
        )
    built = subprocess.run(dbt_cmd("build", today="2026-02-01"), env=env, capture_output=True, text=True)
    if built.returncode != 0:
        raise ConfigError(f"dbt build of the example project failed: {built.stdout[-500:]}")
    guard = Guard(
        Config.from_dict(
            {
                "target": f"duckdb:///{db}",
                "protect": PROTECT,
                "dbt": {"project_dir": str(project), "target_path": str(workdir / "target")},
                "audits": [{"name": "one current row per tenant", "sql": ONE_CURRENT}],
            }
        )
    )
    os.environ["WAREHOUSE_DUCKDB_PATH"] = str(db)  # the ETL child inherits it
    out.print("   protected: every incremental model + the gold layer (from dbt's manifest.json)")

    def echo(message: str) -> None:
        out.print(f"   etlguard: {message}", markup=False)

    step(8, "A good night", "etlguard run -- dbt run --vars '{today: 2026-02-02}'")
    good = guard.run(dbt_cmd("run", today="2026-02-02"), echo=echo)
    out.print(
        f"   -> exit {good.exit_code}: {good.message}; audits: "
        + ", ".join(f"{a.name} {'ok' if a.ok else 'FAILED'}" for a in good.audits),
        markup=False,
    )

    step(
        9,
        "A bad night: gold.moveouts has a syntax error, after other models committed",
        "etlguard run -- dbt run --vars '{today: 2026-02-04, fail_model: moveouts}'",
    )
    bad = guard.run(dbt_cmd("run", today="2026-02-04", fail_model="moveouts"), echo=echo)
    out.print(f"   -> exit {bad.exit_code} (rolled back): {bad.message}", markup=False)
    snaps = {s.id: s for s in guard.snapshots(include_deleted=True)}
    out.print("   evidence, per protected table: rows before the run -> left by the failed run -> now")
    left_by_run = {snaps[d].table: snaps[d] for d in bad.displaced_ids}
    for sid in bad.snapshot_ids:
        before = snaps[sid]
        left = left_by_run.get(before.table)
        now = guard.diff(before.table, sid, limit=0)
        state = "identical to its snapshot" if now.identical else "DIFFERENT"
        out.print(
            f"     {before.table}: {before.row_count} -> {left.row_count if left else '?'} -> "
            f"{now.live_rows} ({state})",
            markup=False,
        )
    out.print("   the failed run's tables are kept as 'displaced' snapshots, for the post-mortem")

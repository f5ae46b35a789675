"""The wall-time cost of the guard on the example pipeline (examples/warehouse).

Runs the same day of the pipeline with plain `dbt run` and with `etlguard run -- dbt run`,
alternating, on DuckDB (dbt-duckdb) and MariaDB (dbt-mysql 1.7), and prints medians, the
overhead in seconds and the ratio, all measured in the same run. Needs `scripts/setup-dbt`.

    .venv/bin/python benchmarks/run_overhead.py [--repeat 5] [--targets duckdb,mariadb]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "examples" / "warehouse"
DBT = {"duckdb": ROOT / ".venvs/dbt-duckdb/bin/dbt", "mariadb": ROOT / ".venvs/dbt-mysql/bin/dbt"}


def dbt_command(target: str, workdir: Path, verb: str, day: str) -> list[str]:
    return [
        str(DBT[target]),
        verb,
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(PROJECT),
        "--target",
        target,
        "--target-path",
        str(workdir / "target"),
        "--log-path",
        str(workdir / "logs"),
        "--vars",
        json.dumps({"today": day}),
    ]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(
            f"command failed ({proc.returncode}): {' '.join(cmd[:3])}...\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return elapsed


def measure(target: str, repeat: int, url: str) -> tuple[list[float], list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"etlguard-overhead-{target}-"))
    prefix = f"ovh_{secrets.token_hex(3)}_"
    env = {
        **os.environ,
        "WAREHOUSE_SCHEMA_PREFIX": prefix if target == "mariadb" else "",
        "WAREHOUSE_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    layer = (lambda name: prefix + name) if target == "mariadb" else (lambda name: name)
    config = {
        "target": url if target == "mariadb" else f"duckdb:///{workdir / 'warehouse.duckdb'}",
        "catalog_schema": layer("etlguard"),
        "snapshot_schema": layer("etlguard_snapshots"),
        "protect": [
            {"dbt": "materialized:incremental"},
            {"dbt": f"schema:{layer('gold')}"},
            f"{layer('silver')}.int_contracts",
        ],
        "dbt": {"project_dir": str(PROJECT), "target_path": str(workdir / "target")},
        "retention": {"days": None, "keep_last": 2},
    }
    (workdir / "etlguard.yml").write_text(yaml.safe_dump(config))
    try:
        if not (PROJECT / "dbt_packages" / "etlguard_dbt").exists():
            (PROJECT / "package-lock.yml").unlink(missing_ok=True)  # dbt 1.7 cannot read 1.11's lock file
            deps = [str(DBT[target]), "deps", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
            subprocess.run(deps, env=env, cwd=workdir, capture_output=True, check=True)
        timed(dbt_command(target, workdir, "build", "2026-02-01"), env, workdir)
        plain, guarded = [], []
        etlguard = [sys.executable, "-m", "etlguard", "run", "-c", str(workdir / "etlguard.yml"), "--"]
        for _ in range(repeat):
            plain.append(timed(dbt_command(target, workdir, "run", "2026-02-02"), env, workdir))
            guarded.append(timed(etlguard + dbt_command(target, workdir, "run", "2026-02-02"), env, workdir))
        return plain, guarded
    finally:
        if target == "mariadb":
            conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
            with conn.cursor() as cur:
                for layer_name in ("bronze", "silver", "gold", "etlguard", "etlguard_snapshots"):
                    cur.execute(f"DROP DATABASE IF EXISTS `{prefix}{layer_name}`")
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--targets", default="duckdb,mariadb")
    parser.add_argument("--url", default="mariadb+pymysql://root@127.0.0.1:3306")
    args = parser.parse_args()
    print(
        f"example pipeline (6 protected tables), day 2026-02-02 run {args.repeat} times each way, alternating"
    )
    print(f"{'target':<10}{'dbt run':>12}{'etlguard run':>16}{'overhead':>12}{'ratio':>9}")
    for target in args.targets.split(","):
        plain, guarded = measure(target, args.repeat, args.url)
        p, g = statistics.median(plain), statistics.median(guarded)
        print(f"{target:<10}{p:>11.2f}s{g:>15.2f}s{g - p:>+11.2f}s{g / p:>8.2f}x")
    print("(medians; the overhead is the lock, the snapshot of the protected set, the audits of")
    print(" run_results.json, retention, and one more Python start-up)")


if __name__ == "__main__":
    main()

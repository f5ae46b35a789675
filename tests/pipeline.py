"""The example dbt warehouse (examples/warehouse) driven for real: dbt-duckdb on DuckDB and
dbt-mysql 1.7 on MariaDB, each from its own virtualenv built by scripts/setup-dbt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import MYSQL_HOST, MYSQL_PORT, Backend

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "examples" / "warehouse"
DBT = {
    "duckdb": Path(os.environ.get("ETLGUARD_TEST_DBT_DUCKDB", ROOT / ".venvs/dbt-duckdb/bin/dbt")),
    "mariadb": Path(os.environ.get("ETLGUARD_TEST_DBT_MYSQL", ROOT / ".venvs/dbt-mysql/bin/dbt")),
}
PROTECTED = [
    ("silver", "int_contracts"),
    ("silver", "tenant_status_history"),
    ("gold", "daily_activity_summary"),
    ("gold", "new_contracts"),
    ("gold", "moveouts"),
    ("gold", "moveout_notices"),
]


class Pipeline:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.dbt_bin = DBT[backend.kind]
        if not self.dbt_bin.exists():
            pytest.fail(f"{self.dbt_bin} is missing: run scripts/setup-dbt (make test does)")
        self.dir = backend.tmp_path
        self.prefix = f"t{backend.tag}_" if backend.kind == "mariadb" else ""
        for layer in ("bronze", "silver", "gold"):
            backend.schema(layer)  # registered for cleanup; dbt creates them
        self.env = {
            **os.environ,
            "WAREHOUSE_SCHEMA_PREFIX": self.prefix,
            "WAREHOUSE_DUCKDB_PATH": str(getattr(backend, "path", "")),
            "WAREHOUSE_MYSQL_HOST": MYSQL_HOST,
            "WAREHOUSE_MYSQL_PORT": str(MYSQL_PORT),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        self.target_path = self.dir / "dbt-target"

    def schema(self, layer: str) -> str:
        return self.prefix + layer

    @property
    def tables(self) -> list[tuple[str, str]]:
        return [(self.schema(layer), name) for layer, name in PROTECTED]

    def dbt_command(self, verb: str, day: str | None = None, **variables: Any) -> list[str]:
        cmd = [
            str(self.dbt_bin),
            verb,
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--target",
            self.backend.kind,
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.dir / "dbt-logs"),
        ]
        if day or variables:
            cmd += ["--vars", json.dumps({**({"today": day} if day else {}), **variables})]
        return cmd

    def dbt(self, verb: str, day: str | None = None, **variables: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.dbt_command(verb, day, **variables),
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return proc

    def build_first_day(self) -> None:
        self.install_deps()
        proc = self.dbt("build", "2026-02-01")  # seeds, models and tests in one dbt start-up
        assert proc.returncode == 0, proc.stdout[-3000:]

    def install_deps(self) -> None:
        if not (PROJECT / "dbt_packages" / "etlguard_dbt").exists():  # the local etlguard_dbt package
            (PROJECT / "package-lock.yml").unlink(missing_ok=True)  # dbt 1.7 cannot read 1.11's lock file
            deps = [str(self.dbt_bin), "deps", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
            proc = subprocess.run(
                deps, env=self.env, cwd=self.dir, capture_output=True, text=True, timeout=300
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def config(self, **extra: Any) -> Path:
        settings = self.backend.settings(
            **{
                "protect": [
                    {"dbt": "materialized:incremental"},
                    {"dbt": f"schema:{self.schema('gold')}"},
                    f"{self.schema('silver')}.int_contracts",
                ],
                "dbt": {"project_dir": str(PROJECT), "target_path": str(self.target_path)},
                **extra,
            }
        )
        path = self.dir / "etlguard.yml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        return path

    def etlguard(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "etlguard", *args[:1], "-c", str(config or self.config()), *args[1:]]
        return subprocess.run(cmd, env=self.env, cwd=self.dir, capture_output=True, text=True, timeout=600)

    def guarded(
        self, day: str, config: Path | None = None, verb: str = "run", **variables: Any
    ) -> subprocess.CompletedProcess[str]:
        return self.etlguard("run", "--", *self.dbt_command(verb, day, **variables), config=config)

    def goldens(self) -> dict[tuple[str, str], tuple[int, str]]:
        return {t: self.backend.golden(*t) for t in self.tables}

"""`etlguard demo`, the new user's first minute, runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline import DBT, PROJECT


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etlguard", "demo", *args], capture_output=True, text=True, timeout=600
    )


def test_demo_on_duckdb_restores_the_bad_night(tmp_path: Path) -> None:
    proc = _demo("--path", str(tmp_path / "demo.duckdb"))
    assert proc.returncode == 0, proc.stderr
    assert "tenants with two 'current' rows: 0 -> 80" in proc.stdout
    assert "tenants with two 'current' rows: 0; gold.moveouts rows: 44" in proc.stdout
    assert not (tmp_path / "demo.duckdb").exists()  # cleaned up unless --keep


def test_demo_runs_the_dbt_pipeline_under_guard() -> None:
    proc = _demo("--dbt", str(DBT["duckdb"]), "--project", str(PROJECT))
    assert proc.returncode == 0, proc.stderr
    assert "-> exit 0: run 1 succeeded" in proc.stdout
    assert "-> exit 10 (rolled back)" in proc.stdout
    assert proc.stdout.count("(identical to its snapshot)") == 6

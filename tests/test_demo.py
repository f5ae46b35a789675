"""`etlguard demo`, the new user's first minute, runs end to end: from this checkout, and from
the wheel installed on its own into a fresh virtualenv, run in an empty folder (what
`pip install etlguard && etlguard demo` gives). Its `$ etlguard ...` transcripts are what the
real commands print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline import DBT, PROJECT

ROOT = Path(__file__).resolve().parent.parent


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
    # the transcripts are the commands' own output
    snapshot = proc.stdout.split("$ etlguard snapshot\n", 1)[1].split("\n\n", 1)[0]
    assert snapshot.splitlines()[0].split() == "id table taken at (UTC) rows size status kind".split()
    assert len([line for line in snapshot.splitlines() if line.rstrip().endswith("verified  snapshot")]) == 6
    assert "$ etlguard diff silver.tenant_status_history --limit 3" in proc.stdout
    assert "changes:   80 added, 0 removed, 0 changed" in proc.stdout
    assert "$ etlguard restore silver.tenant_status_history gold.moveouts --latest" in proc.stdout
    assert "verified 2 of 2 tables against the snapshot checksums" in proc.stdout
    assert proc.stdout.count("verified  displaced") == 2  # `etlguard snapshots` after the restore


def test_demo_runs_the_dbt_pipeline_under_guard() -> None:
    # relative paths, as `make demo` passes them: dbt runs in a copy of the project elsewhere
    proc = _demo("--dbt", os.path.relpath(DBT["duckdb"]), "--project", os.path.relpath(PROJECT))
    assert proc.returncode == 0, proc.stderr
    assert "$ etlguard run -- dbt run --quiet --vars '{today: 2026-02-02}'" in proc.stdout
    assert "etlguard: ok: run 1 succeeded" in proc.stdout  # printed by `etlguard run` itself
    assert "-> exit 0" in proc.stdout
    assert "-> exit 10 (rolled back)" in proc.stdout
    assert "rolled back 6 tables to snapshots" in proc.stdout
    assert proc.stdout.count("(identical to its snapshot)") == 6


def test_the_wheel_alone_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    """pip install etlguard; etlguard demo: no checkout, no make. The wheel is built from this
    checkout and installed without its dependencies into a fresh venv; they come from
    the test environment's site-packages, which holds no importable copy of etlguard."""
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            str(ROOT),
            "-w",
            str(wheels),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = wheels.glob("etlguard-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    env = {**os.environ, "PYTHONPATH": deps, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("ETLGUARD_CONFIG", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        ["python", "-c", "import etlguard; print(etlguard.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the wheel's copy
    proc = subprocess.run(
        ["etlguard", "demo"], cwd=empty, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "verified 2 of 2 tables against the snapshot checksums" in proc.stdout
    assert "tenants with two 'current' rows: 0; gold.moveouts rows: 44" in proc.stdout
    assert "make demo" not in proc.stdout
    assert "pip install 'etlguard[demo]'" in proc.stdout  # dbt-duckdb is not beside this etlguard
    assert list(empty.iterdir()) == []  # nothing left in the user's folder
    packaged = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    project = packaged / "etlguard" / "demo_data" / "warehouse"
    assert (project / "dbt_project.yml").is_file() and (
        project / "models" / "gold" / "moveouts.sql"
    ).is_file()
    assert (packaged / "etlguard" / "demo_data" / "etlguard_dbt" / "macros" / "safe_update.sql").is_file()

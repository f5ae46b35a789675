"""The second half of `etlguard demo`: the example dbt pipeline (examples/warehouse, which the
wheel carries as etlguard/demo_data) under guard on DuckDB with dbt-duckdb: a good day, then a
day on which a model fails after others committed. It runs when dbt-duckdb is installed next to
etlguard (`pip install 'etlguard[demo]'`) or `--dbt` names a dbt that has it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console

from .config import Config
from .errors import ConfigError, EtlguardError
from .guard import Guard

PROTECT = [{"dbt": "materialized:incremental"}, {"dbt": "schema:gold"}, "silver.int_contracts"]
ONE_CURRENT = (
    "SELECT tenant_id FROM silver.tenant_status_history WHERE is_current "
    "GROUP BY tenant_id HAVING COUNT(*) <> 1"
)
DATA = Path(__file__).resolve().parent / "demo_data"  # the example project, inside the package
ENABLE = "pip install 'etlguard[demo]'"  # dbt-core <1.12 and dbt-duckdb, next to etlguard


def etlguard_cli(
    out: Console, workdir: Path, *args: str, ok: tuple[int, ...] = (0,), env: dict[str, str] | None = None
) -> int:
    """Run a real `etlguard` command in the demo's folder (its etlguard.yml) and show what it
    prints, as a terminal would: the demo's transcripts are the commands' own output."""
    out.print(f"   [dim]$ etlguard {' '.join(_quote(a) for a in args)}[/]")
    full = {**os.environ, **(env or {}), "COLUMNS": str(max(out.width, 100)), "NO_COLOR": "1"}
    full.pop("ETLGUARD_CONFIG", None)
    full.pop("ETLGUARD_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "etlguard", *args], cwd=workdir, env=full, capture_output=True, text=True
    )
    for line in (done.stdout + done.stderr).rstrip().splitlines():
        out.print(f"   {line}", markup=False, highlight=False, soft_wrap=True)
    if done.returncode not in ok:
        raise EtlguardError(f"the demo's `etlguard {' '.join(args)}` exited {done.returncode}")
    return done.returncode


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "._-/*:=" for c in arg) else f"'{arg}'"


def find_dbt(dbt: Path | None, project: Path | None) -> tuple[Path, Path] | str:
    """The dbt and the project for the tour, or why the tour is left out (a line to print)."""
    project = project or DATA / "warehouse"
    if dbt is None:
        beside = Path(sys.executable).parent / "dbt"
        if beside.exists() and importlib.util.find_spec("dbt.adapters.duckdb") is not None:
            dbt = beside
        else:
            return (
                "The second half of the demo runs the example dbt pipeline under guard; it needs\n"
                f"dbt-duckdb next to etlguard: {ENABLE}   (or pass --dbt PATH/TO/dbt)"
            )
    if not dbt.exists() or not (project / "dbt_project.yml").exists():
        raise ConfigError(f"--dbt {dbt} or --project {project} not found; or run `{ENABLE}` and omit both")
    return dbt.absolute(), project.absolute()  # dbt runs in a copy of the project, elsewhere


def _copy_project(project: Path, into: Path) -> Path:
    """The project, copied where dbt may write, with etlguard's dbt package beside it."""
    junk = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*", "package-lock.yml")
    copy = into / "warehouse"
    shutil.copytree(project, copy, ignore=junk)
    package = project.parent.parent / "dbt" / "etlguard_dbt"  # in a checkout of the repository
    shutil.copytree(
        package if package.exists() else DATA / "etlguard_dbt", into / "etlguard_dbt", ignore=junk
    )
    (copy / "packages.yml").write_text("packages:\n  - local: ../etlguard_dbt\n", encoding="utf-8")
    return copy


def run_dbt_tour(out: Console, step: Callable[..., None], dbt: Path, project: Path, workdir: Path) -> None:
    here = _copy_project(project, workdir / "pipeline")
    db = workdir / "pipeline.duckdb"
    env = {
        "WAREHOUSE_DUCKDB_PATH": str(db),
        "DBT_PROFILES_DIR": str(here),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
        "PATH": f"{dbt.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `dbt` is that dbt
    }
    full_env = {**os.environ, **env}

    step(7, "The real thing: the example dbt pipeline (bronze -> silver -> gold) on dbt-duckdb")
    subprocess.run([str(dbt), "deps", "--quiet"], cwd=here, env=full_env, capture_output=True, check=False)
    built = subprocess.run(
        [str(dbt), "build", "--quiet", "--vars", json.dumps({"today": "2026-02-01"})],
        cwd=here,
        env=full_env,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        raise ConfigError(f"dbt build of the example project failed: {built.stdout[-500:]}")
    settings = {
        "target": f"duckdb:///{db}",
        "protect": PROTECT,
        "dbt": {"project_dir": str(here)},
        "audits": [{"name": "one current row per tenant", "sql": ONE_CURRENT}],
    }
    (here / "etlguard.yml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    out.print("   protected: every incremental model + the gold layer (from dbt's manifest.json)")

    step(8, "A good night")
    good = etlguard_cli(
        out, here, "run", "--", "dbt", "run", "--quiet", "--vars", "{today: 2026-02-02}", env=env
    )
    out.print(f"   -> exit {good}", markup=False)

    step(9, "A bad night: gold.moveouts has a syntax error, after other models committed")
    bad = etlguard_cli(
        out,
        here,
        "run",
        "--json-report",
        "run.json",
        "--",
        "dbt",
        "run",
        "--quiet",
        "--vars",
        "{today: 2026-02-04, fail_model: moveouts}",
        env=env,
        ok=(10,),
    )
    out.print(f"   -> exit {bad} (rolled back)", markup=False)
    report = json.loads((here / "run.json").read_text(encoding="utf-8"))
    guard = Guard(Config.from_dict(settings))
    snaps = {s.id: s for s in guard.snapshots(include_deleted=True)}
    out.print("   evidence, per protected table: rows before the run -> left by the failed run -> now")
    left_by_run = {snaps[d].table: snaps[d] for d in report.get("displaced_ids", []) if d in snaps}
    if not left_by_run:  # the report names the kept tables by snapshot kind, not id
        left_by_run = {s.table: s for s in snaps.values() if s.kind == "displaced"}
    for sid in report["snapshot_ids"]:
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

"""Zero-copy snapshots of dbt table models, for real: `etlguard run -- dbt run` on the example
warehouse (dbt-duckdb on DuckDB, dbt-mysql 1.7 on MariaDB, dbt-postgres on PostgreSQL) with
`dbt: {zero_copy: true}` and the project's table materialization set to etlguard_dbt's. Table models are not copied before
the run: the table dbt replaces is kept and becomes the snapshot. Every protected table is
checked with the test's own checksum (conftest's golden), never with etlguard's."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etlguard.errors import EXIT_ETL_FAILED, EXIT_OK, EXIT_ROLLBACK_FAILED, EXIT_USAGE
from etlguard.zerocopy import NOT_REPLACED

from conftest import Backend
from pipeline import PROJECT, Pipeline

TABLE_MODELS = [
    ("silver", "int_contracts"),
    ("gold", "daily_activity_summary"),
    ("gold", "new_contracts"),
    ("gold", "moveouts"),
    ("gold", "moveout_notices"),
]
COPIED = [("silver", "tenant_status_history")]  # the incremental model: copied as before


FIXTURES = {"duckdb": "duck", "mariadb": "maria", "postgresql": "pg"}


@pytest.fixture(params=list(FIXTURES))
def wh(request: pytest.FixtureRequest) -> Pipeline:
    p = Pipeline(request.getfixturevalue(FIXTURES[request.param]))
    p.build_first_day()
    return p


def _config(p: Pipeline, **extra: Any) -> Path:
    return p.config(
        dbt={"project_dir": str(PROJECT), "target_path": str(p.target_path), "zero_copy": True}, **extra
    )


def _run(p: Pipeline, day: str, fault: str | None = None, **variables: Any) -> tuple[Any, dict[str, Any]]:
    report = p.dir / "report.json"
    report.unlink(missing_ok=True)
    env = dict(p.env)
    if fault:
        p.env["ETLGUARD_FAULT"] = fault
    try:
        proc = p.etlguard(
            "run",
            "--json-report",
            str(report),
            "--",
            *p.dbt_command("run", day, **variables),
            config=_config(p),
        )
    finally:
        p.env = env
    return proc, (json.loads(report.read_text()) if report.exists() else {})


def _rows(b: Backend, where: str) -> list[tuple[Any, ...]]:
    t = b.table(b.catalog_schema, "snapshots")
    return b.sql(
        f"SELECT id, table_schema, table_name, snapshot_schema, snapshot_table, status, note FROM {t} "
        f"WHERE {where} ORDER BY id"
    )


def _names(p: Pipeline, layers: list[tuple[str, str]]) -> list[str]:
    return sorted(f"{p.schema(layer)}.{name}" for layer, name in layers)


def _all_tables(b: Backend) -> set[tuple[str, str]]:
    if b.kind == "duckdb":
        rows = b.sql("SELECT schema_name, table_name FROM duckdb_tables()")
    else:
        rows = b.sql(
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_schema LIKE 't{b.tag}%'"
        )
    return {(str(s), str(n)) for s, n in rows}


def test_table_models_are_kept_not_copied_and_retention_prunes_them(wh: Pipeline) -> None:
    b = wh.backend
    before = wh.goldens()
    proc, report = _run(wh, "2026-02-02")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    run_id = report["run_id"]
    assert sorted(report["zero_copy"]["tables"]) == _names(wh, TABLE_MODELS)
    assert sorted(report["zero_copy"]["kept"]) == _names(wh, TABLE_MODELS)
    assert report["zero_copy"]["problems"] == []
    assert "5 table models kept by dbt, not copied" in proc.stdout + proc.stderr

    rows = _rows(b, f"run_id = {run_id}")
    assert all(r[5] == "verified" for r in rows), rows
    by_table = {(r[1], r[2]): r for r in rows}
    assert sorted(by_table) == sorted(wh.tables)
    # one copy was made (the incremental model's); the five table models' snapshots are the
    # very tables dbt replaced, holding exactly the pre-run rows
    kept_ids = report["zero_copy"]["kept_snapshot_ids"]
    copied = [r for r in rows if r[0] not in kept_ids]
    assert [(r[1], r[2]) for r in copied] == [(wh.schema(layer), n) for layer, n in COPIED]
    for layer, name in TABLE_MODELS:
        r = by_table[(wh.schema(layer), name)]
        assert r[0] in kept_ids and _is_kept_name(b, r)
        assert b.golden(r[3], r[4]) == before[(wh.schema(layer), name)]
    assert report["snapshot_bytes"] > 0 and len(report["snapshot_ids"]) == 6

    # a second night with keep_last 1: the first night's kept tables are pruned (dropped)
    first_kept = {(r[3], r[4]) for r in rows}
    proc = wh.etlguard(
        "run",
        "--",
        *wh.dbt_command("run", "2026-02-03"),
        config=_config(wh, retention={"days": 0.000001, "keep_last": 1}),
    )
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert not first_kept & _all_tables(b)
    assert {r[5] for r in _rows(b, f"run_id = {run_id}")} == {"deleted"}


def _is_kept_name(b: Backend, row: tuple[Any, ...]) -> bool:
    if b.kind == "duckdb":
        return str(row[4]).startswith("_etlguard_k") and row[3] == row[1]
    return row[3] == b.snapshot_schema and str(row[4]).startswith("s")


def test_a_failing_model_rolls_every_table_back_and_leaves_unreached_models_alone(wh: Pipeline) -> None:
    b = wh.backend
    before = wh.goldens()
    tables_before = _all_tables(b)
    proc, report = _run(wh, "2026-02-02", fail_model="moveouts")
    assert proc.returncode == EXIT_ETL_FAILED, proc.stdout + proc.stderr
    assert wh.goldens() == before
    zero = report["zero_copy"]
    # moveouts failed before its swap and daily_activity_summary was skipped: nothing to undo
    assert f"{wh.schema('gold')}.moveouts" in zero["untouched"]
    assert f"{wh.schema('gold')}.daily_activity_summary" in zero["untouched"]
    assert f"{wh.schema('silver')}.int_contracts" in zero["kept"]
    assert sorted(zero["kept"] + zero["untouched"]) == _names(wh, TABLE_MODELS)
    assert sorted(report["rolled_back"]) == sorted([*zero["kept"], *_names(wh, COPIED)])
    # their catalog rows say so (and retention has already removed them: nothing was kept)
    unused = [r for r in _rows(b, f"run_id = {report['run_id']}") if r[6] == NOT_REPLACED]
    assert sorted(f"{r[1]}.{r[2]}" for r in unused) == sorted(zero["untouched"])
    assert {r[5] for r in unused} <= {"failed", "deleted"}
    # no table the run made is left live: only snapshots (kept or displaced) were added
    added = _all_tables(b) - tables_before
    snaps = {(str(r[3]), str(r[4])) for r in _rows(b, "status = 'verified'")}
    assert added <= snaps | {(b.catalog_schema, t) for _, t in added if _ == b.catalog_schema}
    assert wh.etlguard("recover", config=_config(wh)).returncode == 0


def test_outside_a_guarded_run_the_materialization_is_dbts_own(wh: Pipeline) -> None:
    b = wh.backend
    tables_before = _all_tables(b)
    proc = wh.dbt("run", "2026-02-02")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _all_tables(b) == tables_before  # nothing kept anywhere, no backup left
    log = (wh.dir / "dbt-logs" / "dbt.log").read_text(encoding="utf-8")
    assert "etlguard_zero_copy" not in log and "_etlguard_k" not in log
    assert "__dbt_backup" in log  # the stock rename-then-drop path ran


# every zero-copy fault point, and the existing run points where dbt's swaps have happened
KILLED_AT: list[tuple[str, dict[str, Any]]] = [
    ("zerocopy.after_register", {}),  # names recorded; dbt never started
    ("run.after_etl", {"fail_model": "moveouts"}),  # dbt swapped some models, then etlguard died
    ("run.after_etl", {}),  # every model swapped; no audit ran
    ("zerocopy.after_settle", {"fail_model": "moveouts"}),  # kept tables verified; no rollback yet
    ("zerocopy.after_settle", {}),
]


@pytest.mark.parametrize(("fault", "variables"), KILLED_AT)
def test_killed_anywhere_then_recover_puts_the_pre_run_tables_back(
    wh: Pipeline, fault: str, variables: dict[str, Any]
) -> None:
    b = wh.backend
    before = wh.goldens()
    proc, _ = _run(wh, "2026-02-02", fault=f"{fault}:kill", **variables)
    assert proc.returncode == -9, f"fault {fault} was not reached: {proc.stdout} {proc.stderr}"
    recovered = wh.etlguard("recover", config=_config(wh))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert wh.goldens() == before
    assert not _rows(b, "status = 'pending'")
    again = wh.etlguard("recover", config=_config(wh))
    assert again.returncode == 0 and "nothing to recover" in again.stdout
    if fault == "zerocopy.after_register":  # dbt never ran: every name is closed, none exists
        named = [r for r in _rows(b, "1=1") if r[6] == NOT_REPLACED]
        assert sorted(f"{r[1]}.{r[2]}" for r in named) == _names(wh, TABLE_MODELS)
        assert not {(str(r[3]), str(r[4])) for r in named} & _all_tables(b)


def test_zero_copy_without_the_materialization_in_the_project_stops_before_anything(duck: Backend) -> None:
    """A manifest whose table materialization is dbt's own: one line naming the macro to add,
    exit 2, no run recorded, no snapshot taken, dbt never started."""
    p = Pipeline(duck)
    p.build_first_day()
    manifest_path = p.target_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["macros"] = {
        k: v for k, v in manifest["macros"].items() if "etlguard_dbt.zero_copy_table()" not in v["macro_sql"]
    }
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    before = p.goldens()
    proc = p.etlguard("run", "--", *p.dbt_command("run", "2026-02-02"), config=_config(p))
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "etlguard_dbt.zero_copy_table()" in lines[0], proc.stderr
    assert "dbt.zero_copy: false" in lines[0]
    assert p.goldens() == before
    assert not _rows(duck, "1=1")


def test_a_table_model_changed_outside_its_swap_is_named_and_exit_20(wh: Pipeline) -> None:
    """A wrapper runs dbt without one table model, then changes that model's table itself and
    fails: no snapshot holds that table's pre-run content. Every other table is rolled back,
    the run ends with exit 20 naming it, and recover says the same once, then closes the run."""
    b = wh.backend
    before = wh.goldens()
    silver = wh.schema("silver")
    changed = (silver, "int_contracts")
    assert before[changed][0] > 0
    dbt_cmd = [*wh.dbt_command("run", "2026-02-02"), "--exclude", "int_contracts"]
    script = (
        f"import subprocess, sys\nassert subprocess.run({dbt_cmd!r}).returncode == 0\n{_client(b)}\n"
        f"run('DELETE FROM {b.table(*changed)}')\nc.close()\nsys.exit(1)\n"
    )
    config = _wrapper_config(wh)
    report = wh.dir / "report.json"
    proc = wh.etlguard("run", "--json-report", str(report), "--", sys.executable, "-c", script, config=config)
    assert proc.returncode == EXIT_ROLLBACK_FAILED, proc.stdout + proc.stderr
    result = json.loads(report.read_text())
    assert (
        f"{silver}.int_contracts: dbt did not replace it, yet it changed during the run" in result["message"]
    )
    assert f"{silver}.int_contracts" not in result["zero_copy"]["untouched"]
    after = wh.goldens()
    assert after[changed][0] == 0  # what the wrapper did stays: no snapshot holds the old rows
    assert {t: g for t, g in after.items() if t != changed} == {
        t: g for t, g in before.items() if t != changed
    }
    recovered = wh.etlguard("recover", config=config)
    assert recovered.returncode == EXIT_ROLLBACK_FAILED, recovered.stdout + recovered.stderr
    assert "int_contracts: dbt did not replace it" in recovered.stdout + recovered.stderr
    again = wh.etlguard("recover", config=config)
    assert again.returncode == 0 and "nothing to recover" in again.stdout
    runs = b.sql(f"SELECT status FROM {b.table(b.catalog_schema, 'runs')} WHERE id = {result['run_id']}")
    assert runs == [("rollback_failed",)]


def _client(b: Backend) -> str:
    """Python that opens the test's own autocommit connection `c` with a `run(sql)`."""
    if b.kind == "duckdb":
        return f"import duckdb; c = duckdb.connect({str(b.path)!r}); run = c.execute"  # type: ignore[attr-defined]
    if b.kind == "postgresql":
        return (
            f"import psycopg; c = psycopg.connect(host={b.host!r}, port={b.port}, user='postgres', "  # type: ignore[attr-defined]
            "dbname='postgres', autocommit=True); run = c.execute"
        )
    return (
        f"import pymysql; c = pymysql.connect(host='127.0.0.1', port={b.port}, user='root', "  # type: ignore[attr-defined]
        "autocommit=True); run = c.cursor().execute"
    )


def _wrapper_config(p: Pipeline) -> Path:
    config = _config(p)
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["dbt"]["wrapper"] = True
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


def _copied_and_kept(p: Pipeline, report: dict[str, Any]) -> tuple[list[str], list[str]]:
    rows = _rows(p.backend, f"run_id = {report['run_id']}")
    kept_ids = set(report["zero_copy"].get("kept_snapshot_ids", []))
    return (
        sorted(f"{r[1]}.{r[2]}" for r in rows if r[0] not in kept_ids),
        sorted(f"{r[1]}.{r[2]}" for r in rows if r[0] in kept_ids),
    )


# -- incremental models on --full-refresh: rebuilt whole, so kept like table models ----------------


def test_full_refresh_keeps_the_incremental_model_too_and_a_failed_night_rolls_it_back(wh: Pipeline) -> None:
    """`dbt run --full-refresh` rebuilds the SCD2 history (an incremental model) whole: it is
    kept like the table models, so nothing at all is copied. A failing full refresh puts every
    table back byte-identical, the history included."""
    b = wh.backend
    before = wh.goldens()
    proc, report = _run_full_refresh(wh, "2026-02-02")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    every = _names(wh, [*TABLE_MODELS, *COPIED])
    assert sorted(report["zero_copy"]["kept"]) == every
    assert _copied_and_kept(wh, report) == ([], every)
    assert report["snapshot_bytes"] == 0
    for row in _rows(b, f"run_id = {report['run_id']}"):
        assert row[5] == "verified" and _is_kept_name(b, row)
        assert b.golden(row[3], row[4]) == before[(row[1], row[2])]

    before = wh.goldens()
    proc, report = _run_full_refresh(wh, "2026-02-03", fail_model="moveouts")
    assert proc.returncode == EXIT_ETL_FAILED, proc.stdout + proc.stderr
    assert wh.goldens() == before
    history = f"{wh.schema('silver')}.tenant_status_history"
    assert history in report["zero_copy"]["kept"] and history in report["rolled_back"]
    assert wh.etlguard("recover", config=_config(wh)).stdout.strip().endswith("nothing to recover")


def test_without_full_refresh_the_incremental_model_is_copied(duck: Backend) -> None:
    """A plain `dbt run` updates the incremental model in place: it is copied before the run,
    as always, and etlguard_dbt's incremental materialization is dbt's own for it."""
    p = Pipeline(duck)
    p.build_first_day()
    proc, report = _run(p, "2026-02-02")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    copied, kept = _copied_and_kept(p, report)
    assert copied == _names(p, COPIED) and kept == _names(p, TABLE_MODELS)


def _run_full_refresh(p: Pipeline, day: str, **variables: Any) -> tuple[Any, dict[str, Any]]:
    report = p.dir / "report.json"
    report.unlink(missing_ok=True)
    command = [*p.dbt_command("run", day, **variables), "--full-refresh"]
    proc = p.etlguard("run", "--json-report", str(report), "--", *command, config=_config(p))
    return proc, (json.loads(report.read_text()) if report.exists() else {})


# -- PostgreSQL: a view follows a table's OID, not its name ----------------------------------------


def test_postgres_table_read_by_a_view_is_copied_and_the_view_reads_the_new_table(pg: Backend) -> None:
    """A view on a table model would follow the kept table into the snapshot schema and go on
    reading the old rows: that table is copied instead, dbt replaces it as it always does, and
    the other table models are still kept."""
    p = Pipeline(pg)
    p.build_first_day()
    gold = p.schema("gold")
    view = pg.table(gold, "recent_contracts")
    pg.sql(f"CREATE VIEW {view} AS SELECT contract_id FROM {pg.table(gold, 'new_contracts')}")
    proc, report = _run(p, "2026-02-02")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    copied, kept = _copied_and_kept(p, report)
    read_by_view = f"{gold}.new_contracts"
    assert copied == sorted([read_by_view, *_names(p, COPIED)])
    assert kept == sorted(set(_names(p, TABLE_MODELS)) - {read_by_view})
    # stock dbt-postgres drops the replaced table with CASCADE, and the view with it
    assert not pg.sql(f"SELECT 1 FROM pg_views WHERE schemaname = '{gold}' AND viewname = 'recent_contracts'")


def test_postgres_view_made_during_the_run_stops_the_model_before_anything_changes(pg: Backend) -> None:
    """A view created on a table model after etlguard chose to keep it (here by the wrapper,
    before dbt starts): the model stops with the reason before its swap, so the view never
    reads a kept table, and the failed run puts every table back byte-identical."""
    p = Pipeline(pg)
    p.build_first_day()
    before = p.goldens()
    silver = p.schema("silver")
    view = pg.table(silver, "contracts_seen")
    dbt_cmd = p.dbt_command("run", "2026-02-02")
    script = (
        f"import subprocess, sys\n{_client(pg)}\n"
        f"run('CREATE VIEW {view} AS SELECT contract_id FROM {pg.table(silver, 'int_contracts')}')\n"
        f"c.close()\nsys.exit(subprocess.run({dbt_cmd!r}).returncode)\n"
    )
    report = p.dir / "report.json"
    proc = p.etlguard(
        "run", "--json-report", str(report), "--", sys.executable, "-c", script, config=_wrapper_config(p)
    )
    assert proc.returncode == EXIT_ETL_FAILED, proc.stdout + proc.stderr
    assert f"{silver}.contracts_seen depends on it" in proc.stdout + proc.stderr
    result = json.loads(report.read_text())
    assert f"{silver}.int_contracts" in result["zero_copy"]["untouched"]
    assert p.goldens() == before
    assert pg.sql(f"SELECT count(*) FROM {view}") == [(before[(silver, "int_contracts")][0],)]


def test_an_incremental_model_named_for_a_full_refresh_that_dbt_updates_in_place_stops(duck: Backend) -> None:
    """etlguard kept, not copied, an incremental model it expected dbt to rebuild whole (here a
    manifest that says `full_refresh: true` while the project does not): dbt would update it in
    place, so the materialization stops that model before changing anything, and the failed
    run puts every table back byte-identical."""
    p = Pipeline(duck)
    p.build_first_day()
    manifest_path = p.target_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for node in manifest["nodes"].values():
        if node["name"] == "tenant_status_history":
            node["config"]["full_refresh"] = True
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    before = p.goldens()
    proc, report = _run(p, "2026-02-02")
    assert proc.returncode == EXIT_ETL_FAILED, proc.stdout + proc.stderr
    history = f"{p.schema('silver')}.tenant_status_history"
    assert history in report["zero_copy"]["untouched"]
    said = [line for line in proc.stdout.splitlines() if "etlguard zero-copy expected a full refresh" in line]
    assert said and "tenant_status_history" in said[0], proc.stdout[-3000:]
    assert p.goldens() == before

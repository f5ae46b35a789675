"""The design note's Testing Plan, run for real under `etlguard run`: dbt-duckdb on DuckDB and
dbt-mysql 1.7 on MariaDB, with every protected table checked by the test's own checksum."""

from __future__ import annotations

import json

import pytest

from etlguard.errors import EXIT_AUDIT_FAILED, EXIT_ETL_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

from conftest import Backend
from pipeline import Pipeline


@pytest.fixture
def pipeline(backend: Backend) -> Pipeline:
    p = Pipeline(backend)
    p.build_first_day()
    return p


def _catalog_snapshots(backend: Backend, run_id: int) -> list[tuple[str, str]]:
    t = backend.table(backend.catalog_schema, "snapshots")
    return backend.sql(
        f"SELECT snapshot_schema, snapshot_table FROM {t} WHERE run_id = {run_id} AND status = 'verified'"
    )


def _report(pipeline: Pipeline) -> dict:
    return json.loads((pipeline.dir / "report.json").read_text())


def test_1_syntax_error_midway_rolls_everything_back(pipeline: Pipeline) -> None:
    before = pipeline.goldens()
    proc = pipeline.etlguard(
        "run",
        "--json-report",
        str(pipeline.dir / "report.json"),
        "--",
        *pipeline.dbt_command("run", "2026-02-04", fail_model="moveouts"),
    )
    assert proc.returncode == EXIT_ETL_FAILED, proc.stderr
    report = _report(pipeline)
    # dbt really did commit models before the failure: the guard is what undid them
    assert any(
        n["unique_id"].endswith(".moveouts") and n["status"] == "error" for n in report["dbt_failures"]
    )
    assert pipeline.goldens() == before
    assert sorted(report["rollback_verified"]) == sorted(f"{s}.{t}" for s, t in pipeline.tables)
    assert "--fail-fast" in report["command"]
    # a MySQL rollback renames each snapshot into place (status `restored`); what the failed run
    # left is kept as a verified `displaced` snapshot, a table that exists
    kept = _catalog_snapshots(pipeline.backend, report["run_id"])
    assert kept
    for schema, name in kept:
        assert pipeline.backend.sql(
            f"SELECT COUNT(*) FROM {pipeline.backend.table(schema, name)}"
        )  # snapshot exists
    assert "rolled back 6 tables" in proc.stderr


def test_2_post_hook_failure_rolls_back_the_whole_run(pipeline: Pipeline) -> None:
    before = pipeline.goldens()
    proc = pipeline.guarded("2026-02-05", fail_post_hook=True)
    assert proc.returncode == EXIT_ETL_FAILED, proc.stderr
    assert "tenant_status_history failed" in proc.stderr
    assert pipeline.goldens() == before  # the model's committed rows AND the hook's UPDATE are gone


def test_3_restore_after_damage_by_hand(pipeline: Pipeline) -> None:
    assert pipeline.guarded("2026-02-02").returncode == EXIT_OK
    silver = pipeline.schema("silver")
    assert pipeline.etlguard("snapshot", f"{silver}.tenant_status_history").returncode == 0
    good = pipeline.backend.golden(silver, "tenant_status_history")
    t = pipeline.backend.table(silver, "tenant_status_history")
    pipeline.backend.sql(f"UPDATE {t} SET is_current = NOT is_current")
    pipeline.backend.sql(f"DELETE FROM {t} WHERE tenant_id < 5")
    assert pipeline.backend.golden(silver, "tenant_status_history") != good
    proc = pipeline.etlguard("restore", f"{silver}.tenant_status_history", "--latest")
    assert proc.returncode == 0, proc.stderr
    assert pipeline.backend.golden(silver, "tenant_status_history") == good


def test_4_audit_failure_after_exit_0_rolls_back(pipeline: Pipeline) -> None:
    before = pipeline.goldens()
    gold = pipeline.schema("gold")
    config = pipeline.config(audits=[{"table": f"{gold}.daily_activity_summary", "min_rows": 1_000_000}])
    proc = pipeline.guarded("2026-02-03", config=config)
    assert proc.returncode == EXIT_AUDIT_FAILED, proc.stderr
    assert f"{gold}.daily_activity_summary: min_rows FAILED" in proc.stderr
    assert pipeline.goldens() == before


def test_5_etl_killed_with_sigkill_mid_run_rolls_back(pipeline: Pipeline) -> None:
    before = pipeline.goldens()
    silver_only = " ".join(
        f"'{a}'"
        for a in [
            *pipeline.dbt_command("run", "2026-02-03"),
            "--select",
            "int_contracts",
            "tenant_status_history",
        ]
    )
    # dbt commits two models, then the ETL process is SIGKILLed before the gold layer
    proc = pipeline.etlguard("run", "--", "bash", "-c", f"{silver_only} >/dev/null && kill -KILL $$")
    assert proc.returncode == EXIT_ETL_FAILED, proc.stderr
    assert "killed by signal SIGKILL" in proc.stderr
    assert pipeline.goldens() == before


def test_6_three_good_days_build_correct_history_with_retention(pipeline: Pipeline) -> None:
    config = pipeline.config(retention={"days": None, "keep_last": 2})
    for day in ("2026-02-02", "2026-02-03", "2026-02-04"):
        proc = pipeline.guarded(day, config=config)
        assert proc.returncode == EXIT_OK, proc.stderr
    t = pipeline.backend.table(pipeline.schema("silver"), "tenant_status_history")
    not_one_current = pipeline.backend.sql(
        f"SELECT tenant_id FROM {t} GROUP BY tenant_id HAVING SUM(CASE WHEN is_current THEN 1 ELSE 0 END) <> 1"
    )
    assert not_one_current == []
    unclosed = pipeline.backend.sql(f"SELECT COUNT(*) FROM {t} WHERE NOT is_current AND valid_to IS NULL")
    assert unclosed[0][0] == 0
    versions = pipeline.backend.sql(f"SELECT COUNT(*) FROM {t} WHERE NOT is_current")
    assert versions[0][0] > 0  # history was really built
    snaps = pipeline.backend.table(pipeline.backend.catalog_schema, "snapshots")
    live = pipeline.backend.sql(
        f"SELECT table_name, COUNT(*) FROM {snaps} WHERE status = 'verified' GROUP BY table_name"
    )
    assert {name: n for name, n in live} == {name: 2 for _, name in pipeline.tables}
    deleted = pipeline.backend.sql(
        f"SELECT snapshot_schema, snapshot_table FROM {snaps} WHERE status = 'deleted'"
    )
    assert len(deleted) == 6
    for schema, name in deleted:
        assert name not in [
            r[0]
            for r in pipeline.backend.sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?".replace(
                    "?", "'" + schema + "'"
                )
            )
        ]


@pytest.mark.parametrize("problem", ["unreachable", "missing_table", "bad_audit"])
def test_preflight_failure_never_starts_the_command(pipeline: Pipeline, problem: str) -> None:
    before = pipeline.goldens()
    marker = pipeline.dir / "etl-ran"
    config = {
        "unreachable": lambda: pipeline.config(  # one quick retry: the backoff path, not its waits
            target="mariadb+pymysql://root@127.0.0.1:1?connect_retries=1&retry_backoff=0.01"
        ),
        "missing_table": lambda: pipeline.config(protect=[f"{pipeline.schema('gold')}.no_such_table"]),
        "bad_audit": lambda: pipeline.config(
            audits=[{"table": f"{pipeline.schema('gold')}.moveouts", "min_rows": -1}]
        ),
    }[problem]()
    proc = pipeline.etlguard("run", "--", "touch", str(marker), config=config)
    expected = EXIT_UNREACHABLE if problem == "unreachable" else EXIT_USAGE  # transient vs a mistake
    assert proc.returncode == expected, proc.stderr
    assert not marker.exists()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("etlguard: error:")]
    retries = [line for line in lines if "; retry " in line]  # the unreachable server's backoff
    assert len(errors) == 1 and lines[-1] == errors[0] and len(lines) == 1 + len(retries), proc.stderr
    assert pipeline.goldens() == before


def test_build_runs_dbt_tests_as_audits(pipeline: Pipeline) -> None:
    proc = pipeline.etlguard(
        "run",
        "--json-report",
        str(pipeline.dir / "report.json"),
        "--",
        *pipeline.dbt_command("build", "2026-02-02"),
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert _report(pipeline)["dbt_failures"] == []


@pytest.mark.mariadb
def test_layer3_safe_update_hook_on_dbt_mysql(maria: Backend) -> None:
    """The design note's Layer 3 inside the example project: the SCD2 closing UPDATE and its
    validation run through etlguard's stored procedure from a post-hook. A passing validation
    commits; a failing one rolls the UPDATE back (the model's own rows stay: dbt committed them
    first, which is exactly why the run needs `etlguard run` around it)."""
    pipeline = Pipeline(maria)
    pipeline.build_first_day()
    config = pipeline.config()
    installed = pipeline.etlguard("install-procedures", config=config)
    assert installed.returncode == 0, installed.stderr
    schema = maria.catalog_schema
    ok = pipeline.guarded("2026-02-03", config=config, etlguard_safe_update=True, etlguard_schema=schema)
    assert ok.returncode == EXIT_OK, ok.stderr
    t = maria.table(pipeline.schema("silver"), "tenant_status_history")
    two_current = f"SELECT tenant_id FROM {t} WHERE is_current GROUP BY tenant_id HAVING COUNT(*) > 1"
    assert maria.sql(two_current) == []
    # without the guard, a failing validation undoes only the hook's UPDATE
    proc = pipeline.dbt(
        "run", "2026-02-05", etlguard_safe_update=True, etlguard_schema=schema, fail_safe_update=True
    )
    assert proc.returncode != 0
    assert "validation failed, rolled back" in proc.stdout
    assert maria.sql(two_current) != []  # new versions committed by the model, old ones left open

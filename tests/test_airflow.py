"""EtlguardOperator in a real Airflow (2.10, from scripts/setup-airflow): a DAG run with
`dag.test()` in that virtualenv's Python, against DuckDB and MariaDB. A committed run is a
successful task with the run summary in XCom; a failed ETL is rolled back (the table is intact)
and fails the task through its retries; a configuration error fails it at once; a Python
callable is guarded in-process the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import MYSQL_HOST, MYSQL_PORT, Backend

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = Path(os.environ.get("ETLGUARD_TEST_AIRFLOW_PYTHON", ROOT / ".venvs/airflow/bin/python"))
ROWS = 25
pytestmark = pytest.mark.xdist_group("airflow")  # one worker: its metadata database is migrated once

# The ETL, as the DAG's tasks run it: `etl.py add` appends a row; `etl.py wreck` empties the
# table and then fails, as a run that dies halfway does; `etl.py hang` empties it and hangs
# until Airflow's execution_timeout kills the task.
ETL = """
import sys
KIND, TABLE, WHERE = {kind!r}, {table!r}, {where!r}

def connect():
    if KIND == "duckdb":
        import duckdb
        return duckdb.connect(WHERE)
    import pymysql
    host, port = WHERE.split(":")
    return pymysql.connect(host=host, port=int(port), user="root", autocommit=True)

def main(action):
    conn = connect()
    cur = conn.cursor()
    if action == "add":
        cur.execute(f"INSERT INTO {{TABLE}} VALUES (1000, 'added by the good run')")
    else:
        cur.execute(f"DELETE FROM {{TABLE}}")  # wreck, hang
    conn.close()
    if action == "wreck":
        raise SystemExit("the ETL died halfway")
    if action == "hang":
        import time
        time.sleep(600)

if __name__ == "__main__":
    main(sys.argv[1])
"""

DAG = """
import datetime as dt, json, sys
sys.path.insert(0, {here!r})
from airflow import DAG
from etlguard.airflow import EtlguardOperator, XCOM_KEY
import etl

args = {{"retries": 1, "retry_delay": dt.timedelta(seconds=0)}}
with DAG("etlguard_test", start_date=dt.datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args=args) as dag:
    good = EtlguardOperator(task_id="good", config={config!r}, command=[sys.executable, {etl!r}, "add"])
    bad = EtlguardOperator(task_id="bad", config={config!r}, command=[sys.executable, {etl!r}, "wreck"])
    callable_bad = EtlguardOperator(task_id="callable_bad", config={config!r},
                                    python_callable=etl.main, op_args=["wreck"])
    misconfigured = EtlguardOperator(task_id="misconfigured", config={missing!r}, command=["true"])
    killed = EtlguardOperator(task_id="killed", config={config!r}, command=[sys.executable, {etl!r}, "hang"],
                              retries=0, execution_timeout=dt.timedelta(seconds=20))
    good >> bad >> callable_bad >> misconfigured >> killed
    for task in (bad, callable_bad, misconfigured, killed):
        task.trigger_rule = "all_done"

if __name__ == "__main__":  # Airflow imports this file again to parse the DAG
    try:
        dag.test()
    except BaseException as exc:  # Airflow 2.10's dag.test() lets the timeout of `killed` out
        print(f"dag.test() raised {{type(exc).__name__}}")
    from airflow.models import DagRun
    [run] = DagRun.find(dag_id="etlguard_test")
    print("RESULT " + json.dumps({{
        ti.task_id: {{"state": str(ti.state), "tries": ti.try_number,
                      "xcom": ti.xcom_pull(task_ids=ti.task_id, key=XCOM_KEY),
                      "returned": ti.xcom_pull(task_ids=ti.task_id)}}
        for ti in run.get_task_instances()
    }}, default=str))
"""


def airflow_python() -> Path:
    if not AIRFLOW_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AIRFLOW_PYTHON} is missing: run scripts/setup-airflow (make test does)")
        pytest.skip(f"{AIRFLOW_PYTHON} is missing: run scripts/setup-airflow (make test does)")
    return AIRFLOW_PYTHON


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata database made by `airflow db migrate`, once per session (xdist
    worker); each DAG run works on its own copy."""
    python = airflow_python()
    home = tmp_path_factory.mktemp("airflow-home")
    env = {**os.environ, **_home_env(home / "airflow.db", home)}
    migrated = subprocess.run(
        [str(python.parent / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    return home / "airflow.db"


def _home_env(db: Path, home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def run_dag(backend: Backend, table: str, migrated_db: Path) -> dict[str, Any]:
    python = airflow_python()
    here = backend.tmp_path
    where = str(backend.path) if backend.kind == "duckdb" else f"{MYSQL_HOST}:{MYSQL_PORT}"
    (here / "etl.py").write_text(ETL.format(kind=backend.kind, table=table, where=where), encoding="utf-8")
    config = backend.write_config(here / "etlguard.yml", protect=[table])
    dag = here / "dag.py"
    dag.write_text(
        DAG.format(
            here=str(here),
            config=str(config),
            etl=str(here / "etl.py"),
            missing=str(here / "no-such-etlguard.yml"),
        ),
        encoding="utf-8",
    )
    (here / "airflow").mkdir()
    shutil.copyfile(migrated_db, here / "airflow" / "airflow.db")
    env = {
        **os.environ,
        **_home_env(here / "airflow" / "airflow.db", here / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(here),
        "PYTHONPATH": str(ROOT / "src"),  # the etlguard under test, whatever the venv holds
    }
    proc = subprocess.run(
        [str(python), str(dag)], env=env, cwd=here, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["log"] = proc.stdout + proc.stderr
    return result


def test_dag_commits_a_good_run_and_rolls_back_a_failed_one(backend: Backend, migrated_db: Path) -> None:
    schema = backend.data_schema()
    name = backend.unique("moveouts")
    table = backend.table(schema, name)
    backend.sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note VARCHAR(40))")
    for i in range(ROWS):
        backend.sql(f"INSERT INTO {table} VALUES ({i}, 'row {i}')")
    protected = f"{schema}.{name}"

    result = run_dag(backend, protected, migrated_db)
    good, bad, inproc, wrong, killed = (
        result[t] for t in ("good", "bad", "callable_bad", "misconfigured", "killed")
    )

    # committed: a successful task whose return value is the run summary
    assert good["state"] == "success", result["log"][-3000:]
    summary = good["returned"]
    assert summary == good["xcom"]
    assert summary["outcome"] == "committed" and summary["exit_code"] == 0
    assert isinstance(summary["run_id"], int)
    assert summary["tables"] == [protected]
    assert len(summary["snapshot_ids"]) == 1
    assert summary["timings"]["total"] > 0

    # the failed ETL: rolled back, the task fails, and Airflow's retry ran it (and rolled back) again
    assert bad["state"] == "failed" and bad["tries"] == 2, result["log"][-3000:]
    assert bad["returned"] is None
    assert bad["xcom"]["outcome"] == "rolled_back" and bad["xcom"]["exit_code"] == 10
    assert bad["xcom"]["rolled_back"] == [protected]
    assert bad["xcom"]["run_id"] > summary["run_id"]

    # a Python callable that raises: guarded in-process, rolled back the same way
    assert inproc["state"] == "failed" and inproc["tries"] == 2
    assert inproc["xcom"]["outcome"] == "rolled_back" and inproc["xcom"]["rolled_back"] == [protected]
    assert "the ETL died halfway" in inproc["xcom"]["message"]

    # a configuration error cannot be fixed by a retry: failed after one try, nothing ran
    assert wrong["state"] == "failed" and wrong["tries"] == 1
    assert wrong["xcom"]["outcome"] == "not_started" and wrong["xcom"]["exit_code"] == 2
    assert "no-such-etlguard.yml" in wrong["xcom"]["message"]

    # killed by Airflow (execution_timeout): on_kill had etlguard stop the ETL and roll back
    assert killed["state"] == "failed" and killed["tries"] == 1
    assert "asking etlguard to stop the ETL and roll back" in result["log"]
    last = backend.guard().runs()[-1]  # on_kill waited: the run is finished, not left running
    assert last["command"][-1] == "hang" and last["exit_code"] in (10, 130), last

    # the table is what the good run committed: every failed or killed attempt was undone
    rows = backend.sql(f"SELECT id FROM {table} ORDER BY id")
    assert [r[0] for r in rows] == [*range(ROWS), 1000]


def test_the_example_dag_loads_in_airflow(tmp_path: Path) -> None:
    """deploy/airflow/dags/etlguard_dbt_aurora.py imports cleanly in a real Airflow, and its task
    runs `etlguard run` with the settings the DAG gives."""
    python = airflow_python()
    check = """
import json, pathlib
from airflow.models import DagBag
bag = DagBag(dag_folder={folder!r}, include_examples=False)
dag = bag.dags["etlguard_dbt_aurora"]  # not get_dag(): that reads the metadata database
argv = dag.get_task("dbt_build").argv(pathlib.Path("run.json"))
print("RESULT " + json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                              "tasks": sorted(dag.task_ids), "argv": argv[1:]}}))
"""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT / "src"),
    }
    folder = str(ROOT / "deploy" / "airflow" / "dags")
    proc = subprocess.run(
        [str(python), "-c", check.format(folder=folder)], env=env, capture_output=True, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    loaded = json.loads(lines[-1].removeprefix("RESULT "))
    assert loaded["errors"] == {}
    assert loaded["tasks"] == ["dbt_build", "report"]
    assert loaded["argv"] == [
        "run", "--json-report", "run.json", "--config", "/opt/etl/etlguard.yml", "--timeout", "10800",
        "--auto-recover", "--", "dbt", "build", "--target", "prod", "--vars", "{today: '{{ ds }}'}",
    ]  # fmt: skip

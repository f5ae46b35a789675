"""The stored procedure `run_safe_incremental_update` on MariaDB, installed by the CLI, called
with the test's own pymysql connection; and the dbt macro that calls it from a post-hook."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from conftest import MYSQL_HOST, MYSQL_PORT, Backend
from support import cli

ROOT = Path(__file__).resolve().parents[1]
DBT_MYSQL = ROOT / ".venvs" / "dbt-mysql" / "bin" / "dbt"


def facts(backend: Backend) -> tuple[str, str]:
    schema = backend.create_schema("gold")
    t = backend.table(schema, "facts")
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, note VARCHAR(60))")
    backend.sql(f"INSERT INTO {t} VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, NULL)")
    return schema, t


def routines(backend: Backend, schema: str) -> list[str]:
    found = backend.sql("SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES")
    return [r[1] for r in found if r[0] == schema]


def install(backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Install the procedure with the CLI; return its qualified, quoted name."""
    schema = backend.schema("procs")
    config = backend.write_config(tmp_path / "etlguard.yml")
    run = cli(capsys, "install-procedures", "-c", config, "--schema", schema)
    assert (run.code, run.err) == (0, ""), run.err
    assert run.out.startswith(f"installed {schema}.run_safe_incremental_update on mariadb://")
    return f"{backend.q(schema)}.`run_safe_incremental_update`"


class Caller:
    """A separate client session, as a dbt hook or a SQL client would be."""

    def __init__(self) -> None:
        self.conn = pymysql.connect(
            host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="", autocommit=True
        )

    def call(self, procedure: str, update: str, validation: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"CALL {procedure}(%s, %s)", (update, validation))

    def value(self, sql: str) -> object:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]  # type: ignore[index]

    def last_sqlstate(self) -> object:
        with self.conn.cursor() as cur:
            cur.execute("GET DIAGNOSTICS CONDITION 1 @etlguard_test_state = RETURNED_SQLSTATE")
        return self.value("SELECT @etlguard_test_state")


@pytest.fixture
def caller() -> Iterator[Caller]:
    c = Caller()
    yield c
    c.conn.close()


def test_the_procedure_commits_when_the_validation_is_true(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str], caller: Caller
) -> None:
    _, t = facts(maria)
    procedure = install(maria, tmp_path, capsys)

    caller.call(
        procedure,
        f"UPDATE {t} SET note = 'it''s done; drop table x' WHERE note IS NULL;",
        f"SELECT COUNT(*) = 0 FROM {t} WHERE note IS NULL",
    )

    assert maria.sql(f"SELECT note FROM {t} WHERE id = 3") == [("it's done; drop table x",)]
    assert caller.value("SELECT @@in_transaction") == 0


@pytest.mark.parametrize(
    "validation",
    ["SELECT COUNT(*) = 99 FROM {t}", "SELECT NULL", "SELECT amount FROM {t} WHERE id = -1", "SELECT 0"],
)
def test_a_failed_validation_rolls_back_and_signals_45000(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str], caller: Caller, validation: str
) -> None:
    schema, t = facts(maria)
    before = maria.golden(schema, "facts")
    procedure = install(maria, tmp_path, capsys)

    with pytest.raises(pymysql.err.OperationalError) as raised:
        caller.call(procedure, f"UPDATE {t} SET amount = amount * 2", validation.format(t=t))

    assert raised.value.args == (1644, "validation failed, rolled back")
    assert caller.last_sqlstate() == "45000"
    assert maria.golden(schema, "facts") == before
    assert caller.value("SELECT @@in_transaction") == 0


@pytest.mark.parametrize(
    ("update", "validation", "message"),
    [
        (
            "UPDATE {s}.`nope` SET amount = 0",
            "SELECT 1",
            "rolled back: (1146) Table '{raw}.nope' doesn't exist",
        ),
        (
            "UPDATE {t} SET amount = 0",
            "SELECT id FROM {t}",
            "rolled back: (1242) Subquery returns more than 1 row",
        ),
        (
            "UPDATE {t} SET amount = 0",
            "SELECT * FROM {s}.`gone`",
            "rolled back: (1146) Table '{raw}.gone' doesn't exist",
        ),
        ("UPDATE {t} SET amount = 0; DELETE FROM {t}", "SELECT 1", "rolled back: (1064) You have an error"),
    ],
)
def test_a_sql_error_rolls_back_and_signals_45000_with_the_original_message(
    maria: Backend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caller: Caller,
    update: str,
    validation: str,
    message: str,
) -> None:
    schema, t = facts(maria)
    before = maria.golden(schema, "facts")
    procedure = install(maria, tmp_path, capsys)
    names = {"t": t, "s": maria.q(schema), "raw": schema}

    with pytest.raises(pymysql.err.OperationalError) as raised:
        caller.call(procedure, update.format(**names), validation.format(**names))

    code, text = raised.value.args
    assert code == 1644 and text.startswith(message.format(**names)), text
    assert caller.last_sqlstate() == "45000"
    assert maria.golden(schema, "facts") == before
    assert caller.value("SELECT @@in_transaction") == 0


def test_install_print_shows_the_sql_and_installs_nothing(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = maria.schema("procs")
    config = maria.write_config(tmp_path / "etlguard.yml")

    run = cli(capsys, "install-procedures", "-c", config, "--schema", schema, "--print")

    assert (run.code, run.err) == (0, "")
    name = f"`{schema}`.`run_safe_incremental_update`"
    lines = run.out.splitlines()
    assert lines[:3] == [
        f"DROP PROCEDURE IF EXISTS {name};",
        "DELIMITER $$",
        f"CREATE PROCEDURE {name}(IN update_query LONGTEXT, IN validation_query LONGTEXT)",
    ]
    assert "    SQL SECURITY INVOKER" in lines
    assert "CONCAT('SELECT (', validation_query, CHAR(10), ') INTO @etlguard_validation')" in run.out
    assert lines[-2:] == ["END$$", "DELIMITER ;"]
    assert routines(maria, schema) == []
    assert schema not in {r[0] for r in maria.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")}


def test_the_printed_script_installs_with_the_mysql_client(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = maria.create_schema("procs")
    config = maria.write_config(tmp_path / "etlguard.yml")
    script = cli(capsys, "install-procedures", "-c", config, "--schema", schema, "--print").out
    client = subprocess.run(
        ["mariadb", "-h", MYSQL_HOST, "-P", str(MYSQL_PORT), "-u", "root"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if client.returncode == 127:
        pytest.skip("no mariadb client")
    assert client.returncode == 0, client.stderr
    assert routines(maria, schema) == ["run_safe_incremental_update"]


def test_install_procedures_is_refused_on_duckdb(
    duck: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = duck.write_config(tmp_path / "etlguard.yml")

    run = cli(capsys, "install-procedures", "-c", config)

    assert (run.code, run.out) == (2, "")
    assert run.err == (
        "etlguard: error: stored procedures are for MySQL and MariaDB targets, not duckdb; "
        "use a guarded transaction (`etlguard exec`) instead\n"
    )


# -- the dbt package ---------------------------------------------------------------------------------

HOOKS = """
{% macro good_hook() %}
  {% set update %}UPDATE {{ this }} SET note = 'it''s \\\\ ok; drop table x' WHERE id = 1;{% endset %}
  {{ return(etlguard_dbt.safe_update(update, "SELECT COUNT(*) = 1 FROM " ~ this ~ " WHERE note LIKE 'it%'")) }}
{% endmacro %}

{% macro bad_hook() %}
  {{ return(etlguard_dbt.safe_update("UPDATE " ~ this ~ " SET note = 'lost' WHERE id = 2",
                                     "SELECT COUNT(*) = 0 FROM " ~ this)) }}
{% endmacro %}
"""
MODEL = """
{{ config(materialized='table', post_hook=["{{ good_hook() }}", "{{ bad_hook() }}"]) }}
select 1 as id, cast('a' as char(60)) as note union all select 2, 'b'
"""


@pytest.mark.skipif(not DBT_MYSQL.exists(), reason="dbt-mysql is not installed (scripts/setup-dbt)")
def test_dbt_macro_calls_the_procedure_from_a_post_hook(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = maria.schema("models")
    install(maria, tmp_path, capsys)
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "macros").mkdir()
    (project / "dbt_project.yml").write_text(
        "name: hooked\nversion: '1.0'\nconfig-version: 2\nprofile: hooked\n"
        f"vars:\n  etlguard_schema: {maria.schema('procs')}\n",
        encoding="utf-8",
    )
    (project / "packages.yml").write_text(f"packages:\n  - local: {ROOT / 'dbt' / 'etlguard_dbt'}\n")
    (project / "profiles.yml").write_text(
        "hooked:\n  target: m\n  outputs:\n    m:\n      type: mariadb\n"
        f"      server: {MYSQL_HOST}\n      port: {MYSQL_PORT}\n      username: root\n"
        f"      password: ''\n      schema: {models}\n      threads: 1\n",
        encoding="utf-8",
    )
    (project / "macros" / "hooks.sql").write_text(HOOKS, encoding="utf-8")
    (project / "models" / "facts.sql").write_text(MODEL, encoding="utf-8")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

    def dbt(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(DBT_MYSQL), *args, "--project-dir", str(project), "--profiles-dir", str(project)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=project, check=False)

    assert dbt("deps").returncode == 0
    result = dbt("run")

    assert result.returncode == 1, result.stdout
    assert "validation failed, rolled back" in result.stdout
    # the model and the first hook committed; the failing hook's UPDATE was rolled back
    assert maria.sql(f"SELECT id, note FROM {maria.table(models, 'facts')} ORDER BY id") == [
        (1, "it's \\ ok; drop table x"),
        (2, "b"),
    ]

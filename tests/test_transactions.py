"""Guarded transactions (issue 5): commit only when every validation passes, roll back on any
failure or interruption, refuse statements that would end the transaction, record each one.

Outcomes are checked with the test's own connection and golden checksum, never through etlguard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from etlguard import Check, ConfigError, ValidationFailed, run_guarded
from etlguard.adapters.base import DatabaseError
from etlguard.statements import MYSQL_LEXICON, STANDARD_LEXICON, refusal, split_statements

from conftest import Backend
from support import cli

# -- helpers -----------------------------------------------------------------------------------


def facts(backend: Backend) -> tuple[str, str]:
    """A small table gold.facts; returns (schema, quoted qualified name)."""
    schema = backend.create_schema("gold")
    t = backend.table(schema, "facts")
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, note VARCHAR(60))")
    backend.sql(f"INSERT INTO {t} VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, NULL)")
    return schema, t


def rows(backend: Backend, t: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in backend.sql(f"SELECT id, amount, note FROM {t} ORDER BY id")]


def recorded(backend: Backend) -> list[dict[str, Any]]:
    """The catalog's transactions table, read with the test's connection."""
    cols = [
        "id",
        "outcome",
        "rows_affected",
        "statements",
        "validations",
        "error",
        "started_at",
        "finished_at",
    ]
    table = backend.table(backend.catalog_schema, "transactions")
    found = backend.sql(
        f"SELECT {', '.join(backend.q(c) for c in cols)} FROM {table} ORDER BY {backend.q('id')}"
    )
    out = [dict(zip(cols, r, strict=True)) for r in found]
    for r in out:
        r["statements"] = json.loads(r["statements"] or "[]")
        r["validations"] = json.loads(r["validations"] or "[]")
    return out


def catalog_has_transactions(backend: Backend) -> bool:
    if backend.kind == "duckdb":
        if not backend.path.exists():  # type: ignore[attr-defined]
            return False
        found = backend.sql(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [backend.catalog_schema]
        )
    else:
        found = backend.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            [backend.catalog_schema],
        )
    return "transactions" in {r[0] for r in found}


# -- the Python API ------------------------------------------------------------------------------


def test_a_valid_update_commits(backend: Backend) -> None:
    schema, t = facts(backend)
    guard = backend.guard()

    with guard.transaction(timeout=30) as tx:
        tx.validate_row_change(f"{schema}.facts", max_pct=0)
        assert tx.execute(f"UPDATE {t} SET amount = amount + 1 WHERE amount < 25") == 2
        tx.validate_no_rows(f"SELECT id FROM {t} WHERE amount <= 0")
        tx.validate_count(f"SELECT COUNT(*) FROM {t}", min=3, max=3)
        tx.validate_true(f"SELECT SUM(amount) = 62 FROM {t}")

    assert tx.outcome == "committed"
    assert [c.passed for c in tx.checks] == [True, True, True, True]
    assert tx.checks[0].value == {"before": 3, "after": 3, "change_pct": 0.0}
    assert rows(backend, t) == [(1, 11, "a"), (2, 21, "b"), (3, 30, None)]


def test_a_failed_validation_rolls_back_and_reports_each_failed_check(backend: Backend) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")

    with pytest.raises(ValidationFailed) as failure:
        with backend.guard().transaction() as tx:
            tx.execute(f"UPDATE {t} SET amount = -1 WHERE id = 2; DELETE FROM {t} WHERE id = 3")
            tx.validate_no_rows(f"SELECT id, amount FROM {t} WHERE amount < 0")
            tx.validate_count(f"SELECT COUNT(*) FROM {t}", min=3)
            tx.validate_true(f"SELECT COUNT(*) > 0 FROM {t}")  # passes: not reported

    assert backend.golden(schema, "facts") == before
    err = failure.value
    assert err.exit_code == 1
    assert [(c.kind, c.value) for c in err.failed] == [  # type: ignore[attr-defined]
        ("no_rows", {"rows": 1, "first": [2, -1]}),
        ("count", 2),
    ]
    assert str(err) == (
        f"validation failed, rolled back: expected no rows from `SELECT id, amount FROM {t} WHERE "
        f"amount < 0`, got 1 (first: [2, -1]); `SELECT COUNT(*) FROM {t}` returned 2, expected at least 3"
    )
    assert tx.outcome == "validation_failed"


def test_row_count_change_beyond_the_limit_rolls_back(backend: Backend) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")

    with pytest.raises(ValidationFailed, match=r"changed by -66.7% \(3 -> 1 rows\), limit 50%"):
        with backend.guard().transaction() as tx:
            tx.validate_row_change(f"{schema}.facts", max_pct=50)
            tx.execute(f"DELETE FROM {t} WHERE id > 1")

    assert backend.golden(schema, "facts") == before


def test_row_change_must_be_declared_before_the_first_statement(backend: Backend) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")

    with pytest.raises(ConfigError, match="before the first statement"):
        with backend.guard().transaction() as tx:
            tx.execute(f"DELETE FROM {t} WHERE id = 1")
            tx.validate_row_change(f"{schema}.facts", max_pct=50)

    assert backend.golden(schema, "facts") == before


@pytest.mark.parametrize("failure", ["sql_error", "exception", "keyboard_interrupt"])
def test_any_failure_mid_batch_rolls_back_and_reraises_the_original(backend: Backend, failure: str) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")
    expected: type[BaseException] = {
        "sql_error": DatabaseError,
        "exception": ValueError,
        "keyboard_interrupt": KeyboardInterrupt,
    }[failure]

    with pytest.raises(expected) as raised:
        with backend.guard().transaction() as tx:
            tx.execute(f"UPDATE {t} SET amount = 0")
            tx.validate_true("SELECT 1")
            if failure == "sql_error":
                tx.execute(f"UPDATE {backend.table(schema, 'no_such_table')} SET amount = 0")
            elif failure == "exception":
                raise ValueError("bad input file")
            else:
                raise KeyboardInterrupt

    assert backend.golden(schema, "facts") == before
    if failure == "exception":
        assert str(raised.value) == "bad input file"
    assert (
        tx.outcome
        == {"sql_error": "failed", "exception": "failed", "keyboard_interrupt": "interrupted"}[failure]
    )
    assert tx.checks[0].passed is None  # validations never ran


IMPLICIT_COMMIT_STATEMENTS = [
    "DROP TABLE {t}",
    "ALTER TABLE {t} ADD COLUMN extra INTEGER",
    "TRUNCATE TABLE {t}",
    "CREATE INDEX ix_amount ON {t} (amount)",
    "CREATE TABLE {s}.copy LIKE {t}",
    "RENAME TABLE {t} TO {s}.moved",
    "LOCK TABLES {t} WRITE",
    "ANALYZE TABLE {t}",
    "GRANT SELECT ON {t} TO 'nobody'@'localhost'",
    "CALL {s}.some_procedure()",
    "SET STATEMENT max_statement_time = 5 FOR DROP TABLE {t}",
    "/*!40000 DROP TABLE {t} */",
    "START TRANSACTION",
    "COMMIT",
    "SET autocommit = 1",
    "SET @@session.autocommit = 1",
]


@pytest.mark.parametrize("statement", IMPLICIT_COMMIT_STATEMENTS)
def test_mariadb_refuses_implicit_commits_before_anything_runs(
    maria: Backend, statement: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, t = facts(maria)
    before = maria.golden(schema, "facts")
    batch = f"UPDATE {t} SET amount = 0; " + statement.format(t=t, s=maria.q(schema))

    with pytest.raises(ConfigError, match=r"^refused statement 2 .*; nothing was run$"):
        run_guarded(maria.guard(), batch, [Check.true("SELECT 1")])

    assert maria.golden(schema, "facts") == before  # the UPDATE before it never ran
    assert not catalog_has_transactions(maria)  # refused before connecting


def test_mariadb_refusal_inside_the_python_api_rolls_back_what_ran(maria: Backend) -> None:
    schema, t = facts(maria)
    before = maria.golden(schema, "facts")

    with pytest.raises(ConfigError) as refused:
        with maria.guard().transaction() as tx:
            tx.execute(f"UPDATE {t} SET amount = 0")
            tx.execute(f"UPDATE {t} SET amount = 1; DROP TABLE {t}")

    assert str(refused.value) == (
        f"refused statement 2 `DROP TABLE {t}`: DROP TABLE is DDL, which MySQL and MariaDB "
        "commit implicitly and cannot roll back; it would end the guarded transaction; nothing was run"
    )
    assert maria.golden(schema, "facts") == before
    assert [s.sql for s in tx.statements] == [f"UPDATE {t} SET amount = 0"]
    assert tx.outcome == "refused"


def test_duckdb_allows_ddl_and_rolls_it_back_with_the_transaction(duck: Backend) -> None:
    schema, t = facts(duck)
    before = duck.golden(schema, "facts")
    extra = duck.table(schema, "extra")

    with pytest.raises(ValidationFailed):
        with duck.guard().transaction() as tx:
            tx.execute(f"CREATE TABLE {extra} AS SELECT * FROM {t}; ALTER TABLE {t} ADD COLUMN x INTEGER")
            tx.execute(f"DROP TABLE {extra}; UPDATE {t} SET amount = 0")
            tx.validate_true(f"SELECT MIN(amount) > 0 FROM {t}")

    assert duck.golden(schema, "facts") == before
    assert len(duck.sql(f"DESCRIBE {t}")) == 3  # the ALTER was rolled back too

    with duck.guard().transaction() as tx:
        tx.execute(f"CREATE TABLE {extra} AS SELECT * FROM {t} WHERE id = 1")
        tx.validate_count(f"SELECT COUNT(*) FROM {extra}", min=1, max=1)
    assert duck.sql(f"SELECT id FROM {extra}") == [(1,)]


@pytest.mark.parametrize("statement", ["COMMIT", "BEGIN", "ROLLBACK", "START TRANSACTION"])
def test_transaction_control_is_refused_everywhere(backend: Backend, statement: str) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")

    with pytest.raises(ConfigError, match=f"{statement} is transaction control"):
        run_guarded(backend.guard(), f"UPDATE {t} SET amount = 0;\n{statement}")

    assert backend.golden(schema, "facts") == before


def test_ddl_words_in_strings_and_comments_are_not_refused(backend: Backend) -> None:
    schema, t = facts(backend)
    script = (
        f"UPDATE {t} SET note = 'drop table {schema}.facts; commit' WHERE id = 1;\n"
        f"-- DROP TABLE {t};\n"
        f"/* ALTER TABLE {t} ADD x INT; TRUNCATE {t}; */\n"
        f"UPDATE {t} SET note = 'it''s ; begin' WHERE id = 2  -- rollback\n"
    )
    if backend.kind == "mariadb":
        script += f'; # drop table {t}\nUPDATE {t} SET note = "truncate \\" ; lock tables" WHERE id = 3'

    tx = run_guarded(backend.guard(), script, [Check.no_rows(f"SELECT 1 FROM {t} WHERE note = 'drop'")])

    assert tx.outcome == "committed"
    notes = [r[2] for r in rows(backend, t)]
    assert notes[:2] == [f"drop table {schema}.facts; commit", "it's ; begin"]
    if backend.kind == "mariadb":
        assert notes[2] == 'truncate " ; lock tables'


def test_the_catalog_records_every_transaction_with_its_outcome(backend: Backend) -> None:
    schema, t = facts(backend)
    guard = backend.guard()

    run_guarded(
        guard, f"UPDATE {t} SET amount = 5 WHERE id = 1", [Check.count(f"SELECT COUNT(*) FROM {t}", 3, 3)]
    )
    with pytest.raises(ValidationFailed):
        run_guarded(guard, f"DELETE FROM {t}", [Check.row_change(f"{schema}.facts", 10)])
    run_guarded(guard, f"UPDATE {t} SET amount = 0", dry_run=True)
    with pytest.raises(DatabaseError, match="was rolled back"):
        run_guarded(guard, f"UPDATE {t} SET amount = 0; UPDATE {backend.table(schema, 'nope')} SET a = 1")

    found = recorded(backend)
    assert [(r["id"], r["outcome"], r["rows_affected"]) for r in found] == [
        (1, "committed", 1),
        (2, "validation_failed", 3),
        (3, "dry_run", 3),
        (4, "failed", 3),
    ]
    assert found[0]["statements"] == [{"sql": f"UPDATE {t} SET amount = 5 WHERE id = 1", "rows": 1}]
    assert found[0]["validations"][0] | {"sql": ""} == {
        "kind": "count",
        "sql": "",
        "passed": True,
        "value": 3,
        "min": 3,
        "max": 3,
    }
    assert found[1]["validations"][0]["value"] == {"before": 3, "after": 0, "change_pct": -100.0}
    assert found[1]["error"].startswith("validation failed, rolled back: row count of")
    assert all(r["started_at"] <= r["finished_at"] for r in found)
    assert rows(backend, t)[0] == (1, 5, "a")


def test_statement_timeout_is_set_where_the_database_has_one(backend: Backend) -> None:
    facts(backend)
    with backend.guard().transaction(timeout=2.5) as tx:
        if backend.kind == "mariadb":
            assert tx.query("SELECT @@max_statement_time") == [(2.5,)]
    expected = {
        "mariadb": "max_statement_time = 2.5 s (every statement)",
        "duckdb": "none: duckdb has no statement timeout",
    }
    assert tx.timeout == expected[backend.kind]

    with pytest.raises(ConfigError, match="positive number of seconds"):
        with backend.guard().transaction(timeout=0):
            pass


# -- the tokenizer -------------------------------------------------------------------------------


def test_split_on_semicolons_outside_quotes_and_comments() -> None:
    script = (
        "UPDATE t SET a = 'x;y', b = \"p;q\", `c;d` = 1; -- tail; comment\n"
        "# hash; comment\n/* block; */ DELETE FROM t WHERE a = 'it\\'s;';;\n"
        "SELECT 1 /*!50000 ; SELECT 2 */"
    )
    assert [s.text for s in split_statements(script, MYSQL_LEXICON)] == [
        "UPDATE t SET a = 'x;y', b = \"p;q\", `c;d` = 1",
        "-- tail; comment\n# hash; comment\n/* block; */ DELETE FROM t WHERE a = 'it\\'s;'",
        "SELECT 1 /*!50000",
        "SELECT 2 */",  # MySQL runs what an executable comment holds: it is code, not comment
    ]
    standard = "SELECT $$a;b$$; SELECT $x$;$x$, E'\\';', 'a\\'; /* a /* nested; */ comment; */ SELECT 3"
    assert [s.text for s in split_statements(standard, STANDARD_LEXICON)] == [
        "SELECT $$a;b$$",
        "SELECT $x$;$x$, E'\\';', 'a\\'",
        "/* a /* nested; */ comment; */ SELECT 3",
    ]


@pytest.mark.parametrize(
    ("sql", "mysql", "duckdb"),
    [
        ("UPDATE t SET note = 'drop table x'", None, None),
        ("CREATE TABLE x (a INT)", "CREATE TABLE is DDL", None),
        ("create or replace view v as select 1", "CREATE VIEW is DDL", None),
        ("CREATE TEMPORARY TABLE x (a INT)", None, None),
        ("DROP TEMPORARY TABLE IF EXISTS x", None, None),
        ("SET autocommit := 0", "SET autocommit", "SET autocommit"),
        ("SET @a = @@autocommit", None, None),
        ("SET PASSWORD = 'x'", "SET PASSWORD changes accounts", None),
        ("START SLAVE", "START SLAVE is replication control", None),
        ("LOAD DATA INFILE 'f' INTO TABLE t", None, None),
        ("LOAD INDEX INTO CACHE t", "LOAD INDEX is an administrative", None),
        ("PREPARE s FROM 'DROP TABLE t'", "PREPARE runs SQL that etlguard cannot see", None),
        ("SELECT 1--1", None, None),
        ("END", "END is transaction control", "END is transaction control"),
        ("DELIMITER //", "DELIMITER is a command of the mysql client", "DELIMITER"),
    ],
)
def test_refusal_rules(sql: str, mysql: str | None, duckdb: str | None) -> None:
    for lexicon, transactional_ddl, expected in (
        (MYSQL_LEXICON, False, mysql),
        (STANDARD_LEXICON, True, duckdb),
    ):
        (stmt,) = split_statements(sql, lexicon)
        why = refusal(stmt, transactional_ddl)
        assert (why is None) == (expected is None), (sql, why)
        assert expected is None or (why or "").startswith(expected), why


@pytest.mark.parametrize("script", ["UPDATE t SET a = 'open", "UPDATE t SET a = 1 /* open"])
def test_unterminated_quotes_and_comments_are_refused(script: str) -> None:
    with pytest.raises(ConfigError, match="unterminated"):
        split_statements(script, MYSQL_LEXICON)


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_exec_commits_and_exits_0(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, t = facts(backend)
    config = backend.write_config(tmp_path / "etlguard.yml")
    sql = tmp_path / "fix.sql"
    sql.write_text(f"UPDATE {t} SET note = 'x' WHERE note IS NULL;\n", encoding="utf-8")

    run = cli(
        capsys,
        "exec",
        "-c",
        config,
        "--sql",
        sql,
        "--validate-empty",
        f"SELECT id FROM {t} WHERE note IS NULL",
        "--validate-count",
        f"SELECT COUNT(*) FROM {t}",
        "3",
        "--validate-change",
        f"{schema}.facts",
        "0",
    )

    assert (run.code, run.err) == (0, ""), run.err
    assert run.out.splitlines()[-1] == "committed guarded transaction 1 (1 rows)"
    assert rows(backend, t)[2] == (3, 30, "x")


@pytest.mark.parametrize("passes", [True, False])
def test_cli_dry_run_always_rolls_back(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str], passes: bool
) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")
    config = backend.write_config(tmp_path / "etlguard.yml")
    bound = "0" if passes else ":-1"

    run = cli(
        capsys,
        "exec",
        "-c",
        config,
        "-e",
        f"DELETE FROM {t} WHERE id = 1",
        "--validate-count",
        f"SELECT COUNT(*) FROM {t} WHERE id = 1",
        bound,
        "--dry-run",
        "--json",
    )

    assert backend.golden(schema, "facts") == before
    report = json.loads(run.out)
    assert report["rows_affected"] == 1 and report["dry_run"] is True
    if passes:
        assert (run.code, run.err, report["outcome"]) == (0, "", "dry_run")
    else:
        assert run.code == 1 and report["outcome"] == "validation_failed"
        assert run.err == (
            f"etlguard: error: validation failed, rolled back: `SELECT COUNT(*) FROM {t} WHERE id = 1` "
            "returned 0, expected at most -1\n"
        )
    assert [r["outcome"] for r in recorded(backend)] == [report["outcome"]]


def test_cli_failed_validation_exits_1_with_one_line(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")
    config = backend.write_config(tmp_path / "etlguard.yml")

    run = cli(
        capsys,
        "exec",
        "-c",
        config,
        "-e",
        f"UPDATE {t} SET amount = 0",
        "--validate-true",
        f"SELECT MIN(amount) > 0 FROM {t}",
    )

    assert run.code == 1
    assert run.err.splitlines() == [
        f"etlguard: error: validation failed, rolled back: expected a true value from "
        f"`SELECT MIN(amount) > 0 FROM {t}`, got {False if backend.kind == 'duckdb' else 0}"
    ]
    assert "FAIL  expected a true value" in run.out
    assert backend.golden(schema, "facts") == before


def test_cli_statement_error_exits_1_and_rolls_back(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, t = facts(backend)
    before = backend.golden(schema, "facts")
    config = backend.write_config(tmp_path / "etlguard.yml")

    run = cli(
        capsys,
        "exec",
        "-c",
        config,
        "-e",
        f"UPDATE {t} SET amount = 0",
        "-e",
        "SELECT * FROM nowhere.nothing",
    )

    assert run.code == 1
    assert len(run.err.splitlines()) == 1
    assert run.err.rstrip().endswith("; guarded transaction 1 was rolled back")
    assert backend.golden(schema, "facts") == before


def test_cli_refused_input_exits_2_with_one_line(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, t = facts(maria)
    before = maria.golden(schema, "facts")
    config = maria.write_config(tmp_path / "etlguard.yml")

    run = cli(capsys, "exec", "-c", config, "-e", f"UPDATE {t} SET amount = 0; TRUNCATE {t}")

    assert (run.code, run.out) == (2, "")
    assert run.err == (
        f"etlguard: error: refused statement 2 `TRUNCATE {t}`: TRUNCATE is DDL, which MySQL and "
        "MariaDB commit implicitly and cannot roll back; it would end the guarded transaction; "
        "nothing was run\n"
    )
    assert maria.golden(schema, "facts") == before
    assert not catalog_has_transactions(maria)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the SQL with either --sql FILE or -e SQL"),
        (["-e", "SELECT 1", "--validate-count", "SELECT 1", "lots"], "'lots' is not a range"),
        (["-e", "SELECT 1", "--validate-change", "gold.facts", "ten"], "'ten' is not a percentage"),
        (["-e", "SELECT 1", "--validate-true", "SELECT 1; SELECT 2"], "expected one SQL statement, got 2"),
    ],
)
def test_cli_usage_errors_exit_2(
    duck: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config = duck.write_config(tmp_path / "etlguard.yml")

    run = cli(capsys, "exec", "-c", config, *args)

    assert run.code == 2
    assert len(run.err.splitlines()) == 1 and message in run.err, run.err

"""Audits that used to pass when they must fail: a row-count bound on a table the run does not
snapshot, and `expect: true` against values that only look true to Python."""

from __future__ import annotations

import sys

import pytest

from etlguard.audits import is_true
from etlguard.errors import EXIT_AUDIT_FAILED, EXIT_OK

from conftest import Backend


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _tables(backend: Backend) -> tuple[str, str, str]:
    s = backend.create_schema("gold")
    backend.sql(f"CREATE TABLE {backend.table(s, 'kept')} (id INT PRIMARY KEY)")
    backend.sql(f"CREATE TABLE {backend.table(s, 'side')} (id INT PRIMARY KEY)")
    for i in range(10):
        backend.sql(f"INSERT INTO {backend.table(s, 'side')} VALUES ({i})")
    backend.sql(f"INSERT INTO {backend.table(s, 'kept')} VALUES (1)")
    return s, f"{s}.kept", f"{s}.side"


def test_max_change_on_an_unprotected_table_counts_before_the_etl(backend: Backend) -> None:
    schema, kept, side = _tables(backend)
    emptied = f"DELETE FROM {backend.table(schema, 'side')}"
    guard = backend.guard([kept], audits=[{"table": side, "max_change_percent": 20}])

    result = guard.run(_python(_sql_runner(backend, emptied)))

    assert result.exit_code == EXIT_AUDIT_FAILED, result.message
    [audit] = result.failed_audits
    assert audit.check == "max_change_percent"
    assert audit.values["before"] == 10 and audit.values["after"] == 0


def test_max_change_on_an_unprotected_table_passes_a_small_change(backend: Backend) -> None:
    schema, kept, side = _tables(backend)
    one = f"DELETE FROM {backend.table(schema, 'side')} WHERE id = 0"
    guard = backend.guard([kept], audits=[{"table": side, "max_change_percent": 20}])

    result = guard.run(_python(_sql_runner(backend, one)))

    assert result.exit_code == EXIT_OK, result.message
    assert [a.values["change_percent"] for a in result.audits] == [10.0]


@pytest.mark.parametrize("value", ["'False'", "'no'", "'0.0'", "'f'", "NULL", "0", "''"])
def test_expect_true_refuses_values_that_are_not_true(backend: Backend, value: str) -> None:
    _, kept, _ = _tables(backend)
    guard = backend.guard([kept], audits=[{"sql": f"SELECT {value}", "expect": "true"}])

    result = guard.run(_python("pass"))

    assert result.exit_code == EXIT_AUDIT_FAILED, (value, result.message)
    assert result.failed_audits[0].check == "sql true"


@pytest.mark.parametrize("value", ["1", "1 = 1", "'true'", "'t'", "2"])
def test_expect_true_accepts_true_values(backend: Backend, value: str) -> None:
    _, kept, _ = _tables(backend)
    guard = backend.guard([kept], audits=[{"sql": f"SELECT {value}", "expect": "true"}])

    assert guard.run(_python("pass")).exit_code == EXIT_OK


def test_strict_truth_table() -> None:
    assert [is_true(v) for v in (True, 1, 2.5, "TRUE", " t ", "1", b"1")] == [True] * 7
    falsy = (False, 0, 0.0, float("nan"), None, "False", "no", "yes", "0.0", "0", "", b"0", "on")
    assert [is_true(v) for v in falsy] == [False] * len(falsy)


def _sql_runner(backend: Backend, statement: str) -> str:
    """Python source that runs one statement against the backend, as an ETL would."""
    if backend.kind == "duckdb":
        return (
            f"import duckdb; c = duckdb.connect({str(backend.path)!r}); c.execute({statement!r}); c.close()"  # type: ignore[attr-defined]
        )
    return (
        "import pymysql; c = pymysql.connect(host='127.0.0.1', port="
        f"{backend.port}, user='root', autocommit=True); c.cursor().execute({statement!r})"  # type: ignore[attr-defined]
    )

"""Helpers for the foundation suite, kept out of conftest.py (which other suites share).

They read the catalog and the database with the test's own connection, never through etlguard.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etlguard.cli import main

from conftest import Backend

SNAPSHOT_COLUMNS = ("id", "table_schema", "table_name", "snapshot_schema", "snapshot_table", "kind", "status")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> CliResult:
    """Run `etlguard ARGV` in-process; return the exit code and what it printed."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def mark(backend: Backend) -> str:
    """The test connection's parameter marker."""
    return "%s" if backend.kind == "mariadb" else "?"


def schema_exists(backend: Backend, schema: str) -> bool:
    if backend.kind == "duckdb":
        if not backend.path.exists():  # type: ignore[attr-defined]
            return False
        rows = backend.sql("SELECT schema_name FROM duckdb_schemas()")
    else:
        rows = backend.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    return schema in {r[0] for r in rows}


def tables_in(backend: Backend, schema: str) -> list[str]:
    if not schema_exists(backend, schema):
        return []
    if backend.kind == "duckdb":
        rows = backend.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [schema])
    else:
        rows = backend.sql(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", [schema]
        )
        rows = [(r[1],) for r in rows if r[0] == schema]
    return sorted(r[0] for r in rows)


def table_exists(backend: Backend, schema: str, name: str) -> bool:
    return name in tables_in(backend, schema)


def catalog_rows(
    backend: Backend, table: str = "snapshots", catalog: str | None = None
) -> list[dict[str, Any]]:
    """Every row of a catalog table (empty if the catalog does not exist), ordered by id."""
    catalog = catalog or backend.catalog_schema
    if not table_exists(backend, catalog, table):
        return []
    columns = (*SNAPSHOT_COLUMNS, "taken_at") if table == "snapshots" else ("id", "op", "state")
    cols = ", ".join(backend.q(c) for c in columns)
    rows = backend.sql(f"SELECT {cols} FROM {backend.table(catalog, table)} ORDER BY {backend.q('id')}")
    return [dict(zip(columns, r, strict=True)) for r in rows]


def set_taken_at(backend: Backend, snapshot_id: int, when: dt.datetime) -> None:
    """Rewrite a snapshot's time in the catalog, as a wrong or changed clock would have."""
    m = mark(backend)
    backend.sql(
        f"UPDATE {backend.table(backend.catalog_schema, 'snapshots')} SET taken_at = {m} WHERE id = {m}",
        [when, snapshot_id],
    )


def nothing_written(backend: Backend) -> None:
    """Assert that no snapshot was recorded or created, and no operation was journaled."""
    assert catalog_rows(backend) == []
    assert catalog_rows(backend, "journal") == []
    assert tables_in(backend, backend.snapshot_schema) == []

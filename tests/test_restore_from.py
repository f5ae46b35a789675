"""`etlguard restore --from`: tables copied from another real server (a MariaDB started by the
test) or another PostgreSQL database, verified against the source by fingerprint, swapped in
atomically, the displaced tables kept. Names are hostile on both sides."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from etlguard.errors import EXIT_USAGE
from etlguard.tables import TableRef
from etlguard.target import parse_target

from conftest import PG_HOST, PG_PORT, Backend
from servers import Server
from support import cli

HOSTILE_TABLE = 'move`outs "x" \';--'


def _fill(sql: object, table: str, first: int, last: int, note: str) -> None:
    sql(
        f"INSERT INTO {table} (id, amount, note) "
        + " UNION ALL ".join(  # type: ignore[operator]
            f"SELECT {i}, {i}.25, '{note}{i}'" for i in range(first, last + 1)
        )
    )


def _hostile(backend: Backend) -> tuple[str, str]:
    schema = backend.create_schema('gold `x` "q"')
    table = backend.table(schema, HOSTILE_TABLE)
    backend.sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), note VARCHAR(40))")
    _fill(backend.sql, table, 1, 50, "wrong")  # what last night's bad load left
    return schema, table


def test_restore_from_a_second_mariadb_server(
    maria: Backend, throwaway: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, table = _hostile(maria)
    source_schema = f"{schema}_clone"
    q = maria.q
    throwaway.sql(f"CREATE DATABASE {q(source_schema)}")
    source_table = f"{q(source_schema)}.{q(HOSTILE_TABLE)}"
    throwaway.sql(
        f"CREATE TABLE {source_table} (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), note VARCHAR(40))"
    )
    _fill(throwaway.sql, source_table, 1, 300, "good")
    expected = sorted(throwaway.sql(f"SELECT * FROM {source_table}"))
    before = sorted(maria.sql(f"SELECT * FROM {table}"))
    config = maria.write_config(tmp_path / "etlguard.yml", [])

    result = cli(
        capsys,
        "restore",
        "-c",
        config,
        f"{schema}.{HOSTILE_TABLE}",
        "--from",
        throwaway.url,
        "--schema-map",
        f"{schema}={source_schema}",
    )

    assert result.code == 0, result.err
    assert sorted(maria.sql(f"SELECT * FROM {table}")) == expected
    assert "verified 1 of 1 table against" in result.out
    snaps = {s["kind"]: s for s in _snapshots(capsys, config)}
    assert snaps["imported"]["rows"] == 300 and snaps["imported"]["status"] in ("verified", "restored")
    displaced = snaps["displaced"]
    assert displaced["rows"] == 50
    kept = maria.sql(
        f"SELECT * FROM {maria.table(maria.snapshot_schema, displaced['snapshot_table'].split('.', 1)[1])}"
    )
    assert sorted(kept) == before  # the bad table is kept, so the restore can be undone
    assert cli(capsys, "verify", "-c", config).code == 0


def test_restore_from_another_postgresql_database(
    pg: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, table = _hostile(pg)
    database = f"t{pg.tag}_lastweek"
    pg.sql(f"CREATE DATABASE {pg.q(database)}")
    try:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname=database, autocommit=True
        ) as src:
            src.execute(f"CREATE SCHEMA {pg.q(schema)}")
            src.execute(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), note VARCHAR(40))"
            )
            src.execute(
                f"INSERT INTO {table} SELECT i, i + 0.25, 'good' || i FROM generate_series(1, 20000) i"
            )
            expected = sorted(src.execute(f"SELECT * FROM {table}").fetchall())
        config = pg.write_config(tmp_path / "etlguard.yml", [])
        url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{database}"

        result = cli(capsys, "restore", "-c", config, f"{schema}.{HOSTILE_TABLE}", "--from", url)

        assert result.code == 0, result.err
        assert sorted(pg.sql(f"SELECT * FROM {table}")) == expected
        kinds = sorted(s["kind"] for s in _snapshots(capsys, config))
        assert kinds == ["displaced", "imported"]
    finally:
        with contextlib.suppress(Exception):
            pg.sql(f"DROP DATABASE IF EXISTS {pg.q(database)} WITH (FORCE)")


@pytest.fixture
def pair(maria: Backend) -> Iterator[tuple[Backend, str, str]]:
    """A live table and a same-server source schema holding a table of another shape."""
    schema, _ = _hostile(maria)
    source = maria.create_schema("src")
    maria.sql(f"CREATE TABLE {maria.table(source, HOSTILE_TABLE)} (id INTEGER PRIMARY KEY, note VARCHAR(40))")
    yield maria, schema, source


def test_a_source_of_another_shape_is_refused_touching_nothing(
    pair: tuple[Backend, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maria, schema, source = pair
    config = maria.write_config(tmp_path / "etlguard.yml", [])
    before = maria.golden(schema, HOSTILE_TABLE)
    result = cli(
        capsys,
        "restore",
        "-c",
        config,
        f"{schema}.{HOSTILE_TABLE}",
        "--from",
        maria.url,
        "--schema-map",
        f"{schema}={source}",
    )
    assert result.code == EXIT_USAGE
    there, here = TableRef(source, HOSTILE_TABLE), TableRef(schema, HOSTILE_TABLE)
    assert result.err == (
        f"etlguard: error: {there} on {parse_target(maria.url).redacted} has columns (id, note) but "
        f"{here} has (id, amount, note); restore from a source with the same structure\n"
    )
    assert maria.golden(schema, HOSTILE_TABLE) == before
    assert _snapshots(capsys, config) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--latest"], "--from copies from another server; leave out --snapshot, --latest and --as-of"),
        (["--schema-map", "gold"], "--schema-map 'gold' must be TARGET_SCHEMA=SOURCE_SCHEMA"),
        (
            ["--from", "duckdb:///elsewhere.duckdb"],
            "--from must be a mariadb server like the target, not duckdb",
        ),
    ],
)
def test_bad_from_arguments_are_one_line(
    pair: tuple[Backend, str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    maria, schema, _ = pair
    config = maria.write_config(tmp_path / "etlguard.yml", [])
    args = ["--from", maria.url, *extra] if "--from" not in extra else extra
    result = cli(capsys, "restore", "-c", config, f"{schema}.{HOSTILE_TABLE}", *args)
    assert result.code == EXIT_USAGE
    assert result.err.startswith(f"etlguard: error: {message}")
    assert result.err.count("\n") == 1
    assert not (tmp_path / "elsewhere.duckdb").exists()


def _snapshots(capsys: pytest.CaptureFixture[str], config: Path) -> list[dict[str, object]]:
    import json

    listed = cli(capsys, "snapshots", "-c", config, "--json", "--all")
    assert listed.code == 0, listed.err
    return list(json.loads(listed.out))


def test_a_copy_that_fails_midway_leaves_nothing_behind(
    maria: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, _ = _hostile(maria)
    source = maria.create_schema("wide")
    wide = maria.table(source, HOSTILE_TABLE)  # same columns, but a note the live table cannot hold
    maria.sql(f"CREATE TABLE {wide} (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), note VARCHAR(200))")
    maria.sql(f"INSERT INTO {wide} VALUES (1, 1.25, 'fits'), (2, 2.25, '{'x' * 150}')")
    config = maria.write_config(tmp_path / "etlguard.yml", [])
    before = maria.golden(schema, HOSTILE_TABLE)

    result = cli(
        capsys,
        "restore",
        "-c",
        config,
        f"{schema}.{HOSTILE_TABLE}",
        "--from",
        maria.url,
        "--schema-map",
        f"{schema}={source}",
    )

    assert result.code != 0 and result.err.startswith("etlguard: error:") and result.err.count("\n") == 1
    assert maria.golden(schema, HOSTILE_TABLE) == before
    assert (
        maria.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            [maria.snapshot_schema],
        )
        == []
    )
    assert [s["status"] for s in _snapshots(capsys, config)] == ["failed"]
    assert cli(capsys, "recover", "-c", config).out.strip().endswith("nothing to recover")

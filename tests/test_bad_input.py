"""Bad input through the CLI: one line on stderr that names the problem, the documented exit
code, no password in any output, and nothing touched on the target."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from etlguard.errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

from conftest import MYSQL_HOST, MYSQL_PORT, Backend
from support import CliResult, catalog_rows, cli, nothing_written, schema_exists

SECRET = "Pw-" + uuid.uuid4().hex  # never printed, whatever goes wrong


@pytest.fixture(autouse=True)
def no_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETLGUARD_URL", raising=False)


def one_error(result: CliResult, code: int, *needles: str) -> str:
    """Exactly one stderr line, `etlguard: error: ...`, mentioning each needle; no traceback."""
    assert result.code == code, result
    assert len(result.err_lines) == 1, result.err
    [line] = result.err_lines
    assert line.startswith("etlguard: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert SECRET not in result.out + result.err
    return line


def untouched(backend: Backend) -> None:
    """The configuration was refused before any connection: no catalog, no snapshot schema."""
    if backend.kind == "duckdb":
        assert not backend.path.exists()  # type: ignore[attr-defined]
    assert not schema_exists(backend, backend.catalog_schema)
    assert not schema_exists(backend, backend.snapshot_schema)


def write(backend: Backend, path: Path, settings: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return str(path)


def facts(backend: Backend) -> str:
    gold = backend.create_schema("gold")
    backend.sql(f"CREATE TABLE {backend.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    return gold


# -- problems on the target ---------------------------------------------------------------------


def test_missing_table(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = facts(backend)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])

    result = cli(capsys, "snapshot", f"{gold}.nope", "-c", str(config))

    line = one_error(result, EXIT_USAGE)
    assert line == f"etlguard: error: table {gold}.nope does not exist; check the name"
    assert not schema_exists(backend, backend.snapshot_schema)
    nothing_written(backend)


def test_missing_schema_and_missing_protected_table(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = facts(backend)
    absent = backend.schema("absent")
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts", f"{absent}.t"])

    result = cli(capsys, "snapshot", "-c", str(config))

    one_error(result, EXIT_USAGE, f"table {absent}.t does not exist; schema {absent} does not exist")
    assert not schema_exists(backend, backend.snapshot_schema)
    nothing_written(backend)


def test_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "etlguard.yml"
    config.write_text(
        f"target: mariadb+pymysql://etl:{SECRET}@127.0.0.1:1?connect_retries=0\nprotect: [gold.t]\n"
    )

    result = cli(capsys, "snapshot", "-c", str(config))

    one_error(
        result, EXIT_UNREACHABLE, "cannot reach mariadb://etl:***@127.0.0.1:1", "check host, port and network"
    )


def test_duckdb_file_in_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "etlguard.yml"
    config.write_text(f"target: duckdb:///{tmp_path}/no/such/dir/w.duckdb\nprotect: [gold.t]\n")

    result = cli(capsys, "snapshot", "-c", str(config))

    one_error(result, EXIT_USAGE, f"cannot open {tmp_path}/no/such/dir/w.duckdb")
    assert not (tmp_path / "no").exists()


@pytest.fixture
def etl_user(maria: Backend) -> Iterator[str]:
    """A MariaDB user whose password is SECRET, allowed into this test's schemas only."""
    user = f"etlg_{maria.tag}"
    maria.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{SECRET}'")
    try:
        for schema in ("gold", "etlguard", "snaps"):
            maria.sql(f"GRANT ALL PRIVILEGES ON {maria.q(maria.schema(schema))}.* TO '{user}'@'%'")
        yield user
    finally:
        maria.sql(f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.mark.parametrize("how", ["in-url", "from-env"])
def test_wrong_password(
    maria: Backend,
    etl_user: str,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gold = facts(maria)
    where = f"{MYSQL_HOST}:{MYSQL_PORT}"
    if how == "in-url":
        url = f"mariadb+pymysql://{etl_user}:{SECRET}x@{where}"
    else:
        url = f"mariadb+pymysql://{etl_user}:${{ETLG_TEST_PASSWORD}}@{where}"
        monkeypatch.setenv("ETLG_TEST_PASSWORD", SECRET + "x")
    config = write(
        maria, maria.tmp_path / "etlguard.yml", maria.settings(target=url, protect=[f"{gold}.facts"])
    )

    refused = cli(capsys, "snapshot", "-c", config)

    one_error(
        refused,
        EXIT_USAGE,
        f"mariadb://{etl_user}:***@{where} refused the login for user '{etl_user}'",
        "check the user name and password",
    )
    assert not schema_exists(maria, maria.catalog_schema)

    # the right password works, and is not printed either
    right = url.replace(f"{SECRET}x", SECRET)
    monkeypatch.setenv("ETLG_TEST_PASSWORD", SECRET)
    config = write(
        maria, maria.tmp_path / "etlguard.yml", maria.settings(target=right, protect=[f"{gold}.facts"])
    )
    for argv in (["init"], ["snapshot", "--json"], ["snapshots"], ["verify"]):
        ok = cli(capsys, *argv, "-c", config)
        assert (ok.code, ok.err) == (0, ""), ok
        assert SECRET not in ok.out
    assert f"on mariadb://{etl_user}:***@{where}" in cli(capsys, "init", "-c", config).out
    assert [r["status"] for r in catalog_rows(maria)] == ["verified"]


# -- problems in the configuration: refused before any connection ---------------------------------

BAD_CONFIG = {
    "unknown-key": ({"targett": "x"}, "unknown config key 'targett'; known keys are: target, "),
    "unknown-retention-key": ({"retention": {"dayz": 3}}, "unknown config key 'retention.dayz'"),
    "bad-type-number": ({"lock_wait_seconds": "soon"}, "config key 'lock_wait_seconds' must be a "),
    "bad-type-list": ({"protect": 5}, "config key 'protect' must be a list, not int"),
    "bad-type-retention": ({"retention": {"days": "seven"}}, "config key 'retention.days' must be a "),
    "bad-type-bool": ({"retention": {"keep_last": True}}, "config key 'retention.keep_last' must be a int"),
    "bad-type-schema": ({"catalog_schema": 7}, "config key 'catalog_schema' must be a str, not int"),
    "retention-days-0": ({"retention": {"days": 0}}, "config key 'retention.days' must be more than 0"),
    "retention-days-negative": (
        {"retention": {"days": -1}},
        "config key 'retention.days' must be more than 0",
    ),
    "keep-last-0": ({"retention": {"keep_last": 0}}, "config key 'retention.keep_last' must be at least 1"),
    "url-not-a-url": ({"target": "not a url"}, "target URL is missing or malformed"),
    "url-empty": ({"target": ""}, "target URL is missing or malformed"),
    "url-bad-port": ({"target": f"mysql+pymysql://etl:{SECRET}@db:notaport"}, "target URL has a bad port"),
    "url-unknown-dialect": ({"target": f"oracle://etl:{SECRET}@db"}, "unsupported target type 'oracle'"),
    "url-duckdb-no-path": ({"target": "duckdb:///"}, "duckdb target needs a file path"),
    "url-unset-variable": (
        {"target": "mysql://etl:${ETLG_UNSET_VAR}@db"},
        "${ETLG_UNSET_VAR}, which is not set",
    ),
    "no-target": ({"target": None}, "config key 'target' is missing"),
    "bad-table-name": (
        {"protect": ["just_a_name"]},
        "table name 'just_a_name' is not of the form schema.table",
    ),
    "unclosed-quote": ({"protect": ["`gold.t"]}, "has an unclosed ` quote"),
}


@pytest.mark.parametrize("change, needle", BAD_CONFIG.values(), ids=BAD_CONFIG.keys())
def test_bad_config(
    backend: Backend, change: dict[str, Any], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {**backend.settings(protect=["gold.t"]), **change}
    settings = {k: v for k, v in settings.items() if v is not None}
    config = write(backend, backend.tmp_path / "etlguard.yml", settings)

    for command in (["snapshot"], ["restore", "gold.t", "--latest"], ["prune"], ["verify"]):
        one_error(cli(capsys, *command, "-c", config), EXIT_USAGE, needle)
    untouched(backend)


def test_config_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = cli(capsys, "snapshot", "-c", str(tmp_path / "nope.yml"))
    one_error(missing, EXIT_USAGE, f"config file {tmp_path / 'nope.yml'} not found")
    broken = tmp_path / "broken.yml"
    broken.write_text("target: [unclosed\nprotect: x\n")
    one_error(cli(capsys, "snapshot", "-c", str(broken)), EXIT_USAGE, "is not valid YAML at line")
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("just text\n")
    one_error(cli(capsys, "snapshot", "-c", str(scalar)), EXIT_USAGE, "must be a mapping")


# -- problems in the arguments --------------------------------------------------------------------

BAD_ARGS = {
    "limit-not-a-number": (["diff", "gold.t", "--limit", "many"], "'many' is not a valid integer"),
    "snapshot-id-not-a-number": (["restore", "--snapshot", "first"], "'first' is not a valid integer"),
    "as-of-not-a-time": (["restore", "gold.t", "--as-of", "yesterday"], "'yesterday' is not a time"),
    "no-such-option": (["snapshot", "--everything"], "No such option '--everything'"),
    "no-such-command": (["snapshop"], "No such command 'snapshop'"),
    "missing-argument": (["diff"], "Missing argument 'TABLE'"),
    "two-choices": (["restore", "gold.t", "--latest", "--snapshot", "1"], "choose exactly one of"),
    "no-choice": (["restore", "gold.t"], "choose exactly one of --snapshot ID, --latest or --as-of TIME"),
    "nothing-to-restore": (["restore", "--latest"], "name the tables to restore"),
    "bad-table-argument": (["snapshot", "gold"], "table name 'gold' is not of the form schema.table"),
}


@pytest.mark.parametrize("argv, needle", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_arguments(
    backend: Backend, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = facts(backend)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    before = backend.golden(gold, "facts")

    result = cli(capsys, *argv, "-c", str(config))

    one_error(result, EXIT_USAGE, needle)
    assert backend.golden(gold, "facts") == before
    assert not schema_exists(backend, backend.snapshot_schema)
    nothing_written(backend)


def test_restore_of_an_unknown_snapshot(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = facts(backend)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    before = backend.golden(gold, "facts")

    result = cli(capsys, "restore", "--snapshot", "42", "-c", str(config))

    one_error(result, EXIT_FAILED, "no snapshot found: snapshot 42")
    assert backend.golden(gold, "facts") == before
    nothing_written(backend)

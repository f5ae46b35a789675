"""Issue 12's "Found" list, each through the CLI on the exact message and exit code: config
paths, passwords full of URL metacharacters, -c before the command and ETLGUARD_CONFIG, a
retryable exit code for an unreachable server, dbt behind launchers and wrappers, alert test
without channels, diff counts and --exit-code, plurals, and JSON log lines."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest
import yaml

from etlguard import dbt

from conftest import MYSQL_HOST, MYSQL_PORT, Backend
from support import cli, tables_in

PASSWORD = "p@ss:w/rd#?%&"
FRAGMENTS = {PASSWORD[i : i + 3] for i in range(len(PASSWORD) - 2)}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ETLGUARD_URL", "ETLGUARD_CONFIG", "ETLGUARD_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)


def leaks(*texts: str) -> set[str]:
    """The fragments of PASSWORD (raw or percent-encoded) found in any of `texts`."""
    joined = "\n".join(texts)
    found = {f for f in FRAGMENTS if f in joined}
    return found | ({quote(PASSWORD, safe="")} if quote(PASSWORD, safe="") in joined else set())


# -- the config file ---------------------------------------------------------------------------


def test_config_path_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "snapshots", "-c", tmp_path)

    assert result.code == 2
    assert result.err_lines == [
        f"etlguard: error: config path {tmp_path} is a directory; give the etlguard.yml file inside it"
    ]


def test_config_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "etlguard.yml"
    config.write_bytes(b"target: duckdb:///w.duckdb\nprotect: [caf\xe9.*]\n")

    result = cli(capsys, "snapshots", "-c", config)

    assert result.code == 2
    assert result.err_lines == [f"etlguard: error: {config} is not UTF-8 text (line 2); save it as UTF-8"]


def test_config_before_or_after_the_command_and_from_the_environment(
    duck: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    config = duck.write_config(duck.tmp_path / "elsewhere.yml", [f"{gold}.*"])

    before = cli(capsys, "-c", config, "snapshot")
    after = cli(capsys, "snapshots", "--json", "-c", config)
    monkeypatch.setenv("ETLGUARD_CONFIG", str(config))
    from_env = cli(capsys, "snapshots", "--json")

    assert (before.code, after.code, from_env.code) == (0, 0, 0), before.err + after.err + from_env.err
    assert [s["table"] for s in json.loads(after.out)] == [f"{gold}.facts"]
    assert json.loads(from_env.out) == json.loads(after.out)


def test_init_then_run_from_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    init = cli(capsys, "init", "--target", "duckdb:///${WAREHOUSE:-w.duckdb}", "--protect", "gold.*")
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE SCHEMA gold; CREATE TABLE gold.facts (id INTEGER PRIMARY KEY)")
    run = cli(capsys, "run", "--", sys.executable, "-c", "pass")

    assert init.code == 0, init.err
    assert init.out.splitlines()[0] == "wrote etlguard.yml"
    assert "${WAREHOUSE:-w.duckdb}" in (tmp_path / "etlguard.yml").read_text(encoding="utf-8")
    assert run.code == 0, run.err
    assert "snapshotted 1 table in" in run.out + run.err


# -- passwords with URL metacharacters ------------------------------------------------------------


@pytest.fixture
def maria_user(maria: Backend) -> Iterator[str]:
    """A MariaDB user whose password is PASSWORD, allowed to use the test's schemas."""
    name = f"etl_{uuid.uuid4().hex[:8]}"
    maria.sql(f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", [PASSWORD])
    maria.sql(f"CREATE USER '{name}'@'localhost' IDENTIFIED BY %s", [PASSWORD])
    for host in ("%", "localhost"):
        maria.sql(f"GRANT ALL ON `t{maria.tag}\\_%`.* TO '{name}'@'{host}'")
    try:
        yield name
    finally:
        for host in ("%", "localhost"):
            maria.sql(f"DROP USER IF EXISTS '{name}'@'{host}'")


def test_password_with_metacharacters_through_an_env_var(
    maria: Backend, maria_user: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = maria.create_schema("gold")
    maria.sql(f"CREATE TABLE {maria.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    maria.sql(f"INSERT INTO {maria.table(gold, 'facts')} VALUES (1), (2)")
    url = f"mariadb+pymysql://{maria_user}:${{DB_PASSWORD}}@{MYSQL_HOST}:{MYSQL_PORT}"
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [f"{gold}.*"], target=url)
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)

    taken = cli(capsys, "snapshot", "-c", config)
    listed = cli(capsys, "snapshots", "--json", "-c", config)
    ran = cli(capsys, "-v", "run", "-c", config, "--", sys.executable, "-c", "pass")
    monkeypatch.setenv("DB_PASSWORD", PASSWORD[::-1])
    refused = cli(capsys, "snapshots", "-c", config)

    assert (taken.code, listed.code, ran.code) == (0, 0, 0), taken.err + listed.err + ran.err
    assert refused.code == 2
    assert refused.err_lines[-1].startswith("etlguard: error: mariadb://")
    rows = [
        row
        for name in tables_in(maria, maria.catalog_schema)
        for row in maria.sql(f"SELECT * FROM {maria.table(maria.catalog_schema, name)}")
    ]
    assert len(rows) >= 3
    texts = [r.out + r.err for r in (taken, listed, ran, refused)] + [repr(rows)]
    assert leaks(*texts) == set()


def test_password_written_unencoded_in_the_url_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "etlguard.yml"
    config.write_text(yaml.safe_dump({"target": f"mysql+pymysql://etl:{PASSWORD}@db.example:3306"}))

    result = cli(capsys, "snapshots", "-c", config)

    assert result.code == 2
    assert result.err_lines == [
        "etlguard: error: target URL has a bad port or an unencoded password; percent-encode the "
        "password's special characters (@ -> %40, : -> %3A, / -> %2F, # -> %23, ? -> %3F, % -> %25), "
        "or put it in ${VAR}, which etlguard encodes for you"
    ]
    assert leaks(result.out, result.err) == set()


def test_password_with_metacharacters_on_postgresql(
    pg: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local server trusts every login, so this proves the URL reaches psycopg whole (user,
    host, database) with the password in it, and that nothing prints it."""
    role = f"etl_{uuid.uuid4().hex[:8]}"
    pg.sql(f"CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    try:
        gold = pg.create_schema("gold")
        pg.sql(f"CREATE TABLE {pg.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
        url = f"postgresql+psycopg://{role}:${{DB_PASSWORD}}@127.0.0.1:5432/postgres"
        config = pg.write_config(pg.tmp_path / "etlguard.yml", [f"{gold}.*"], target=url)
        monkeypatch.setenv("DB_PASSWORD", PASSWORD)

        taken = cli(capsys, "snapshot", "-c", config)
        owner = pg.sql(
            "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'snapshots'",
            [pg.catalog_schema],
        )
    finally:
        pg.sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
        pg.sql(f'DROP OWNED BY "{role}"')
        pg.sql(f'DROP ROLE "{role}"')

    assert taken.code == 0, taken.err
    assert owner == [(role,)]
    assert leaks(taken.out, taken.err) == set()


# -- retryable failures ---------------------------------------------------------------------------


def test_unreachable_server_is_retried_then_exits_5_unlike_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "etlguard.yml"
    url = "mariadb+pymysql://etl@127.0.0.1:1?connect_retries=2&retry_backoff=0.01"
    config.write_text(yaml.safe_dump({"target": url, "protect": ["gold.*"]}))
    typo = tmp_path / "typo.yml"
    typo.write_text(yaml.safe_dump({"targt": url}))

    down = cli(capsys, "snapshots", "-c", config)
    mistake = cli(capsys, "snapshots", "-c", typo)

    assert (down.code, mistake.code) == (5, 2)
    assert down.err_lines[-1].startswith("etlguard: error: cannot reach mariadb://etl@127.0.0.1:1: ")
    assert down.err_lines[-1].endswith("; check host, port and network")
    retries = [line for line in down.err_lines if "; retry " in line]
    assert [line.split("; retry ")[1].split(" in ")[0] for line in retries] == ["1 of 2", "2 of 2"]


def test_json_log_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "etlguard.yml"
    url = "mariadb+pymysql://etl@127.0.0.1:1?connect_retries=1&retry_backoff=0.01"
    config.write_text(yaml.safe_dump({"target": url}))

    result = cli(capsys, "--log-format", "json", "snapshots", "-c", config)

    records = [json.loads(line) for line in result.err_lines]
    assert result.code == 5
    assert [(r["level"], r["logger"]) for r in records] == [
        ("warning", "etlguard.adapters.base"),
        ("error", "etlguard.cli"),
    ]
    assert records[1]["message"].startswith("cannot reach mariadb://etl@127.0.0.1:1: ")
    assert all(set(r) == {"time", "level", "logger", "message"} for r in records)


# -- dbt behind launchers and wrappers -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["dbt", "run"],
        ["/opt/venv/bin/dbt", "run"],
        ["python", "-m", "dbt", "run"],
        ["python3.11", "-m", "dbt", "run"],
        ["uv", "run", "dbt", "run"],
        ["uv", "run", "--frozen", "dbt", "run"],
        ["poetry", "run", "dbt", "run"],
        ["uvx", "dbt", "run"],
    ],
)
def test_dbt_is_found_behind_launchers(command: list[str]) -> None:
    assert dbt.is_dbt(command)
    assert dbt.subcommand(command) == "run"
    assert dbt.with_fail_fast(command) == [*command, "--fail-fast"]


@pytest.mark.parametrize(
    "command", [["python", "daily_etl.py"], ["uv", "run", "python", "etl.py"], ["sh", "-c", "dbt run"]]
)
def test_other_commands_are_not_dbt(command: list[str]) -> None:
    assert not dbt.is_dbt(command)
    assert dbt.with_fail_fast(command) == command


def _wrapper(tmp_path: Path, results: str | None) -> Path:
    script = tmp_path / "nightly.py"
    body = "import pathlib\n"
    if results is not None:
        body += (
            f"t = pathlib.Path({str(tmp_path)!r}) / 'target'\nt.mkdir(exist_ok=True)\n"
            f"(t / 'run_results.json').write_text({results!r})\n"
        )
    script.write_text(body, encoding="utf-8")
    return script


def test_a_wrapper_script_that_ran_dbt_is_audited(duck: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    config = duck.write_config(
        duck.tmp_path / "etlguard.yml", [f"{gold}.*"], dbt={"project_dir": str(duck.tmp_path)}
    )
    failed = json.dumps({"results": [{"unique_id": "model.w.moveouts", "status": "error", "message": "x"}]})
    script = _wrapper(duck.tmp_path, failed)

    result = cli(capsys, "run", "-c", config, "--", sys.executable, script)

    assert result.code == 11, result.err
    assert "dbt node model.w.moveouts error" in result.out + result.err


def test_a_declared_wrapper_must_write_run_results(duck: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    dbt_settings = {"project_dir": str(duck.tmp_path), "wrapper": True}
    config = duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.*"], dbt=dbt_settings)
    script = _wrapper(duck.tmp_path, None)

    declared = cli(capsys, "run", "-c", config, "--", sys.executable, script)
    config = duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.*"])
    undeclared = cli(capsys, "run", "-c", config, "--", sys.executable, script)

    assert declared.code == 11, declared.err
    target = duck.tmp_path / "target"
    assert f"dbt wrote no run_results.json under {target} during this run" in declared.out + declared.err
    assert undeclared.code == 0, undeclared.err


# -- alert test, diff ----------------------------------------------------------------------------------


def test_alert_test_without_channels_exits_2(duck: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    config = duck.write_config(duck.tmp_path / "etlguard.yml")

    result = cli(capsys, "alert", "test", "-c", config)

    assert result.code == 2
    assert result.err_lines == [
        "etlguard: error: no alert channels configured; add them under alerts: channels: in the config"
    ]


def test_diff_counts_and_exit_code(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = backend.create_schema("gold")
    facts = backend.table(gold, "facts")
    backend.sql(f"CREATE TABLE {facts} (id INTEGER PRIMARY KEY, v VARCHAR(5))")
    backend.sql(f"INSERT INTO {facts} VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.*"])
    assert cli(capsys, "snapshot", "-c", config).code == 0
    same = cli(capsys, "diff", f"{gold}.facts", "--exit-code", "-c", config)
    backend.sql(f"UPDATE {facts} SET v = 'z' WHERE id = 3")
    backend.sql(f"DELETE FROM {facts} WHERE id = 1")
    backend.sql(f"INSERT INTO {facts} VALUES (4, 'd'), (5, 'e')")

    changed = cli(capsys, "diff", f"{gold}.facts", "--exit-code", "-c", config)
    as_json = cli(capsys, "diff", f"{gold}.facts", "--json", "-c", config)

    assert same.code == 0
    assert "  changes:   0 added, 0 removed, 0 changed" in same.out.splitlines()
    assert changed.code == 1
    assert "  changes:   2 added, 1 removed, 1 changed" in changed.out.splitlines()
    data = json.loads(as_json.out)
    assert (as_json.code, data["added"], data["removed"], data["changed"]) == (0, 2, 1, 1)


def test_counts_of_one_are_singular(duck: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    config = duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.*"])
    cli(capsys, "snapshot", "-c", config)

    restored = cli(capsys, "restore", f"{gold}.facts", "--latest", "-c", config)

    assert restored.code == 0, restored.err
    assert "verified 1 of 1 table against the snapshot checksums" in restored.out
    assert "1 tables" not in restored.out


def test_mariadb_user_fixture_really_has_the_password(maria: Backend, maria_user: str) -> None:
    """The credential tests mean something only if the server checks this exact password."""
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=maria_user, password=PASSWORD[:-1])
    pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=maria_user, password=PASSWORD).close()


# -- listings for people and automation -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "plain", "tsv", "default"])
def test_piped_listings_show_full_names(
    duck: Backend, fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    gold = duck.create_schema("gold")
    names = ["customer_lifetime_value_by_region_monthly", "customer_lifetime_value_by_region_weekly"]
    for name in names:
        duck.sql(f"CREATE TABLE {duck.table(gold, name)} (id INTEGER PRIMARY KEY)")
    config = duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.*"])
    assert cli(capsys, "snapshot", "-c", config).code == 0

    listed = cli(capsys, "snapshots", "-c", config, *(["--format", fmt] if fmt != "default" else []))

    assert listed.code == 0, listed.err
    for name in names:
        assert f"{gold}.{name}" in listed.out
    assert "…" not in listed.out
    if fmt == "tsv":
        lines = [line.split("\t") for line in listed.out.splitlines()]
        assert lines[0] == ["id", "table", "taken at (UTC)", "rows", "size", "status", "kind"]
        assert [line[1] for line in lines[1:]] == [f"{gold}.{n}" for n in sorted(names)]
    if fmt in ("plain", "default"):
        assert listed.out.splitlines()[0].split() == [
            "id",
            "table",
            "taken",
            "at",
            "(UTC)",
            "rows",
            "size",
            "status",
            "kind",
        ]


def test_runs_listing_formats(duck: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    config = duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.*"])
    assert cli(capsys, "run", "-c", config, "--", sys.executable, "-c", "pass").code == 0

    tsv = cli(capsys, "runs", "--format", "tsv", "-c", config)
    as_json = cli(capsys, "runs", "--format", "json", "-c", config)

    rows = [line.split("\t") for line in tsv.out.splitlines()]
    assert rows[0] == ["run", "started (UTC)", "status", "exit", "seconds", "tables", "rolled back"]
    assert [(r[2], r[3], r[5]) for r in rows[1:]] == [("ok", "0", "1")]
    assert [r["status"] for r in json.loads(as_json.out)] == ["ok"]


def test_verify_diff_and_prune_listings_keep_whole_values_when_piped(
    duck: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    gold = duck.create_schema("gold")
    name = "customer_lifetime_value_by_region_monthly"
    table = duck.table(gold, name)
    duck.sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, region_description_in_full VARCHAR)")
    duck.sql(f"INSERT INTO {table} VALUES (1, 'north-north-east of the river delta, upstream')")
    config = duck.write_config(
        duck.tmp_path / "etlguard.yml", [f"{gold}.*"], retention={"keep_last": 1, "days": None}
    )
    assert cli(capsys, "snapshot", "-c", config).code == 0
    duck.sql(
        f"UPDATE {table} SET region_description_in_full = 'south-south-west of the river delta, downstream'"
    )

    verify = cli(capsys, "verify", "--format", "tsv", "-c", config)
    assert verify.code == 0, verify.err
    lines = [line.split("\t") for line in verify.out.splitlines()]
    assert lines[0] == ["id", "table", "state", "detail"]
    assert [(r[1], r[2]) for r in lines[1:]] == [(f"{gold}.{name}", "ok")]

    diff = cli(capsys, "diff", f"{gold}.{name}", "--exit-code", "-c", config)  # piped: plain
    assert diff.code == 1
    assert "north-north-east of the river delta, upstream" in diff.out
    assert "south-south-west of the river delta, downstream" in diff.out
    assert "…" not in diff.out
    rows = cli(capsys, "diff", f"{gold}.{name}", "--format", "tsv", "-c", config)
    header, *differing = [line.split("\t") for line in rows.out.splitlines()]
    assert header == ["side", "id", "region_description_in_full"]
    assert sorted(differing) == [
        ["+", "1", "south-south-west of the river delta, downstream"],
        ["-", "1", "north-north-east of the river delta, upstream"],
    ]

    assert cli(capsys, "snapshot", "-c", config).code == 0
    pruned = cli(capsys, "prune", "--dry-run", "--format", "tsv", "-c", config)
    assert pruned.code == 0, pruned.err
    actions = [line.split("\t") for line in pruned.out.splitlines()]
    assert actions[0] == ["id", "table", "action", "reason"]
    assert sorted(r[2] for r in actions[1:]) == ["kept", "would delete"]
    assert all(r[1] == f"{gold}.{name}" for r in actions[1:])


def test_a_guarded_run_logs_only_json_lines_and_quiet_keeps_only_errors(
    duck: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    config = duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.*"])
    fail = [sys.executable, "-c", "raise SystemExit(3)"]

    failed = cli(capsys, "--log-format", "json", "run", "-c", config, "--", *fail)

    assert failed.code == 10
    records = [json.loads(line) for line in failed.err_lines]  # every stderr line is one object
    assert records and all(set(r) == {"time", "level", "logger", "message"} for r in records)
    assert records[0]["message"].startswith("snapshotted 1 table")
    assert records[-1]["level"] == "error" and "rolled back 1 table" in records[-1]["message"]

    ok = cli(capsys, "-q", "run", "-c", config, "--", sys.executable, "-c", "pass")
    assert ok.code == 0 and ok.err == ""
    quiet_failure = cli(capsys, "-q", "run", "-c", config, "--", *fail)
    assert quiet_failure.code == 10
    assert quiet_failure.err_lines == [quiet_failure.err_lines[-1]]
    assert quiet_failure.err_lines[-1].startswith(
        "etlguard: error: the ETL exited with status 3; rolled back"
    )


def test_the_library_reports_through_stdlib_logging(
    duck: Backend, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("etlguard"), "propagate", True)  # a CLI test may have routed it
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    guard = duck.guard([f"{gold}.*"])

    with caplog.at_level("INFO", logger="etlguard"):
        result = guard.run([sys.executable, "-c", "raise SystemExit(3)"])

    assert result.exit_code == 10
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert ("etlguard.run", messages[0][1]) == messages[0] and messages[0][1].startswith(
        "snapshotted 1 table"
    )
    assert any(name == "etlguard.run" and "rolling back" in text for name, text in messages)

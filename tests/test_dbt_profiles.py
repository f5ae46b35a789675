"""`target: dbt`: the connection from the dbt project's profiles.yml, found as dbt finds it, with
`env_var()` rendered, for dbt-mysql, dbt-postgres and dbt-duckdb; and the example warehouse run
under `etlguard run -- dbt run` with no URL anywhere, on MariaDB and DuckDB."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etlguard.config import Config
from etlguard.errors import EXIT_OK, ConfigError

from conftest import Backend
from pipeline import Pipeline
from support import cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ETLGUARD_URL", "ETLGUARD_CONFIG", "DBT_PROFILES_DIR", "DBT_TARGET", "DBT_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.dbt of the machine's


def project(where: Path, outputs: dict[str, Any], default: str = "prod", profile: str = "shop") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "dbt_project.yml").write_text(yaml.safe_dump({"name": "shop", "profile": profile}))
    (where / "profiles.yml").write_text(yaml.safe_dump({profile: {"target": default, "outputs": outputs}}))
    return where


def load(tmp_path: Path, command: tuple[str, ...] = (), **settings: Any) -> Config:
    config = tmp_path / "etlguard.yml"
    config.write_text(yaml.safe_dump({"target": "dbt", **settings}))
    return Config.load(config, command=command)


MYSQL = {
    "type": "mysql",
    "server": "aurora.example",
    "port": "{{ env_var('DB_PORT', '3307') | as_number }}",
    "username": "etl",
    "password": "{{ env_var('DB_PASSWORD') }}",
    "schema": "analytics",
}


def test_dbt_mysql_profile_with_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "p@ss:w/rd#?%&")
    monkeypatch.chdir(project(tmp_path, {"prod": MYSQL}))

    target = load(tmp_path).target

    assert (target.dialect, target.host, target.port, target.user) == ("mysql", "aurora.example", 3307, "etl")
    assert target.password == "p@ss:w/rd#?%&"
    assert str(target) == "mysql://etl:***@aurora.example:3307"


def test_dbt_postgres_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg = {
        "type": "postgres",
        "host": "db.example",
        "port": 5433,
        "user": "etl",
        "pass": "secret-text",
        "dbname": "warehouse",
        "schema": "public",
        "sslmode": "require",
    }
    monkeypatch.chdir(project(tmp_path, {"prod": pg}))

    target = load(tmp_path).target

    assert (target.dialect, target.host, target.port, target.database) == (
        "postgresql",
        "db.example",
        5433,
        "warehouse",
    )
    assert (target.user, target.password, target.option("sslmode")) == ("etl", "secret-text", "require")


def test_dbt_duckdb_profile_path_is_relative_to_where_dbt_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project(tmp_path, {"prod": {"type": "duckdb", "path": "w.duckdb"}}))

    target = load(tmp_path).target

    assert (target.dialect, target.database) == ("duckdb", str(tmp_path / "w.duckdb"))


def test_profile_and_target_come_from_the_wrapped_command_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--profiles-dir, --project-dir and --target of the dbt command, as dbt itself reads them."""
    proj = project(tmp_path / "proj", {"prod": MYSQL, "dev": {**MYSQL, "server": "dev.example"}})
    profiles = tmp_path / "elsewhere"
    profiles.mkdir()
    (proj / "profiles.yml").rename(profiles / "profiles.yml")
    monkeypatch.setenv("DB_PASSWORD", "x")
    monkeypatch.chdir(tmp_path)
    command = ("dbt", "run", "--project-dir", str(proj), "--profiles-dir", str(profiles), "--target", "dev")

    from_command = load(tmp_path, command).target
    not_dbt = load(
        tmp_path,
        ("python", "etl.py", "-t", "dev"),
        dbt={"project_dir": str(proj), "profiles_dir": str(profiles)},
    )
    monkeypatch.setenv("DBT_TARGET", "dev")
    monkeypatch.setenv("DBT_PROFILES_DIR", str(profiles))
    from_environment = load(tmp_path, dbt={"project_dir": str(proj)}).target
    from_config = load(
        tmp_path, dbt={"project_dir": str(proj), "profiles_dir": str(profiles), "target": "prod"}
    )

    assert from_command.host == "dev.example"
    assert not_dbt.target.host == "aurora.example"  # another program's -t is not dbt's --target
    assert from_environment.host == "dev.example"
    assert from_config.target.host == "aurora.example"  # etlguard.yml's dbt.target over DBT_TARGET


def test_profiles_found_in_home_dbt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project(tmp_path / "proj", {"prod": {"type": "duckdb", "path": "/data/w.duckdb"}})
    home = tmp_path / "home" / ".dbt"
    home.mkdir(parents=True)
    (proj / "profiles.yml").rename(home / "profiles.yml")
    monkeypatch.chdir(proj)

    assert load(tmp_path).target.database == "/data/w.duckdb"


@pytest.mark.parametrize(
    ("outputs", "settings", "message"),
    [
        (None, {}, "target: dbt found no profiles.yml (looked in {proj}, {home}); set dbt.profiles_dir"),
        (
            {"prod": MYSQL},
            {"dbt": {"profile": "other"}},
            "{proj}/profiles.yml has no profile 'other' (profiles there: shop); set dbt.profile",
        ),
        (
            {"prod": MYSQL},
            {"dbt": {"target": "qa"}},
            "profile 'shop' in {proj}/profiles.yml has no target 'qa' (targets: prod); set dbt.target",
        ),
        (
            {"prod": {"type": "snowflake", "account": "x"}},
            {},
            "shop.outputs.prod in {proj}/profiles.yml is a snowflake target; target: dbt supports mysql, "
            "mariadb, postgres and duckdb profiles (give a target URL instead)",
        ),
        (
            {"prod": {**MYSQL, "password": "{{ env_var('NOT_SET_ANYWHERE') }}"}},
            {},
            "profiles.yml shop.outputs.prod.password reads env_var('NOT_SET_ANYWHERE'), which is not set; export it",
        ),
        (
            {"prod": {**MYSQL, "password": "{{ var('pw') }}"}},
            {},
            "profiles.yml shop.outputs.prod.password uses Jinja other than env_var(); etlguard renders only "
            "{{{{ env_var('NAME') }}}} and {{{{ env_var('NAME', 'default') }}}}",
        ),
        (
            {"prod": {"type": "duckdb", "path": ":memory:"}},
            {},
            "shop.outputs.prod in {proj}/profiles.yml is an in-memory DuckDB; give it a path: to guard",
        ),
    ],
    ids=[
        "no_profiles",
        "no_profile",
        "no_target",
        "unsupported_type",
        "unset_env_var",
        "other_jinja",
        "memory",
    ],
)
def test_profile_mistakes_are_one_line(
    outputs: dict[str, Any] | None,
    settings: dict[str, Any],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proj = project(tmp_path / "proj", outputs or {})
    if outputs is None:
        (proj / "profiles.yml").unlink()
    monkeypatch.chdir(proj)
    config = proj / "etlguard.yml"
    config.write_text(yaml.safe_dump({"target": "dbt", **settings}))

    result = cli(capsys, "snapshots", "-c", config)

    assert result.code == 2
    expected = message.format(proj=proj, home=tmp_path / "home" / ".dbt")
    assert result.err_lines == [f"etlguard: error: {expected}"]


def test_etlguard_url_still_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETLGUARD_URL", "duckdb:///other.duckdb")
    monkeypatch.chdir(tmp_path)  # no profiles.yml anywhere: never read

    assert load(tmp_path).target.database == "other.duckdb"


def test_init_with_the_profiles_form_then_run_from_a_dbt_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    proj = project(tmp_path / "proj", {"prod": {"type": "duckdb", "path": "w.duckdb"}})
    monkeypatch.chdir(proj)
    with duckdb.connect(str(proj / "w.duckdb")) as con:
        con.execute("CREATE SCHEMA gold; CREATE TABLE gold.facts (id INTEGER PRIMARY KEY)")

    init = cli(capsys, "init", "--target", "dbt", "--protect", "gold.*")
    run = cli(capsys, "run", "--", sys.executable, "-c", "pass")

    assert init.code == 0, init.err
    assert init.out.splitlines() == [
        "wrote etlguard.yml",
        "catalog ready in schema etlguard on duckdb:///" + str(proj / "w.duckdb"),
    ]
    assert "\ntarget: dbt\n" in (proj / "etlguard.yml").read_text(encoding="utf-8")
    assert run.code == 0, run.err
    assert "snapshotted 1 table in" in run.out + run.err


# -- the example warehouse with profiles.yml only ---------------------------------------------------------


def test_example_warehouse_runs_guarded_with_profiles_yml_only(backend: Backend) -> None:
    p = Pipeline(backend)
    p.build_first_day()
    config = p.config(target="dbt")
    assert "://" not in config.read_text(encoding="utf-8")

    proc = p.guarded("2026-02-02", config=config)  # the dbt command's --profiles-dir and --target
    p.env["DBT_TARGET"] = backend.kind  # a command that wraps no dbt: the environment says which
    listed = p.etlguard("snapshots", "--format", "tsv", config=config)

    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    assert "snapshotted 6 tables" in proc.stderr
    assert f"{p.schema('gold')}.moveouts" in listed.stdout


def test_config_error_names_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing errors from a profile never quote the field's value."""
    monkeypatch.setenv("DB_PASSWORD", "x")
    proj = project(tmp_path, {"prod": {**MYSQL, "port": "p@ss"}})
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, dbt={"project_dir": str(proj)})
    assert str(caught.value) == "profiles.yml shop.outputs.prod.port is not a port number"

"""The protected set's membership: tables a failed run creates under a protected glob, or that
a first build makes from nothing, are moved aside by the rollback (kept as displaced snapshots,
never dropped); a name that neither exists nor is built by the dbt project is still a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from etlguard.errors import EXIT_ETL_FAILED, EXIT_OK, EXIT_USAGE

from conftest import Backend
from pipeline import Pipeline
from support import cli


def _etl(backend: Backend, *statements: str, status: int = 3) -> list[str]:
    """A Python ETL that runs statements in its own connection, then exits with `status`."""
    if backend.kind == "duckdb":
        connect = f"import duckdb; c = duckdb.connect({str(backend.path)!r}); run = c.execute"  # type: ignore[attr-defined]
    elif backend.kind == "postgresql":
        connect = (
            f"import psycopg; c = psycopg.connect(host='127.0.0.1', port={backend.port}, "  # type: ignore[attr-defined]
            "user='postgres', dbname='postgres', autocommit=True); run = c.execute"
        )
    else:
        connect = (
            f"import pymysql; c = pymysql.connect(host='127.0.0.1', port={backend.port}, user='root', "  # type: ignore[attr-defined]
            "autocommit=True); run = c.cursor().execute"
        )
    body = "".join(f"run({s!r})\n" for s in statements)
    return [sys.executable, "-c", f"{connect}\n{body}c.close()\nimport sys; sys.exit({status})\n"]


def _gold(backend: Backend) -> str:
    gold = backend.create_schema("gold")
    backend.sql(f"CREATE TABLE {backend.table(gold, 'a')} (id INT PRIMARY KEY, v INT)")
    backend.sql(f"INSERT INTO {backend.table(gold, 'a')} VALUES (1, 10), (2, 20)")
    return gold


def _displaced(backend: Backend, table: str) -> list[tuple]:
    t = backend.table(backend.catalog_schema, "snapshots")
    schema, _, name = table.partition(".")
    return backend.sql(
        f"SELECT id, snapshot_schema, snapshot_table, status, row_count FROM {t} "
        f"WHERE kind = 'displaced' AND table_schema = '{schema}' AND table_name = '{name}'"
    )


@pytest.fixture(params=["duckdb", "mariadb", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue({"duckdb": "duck", "mariadb": "maria", "postgresql": "pg"}[request.param])


def test_a_table_the_failed_run_created_under_a_glob_is_moved_aside(any_db: Backend) -> None:
    b = any_db
    gold = _gold(b)
    before = b.golden(gold, "a")
    guard = b.guard([f"{gold}.*"])
    new = b.table(gold, "b")

    result = guard.run(
        _etl(
            b,
            f"CREATE TABLE {new} (id INT PRIMARY KEY)",
            f"INSERT INTO {new} VALUES (7), (8), (9)",
            f"UPDATE {b.table(gold, 'a')} SET v = 0",
        )
    )

    assert result.exit_code == EXIT_ETL_FAILED, result.message
    assert result.moved_aside == [f"{gold}.b"]
    assert "moved aside 1 table the run created" in result.message
    assert b.golden(gold, "a") == before
    assert not b.sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{gold}' AND table_name = 'b'"
    )
    [(sid, schema, name, status, rows)] = _displaced(b, f"{gold}.b")
    assert (status, rows) == ("verified", 3) and sid in result.displaced_ids
    assert sorted(r[0] for r in b.sql(f"SELECT id FROM {b.table(schema, name)}")) == [7, 8, 9]


def test_a_good_run_keeps_the_tables_it_created(backend: Backend) -> None:
    gold = _gold(backend)
    new = backend.table(gold, "b")
    result = backend.guard([f"{gold}.*"]).run(
        _etl(backend, f"CREATE TABLE {new} (id INT PRIMARY KEY)", status=0)
    )
    assert result.exit_code == EXIT_OK, result.message
    assert backend.sql(f"SELECT COUNT(*) FROM {new}") == [(0,)]


def test_a_name_neither_existing_nor_built_by_dbt_is_a_typo(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(backend)
    target = backend.tmp_path / "target"
    target.mkdir()
    manifest = {"nodes": {"model.p.b": _node(gold, "b")}}
    (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    settings = {"dbt": {"target_path": str(target)}}
    config = backend.write_config(
        backend.tmp_path / "etlguard.yml", [f"{gold}.a", f"{gold}.typo"], **settings
    )

    result = cli(capsys, "run", "-c", str(config), "--", "dbt", "run")

    assert result.code == EXIT_USAGE
    assert result.err_lines == [
        f"etlguard: error: table {gold}.typo does not exist; check the name; "
        "the dbt project does not build it either"
    ]


def test_a_name_the_dbt_project_builds_is_protected_as_new(backend: Backend) -> None:
    gold = _gold(backend)
    target = backend.tmp_path / "target"
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps({"nodes": {"m": _node(gold, "b")}}), encoding="utf-8")
    guard = backend.guard([f"{gold}.a", f"{gold}.b"], dbt={"target_path": str(target)})
    new = backend.table(gold, "b")
    lines: list[str] = []

    result = guard.run(_etl(backend, f"CREATE TABLE {new} (id INT PRIMARY KEY)"), echo=lines.append)

    assert result.exit_code == EXIT_ETL_FAILED
    assert result.new == [f"{gold}.b"] and result.moved_aside == [f"{gold}.b"]
    assert any(line.startswith("new, no table yet") and f"{gold}.b" in line for line in lines)


def _node(schema: str, name: str) -> dict:
    return {
        "resource_type": "model",
        "schema": schema,
        "name": name,
        "alias": name,
        "config": {"materialized": "table"},
    }


# -- the first night: an empty warehouse, built under guard -------------------------------------------


@pytest.fixture
def empty_warehouse(backend: Backend) -> Pipeline:
    p = Pipeline(backend)
    p.install_deps()
    proc = p.dbt("parse")
    assert proc.returncode == 0, proc.stdout[-3000:]
    return p


def test_the_first_build_runs_guarded_and_its_failure_leaves_nothing_half_built(
    empty_warehouse: Pipeline,
) -> None:
    p = empty_warehouse
    assert not [t for t in p.tables if _exists(p.backend, *t)]

    proc = p.guarded("2026-02-01", verb="build", fail_model="moveouts")

    assert proc.returncode == EXIT_ETL_FAILED, proc.stderr[-3000:]
    assert "new, no table yet" in proc.stderr
    assert not [t for t in p.tables if _exists(p.backend, *t)]  # nothing half-built is live
    moved = [t for t in p.tables if _displaced(p.backend, f"{t[0]}.{t[1]}")]
    assert moved, "the tables the failed build made were kept aside, not dropped"

    good = p.guarded("2026-02-01", verb="build")
    assert good.returncode == EXIT_OK, good.stderr[-3000:]
    assert all(_exists(p.backend, *t) for t in p.tables)


def _exists(backend: Backend, schema: str, name: str) -> bool:
    return bool(
        backend.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            f"'{schema}' AND table_name = '{name}'"
        )
    )


# -- MySQL edge cases: refused before the swap, never halfway -----------------------------------------


def _two_tables(maria: Backend) -> tuple[str, str]:
    gold = _gold(maria)
    other = maria.create_schema("other")
    maria.sql(f"CREATE TABLE {maria.table(other, 'child')} (id INT PRIMARY KEY, a_id INT)")
    return gold, other


@pytest.mark.parametrize(
    ("change", "says", "fix"),
    [
        (
            "CREATE TRIGGER {gold}.tr BEFORE INSERT ON {a} FOR EACH ROW SET NEW.v = NEW.v",
            "the run added trigger {gold}.tr (remove it with DROP TRIGGER `{gold}`.`tr`)",
            "DROP TRIGGER `{gold}`.`tr`",
        ),
        (
            "ALTER TABLE {child} ADD CONSTRAINT fk_a FOREIGN KEY (a_id) REFERENCES {a} (id)",
            "the run added foreign key fk_a from {other}.child into {gold}.a (remove it with "
            "ALTER TABLE `{other}`.`child` DROP FOREIGN KEY `fk_a`)",
            "ALTER TABLE `{other}`.`child` DROP FOREIGN KEY `fk_a`",
        ),
        (
            "RENAME TABLE {a} TO {gold}.a_old; CREATE VIEW {a} AS SELECT 1 AS id",
            "it is now a view",
            "DROP VIEW {a}",
        ),
    ],
    ids=["trigger", "foreign-key-into", "view"],
)
def test_what_the_etl_added_is_refused_before_the_swap(
    maria: Backend, change: str, says: str, fix: str
) -> None:
    gold, other = _two_tables(maria)
    a, child = maria.table(gold, "a"), maria.table(other, "child")
    names = {"gold": gold, "other": other, "a": a, "child": child}
    statements = [f"UPDATE {a} SET v = 99", *change.format(**names).split("; ")]

    result = maria.guard([f"{gold}.a"]).run(_etl(maria, *statements))

    assert result.status == "rollback_failed", result.message
    assert says.format(**names) in result.message
    assert "nothing was changed" in result.message
    # nothing was half done: the ETL's result is still live, the snapshot whole and unconsumed
    live = "a_old" if "view" in says else "a"
    assert maria.sql(f"SELECT DISTINCT v FROM {maria.table(gold, live)}") == [(99,)]
    [snap] = maria.guard([f"{gold}.a"]).snapshots(f"{gold}.a")
    assert snap.verified and snap.kind == "snapshot"
    assert maria.sql(
        f"SELECT id, v FROM {maria.table(snap.snapshot.schema, snap.snapshot.name)} ORDER BY id"
    ) == [
        (1, 10),
        (2, 20),
    ]
    # the message's own statement, then recover: the rollback finishes
    maria.sql(fix.format(**names))
    assert not maria.guard([f"{gold}.a"]).recover().nothing_to_do
    assert maria.sql(f"SELECT id, v FROM {a} ORDER BY id") == [(1, 10), (2, 20)]


def test_a_system_versioned_table_matched_by_a_glob_is_refused_not_left_out(
    maria: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(maria)
    maria.sql(f"CREATE TABLE {maria.table(gold, 'hist')} (id INT PRIMARY KEY) WITH SYSTEM VERSIONING")
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [f"{gold}.*"])

    result = cli(capsys, "run", "-c", str(config), "--", sys.executable, "-c", "pass")

    assert result.code == EXIT_USAGE
    assert result.err_lines == [
        f"etlguard: error: table {gold}.hist cannot be snapshotted exactly: it is system-versioned "
        "(WITH SYSTEM VERSIONING): a copy cannot keep its history or row_start/row_end values; protect "
        "it by another means and name the other tables instead of a glob that matches it"
    ]


# -- crash safety: killed mid-rollback, or mid-ETL, then recover ----------------------------------------


@pytest.mark.parametrize("point", ["run.after_etl", "restore.before_swap", "restore.after_swap"])
def test_killed_around_the_swap_recover_moves_the_new_table_aside_exactly_once(
    backend: Backend, point: str
) -> None:
    gold = _gold(backend)
    before = backend.golden(gold, "a")
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.*"])
    new = backend.table(gold, "b")
    etl = _etl(backend, f"CREATE TABLE {new} (id INT PRIMARY KEY)", f"INSERT INTO {new} VALUES (5)")

    killed = _etlguard(backend, "run", "-c", str(config), "--", *etl, fault=f"{point}:kill")
    assert killed.returncode == -9, killed.stderr
    recovered = _etlguard(backend, "recover", "-c", str(config), fault="")

    assert recovered.returncode == 0, recovered.stderr
    assert backend.golden(gold, "a") == before
    assert not _exists(backend, gold, "b")
    rows = _displaced(backend, f"{gold}.b")
    [(_, schema, name, _, count)] = [r for r in rows if r[3] == "verified"]
    assert count == 1 and backend.sql(f"SELECT id FROM {backend.table(schema, name)}") == [(5,)]
    assert {r[3] for r in rows} <= {"verified", "failed"}, rows  # an undone attempt is marked failed
    listed = backend.sql(
        "SELECT table_schema, table_name FROM information_schema.tables "
        f"WHERE table_schema IN ('{backend.snapshot_schema}', '{gold}')"
    )  # DuckDB keeps displaced tables beside the live ones (it renames only within a schema)
    present = {(r[0], r[1]) for r in listed if r[0] != gold or r[1].startswith("_etlguard_")}
    catalog = backend.table(backend.catalog_schema, "snapshots")
    verified = {
        (r[0], r[1])
        for r in backend.sql(
            f"SELECT snapshot_schema, snapshot_table FROM {catalog} WHERE status = 'verified'"
        )
    }
    assert present == verified  # no orphan, nothing verified that is missing
    again = _etlguard(backend, "recover", "-c", str(config), fault="")
    assert "nothing to recover" in again.stdout, again.stdout


def _etlguard(backend: Backend, *args: str, fault: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ETLGUARD_FAULT"}
    if fault:
        env["ETLGUARD_FAULT"] = fault
    cmd = [sys.executable, "-m", "etlguard", *args]
    return subprocess.run(cmd, env=env, cwd=backend.tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("change", ["trigger", "view"])
def test_postgres_refuses_what_the_etl_added_before_the_refill(pg: Backend, change: str) -> None:
    gold = _gold(pg)
    a = pg.table(gold, "a")
    if change == "trigger":
        fn = pg.table(gold, "f")
        statements = [
            f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            f"CREATE TRIGGER tr BEFORE INSERT ON {a} FOR EACH ROW EXECUTE FUNCTION {fn}()",
        ]
        says, fix, live = (
            "it has triggers, which would fire on the restore's refill",
            f"DROP TRIGGER tr ON {a}",
            "a",
        )
    else:
        statements = [f"ALTER TABLE {a} RENAME TO a_old", f"CREATE VIEW {a} AS SELECT 1 AS id"]
        says, fix, live = "it is now a view", f"DROP VIEW {a}", "a_old"

    result = pg.guard([f"{gold}.a"]).run(_etl(pg, f"UPDATE {a} SET v = 99", *statements))

    assert result.status == "rollback_failed" and says in result.message, result.message
    assert "nothing was changed" in result.message
    assert pg.sql(f"SELECT DISTINCT v FROM {pg.table(gold, live)}") == [(99,)]
    pg.sql(fix)
    if change == "view":  # PostgreSQL keeps the table by its identity: put it back under its name
        pg.sql(f"ALTER TABLE {pg.table(gold, 'a_old')} RENAME TO a")
    assert not pg.guard([f"{gold}.a"]).recover().nothing_to_do
    assert pg.sql(f"SELECT id, v FROM {a} ORDER BY id") == [(1, 10), (2, 20)]

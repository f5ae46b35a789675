"""After every rollback and restore the live table is compared with the snapshot's recorded
structure as well as its data. An ETL that altered a protected table and then failed gets the
exact pre-run table back; a table that cannot be proved identical is never called verified."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from etlguard import TableRef
from etlguard.errors import EXIT_ETL_FAILED, EXIT_ROLLBACK_FAILED

from conftest import Backend, in_every_schema
from support import catalog_rows, cli, tables_in

ETL = """
import sys
kind, target, schema, table, catalog, change = sys.argv[1:7]
if kind == "duckdb":
    import duckdb
    conn = duckdb.connect(target)
    run, one = conn.execute, lambda sql: conn.execute(sql).fetchone()
    q = lambda n: '"' + n.replace('"', '""') + '"'
elif kind == "postgresql":
    import psycopg
    host, port = target.split(":")
    conn = psycopg.connect(host=host, port=int(port), user="postgres", dbname="postgres", autocommit=True)
    run, one = conn.execute, lambda sql: conn.execute(sql).fetchone()
    q = lambda n: '"' + n.replace('"', '""') + '"'
else:
    import pymysql
    host, port = target.split(":")
    conn = pymysql.connect(host=host, port=int(port), user="root", password="", autocommit=True)
    cur = conn.cursor()
    run = cur.execute
    def one(sql):
        cur.execute(sql)
        return cur.fetchone()
    q = lambda n: "`" + n.replace("`", "``") + "`"
t = f"{q(schema)}.{q(table)}"
changes = {
    "add_column": [f"ALTER TABLE {t} ADD COLUMN extra INTEGER"],
    "add_index": [f"CREATE INDEX {q('ix_etl_' + table)} ON {t} (note)"],
    "change_type": [
        f"ALTER TABLE {t} MODIFY qty DOUBLE NULL"
        if kind == "mariadb"
        else f"ALTER TABLE {t} ALTER COLUMN qty TYPE DOUBLE PRECISION"
    ],
    "data_only": [],
    "replace": [  # what a dbt table model does: a new table without the key, under the old name
        f"DROP TABLE {t}",
        f"CREATE TABLE {t} (id INTEGER, qty INTEGER, amount DECIMAL(12,2), note VARCHAR(40))",
        f"INSERT INTO {t} VALUES (1, 1, 1.00, 'new')",
    ],
}
if change == "alter_snapshot":  # the recorded snapshot table itself: same data, another default
    snap_schema, snap_table = one(
        f"SELECT snapshot_schema, snapshot_table FROM {q(catalog)}.{q('snapshots')} ORDER BY id DESC LIMIT 1"
    )
    run(f"ALTER TABLE {q(snap_schema)}.{q(snap_table)} ALTER COLUMN note SET DEFAULT 'tampered'")
    run(f"UPDATE {t} SET qty = qty + 100")
else:
    run(f"UPDATE {t} SET qty = qty + 1 WHERE id % 2 = 0")
    run(f"DELETE FROM {t} WHERE id = 3")
    for sql in changes[change]:
        run(sql)
sys.exit(1)
"""


def make_facts(backend: Backend, schema: str, name: str = "facts") -> str:
    t = backend.table(schema, name)
    backend.sql(
        f"CREATE TABLE {t} (id INTEGER NOT NULL PRIMARY KEY, qty INTEGER, amount DECIMAL(12,2) NOT NULL, "
        "note VARCHAR(40) DEFAULT 'none')"
    )
    values = ", ".join(
        f"({i}, {i * 3}, {i}.25, {'NULL' if i % 4 == 0 else repr(f'n{i} ü')})" for i in range(1, 21)
    )
    backend.sql(f"INSERT INTO {t} (id, qty, amount, note) VALUES {values}")
    return t


def etl(backend: Backend, schema: str, change: str, table: str = "facts") -> list[str]:
    script = backend.tmp_path / "etl.py"
    script.write_text(ETL, encoding="utf-8")
    target = (
        str(getattr(backend, "path", "")) if backend.kind == "duckdb" else f"{backend.host}:{backend.port}"
    )  # type: ignore[attr-defined]
    return [sys.executable, str(script), backend.kind, target, schema, table, backend.catalog_schema, change]


@in_every_schema()
@pytest.mark.parametrize("change", ["add_column", "add_index", "change_type", "replace"])
def test_an_etl_that_changes_the_structure_and_fails_is_rolled_back_exactly(
    backend: Backend, change: str
) -> None:
    gold = backend.data_schema("gold")
    make_facts(backend, gold)
    before, shape = backend.golden(gold, "facts"), backend.show_create(gold, "facts")

    result = backend.guard([f"{gold}.facts"]).run(etl(backend, gold, change))

    assert (result.exit_code, result.rollback_verified) == (EXIT_ETL_FAILED, [f"{gold}.facts"]), (
        result.message
    )
    assert backend.show_create(gold, "facts") == shape
    assert backend.golden(gold, "facts") == before


@in_every_schema(defaults=["postgresql"], kinds=["postgresql"])
@pytest.mark.parametrize("change", ["data_only", "add_column", "add_index", "change_type", "replace"])
def test_postgresql_rollbacks_are_exact_in_public_and_named_schemas(backend: Backend, change: str) -> None:
    """PostgreSQL rebuilds what a refill cannot undo; the structure check proves it, in
    `public` as in a named schema."""
    gold, facts = backend.data_schema("gold"), backend.unique("facts")
    make_facts(backend, gold, facts)
    before, shape = backend.golden(gold, facts), backend.show_create(gold, facts)
    ref = str(TableRef(gold, facts))

    result = backend.guard([ref]).run(etl(backend, gold, change, facts))

    assert (result.exit_code, result.rollback_verified) == (EXIT_ETL_FAILED, [ref]), result.message
    assert (backend.show_create(gold, facts), backend.golden(gold, facts)) == (shape, before)


@in_every_schema()
def test_a_rollback_whose_structure_differs_from_the_record_exits_20_and_keeps_the_etl_table(
    backend: Backend,
) -> None:
    gold = backend.data_schema("gold")
    make_facts(backend, gold)

    result = backend.guard([f"{gold}.facts"]).run(etl(backend, gold, "alter_snapshot"))

    assert result.exit_code == EXIT_ROLLBACK_FAILED
    assert result.rollback_verified == []
    assert (
        f"{gold}.facts: its structure" in result.message and "differs from the snapshot's" in result.message
    )
    assert result.recovery_command == f"etlguard snapshots {gold}.facts" in result.message
    [displaced] = [r for r in catalog_rows(backend) if r["kind"] == "displaced"]
    assert displaced["status"] == "verified" and str(displaced["id"]) in result.message
    assert displaced["snapshot_table"] in tables_in(backend, displaced["snapshot_schema"])
    kept = backend.sql(
        f"SELECT min(qty) FROM {backend.table(displaced['snapshot_schema'], displaced['snapshot_table'])}"
    )
    assert kept == [(103,)]  # the ETL's rows: qty + 100


def test_a_manual_restore_that_cannot_prove_the_structure_exits_non_zero(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.data_schema("gold")
    t = make_facts(backend, gold)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    [snap] = backend.guard([f"{gold}.facts"]).snapshot()
    snap_table = backend.table(snap.snapshot.schema, snap.snapshot.name)
    backend.sql(f"ALTER TABLE {snap_table} ALTER COLUMN note SET DEFAULT 'tampered'")
    backend.sql(f"DELETE FROM {t}")

    restored = cli(capsys, "restore", f"{gold}.facts", "--latest", "-c", str(config))

    assert restored.code == EXIT_ROLLBACK_FAILED
    assert len(restored.err_lines) == 1 and "restored, but not verified" in restored.err
    assert "structure" in restored.err and "kept as snapshots" in restored.err


def test_diff_and_restore_still_read_a_duckdb_snapshot_recorded_in_the_old_format(duck: Backend) -> None:
    """Catalogs written before structure format 2 hold a JSON list of DDL texts."""
    gold = duck.create_schema("gold")
    t = make_facts(duck, gold)
    duck.sql(f"CREATE INDEX ix_note ON {t} (note)")
    before, shape = duck.golden(gold, "facts"), duck.show_create(gold, "facts")
    guard = duck.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    table_sql, index_sql = shape.split("\n")
    legacy = [
        table_sql.replace(f"CREATE TABLE {gold}.facts(", "CREATE TABLE ⟨T⟩(", 1),
        index_sql.replace(f" ON {gold}.facts(", " ON ⟨T⟩(", 1),
    ]
    assert all("⟨T⟩" in part for part in legacy)
    catalog = duck.table(duck.catalog_schema, "snapshots")
    duck.sql(f"UPDATE {catalog} SET structure = ? WHERE id = ?", [json.dumps(legacy), snap.id])
    duck.sql(f"DELETE FROM {t} WHERE id > 5")

    assert guard.diff(f"{gold}.facts", snap.id).same_structure
    result = guard.restore([f"{gold}.facts"], latest=True)

    assert result.verified == [f"{gold}.facts"]
    assert (duck.golden(gold, "facts"), duck.show_create(gold, "facts")) == (before, shape)


@pytest.mark.parametrize(
    "ddl",
    [
        # a sequence default (unqualified, resolved in the table's own schema), enum, struct,
        # list and map types, a generated column, CHECK and UNIQUE constraints, a collation
        """CREATE TABLE {t} (id INTEGER DEFAULT nextval('{seq}') PRIMARY KEY,
             mood ENUM('sad', 'ok', 'happy') NOT NULL DEFAULT 'ok',
             info STRUCT(a INTEGER, tags VARCHAR[]), scores DOUBLE[], attrs MAP(VARCHAR, INTEGER),
             name VARCHAR COLLATE nocase UNIQUE, twice INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL,
             CHECK (id > 0), CHECK (length(name) < 40))""",
    ],
)
@pytest.mark.parametrize("home", [True, False], ids=["main", "named"])
def test_duckdb_structures_are_recreated_exactly(duck: Backend, ddl: str, home: bool) -> None:
    schema = "main" if home else duck.create_schema("gold")
    duck.sql(f"CREATE SEQUENCE {duck.table(schema, 'ids')}")
    t = duck.table(schema, "rich")
    duck.sql(ddl.format(t=t, seq="ids"))
    duck.sql(f"CREATE UNIQUE INDEX {duck.q('ix rich')} ON {t} (mood, name)")
    duck.sql(
        f"INSERT INTO {t} (mood, info, scores, attrs, name) VALUES "
        "('sad', {'a': 1, 'tags': ['x', 'y']}, [1.5, -0.0], MAP {'k': 1}, 'Ann'), "
        "('happy', NULL, [], MAP {}, NULL), ('ok', {'a': NULL, 'tags': NULL}, NULL, NULL, 'bob')"
    )
    before, shape = duck.golden(schema, "rich"), duck.show_create(schema, "rich")
    guard = duck.guard([f"{schema}.rich"])
    [snap] = guard.snapshot()
    duck.sql(f"DROP TABLE {t}")
    duck.sql(f"CREATE TABLE {t} (id INTEGER)")  # replaced by something else entirely

    result = guard.restore([f"{schema}.rich"], latest=True)

    assert snap.verified and result.verified == [f"{schema}.rich"]
    assert (duck.golden(schema, "rich"), duck.show_create(schema, "rich")) == (before, shape)
    duck.sql(f"INSERT INTO {t} (name) VALUES ('new')")  # the default still draws from the sequence
    assert duck.sql(f"SELECT id, mood, twice FROM {t} WHERE name = 'new'") == [(4, "ok", 8)]


DBT_PROJECT = {
    "dbt_project.yml": "name: tiny\nversion: '1.0'\nprofile: tiny\nmodel-paths: ['models']\n",
    "profiles.yml": "tiny:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: '{path}'\n",
    "models/facts.sql": "{{{{ config(materialized='table') }}}}\n"
    "select i as id, i * {{{{ var('factor', 1) }}}} as amount from range(1, 11) t(i)\n",
    "models/report.sql": "{{{{ config(materialized='table') }}}}\n"
    "select {{{{ 'no_such_column' if var('fail', false) else 'id' }}}} from {{{{ ref('facts') }}}}\n",
}


def test_an_unmodified_dbt_duckdb_project_in_main_is_guarded(duck: Backend) -> None:
    dbt = Path(__file__).resolve().parent.parent / ".venvs/dbt-duckdb/bin/dbt"
    if not dbt.exists():
        pytest.fail(f"{dbt} is missing: run scripts/setup-dbt (make test does)")
    project = duck.tmp_path / "tiny"
    for name, text in DBT_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text.format(path=duck.path), encoding="utf-8")  # type: ignore[attr-defined]
    command = [str(dbt), "run", "--project-dir", str(project), "--profiles-dir", str(project)]
    first = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:]
    assert tables_in(duck, "main") == ["facts", "report"]  # dbt-duckdb's default schema
    before = {n: duck.golden("main", n) for n in ("facts", "report")}
    config = duck.write_config(
        duck.tmp_path / "etlguard.yml", [{"dbt": "materialized:table"}], dbt={"project_dir": str(project)}
    )

    guarded = subprocess.run(
        [
            sys.executable,
            "-m",
            "etlguard",
            "run",
            "-c",
            str(config),
            "--",
            *command,
            "--vars",
            '{"factor": 7, "fail": true}',
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert guarded.returncode == EXIT_ETL_FAILED, guarded.stdout[-2000:] + guarded.stderr[-2000:]
    assert "rolled back 2 tables" in guarded.stdout + guarded.stderr
    assert {n: duck.golden("main", n) for n in ("facts", "report")} == before


def test_a_snapshot_recorded_without_a_structure_is_held_to_its_own_table(backend: Backend) -> None:
    """`recover` records a displaced table's checksum but not its structure; restoring such a
    snapshot compares with the snapshot table's structure, read before the swap."""
    gold = backend.data_schema("gold")
    t = make_facts(backend, gold)
    before, shape = backend.golden(gold, "facts"), backend.show_create(gold, "facts")
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    catalog = backend.table(backend.catalog_schema, "snapshots")
    backend.sql(f"UPDATE {catalog} SET structure = NULL WHERE id = {snap.id}")
    backend.sql(f"ALTER TABLE {t} ADD COLUMN extra INTEGER")
    backend.sql(f"DELETE FROM {t} WHERE id < 10")

    result = guard.restore([f"{gold}.facts"], snapshot_ids=[snap.id])

    assert result.verified == [f"{gold}.facts"]
    assert (backend.golden(gold, "facts"), backend.show_create(gold, "facts")) == (before, shape)

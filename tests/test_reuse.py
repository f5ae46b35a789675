"""Reused snapshots (issue 11): a table unchanged since its newest verified snapshot shares that
snapshot's table instead of being copied again; any change of a row, of the structure or of
the AUTO_INCREMENT counter forces a copy; a tampered, restored or missing snapshot table is never
reused; a rollback through a shared snapshot restores the exact table; retention counts
references; an older catalog upgrades. On DuckDB, MariaDB and PostgreSQL."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etlguard import Config, Guard
from etlguard.catalog import SCHEMA_VERSION

from conftest import BACKENDS, Backend, _one
from support import catalog_rows, tables_in


@pytest.fixture(params=[k for k in ("duckdb", "mariadb", "postgresql") if k in BACKENDS])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _one(str(request.param), tmp_path)


def _orders(db: Backend) -> tuple[str, str]:
    gold = db.create_schema("gold")
    t = db.table(gold, "orders")
    if db.kind == "mariadb":
        ddl = "id INTEGER AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2), x DOUBLE"
    else:
        ddl = "id INTEGER PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2), x DOUBLE PRECISION"
    db.sql(f"CREATE TABLE {t} ({ddl})")
    db.sql(f"INSERT INTO {t} VALUES (1, 'a', 1.50, 0.5), (2, NULL, NULL, 0.0), (3, 'c', 3.25, 2.5)")
    return gold, t


def _physical(db: Backend) -> list[str]:
    return tables_in(db, db.snapshot_schema)


def _snap_rows(db: Backend) -> list[dict[str, object]]:
    t = db.table(db.catalog_schema, "snapshots")
    cols = ["id", "status", "snapshot_table", "reuses", "kind"]
    rows = db.sql(f"SELECT {', '.join(db.q(c) for c in cols)} FROM {t} ORDER BY {db.q('id')}")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_an_unchanged_table_is_reused_and_writes_nothing(db: Backend) -> None:
    gold, _ = _orders(db)
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    assert first.reuses is None and first.change_check
    tables = _physical(db)
    [second] = guard.snapshot()
    assert second.reuses == first.id and second.snapshot == first.snapshot
    assert second.verified and second.note and second.note.startswith("unchanged since")
    assert _physical(db) == tables  # no new physical table: nothing copied, no bytes written
    [third] = guard.snapshot()  # a chain points at the table's owner, not at a reference
    assert third.reuses == first.id
    assert third.note == second.note == f"unchanged since {first.taken_at:%Y-%m-%d %H:%M:%S} UTC"
    assert all(r.ok for r in guard.verify())


@pytest.mark.parametrize("change", ["update", "insert", "delete", "column", "index"])
def test_any_change_forces_a_copy(db: Backend, change: str) -> None:
    gold, t = _orders(db)
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    statements = {
        "update": f"UPDATE {t} SET amount = 1.51 WHERE id = 1",
        "insert": f"INSERT INTO {t} VALUES (4, 'd', 4.00, 1.0)",
        "delete": f"DELETE FROM {t} WHERE id = 2",
        "column": f"ALTER TABLE {t} ADD COLUMN extra INTEGER",
        "index": f"CREATE INDEX orders_name ON {t} (name)",
    }
    db.sql(statements[change])
    [second] = guard.snapshot()
    assert second.reuses is None
    assert second.snapshot != first.snapshot
    assert len(_physical(db)) == 2


def test_changes_duckdb_hash_alone_would_miss_force_a_copy(duck: Backend) -> None:
    gold = duck.create_schema("gold")
    t = duck.table(gold, "names")
    duck.sql(f"CREATE TABLE {t} (id INTEGER, name VARCHAR COLLATE NOCASE, span INTERVAL, x DOUBLE)")
    duck.sql(f"INSERT INTO {t} VALUES (1, 'Ann', INTERVAL 1 MONTH, 0.0)")
    guard = duck.guard([f"{gold}.names"])
    guard.snapshot()
    duck.sql(f"UPDATE {t} SET name = 'ann'")  # equal under NOCASE, not the same value
    assert guard.snapshot()[0].reuses is None
    duck.sql(f"DELETE FROM {t}")  # (an UPDATE to an equal value keeps the old one: rewrite the row)
    duck.sql(f"INSERT INTO {t} VALUES (1, 'ann', INTERVAL 30 DAY, 0.0)")  # equal as intervals
    assert duck.sql(f"SELECT CAST(span AS VARCHAR) FROM {t}") == [("30 days",)]
    assert guard.snapshot()[0].reuses is None
    duck.sql(f"DELETE FROM {t}")
    duck.sql(f"INSERT INTO {t} VALUES (1, 'ann', INTERVAL 30 DAY, '-0.0'::DOUBLE)")  # -0.0 = 0.0
    assert duck.sql(f"SELECT signbit(x) FROM {t}") == [(True,)]
    assert guard.snapshot()[0].reuses is None
    assert guard.snapshot()[0].reuses is not None


def test_an_auto_increment_change_forces_a_copy(maria: Backend) -> None:
    gold, t = _orders(maria)
    guard = maria.guard([f"{gold}.orders"])
    guard.snapshot()
    maria.sql(f"ALTER TABLE {t} AUTO_INCREMENT = 1000")  # the rows are the same; the counter is not
    [second] = guard.snapshot()
    assert second.reuses is None and second.auto_increment == 1000
    [third] = guard.snapshot()
    assert third.reuses == second.id


def test_a_tampered_snapshot_is_not_reused(db: Backend) -> None:
    gold, _ = _orders(db)
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    db.sql(f"UPDATE {db.table(first.snapshot.schema, first.snapshot.name)} SET name = 'forged' WHERE id = 1")
    [second] = guard.snapshot()
    assert second.reuses is None and second.snapshot != first.snapshot
    [third] = guard.snapshot()
    assert third.reuses == second.id  # the new copy is reused, not the tampered one


@pytest.mark.parametrize("beside", [False, True], ids=["snapshot-schema", "beside-live"])
def test_a_duckdb_snapshot_table_changed_behind_etlguards_back_is_not_reused(
    duck: Backend, beside: bool
) -> None:
    """DuckDB has no seal: each snapshot table is read again. The set's checks are taken in one
    statement, so three tables of one shape with different rows show that each check is held
    to its own table: only the one whose snapshot table was changed is copied."""
    gold = duck.create_schema("gold")
    names = ["a", "b", "c"]
    for i, name in enumerate(names):
        duck.sql(f"CREATE TABLE {duck.table(gold, name)} (id INTEGER PRIMARY KEY, v VARCHAR)")
        duck.sql(f"INSERT INTO {duck.table(gold, name)} SELECT n, 'v' || (n * {i + 1}) FROM range(1000) t(n)")
    guard = duck.guard([f"{gold}.{n}" for n in names], snapshot={"beside_live": beside})
    first = {s.table.name: s for s in guard.snapshot()}
    assert (first["b"].snapshot.schema == gold) is beside
    changed = first["b"].snapshot
    assert duck.sql(f"UPDATE {duck.table(changed.schema, changed.name)} SET v = 'forged' WHERE id = 500") == [
        (1,)
    ]
    second = {s.table.name: s for s in guard.snapshot()}
    assert second["b"].reuses is None and second["b"].snapshot != changed
    assert second["a"].reuses == first["a"].id and second["c"].reuses == first["c"].id
    third = {s.table.name: s for s in guard.snapshot()}
    assert third["b"].reuses == second["b"].id  # the new copy is reused, not the changed table
    assert [r.snapshot.id for r in guard.verify() if not r.ok] == [first["b"].id]


def test_a_dropped_or_altered_snapshot_table_is_not_reused(db: Backend) -> None:
    gold, _ = _orders(db)
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    db.sql(f"ALTER TABLE {db.table(first.snapshot.schema, first.snapshot.name)} ADD COLUMN extra INTEGER")
    [second] = guard.snapshot()
    assert second.reuses is None
    db.sql(f"DROP TABLE {db.table(second.snapshot.schema, second.snapshot.name)}")
    [third] = guard.snapshot()
    assert third.reuses is None


def test_reuse_off_copies_every_time(db: Backend) -> None:
    gold, _ = _orders(db)
    guard = Guard(Config.from_dict(db.settings(protect=[f"{gold}.orders"], snapshot={"reuse": False})))
    guard.snapshot()
    [second] = guard.snapshot()
    assert second.reuses is None and len(_physical(db)) == 2


def test_a_mixed_set_copies_only_what_changed(db: Backend) -> None:
    gold, _ = _orders(db)
    other = db.table(gold, "customers")
    db.sql(f"CREATE TABLE {other} (id INTEGER PRIMARY KEY, name VARCHAR(10))")
    db.sql(f"INSERT INTO {other} VALUES (1, 'x')")
    guard = db.guard([f"{gold}.orders", f"{gold}.customers"])
    first = {str(s.table): s for s in guard.snapshot()}
    db.sql(f"UPDATE {other} SET name = 'y'")
    second = {str(s.table): s for s in guard.snapshot()}
    assert second[f"{gold}.orders"].reuses == first[f"{gold}.orders"].id
    assert second[f"{gold}.customers"].reuses is None
    assert len(_physical(db)) == 3


def _etl(db: Backend, t: str) -> list[str]:
    """A failing ETL that changes the table first, on its own connection."""
    if db.kind == "duckdb":
        code = (
            "import duckdb,sys; c = duckdb.connect(sys.argv[1]); "
            f"c.execute({f'UPDATE {t} SET amount = 99'!r}); c.close(); sys.exit(3)"
        )
        return [sys.executable, "-c", code, str(db.path)]  # type: ignore[attr-defined]
    if db.kind == "mariadb":
        code = (
            "import pymysql,sys; c = pymysql.connect(host=sys.argv[1], port=int(sys.argv[2]), user='root', "
            f"autocommit=True); c.cursor().execute({f'UPDATE {t} SET amount = 99'!r}); sys.exit(3)"
        )
        return [sys.executable, "-c", code, db.host, str(db.port)]  # type: ignore[attr-defined]
    code = (
        "import psycopg,sys; c = psycopg.connect(host=sys.argv[1], port=int(sys.argv[2]), user='postgres', "
        f"dbname='postgres', autocommit=True); c.execute({f'UPDATE {t} SET amount = 99'!r}); sys.exit(3)"
    )
    return [sys.executable, "-c", code, db.host, str(db.port)]  # type: ignore[attr-defined]


def test_rollback_after_reuse_restores_the_exact_table(db: Backend) -> None:
    gold, t = _orders(db)
    golden = db.golden(gold, "orders")
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    lines: list[str] = []
    result = guard.run(_etl(db, t), echo=lines.append)
    assert result.exit_code != 0 and result.rolled_back == [f"{gold}.orders"], result.message
    assert result.rollback_verified == [f"{gold}.orders"]
    assert result.snapshot_bytes == 0
    assert result.reused and result.reused[0]["reuses"] == first.id
    assert any("reused snapshot" in line for line in lines), lines
    assert db.golden(gold, "orders") == golden
    [run] = guard.runs(result.run_id)
    assert run["details"]["reused"][0]["reuses"] == first.id
    rows = {r["id"]: r for r in _snap_rows(db)}
    ref_id = result.snapshot_ids[0]
    if db.kind == "mariadb":  # the shared table was renamed into place: every record says so
        assert rows[first.id]["status"] == rows[ref_id]["status"] == "restored"
        [again] = guard.snapshot()
        assert again.reuses is None  # a consumed snapshot is never reused
    else:  # restored by a copy or refill: the shared snapshot is intact and stays reusable
        assert rows[first.id]["status"] == rows[ref_id]["status"] == "verified"
        [again] = guard.snapshot()
        assert again.reuses == first.id
    assert db.golden(gold, "orders") == golden
    assert all(r.ok for r in guard.verify())


def test_restore_keep_snapshot_moves_every_reference_to_the_kept_copy(db: Backend) -> None:
    gold, t = _orders(db)
    golden = db.golden(gold, "orders")
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    [second] = guard.snapshot()
    db.sql(f"DELETE FROM {t}")
    guard.restore([f"{gold}.orders"], latest=True, keep_snapshot=True)
    assert db.golden(gold, "orders") == golden
    by_id = {s.id: s for s in guard.snapshots()}
    assert by_id[first.id].snapshot == by_id[second.id].snapshot
    assert by_id[first.id].verified and by_id[second.id].verified
    assert all(r.ok for r in guard.verify())


def test_prune_keeps_a_table_a_kept_record_shares(db: Backend) -> None:
    gold, t = _orders(db)
    guard = Guard(
        Config.from_dict(db.settings(protect=[f"{gold}.orders"], retention={"keep_last": 1, "days": None}))
    )
    [first] = guard.snapshot()
    [second] = guard.snapshot()
    assert second.reuses == first.id
    decisions = {d.snapshot.id: d for d in guard.prune()}
    assert not decisions[first.id].delete and "shared with snapshot" in decisions[first.id].reason
    assert _physical(db) == [first.snapshot.name]
    db.sql(f"UPDATE {t} SET name = 'z'")
    [third] = guard.snapshot()
    assert third.reuses is None
    decisions = {d.snapshot.id: d for d in guard.prune()}
    assert decisions[first.id].delete and decisions[second.id].delete  # the last reference went
    assert _physical(db) == [third.snapshot.name]
    assert all(r.ok for r in guard.verify())


def test_a_version_2_catalog_upgrades_and_its_snapshots_are_copied_once(db: Backend) -> None:
    gold, _ = _orders(db)
    guard = db.guard([f"{gold}.orders"])
    [old] = guard.snapshot()
    snapshots, meta = db.table(db.catalog_schema, "snapshots"), db.table(db.catalog_schema, "meta")
    for column in ("change_check", "reuses"):
        db.sql(f"ALTER TABLE {snapshots} DROP COLUMN {db.q(column)}")
    db.sql(f"UPDATE {meta} SET value = '2' WHERE {db.q('key')} = 'schema_version'")
    assert [s.id for s in guard.snapshots()] == [old.id]  # read without migrating
    [second] = guard.snapshot()  # migrates; the old snapshot has no change check: copy
    assert second.reuses is None
    [third] = guard.snapshot()
    assert third.reuses == second.id
    assert db.sql(f"SELECT value FROM {meta} WHERE {db.q('key')} = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert all(r.ok for r in guard.verify())


def test_the_catalog_shows_which_records_share_a_table(db: Backend) -> None:
    gold, _ = _orders(db)
    guard = db.guard([f"{gold}.orders"])
    [first] = guard.snapshot()
    [second] = guard.snapshot()
    rows = catalog_rows(db)
    assert [r["id"] for r in rows] == [first.id, second.id]
    stored = {r["id"]: r for r in _snap_rows(db)}
    assert stored[second.id]["reuses"] == first.id
    assert stored[second.id]["snapshot_table"] == stored[first.id]["snapshot_table"]
    assert second.as_dict()["reuses"] == first.id
    assert json.loads(json.dumps(second.as_dict()))["snapshot_table"] == str(first.snapshot)


def test_changes_postgres_type_hashes_alone_would_miss_force_a_copy(pg: Backend) -> None:
    gold = pg.create_schema("gold")
    t = pg.table(gold, "amounts")
    pg.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, amount NUMERIC, x DOUBLE PRECISION, name TEXT)")
    pg.sql(f"INSERT INTO {t} VALUES (1, 1.0, 0, 'Ann')")
    guard = pg.guard([f"{gold}.amounts"])
    guard.snapshot()
    assert guard.snapshot()[0].reuses is not None
    pg.sql(f"UPDATE {t} SET amount = 1.00")  # equal as numbers, not the same value
    assert guard.snapshot()[0].reuses is None
    pg.sql(f"UPDATE {t} SET x = '-0'")  # equal as floats
    assert guard.snapshot()[0].reuses is None
    pg.sql(f"UPDATE {t} SET name = 'ann'")
    assert guard.snapshot()[0].reuses is None
    assert guard.snapshot()[0].reuses is not None


def test_cost_counts_a_shared_table_once(duck: Backend) -> None:
    gold = duck.create_schema("gold")
    t = duck.table(gold, "facts")
    duck.sql(f"CREATE TABLE {t} AS SELECT i AS id FROM range(1000) r(i)")
    guard = duck.guard([f"{gold}.facts"])
    [first] = guard.snapshot()
    [second] = guard.snapshot()
    assert second.reuses == first.id and second.size_bytes == 0 and (first.size_bytes or 0) > 0
    cost = guard.cost()
    assert cost.held_bytes == first.size_bytes

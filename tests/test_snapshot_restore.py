"""Snapshot, change, restore: the restored table is exactly the snapshotted one, structure and
data, and every way of choosing what to restore picks the right snapshot."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from etlguard import SnapshotNotFound

from conftest import Backend, in_every_schema
from support import catalog_rows, cli, mark, set_taken_at, tables_in


def create_rich_table(backend: Backend, schema: str) -> str:
    """PK, two secondary indexes, an auto-increment id (a sequence default on DuckDB), defaults,
    a generated column, utf8mb4 text with emoji, NULLs and DECIMALs; 10 rows, the top two deleted."""
    t = backend.table(schema, "rich")
    if backend.kind == "mariadb":
        backend.sql(
            f"""CREATE TABLE {t} (
              id INT NOT NULL AUTO_INCREMENT,
              code VARCHAR(20) NOT NULL,
              name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
              amount DECIMAL(12,4) NULL,
              status VARCHAR(10) NOT NULL DEFAULT 'new',
              created DATETIME NOT NULL DEFAULT '2020-01-01 00:00:00',
              doubled DECIMAL(14,4) AS (amount * 2) STORED,
              PRIMARY KEY (id),
              KEY ix_code (code),
              KEY ix_status_created (status, created)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
        )
    else:
        seq = backend.table(schema, "rich_id")
        backend.sql(f"CREATE SEQUENCE {seq}")
        backend.sql(
            f"""CREATE TABLE {t} (
              id INTEGER PRIMARY KEY DEFAULT nextval('{schema}.rich_id'),
              code VARCHAR NOT NULL,
              name VARCHAR,
              amount DECIMAL(12,4),
              status VARCHAR NOT NULL DEFAULT 'new',
              created TIMESTAMP NOT NULL DEFAULT TIMESTAMP '2020-01-01 00:00:00',
              doubled DECIMAL(14,4) GENERATED ALWAYS AS (amount * 2) VIRTUAL
            )"""
        )
        backend.sql(f"CREATE INDEX ix_code ON {t} (code)")
        backend.sql(f"CREATE INDEX ix_status_created ON {t} (status, created)")
    m = mark(backend)
    names = ["plain", "héllo wörld 😀🎉", None, "日本語テキスト", "", "emoji only 🦆"]
    for i in range(10):
        backend.sql(
            f"INSERT INTO {t} (code, name, amount) VALUES ({m}, {m}, {m})",
            [f"c{i % 4}", names[i % len(names)], None if i % 3 == 0 else f"{i * 1000}.{i:04d}"],
        )
    backend.sql(f"INSERT INTO {t} (code, name, amount, status) VALUES ('z', NULL, -0.0001, 'old')")
    backend.sql(f"DELETE FROM {t} WHERE id > 8")  # the counter now runs ahead of max(id)
    return t


@in_every_schema()
def test_exact_round_trip_of_a_rich_table(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    t = create_rich_table(backend, gold)
    before = backend.golden(gold, "rich")
    shape = backend.show_create(gold, "rich")
    assert before[0] == 8
    if backend.kind == "mariadb":
        assert "AUTO_INCREMENT=12 " in shape  # 11 rows were inserted, the top 3 deleted
    guard = backend.guard([f"{gold}.rich"])

    [snap] = guard.snapshot()
    assert snap.verified and snap.row_count == 8
    assert snap.auto_increment == (12 if backend.kind == "mariadb" else None)
    if backend.kind == "mariadb":  # the snapshot table itself has the exact structure
        copy = backend.show_create(snap.snapshot.schema, snap.snapshot.name)
        assert copy.replace(f"`{snap.snapshot.name}`", "`rich`", 1) == shape

    backend.sql(f"DELETE FROM {t} WHERE id IN (1, 2)")
    backend.sql(f"UPDATE {t} SET name = 'changed 😱', amount = 1.5 WHERE id = 4")
    backend.sql(f"INSERT INTO {t} (code, name) VALUES ('new', 'x'), ('new', NULL), ('new', 'y')")
    assert backend.golden(gold, "rich") != before
    if backend.kind == "mariadb":
        assert backend.show_create(gold, "rich") != shape  # the counter moved on

    result = guard.restore([f"{gold}.rich"], latest=True)

    assert result.verified == [f"{gold}.rich"]
    assert backend.golden(gold, "rich") == before
    assert _no_counter(backend.show_create(gold, "rich")) == _no_counter(shape)
    if backend.kind == "mariadb":  # ids 12-14 went with the displaced rows: never handed out again
        backend.sql(f"INSERT INTO {t} (code) VALUES ('after')")
        [(newest,)] = backend.sql(f"SELECT MAX(id) FROM {t}")
        assert newest > 14


def _no_counter(ddl: str) -> str:
    return re.sub(r" AUTO_INCREMENT=\d+", "", ddl)


def small_table(backend: Backend, schema: str, name: str = "facts", rows: int = 5) -> str:
    t = backend.table(schema, name)
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2))")
    values = ", ".join(f"({i}, 'n{i}', {i}.25)" for i in range(1, rows + 1))
    backend.sql(f"INSERT INTO {t} VALUES {values}")
    return t


@in_every_schema()
def test_restore_dry_run_changes_nothing(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = backend.data_schema("gold")
    t = small_table(backend, gold)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    assert cli(capsys, "snapshot", "-c", str(config)).code == 0
    backend.sql(f"DELETE FROM {t} WHERE id > 2")
    damaged = backend.golden(gold, "facts")
    shape = backend.show_create(gold, "facts")
    catalog = catalog_rows(backend)
    journal = catalog_rows(backend, "journal")
    snapshot_tables = tables_in(backend, backend.snapshot_schema)

    text = cli(capsys, "restore", f"{gold}.facts", "--latest", "--dry-run", "-c", str(config))
    as_json = cli(capsys, "restore", f"{gold}.facts", "--latest", "--dry-run", "--json", "-c", str(config))

    assert (text.code, text.err) == (0, "")
    assert text.out.startswith(f"would restore {gold}.facts to snapshot 1 taken ")
    assert "(5 rows)" in text.out
    assert as_json.code == 0
    plan = json.loads(as_json.out)
    assert plan["dry_run"] is True
    assert [(s["table"], s["snapshot_id"], s["rows"]) for s in plan["tables"]] == [(f"{gold}.facts", 1, 5)]
    assert backend.golden(gold, "facts") == damaged
    assert backend.show_create(gold, "facts") == shape
    assert catalog_rows(backend) == catalog
    assert catalog_rows(backend, "journal") == journal
    assert tables_in(backend, backend.snapshot_schema) == snapshot_tables
    assert tables_in(backend, gold) == ["facts"]


@in_every_schema()
def test_restore_is_undone_by_restoring_the_displaced_snapshot(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    t = small_table(backend, gold)
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    original = backend.golden(gold, "facts")
    backend.sql(f"DELETE FROM {t} WHERE id = 1")
    backend.sql(f"INSERT INTO {t} VALUES (7, 'late', NULL)")
    damaged = backend.golden(gold, "facts")
    damaged_shape = backend.show_create(gold, "facts")

    result = guard.restore([f"{gold}.facts"], latest=True)

    assert backend.golden(gold, "facts") == original
    [step] = result.steps
    assert step.displaced_id is not None and step.displaced_id > snap.id
    kept = {r["id"]: r for r in catalog_rows(backend)}[step.displaced_id]
    assert (kept["kind"], kept["status"], kept["table_name"]) == ("displaced", "verified", "facts")
    # DuckDB renames only within a schema: the displaced table is renamed beside the live one
    where = gold if backend.kind == "duckdb" else backend.snapshot_schema
    assert kept["snapshot_schema"] == where and kept["snapshot_table"] in tables_in(backend, where)

    undone = guard.restore(snapshot_ids=[step.displaced_id])

    assert backend.golden(gold, "facts") == damaged
    assert backend.show_create(gold, "facts") == damaged_shape
    # beside its live table (DuckDB) or not (MySQL), the displaced table is renamed into place,
    # proven first; PostgreSQL refills the live table from it
    [back] = undone.steps
    renamed = backend.kind in ("duckdb", "mariadb")
    assert back.consume == renamed and (back.proof in ("seal", "fingerprint", "checksum") or not renamed)
    status = {r["id"]: r["status"] for r in catalog_rows(backend)}[step.displaced_id]
    assert status == ("restored" if renamed else "verified")


def test_restore_as_of_picks_the_newest_snapshot_at_or_before_the_time(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.data_schema("gold")
    t = small_table(backend, gold)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    guard = backend.guard([f"{gold}.facts"])
    states = {}
    for snap_id, change in enumerate(
        [f"UPDATE {t} SET name = 'day two'", f"UPDATE {t} SET name = 'day three'", None], start=1
    ):
        states[snap_id] = backend.golden(gold, "facts")
        [snap] = guard.snapshot()
        assert snap.id == snap_id
        set_taken_at(backend, snap_id, dt.datetime(2026, 1, snap_id, 6, 0))
        if change:
            backend.sql(change)
    backend.sql(f"DELETE FROM {t}")

    def restore_as_of(when: str, *keep: str) -> int:
        return cli(capsys, "restore", f"{gold}.facts", "--as-of", when, *keep, "-c", str(config)).code

    assert restore_as_of("2026-01-01T12:00:00+00:00") == 0
    assert backend.golden(gold, "facts") == states[1]
    # "at or before" includes the instant; the snapshot is kept, so it is chosen again below
    assert restore_as_of("2026-01-02 06:00:00+00:00", "--keep-snapshot") == 0
    assert backend.golden(gold, "facts") == states[2]
    assert restore_as_of("2026-01-02 11:00:00+05:00") == 0  # 06:00 UTC, written in another zone
    assert backend.golden(gold, "facts") == states[2]
    assert restore_as_of("2030-01-01T00:00:00+00:00") == 0  # newest kind=snapshot, not displaced
    assert backend.golden(gold, "facts") == states[3]

    before = backend.golden(gold, "facts")
    too_early = cli(
        capsys, "restore", f"{gold}.facts", "--as-of", "2025-12-31T00:00+00:00", "-c", str(config)
    )
    assert too_early.code == SnapshotNotFound("x").exit_code == 1
    assert too_early.err_lines == [
        f"etlguard: error: no snapshot found: no verified snapshot of {gold}.facts taken at or before "
        "2025-12-31 00:00:00 UTC; list them with `etlguard snapshots`"
    ]
    assert backend.golden(gold, "facts") == before


@in_every_schema()
def test_restore_of_a_dropped_table_recreates_it(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    t = small_table(backend, gold)
    guard = backend.guard([f"{gold}.facts"])
    guard.snapshot()
    original = backend.golden(gold, "facts")
    shape = backend.show_create(gold, "facts")
    backend.sql(f"DROP TABLE {t}")

    result = guard.restore([f"{gold}.facts"], latest=True)

    assert [s.displaced_id for s in result.steps] == [None]
    assert backend.golden(gold, "facts") == original
    assert backend.show_create(gold, "facts") == shape


@in_every_schema()
def test_snapshot_of_several_tables_shares_one_time_and_lists_oldest_first(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    for name in ("b", "a", "c"):
        small_table(backend, gold, name, rows=3)
    guard = backend.guard([f"{gold}.*"])

    snaps = guard.snapshot()
    second = guard.snapshot([f"{gold}.a"])

    assert [s.table.name for s in snaps] == ["a", "b", "c"]
    assert len({s.taken_at for s in snaps}) == 1
    assert [s.id for s in guard.snapshots(f"{gold}.a")] == [snaps[0].id, second[0].id]
    assert [s.id for s in guard.snapshots()] == [1, 2, 3, 4]

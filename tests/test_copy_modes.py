"""Snapshot consistency modes (`snapshot.consistency: set | table`) and the faster MySQL copy.

Both modes give exact, verified snapshots (golden checksum, identical DDL: every index,
AUTO_INCREMENT, charset, generated columns, partitions). In `table` mode a writer holding a
row lock, or updating a row while the copy statement runs, is never waited for; in `set` mode
the protected set has one point in time (RELIABILITY scenario 17), which in `table` mode holds
per table only."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pymysql
import pytest

from etlguard.errors import SnapshotFailed

from conftest import Backend

MODES = ("set", "table")

EXACT_DDL = """CREATE TABLE {t} (
  id BIGINT NOT NULL AUTO_INCREMENT,
  tenant INT NOT NULL,
  status VARCHAR(32) CHARACTER SET latin1 NOT NULL,
  note TEXT NULL,
  amount DECIMAL(12,2) NOT NULL DEFAULT 0,
  doubled DECIMAL(13,2) AS (amount * 2) STORED,
  label VARCHAR(40) AS (CONCAT(status, '#', tenant)) VIRTUAL,
  PRIMARY KEY (id, tenant),
  UNIQUE KEY `we``ird key` (tenant, status),
  KEY ix_note (note(10)) COMMENT 'prefix',
  KEY ix_label (label),
  KEY ix_doubled (doubled DESC)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci AUTO_INCREMENT=5000
PARTITION BY HASH (tenant) PARTITIONS 3"""


def _no_name(ddl: str) -> str:
    return ddl.split("(", 1)[1]


def _snapshot(backend: Backend, protect: list[str], mode: str) -> Any:
    return backend.guard(protect, snapshot={"consistency": mode}).snapshot()


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_gives_an_exact_verified_copy_with_every_index(maria: Backend, mode: str) -> None:
    schema = maria.create_schema("exact")
    t = maria.table(schema, "events")
    maria.sql(EXACT_DDL.format(t=t))
    maria.sql(f"USE {maria.q(schema)}")
    maria.sql(
        f"INSERT INTO {t} (tenant, status, note, amount) SELECT seq % 97, CONCAT('s', seq), "
        "IF(seq % 5 = 0, NULL, REPEAT('é', seq % 30)), seq / 7 FROM seq_1_to_3000"
    )
    (snap,) = _snapshot(maria, [f"{schema}.events"], mode)
    assert snap.status == "verified" and snap.row_count == 3000
    copy = maria.table(snap.snapshot.schema, snap.snapshot.name)
    assert maria.golden(snap.snapshot.schema, snap.snapshot.name) == maria.golden(schema, "events")
    live_ddl = maria.show_create(schema, "events")
    assert _no_name(maria.show_create(snap.snapshot.schema, snap.snapshot.name)) == _no_name(live_ddl)
    assert "AUTO_INCREMENT=8000" in live_ddl and "PARTITIONS 3" in live_ddl
    # the rebuilt unique key still refuses a duplicate, and the counter goes on from the source's
    with pytest.raises(pymysql.err.IntegrityError):
        maria.sql(f"INSERT INTO {copy} (tenant, status) VALUES (1, 's1')")
    maria.sql(f"INSERT INTO {copy} (tenant, status) VALUES (1, 'new')")
    assert maria.sql(f"SELECT id FROM {copy} WHERE status = 'new'") == [(8000,)]


@pytest.mark.parametrize("mode", MODES)
def test_tables_without_a_primary_key_are_copied_exactly(maria: Backend, mode: str) -> None:
    """No primary key: InnoDB clusters on the first NOT NULL unique key, so its indexes stay as
    they are on the empty copy; no key at all is copied as it is."""
    schema = maria.create_schema("nopk")
    maria.sql(f"CREATE TABLE {maria.table(schema, 'u')} (a INT NOT NULL, b INT, UNIQUE KEY (a), KEY (b))")
    maria.sql(f"CREATE TABLE {maria.table(schema, 'h')} (a INT, b VARCHAR(10))")
    for name in ("u", "h"):
        maria.sql(f"INSERT INTO {maria.table(schema, name)} (a, b) VALUES (1, 2), (2, NULL), (3, 3)")
    snaps = _snapshot(maria, [f"{schema}.*"], mode)
    assert [s.status for s in snaps] == ["verified", "verified"]
    for s in snaps:
        assert maria.golden(s.snapshot.schema, s.snapshot.name) == maria.golden(schema, s.table.name)
        copy_ddl = maria.show_create(s.snapshot.schema, s.snapshot.name)
        assert _no_name(copy_ddl) == _no_name(maria.show_create(schema, s.table.name))


@pytest.mark.parametrize("mode", MODES)
def test_postgres_and_duckdb_copies_are_exact_in_either_mode(pg: Backend, duck: Backend, mode: str) -> None:
    for backend in (pg, duck):
        schema = backend.create_schema("modes")
        t = backend.table(schema, "facts")
        backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v VARCHAR(20), n DOUBLE PRECISION)")
        backend.sql(f"CREATE INDEX ix_facts_v ON {t} (v)")
        backend.sql(f"INSERT INTO {t} SELECT i, 'v' || i, i / 3.0 FROM generate_series(1, 2000) AS g(i)")
        (snap,) = _snapshot(backend, [f"{schema}.facts"], mode)
        assert snap.status == "verified" and snap.row_count == 2000
        assert backend.golden(snap.snapshot.schema, snap.snapshot.name) == backend.golden(schema, "facts")


def _open_row_lock(maria: Backend, table: str) -> pymysql.connections.Connection:
    """Another client's transaction that has updated row 1 and not committed."""
    conn = pymysql.connect(host=maria.host, port=maria.port, user="root", password="", autocommit=False)
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {table} SET v = 'written' WHERE id = 1")
    return conn


def _filled(maria: Backend, rows: int) -> tuple[str, str]:
    schema = maria.create_schema("writers")
    t = maria.table(schema, "busy")
    maria.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(16), pad CHAR(200), KEY (v))")
    maria.sql(f"USE {maria.q(schema)}")
    maria.sql(f"INSERT INTO {t} SELECT seq, 'old', REPEAT('p', 200) FROM seq_1_to_{rows}")
    return schema, t


def test_table_mode_copies_past_a_writer_that_holds_a_row_lock(maria: Backend) -> None:
    """A writer's open transaction holds row 1 (and the table's write metadata lock): the
    `table` copy is a non-locking read of the committed rows, so it completes meanwhile."""
    schema, t = _filled(maria, 1000)
    writer = _open_row_lock(maria, t)
    try:
        (snap,) = _snapshot(maria, [f"{schema}.busy"], "table")
        copy = maria.table(snap.snapshot.schema, snap.snapshot.name)
        assert snap.status == "verified"
        assert maria.sql(f"SELECT v FROM {copy} WHERE id = 1") == [("old",)]  # committed rows only
    finally:
        writer.commit()
        writer.close()
    assert maria.sql(f"SELECT v FROM {t} WHERE id = 1") == [("written",)]


def test_set_mode_waits_for_a_writer_that_holds_the_table(maria: Backend) -> None:
    """The other side of the trade-off: LOCK TABLES ... READ waits for the writer's
    transaction, and past lock_wait_seconds the snapshot fails and keeps nothing."""
    schema, t = _filled(maria, 100)
    writer = _open_row_lock(maria, t)
    try:
        with pytest.raises(SnapshotFailed, match="nothing was kept"):
            maria.guard([f"{schema}.busy"], snapshot={"consistency": "set"}, lock_wait_seconds=1).snapshot()
    finally:
        writer.rollback()
        writer.close()
    assert maria.sql(f"SHOW TABLES FROM {maria.q(maria.snapshot_schema)}") == []


def _copy_statement(conn: pymysql.connections.Connection, snapshot_schema: str) -> int | None:
    """The id of the session running the snapshot's INSERT ... SELECT, if one is running."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            [f"INSERT INTO `{snapshot_schema}`.%"],  # not a catalog row that names the schema
        )
        row = cur.fetchone()
    return int(row[0]) if row else None


def test_table_mode_update_commits_while_the_copy_statement_runs(maria: Backend) -> None:
    """The observable: a single-row UPDATE is issued and committed while the snapshot's copy
    statement is still in the server's process list, before and after the UPDATE."""
    schema, t = _filled(maria, 400_000)
    failed: list[BaseException] = []
    done = threading.Event()

    def snapshot() -> None:
        try:
            _snapshot(maria, [f"{schema}.busy"], "table")
        except BaseException as exc:  # reported by the test thread
            failed.append(exc)
        finally:
            done.set()

    watcher = pymysql.connect(host=maria.host, port=maria.port, user="root", password="", autocommit=True)
    writer = pymysql.connect(host=maria.host, port=maria.port, user="root", password="", autocommit=False)
    thread = threading.Thread(target=snapshot)
    thread.start()
    try:
        copier = None
        while copier is None and not done.is_set():
            copier = _copy_statement(watcher, maria.snapshot_schema)
            time.sleep(0.005)
        assert copier is not None, "the copy statement was never seen running"
        with writer.cursor() as cur:
            cur.execute(f"UPDATE {t} SET v = 'during' WHERE id = 7")
        writer.commit()
        assert _copy_statement(watcher, maria.snapshot_schema) == copier, (
            "the copy ended before the UPDATE committed: make the table larger"
        )
    finally:
        thread.join()
        watcher.close()
        writer.close()
    assert not failed, failed
    (snap,) = maria.guard([f"{schema}.busy"]).snapshots()
    copy = maria.table(snap.snapshot.schema, snap.snapshot.name)
    assert snap.status == "verified"
    assert maria.sql(f"SELECT v FROM {copy} WHERE id = 7") == [("old",)]  # the read began before it


@pytest.mark.parametrize("mode", MODES)
def test_paired_writes_across_two_tables(maria: Backend, mode: str) -> None:
    """Scenario 17. `set`: each pair is in the snapshot both or neither. `table`: each table
    is a consistent copy of its own (the pairs committed up to its own instant, with no gap:
    the writer numbers them in commit order); the tables are copied side by side, so pairs
    are not kept together across tables (documented)."""
    schema = maria.create_schema("pairs")
    maria.sql(f"USE {maria.q(schema)}")
    for name in ("a_left", "b_right"):
        maria.sql(f"CREATE TABLE {maria.table(schema, name)} (id INT PRIMARY KEY, pad CHAR(100))")
        maria.sql(f"INSERT INTO {maria.table(schema, name)} SELECT seq, 'x' FROM seq_1_to_50000")
    stop = threading.Event()

    def writer() -> None:
        conn = pymysql.connect(host=maria.host, port=maria.port, user="root", password="", autocommit=False)
        i = 1_000_000
        with conn.cursor() as cur:
            while not stop.is_set():
                try:  # the next number only once a pair committed: the ids have no gap
                    cur.execute(f"INSERT INTO {maria.table(schema, 'a_left')} VALUES ({i + 1}, 'p')")
                    cur.execute(f"INSERT INTO {maria.table(schema, 'b_right')} VALUES ({i + 1}, 'p')")
                    conn.commit()
                    i += 1
                except pymysql.err.Error:  # a lock-wait victim rolls back the whole pair
                    conn.rollback()
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        snaps = _snapshot(maria, [f"{schema}.a_left", f"{schema}.b_right"], mode)
    finally:
        stop.set()
        thread.join()
    ids = {}
    for s in snaps:
        assert s.status == "verified"
        table = maria.table(s.snapshot.schema, s.snapshot.name)
        ids[s.table.name] = {r[0] for r in maria.sql(f"SELECT id FROM {table} WHERE id > 1000000")}
    assert ids["a_left"], "the writer made no pairs before the snapshot; the test proved nothing"
    if mode == "set":
        assert ids["a_left"] == ids["b_right"]
    else:
        for found in ids.values():  # a prefix of the committed pairs: one instant of that table
            assert found == set(range(1_000_001, max(found) + 1))
    # every committed pair is whole in the live tables: the writer was never half-applied
    live = [
        {r[0] for r in maria.sql(f"SELECT id FROM {maria.table(schema, n)} WHERE id > 1000000")}
        for n in ("a_left", "b_right")
    ]
    assert live[0] == live[1]


def test_unknown_consistency_is_one_clear_error(maria: Backend) -> None:
    from etlguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"snapshot\.consistency") as caught:
        maria.guard(["x.y"], snapshot={"consistency": "loose"})
    assert "\n" not in str(caught.value)


def test_postgres_snapshot_does_not_wait_for_a_writer_transaction(pg: Backend) -> None:
    """ACCESS SHARE conflicts with DDL and TRUNCATE only: a writer's open transaction on the
    table does not hold the snapshot up, and the snapshot holds only committed rows."""
    schema = pg.create_schema("pgw")
    t = pg.table(schema, "busy")
    pg.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
    pg.sql(f"INSERT INTO {t} SELECT i, 'old' FROM generate_series(1, 1000) AS g(i)")
    writer = psycopg.connect(host=pg.host, port=pg.port, user="postgres", dbname="postgres")
    try:
        writer.execute(f"UPDATE {t} SET v = 'written' WHERE id = 1")
        (snap,) = pg.guard([f"{schema}.busy"], lock_wait_seconds=1).snapshot()
        copy = pg.table(snap.snapshot.schema, snap.snapshot.name)
        assert snap.status == "verified"
        assert pg.sql(f"SELECT v FROM {copy} WHERE id = 1") == [("old",)]
    finally:
        writer.commit()
        writer.close()

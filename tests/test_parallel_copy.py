"""MariaDB copies several tables at once, each on a session of its own (`copy_connections`).

What must still hold: in `set` mode every copy reads one instant (a writer adds one row to each
of three tables per transaction while they are copied: each snapshot holds the same rows);
Ctrl-C stops every copying session on the server, not only etlguard's own; a failure in one copy
stops the others, drops every partial copy and keeps the ETL from starting. And in `table`
mode the check that lets an unchanged table reuse its snapshot takes no lock writers wait for."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

from etlguard.errors import EtlguardError

from conftest import Backend
from support import catalog_rows, tables_in

ETLGUARD = [sys.executable, "-m", "etlguard"]
NAMES = ("a_left", "b_middle", "c_right")


def _connect(maria: Backend, autocommit: bool = True) -> pymysql.connections.Connection:
    return pymysql.connect(host=maria.host, port=maria.port, user="root", password="", autocommit=autocommit)


def _tables(maria: Backend, rows: int) -> str:
    schema = maria.create_schema("par")
    for name in NAMES:
        t = maria.table(schema, name)
        maria.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, pad CHAR(120), KEY ix_pad (pad(8)))")
        maria.sql(f"INSERT INTO {t} SELECT seq, MD5(seq) FROM {maria.q(schema)}.seq_1_to_{rows}")
    return schema


def _copying(conn: pymysql.connections.Connection, snapshot_schema: str) -> dict[int, str]:
    """The sessions running a snapshot's INSERT ... SELECT now, with their statements."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            [f"INSERT INTO `{snapshot_schema}`.%"],  # not a catalog row that names the schema
        )
        return {int(r[0]): str(r[1]) for r in cur.fetchall()}


def _wait_for_two_copies(
    watcher: pymysql.connections.Connection, maria: Backend, alive: object
) -> dict[int, str]:
    deadline = time.monotonic() + 120
    seen: dict[int, str] = {}
    while len(seen) < 2:
        assert time.monotonic() < deadline and alive(), "never saw two copy statements at once"  # type: ignore[operator]
        seen = _copying(watcher, maria.snapshot_schema)
        time.sleep(0.005)
    return seen


def test_set_mode_copies_side_by_side_at_one_point_in_time(maria: Backend) -> None:
    schema = _tables(maria, 150_000)
    stop = threading.Event()
    made: list[int] = []

    def writer() -> None:  # one row in each table per transaction
        conn = _connect(maria, autocommit=False)
        i = 1_000_000
        with conn.cursor() as cur:
            while not stop.is_set():
                i += 1
                try:
                    for name in NAMES:
                        cur.execute(f"INSERT INTO {maria.table(schema, name)} VALUES ({i}, 'w')")
                    conn.commit()
                    made.append(i)
                except pymysql.err.Error:  # a lock-wait victim rolls back the whole triple
                    conn.rollback()
        conn.close()

    watcher = _connect(maria)
    sessions: set[int] = set()
    result: list[object] = []
    thread = threading.Thread(target=writer)
    thread.start()
    snapshotting = threading.Thread(
        target=lambda: result.append(maria.guard([f"{schema}.{n}" for n in NAMES]).snapshot())
    )
    try:
        time.sleep(0.2)
        snapshotting.start()
        sessions = set(_wait_for_two_copies(watcher, maria, snapshotting.is_alive))
        snapshotting.join()
    finally:
        stop.set()
        thread.join()
        watcher.close()
    assert len(sessions) == 2  # two sessions copied at the same time, neither of them the lock's
    (snaps,) = result
    ids = []
    for s in snaps:  # type: ignore[attr-defined]
        assert s.status == "verified"
        copy = maria.table(s.snapshot.schema, s.snapshot.name)
        ids.append({r[0] for r in maria.sql(f"SELECT id FROM {copy} WHERE id > 1000000")})
        live_ddl = maria.show_create(schema, s.table.name)
        assert (
            maria.show_create(s.snapshot.schema, s.snapshot.name).split("(", 1)[1]
            == live_ddl.split("(", 1)[1]
        )
    assert made and ids[0], "the writer made no rows before the snapshot; the test proved nothing"
    assert ids[0] == ids[1] == ids[2]  # one instant for all three copies


def test_ctrl_c_cancels_every_copying_session(maria: Backend) -> None:
    schema = _tables(maria, 400_000)
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [f"{schema}.{n}" for n in NAMES])
    proc = subprocess.Popen(
        [*ETLGUARD, "run", "-c", str(config), "--", "true"], stderr=subprocess.PIPE, text=True
    )
    watcher = _connect(maria)
    try:
        _wait_for_two_copies(watcher, maria, lambda: proc.poll() is None)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted by SIGINT while snapshotting" in err
        assert _copying(watcher, maria.snapshot_schema) == {}  # the server stopped them all
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()
    assert tables_in(maria, maria.snapshot_schema) == []
    assert [e for e in catalog_rows(maria, "journal") if e["state"] == "started"] == []


def test_a_failed_copy_stops_the_others_drops_every_copy_and_the_etl_never_starts(
    maria: Backend, tmp_path: Path
) -> None:
    schema = _tables(maria, 400_000)
    marker = tmp_path / "etl-ran"
    killed: list[str] = []

    def kill_one_copy() -> None:
        watcher = _connect(maria)
        try:
            running = _wait_for_two_copies(watcher, maria, lambda: True)
            victim = min(running)
            with watcher.cursor() as cur:
                cur.execute(f"KILL QUERY {victim}")
            killed.append(running[victim])
        finally:
            watcher.close()

    killer = threading.Thread(target=kill_one_copy)
    killer.start()
    guard = maria.guard([f"{schema}.{n}" for n in NAMES])
    result = guard.run([sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"])
    killer.join()
    assert killed, "no copy statement was stopped; the test proved nothing"
    assert result.exit_code != 0 and not result.ok
    assert "snapshot failed, nothing was kept" in result.message
    assert not marker.exists()  # the ETL never started
    assert tables_in(maria, maria.snapshot_schema) == []
    watcher = _connect(maria)
    try:
        assert _copying(watcher, maria.snapshot_schema) == {}  # the other copy was stopped too
    finally:
        watcher.close()
    assert {r["status"] for r in catalog_rows(maria, "snapshots")} == {"failed"}


def test_table_mode_reuse_check_does_not_wait_for_a_writer(maria: Backend) -> None:
    """A writer's open transaction holds a row (and the table's write metadata lock). In `set`
    mode the reuse check's LOCK TABLES ... READ waits for it; in `table` mode the check reads a
    consistent snapshot, sees the committed rows (unchanged) and reuses the snapshot at once."""
    schema = _tables(maria, 2_000)
    protect = [f"{schema}.a_left"]
    (first,) = maria.guard(protect, snapshot={"consistency": "table"}).snapshot()
    writer = _connect(maria, autocommit=False)
    try:
        with writer.cursor() as cur:
            cur.execute(f"UPDATE {maria.table(schema, 'a_left')} SET pad = 'open' WHERE id = 1")
        with pytest.raises(EtlguardError, match="Lock wait timeout"):
            maria.guard(protect, snapshot={"consistency": "set"}, lock_wait_seconds=1).snapshot()
        (again,) = maria.guard(protect, snapshot={"consistency": "table"}, lock_wait_seconds=1).snapshot()
        assert again.reuses == first.id and again.status == "verified"
    finally:
        writer.rollback()
        writer.close()
    # a committed change is seen: the next snapshot copies
    maria.sql(f"UPDATE {maria.table(schema, 'a_left')} SET pad = 'changed' WHERE id = 2")
    (third,) = maria.guard(protect, snapshot={"consistency": "table"}).snapshot()
    assert third.reuses is None
    copy = maria.table(third.snapshot.schema, third.snapshot.name)
    assert maria.sql(f"SELECT pad FROM {copy} WHERE id = 2") == [("changed",)]

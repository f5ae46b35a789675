"""A restore of several tables is one atomic switch for everyone else: a reader polling all of them
never finds a table missing and never sees some tables restored and others not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import duckdb
import pymysql

from etlguard import TableRef

from conftest import MYSQL_HOST, MYSQL_PORT, Backend, in_every_schema

ROWS = 20_000
KEPT = 15_000  # rows left by the damage
SNAPSHOT_STATE = ("snap", ROWS)
DAMAGED_STATE = ("damaged", KEPT)
TABLES = ("orders", "customers", "payments")
DEADLINE = 120.0  # only so that a broken poller fails the test instead of hanging it


class Poller(threading.Thread):
    """Read the marker and row count of every table in ONE statement, every 10 ms."""

    def __init__(self, read: Callable[[], tuple[Any, ...]], close: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.read, self.close = read, close
        self.stop = threading.Event()
        self.polls: list[tuple[tuple[str, int], ...]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    row = self.read()
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    pairs = tuple((row[i], int(row[i + 1])) for i in range(0, len(row), 2))
                    self.polls.append(pairs)
                time.sleep(0.01)
        finally:
            self.close()

    def wait_for(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not done():
            assert self.is_alive(), f"the poller died while waiting for {what}"
            assert time.monotonic() < deadline, f"the poller never got to {what}"
            time.sleep(0.005)


def poll_sql(backend: Backend, schema: str) -> str:
    parts = [
        f"(SELECT marker FROM {backend.table(schema, t)} WHERE id = 1), "
        f"(SELECT COUNT(*) FROM {backend.table(schema, t)})"
        for t in TABLES
    ]
    return "SELECT " + ", ".join(parts)


def start_poller(backend: Backend, schema: str) -> Poller:
    sql = poll_sql(backend, schema)
    if backend.kind == "mariadb":
        conn = pymysql.connect(
            host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="", charset="utf8mb4", autocommit=True
        )

        def read_mariadb() -> tuple[Any, ...]:
            with conn.cursor() as cur:
                cur.execute(sql)
                return tuple(cur.fetchone())

        poller = Poller(read_mariadb, conn.close)
    else:
        conn_duck = duckdb.connect(str(backend.path))  # type: ignore[attr-defined]
        cursor = conn_duck.cursor()

        def read_duckdb() -> tuple[Any, ...]:
            row = cursor.execute(sql).fetchone()
            assert row is not None
            return tuple(row)

        def close_duckdb() -> None:
            cursor.close()
            conn_duck.close()

        poller = Poller(read_duckdb, close_duckdb)
    poller.start()
    return poller


def fill(backend: Backend, schema: str, name: str) -> None:
    t = backend.table(schema, name)
    backend.sql(
        f"CREATE TABLE {t} (id INTEGER NOT NULL PRIMARY KEY, marker VARCHAR(10) NOT NULL, "
        "amount DECIMAL(12,2), note VARCHAR(60))"
    )
    if backend.kind == "mariadb":
        source = f"SELECT seq, 'snap', seq / 100, REPEAT('x', 40) FROM {backend.q(schema)}.seq_1_to_{ROWS}"
    else:
        source = f"SELECT i, 'snap', i / 100, repeat('x', 40) FROM range(1, {ROWS + 1}) r(i)"
    backend.sql(f"INSERT INTO {t} {source}")


@in_every_schema()
def test_restore_of_three_tables_switches_together_for_a_concurrent_reader(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    for name in TABLES:
        fill(backend, gold, name)
    guard = backend.guard([f"{gold}.*"])
    assert len(guard.snapshot()) == 3
    goldens = {t: backend.golden(gold, t) for t in TABLES}
    for name in TABLES:
        t = backend.table(gold, name)
        backend.sql(f"UPDATE {t} SET marker = 'damaged'")
        backend.sql(f"DELETE FROM {t} WHERE id > {KEPT}")

    poller = start_poller(backend, gold)
    try:
        poller.wait_for(lambda: len(poller.polls) >= 3, "its first reads")

        def during_staging(table: TableRef, rows: int) -> None:
            # The restore is under way: make sure the reader gets reads in while it works.
            seen = len(poller.polls)
            poller.wait_for(lambda: len(poller.polls) >= seen + 2, "reads during the restore")

        guard.progress = during_staging
        result = guard.restore([f"{gold}.{t}" for t in TABLES], latest=True)
        restored_at = len(poller.polls)
        poller.wait_for(lambda: len(poller.polls) >= restored_at + 3, "reads after the restore")
    finally:
        poller.stop.set()
        poller.join(DEADLINE)

    assert sorted(result.verified) == sorted(f"{gold}.{t}" for t in TABLES)
    assert {t: backend.golden(gold, t) for t in TABLES} == goldens
    missing = [e for e in poller.errors if "exist" in e.lower()]
    assert len(missing) == 0, missing[:3]
    assert poller.errors == []
    mixed = [p for p in poller.polls if len(set(p)) != 1]
    assert mixed == [], mixed[:3]
    states = [p[0] for p in poller.polls]
    assert set(states) == {DAMAGED_STATE, SNAPSHOT_STATE}
    # once the new state is visible it stays: the switch happened exactly once, for all three
    first_restored = states.index(SNAPSHOT_STATE)
    assert set(states[first_restored:]) == {SNAPSHOT_STATE}

"""Measurements behind docs/reliability.md that no other test takes: how long writers are
blocked at a swap, and hostile identifiers tried against a server whose general log shows every
statement etlguard sent (RELIABILITY scenarios 2 and 13)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pymysql
import pytest

from etlguard import EtlguardError

from conftest import Figures, MariaDBBackend
from servers import Server, make_server

pytestmark = pytest.mark.mariadb

HOSTILE = [
    "back`tick",
    'dou"ble',
    "sin'gle",
    "semi;colon",
    "dash--dash",
    "with space",
    "ünïcødé_表",
    "select",
    "order",
    "x" * 64,
    "CaseName",
    "casename",
    "a" * 60 + "_one",
    "a" * 60 + "_two",
    "drop table canary; --",
    "`; DROP DATABASE mysql; --",
]


def test_writers_blocked_at_a_swap(maria: MariaDBBackend, figures: Figures) -> None:
    schema = maria.create_schema("busy")
    t = maria.table(schema, "events")
    maria.sql(f"CREATE TABLE {t} (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)")
    maria.sql(f"USE {maria.q(schema)}")
    maria.sql(f"INSERT INTO {t} (v) SELECT seq FROM seq_1_to_100000")
    guard = maria.guard([f"{schema}.events"])
    guard.snapshot()
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []

    def writer() -> None:
        conn = pymysql.connect(host=maria.host, port=maria.port, user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    cur.execute(f"INSERT INTO {t} (v) VALUES (1)")
                except pymysql.err.Error as exc:
                    errors.append(str(exc))
                latencies.append(time.perf_counter() - started)
                time.sleep(0.005)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.1)
        result = guard.restore([f"{schema}.events"], latest=True)
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert errors == []  # writers waited; none saw a missing table
    assert len(latencies) > 10
    figures.max("writer_blocked_seconds_max", max(latencies))
    figures.max("swap_seconds_max", result.swap_seconds)


def test_hostile_identifiers_are_restored_exactly_or_rejected(
    mariadb_template: Path, tmp_path: Path, figures: Figures
) -> None:
    log = tmp_path / "general.log"
    server: Server = make_server(
        mariadb_template, tmp_path / "srv", ["--general-log=1", f"--general-log-file={log}"]
    )
    try:
        backend = MariaDBBackend(tmp_path, port=server.port, url=server.url)
        canary_schema = backend.create_schema("canary")
        backend.sql(f"CREATE TABLE {backend.table(canary_schema, 'canary')} (id INT PRIMARY KEY)")
        backend.sql(f"INSERT INTO {backend.table(canary_schema, 'canary')} VALUES (1), (2)")
        canary = backend.golden(canary_schema, "canary")
        schema = backend.create_schema("hostile")
        restored = rejected = 0
        for name in HOSTILE:
            figures.add("hostile_inputs_tried")
            t = backend.table(schema, name)
            try:
                backend.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))")
            except pymysql.err.Error:
                backend.sql(f"DROP TABLE IF EXISTS {t}")  # the server itself refuses (e.g. a case twin)
                continue
            backend.sql(f"INSERT INTO {t} VALUES (1, 'a'), (2, NULL)")
            good = backend.golden(schema, name)
            guard = backend.guard()
            try:
                guard.snapshot([_ref(schema, name)])
            except EtlguardError:
                rejected += 1
                assert backend.golden(schema, name) == good
                continue
            backend.sql(f"DELETE FROM {t} WHERE id = 1")
            guard.restore([_ref(schema, name)], latest=True)
            assert backend.golden(schema, name) == good
            restored += 1
        assert backend.golden(canary_schema, "canary") == canary
        assert restored >= len(HOSTILE) - 3
        unsafe = _unsafe_statements(log.read_text(errors="replace"), canary_schema)
        figures.add("unsafe_statements_executed", len(unsafe))
        assert unsafe == []
        backend.cleanup()
    finally:
        server.stop()


def _ref(schema: str, name: str) -> str:
    return f"`{schema}`.`{name.replace('`', '``')}`"


def _unsafe_statements(log: str, canary_schema: str) -> list[str]:
    """Statements that touched the canary, or that hold a `;` outside quotes (a second
    statement smuggled in by a name)."""
    unsafe = []
    for line in log.splitlines():
        m = re.match(r"^(?:\d{6}\s+[\d:]+\s+|\s+)\d+\s+Query\s+(.*)$", line)
        if not m:
            continue
        stmt = m.group(1)
        if canary_schema in stmt and not stmt.startswith(
            ("CREATE TABLE", "INSERT INTO", "SELECT * FROM", "CREATE SCHEMA")
        ):
            unsafe.append(stmt)
        if ";" in re.sub(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"", "", stmt):
            unsafe.append(stmt)
    return unsafe

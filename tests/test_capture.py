"""Changed-rows capture (issue 11 point 3, `snapshot.capture: true`, MariaDB): a table the ETL
changes in place is not copied; triggers record the pre-run image of each row it touches; a
failed run is put back byte for byte (CHECKSUM TABLE and every row), a good run keeps only the
changed rows; DDL on a captured table during the run is stopped; a kill at every new fault
point is recovered."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etlguard import Guard
from etlguard.errors import SnapshotNotFound
from etlguard.tables import TableRef

from conftest import BACKENDS, Backend, _one

pytestmark = pytest.mark.skipif("mariadb" not in BACKENDS, reason="capture is MySQL/MariaDB only")

ETL = """
import json, os, sys, time, pymysql
spec = json.loads(sys.argv[1])
conn = pymysql.connect(host="127.0.0.1", port=spec["port"], user="root", password="", autocommit=True,
                       charset="utf8mb4")
with conn.cursor() as cur:
    for statement in spec["sql"]:
        if statement == "SLEEP":
            time.sleep(spec.get("sleep", 2))
            continue
        try:
            cur.execute(statement)
        except pymysql.err.Error as exc:
            print("statement failed:", exc, file=sys.stderr)
            sys.exit(3)
sys.exit(spec.get("exit", 0))
"""


@pytest.fixture
def maria(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("mariadb", tmp_path)


def etl(b: Backend, statements: list[str], exit: int = 0, sleep: float = 2) -> list[str]:
    spec = {"port": getattr(b, "port", 3306), "sql": statements, "exit": exit, "sleep": sleep}
    return [sys.executable, "-c", ETL, json.dumps(spec)]


def guard(b: Backend, tables: list[str], capture: bool = True, **extra: Any) -> Guard:
    return b.guard(tables, snapshot={"capture": capture}, retention={"keep_last": 10, "days": None}, **extra)


def state(b: Backend, schema: str, name: str) -> tuple[Any, ...]:
    """CHECKSUM TABLE, the golden checksum of every row, and the structure."""
    t = b.table(schema, name)
    (_, crc) = b.sql(f"CHECKSUM TABLE {t}")[0]
    ddl = str(b.sql(f"SHOW CREATE TABLE {t}")[0][1])
    return crc, b.golden(schema, name), ddl.split(") ENGINE")[0]


def triggers(b: Backend, schema: str) -> list[str]:
    return [
        r[0]
        for r in b.sql(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", [schema]
        )
    ]


def records(b: Backend) -> list[dict[str, Any]]:
    t = b.table(b.catalog_schema, "snapshots")
    cols = ["id", "kind", "status", "snapshot_table", "size_bytes"]
    rows = b.sql(f"SELECT {', '.join(b.q(c) for c in cols)} FROM {t} ORDER BY id")
    return [dict(zip(cols, r, strict=True)) for r in rows]


ALL_TYPES = """
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
  note TEXT NULL, data BLOB NULL, doc JSON NULL, amount DECIMAL(18,6) NULL,
  at DATETIME(6) NULL, ts TIMESTAMP(3) NULL DEFAULT NULL, flags BIT(5) NULL,
  kind ENUM('a','b','c') NULL, tags SET('x','y') NULL, f FLOAT NULL, d DOUBLE NULL,
  day DATE NULL, big BIGINT UNSIGNED NULL, bin VARBINARY(16) NULL,
  twice INT AS (id * 2) VIRTUAL, upper_name VARCHAR(40) AS (UPPER(name)) STORED,
  KEY by_name (name)
"""


def make_table(b: Backend, rows: int = 50) -> tuple[str, str]:
    gold = b.create_schema("gold")
    t = b.table(gold, "history")
    b.sql(f"CREATE TABLE {t} ({ALL_TYPES}) ENGINE=InnoDB")
    for i in range(1, rows + 1):
        b.sql(
            f"INSERT INTO {t} (name, note, data, doc, amount, at, ts, flags, kind, tags, f, d, day, big, bin) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, b'10101', %s, 'x,y', 1.25, 2.5, '2026-01-02', %s, %s)",
            [
                f"n{i}" if i % 7 else None,
                "ü" * i,
                bytes([i % 256, 0, 255]),
                json.dumps({"i": i}),
                f"{i}.123456",
                f"2026-01-0{1 + i % 9} 01:02:03.{i:06d}",
                "2026-02-03 04:05:06.789",
                "abc"[i % 3],
                2**63 + i,
                bytes([i % 256]),
            ],
        )
    return gold, t


CHANGES = {
    "update": ["UPDATE {t} SET name = 'changed', amount = NULL, flags = b'00001' WHERE id % 5 = 0"],
    "delete": ["DELETE FROM {t} WHERE id % 4 = 1"],
    "insert": ["INSERT INTO {t} (name, doc) VALUES ('new', '{{\"n\": 1}}'), (NULL, NULL)"],
    "replace": ["REPLACE INTO {t} (id, name, data) VALUES (3, 'replaced', x'00'), (1000, 'fresh', NULL)"],
    "upsert": [
        "INSERT INTO {t} (id, name) VALUES (2, 'dup'), (2000, 'other') ON DUPLICATE KEY UPDATE name = 'upserted'"
    ],
    "key": ["UPDATE {t} SET id = id + 100000 WHERE id < 6", "UPDATE {t} SET id = 3 WHERE id = 100004"],
    "many": [
        f"UPDATE {{t}} SET amount = amount + {n}, note = CONCAT(note, '{n}') WHERE id = 7" for n in range(20)
    ]
    + ["DELETE FROM {t} WHERE id = 7", "INSERT INTO {t} (id, name) VALUES (7, 'back')"],
    "nulls": [
        "UPDATE {t} SET name = NULL, note = NULL, data = NULL, doc = NULL, at = NULL, ts = NULL, flags = NULL, kind = NULL, tags = NULL WHERE id < 10"
    ],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_failed_run_is_put_back_exactly(maria: Backend, change: str) -> None:
    gold, t = make_table(maria)
    before = state(maria, gold, "history")
    statements = [s.format(t=t) for s in CHANGES[change]]
    result = guard(maria, [f"{gold}.history"]).run(etl(maria, statements, exit=1))
    assert result.exit_code == 10, result.message
    assert result.captured == [f"{gold}.history"] and result.snapshot_ids == []
    assert result.rollback_verified == [f"{gold}.history"]
    assert state(maria, gold, "history") == before
    assert triggers(maria, gold) == []
    [rec] = [r for r in records(maria) if r["kind"] == "changes"]
    assert rec["status"] == "restored"


def test_a_good_run_keeps_only_the_changed_rows(maria: Backend) -> None:
    gold, t = make_table(maria, rows=400)
    result = guard(maria, [f"{gold}.history"]).run(
        etl(maria, [f"UPDATE {t} SET name = 'x' WHERE id <= 4", f"INSERT INTO {t} (name) VALUES ('n')"])
    )
    assert result.exit_code == 0, result.message
    assert triggers(maria, gold) == []
    [rec] = [r for r in records(maria) if r["kind"] == "changes"]
    assert rec["status"] == "captured"
    capture = maria.table(maria.snapshot_schema, rec["snapshot_table"])
    assert maria.sql(f"SELECT COUNT(*) FROM {capture}") == [(5,)]  # 4 pre-images + 1 inserted key
    assert maria.sql(f"SELECT COUNT(*) FROM {capture} WHERE _etlguard_present = 1") == [(4,)]
    assert maria.sql(f"SELECT name FROM {t} WHERE id = 1") == [("x",)]
    with pytest.raises(SnapshotNotFound, match="changed-rows capture"):
        guard(maria, [f"{gold}.history"]).restore([f"{gold}.history"], snapshot_ids=[rec["id"]])


def test_capture_off_copies(maria: Backend) -> None:
    gold, t = make_table(maria, rows=5)
    result = guard(maria, [f"{gold}.history"], capture=False).run(etl(maria, [f"DELETE FROM {t}"], exit=1))
    assert result.exit_code == 10 and result.captured == [] and len(result.snapshot_ids) == 1


def test_tables_that_do_not_qualify_are_copied_and_say_why(maria: Backend) -> None:
    gold = maria.create_schema("gold")
    for name, ddl in {
        "nokey": "a INT, b INT",
        "nullable_unique": "a INT NULL, b INT, UNIQUE KEY (a)",
        "myisam": "a INT PRIMARY KEY) ENGINE=MyISAM -- ",
        "clash": "a INT PRIMARY KEY, _etlguard_op INT",
    }.items():
        maria.sql(f"CREATE TABLE {maria.table(gold, name)} ({ddl})")
    maria.sql(f"CREATE TABLE {maria.table(gold, 'unique_ok')} (a INT NOT NULL, b INT, UNIQUE KEY (a))")
    for name in ("nokey", "nullable_unique", "myisam", "clash", "unique_ok"):
        maria.sql(f"INSERT INTO {maria.table(gold, name)} (a) VALUES (1), (2)")
    lines: list[str] = []
    tables = [f"{gold}.{n}" for n in ("nokey", "nullable_unique", "myisam", "clash", "unique_ok")]
    befores = {n: state(maria, gold, n) for n in ("nokey", "nullable_unique", "myisam", "clash", "unique_ok")}
    result = guard(maria, tables).run(
        etl(maria, [f"UPDATE {maria.table(gold, n)} SET a = a + 10" for n in befores], exit=1),
        echo=lines.append,
    )
    assert result.exit_code == 10, result.message
    assert result.captured == [f"{gold}.unique_ok"]
    assert set(result.capture_copied) == {
        f"{gold}.{n}" for n in ("nokey", "nullable_unique", "myisam", "clash")
    }
    assert "no primary key" in result.capture_copied[f"{gold}.nokey"]
    assert "InnoDB" in result.capture_copied[f"{gold}.myisam"]
    assert any("not captured: no primary key" in line for line in lines)
    assert {n: state(maria, gold, n) for n in befores} == befores


HOSTILE = ["we`ird", 'quo"te', "üñí ç", "select", "a'b"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_identifiers(maria: Backend, name: str) -> None:
    gold = maria.create_schema("gold")
    t = maria.table(gold, name)
    col = maria.q(name + "_c")
    maria.sql(f"CREATE TABLE {t} ({maria.q('order')} INT NOT NULL PRIMARY KEY, {col} VARCHAR(10))")
    maria.sql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    before = state(maria, gold, name)
    result = guard(maria, [str(TableRef(gold, name))]).run(
        etl(
            maria,
            [
                f"UPDATE {t} SET {col} = 'z'",
                f"DELETE FROM {t} WHERE {maria.q('order')} = 1",
                f"INSERT INTO {t} VALUES (9, 'n')",
            ],
            exit=1,
        )
    )
    assert result.exit_code == 10 and result.captured == [str(TableRef(gold, name))], result.message
    assert state(maria, gold, name) == before
    assert triggers(maria, gold) == []


@pytest.mark.parametrize(
    "ddl",
    [
        "ALTER TABLE {t} ADD COLUMN extra INT",
        "ALTER TABLE {t} MODIFY name VARCHAR(80)",
        "ALTER TABLE {t} DROP COLUMN note",
        "TRUNCATE TABLE {t}",
        "RENAME TABLE {t} TO {t2}",
        "DROP TABLE {t}",
        "ALTER TABLE {t} ADD INDEX extra_idx (amount), ALGORITHM=INPLACE, LOCK=NONE",
    ],
)
def test_ddl_during_the_run_makes_a_full_copy_first_and_the_rollback_is_exact(
    maria: Backend, ddl: str
) -> None:
    gold, t = make_table(maria, rows=30)
    before = state(maria, gold, "history")
    t2 = maria.table(gold, "moved")
    statements = [
        f"UPDATE {t} SET name = 'before ddl' WHERE id < 5",
        f"DELETE FROM {t} WHERE id = 9",
        ddl.format(t=t, t2=t2),
    ]
    result = guard(maria, [f"{gold}.history"]).run(etl(maria, statements, exit=1))
    assert result.exit_code == 10, result.message
    assert any("full copies" in n for n in result.notes), result.notes
    assert result.captured == [f"{gold}.history"] and len(result.snapshot_ids) == 1  # the copy
    assert result.rollback_verified == [f"{gold}.history"]
    assert state(maria, gold, "history") == before
    assert triggers(maria, gold) == []


def test_a_good_run_with_ddl_keeps_its_result_and_the_copy(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    statements = [
        f"UPDATE {t} SET name = 'x' WHERE id < 5",
        f"ALTER TABLE {t} ADD COLUMN extra INT",
        f"UPDATE {t} SET extra = 1, name = 'y' WHERE id < 8",
        f"INSERT INTO {t} (name) VALUES ('n')",
    ]
    result = guard(maria, [f"{gold}.history"]).run(etl(maria, statements))
    assert result.exit_code == 0, result.message
    assert maria.sql(f"SELECT COUNT(*) FROM {t} WHERE extra = 1") == [(7,)]
    assert triggers(maria, gold) == []
    kinds = {(r["kind"], r["status"]) for r in records(maria)}
    assert ("snapshot", "verified") in kinds and kinds & {("changes", "failed"), ("changes", "deleted")}, (
        kinds
    )


def test_a_writer_in_another_session_is_captured_too(maria: Backend) -> None:
    gold, t = make_table(maria, rows=40)
    before = state(maria, gold, "history")
    done = threading.Event()

    def writer() -> None:
        other = maria._connect()  # type: ignore[attr-defined]
        with other.cursor() as cur:
            i = 0
            while not done.is_set():
                cur.execute(f"UPDATE {t} SET amount = amount + 1 WHERE id = %s", [1 + i % 40])
                cur.execute(f"INSERT INTO {t} (name) VALUES ('other')")
                i += 1
                time.sleep(0.01)
        other.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        result = guard(maria, [f"{gold}.history"]).run(
            etl(maria, ["SLEEP", f"DELETE FROM {t} WHERE id < 20"], exit=1, sleep=1)
        )
    finally:
        done.set()
        thread.join()
    # the writer kept writing after the rollback; what the rollback proved is the pre-run state
    assert result.exit_code == 10, result.message
    assert result.rollback_verified == [f"{gold}.history"]
    assert before[2] == state(maria, gold, "history")[2]


def test_captured_and_copied_tables_roll_back_together(maria: Backend) -> None:
    gold, t = make_table(maria, rows=20)
    plain = maria.table(gold, "plain")
    maria.sql(f"CREATE TABLE {plain} (a INT, b INT)")
    maria.sql(f"INSERT INTO {plain} VALUES (1, 1), (2, 2)")
    before = (state(maria, gold, "history"), state(maria, gold, "plain"))
    result = guard(maria, [f"{gold}.history", f"{gold}.plain"]).run(
        etl(maria, [f"DELETE FROM {t} WHERE id > 3", f"UPDATE {plain} SET b = 9"], exit=1)
    )
    assert result.exit_code == 10, result.message
    assert result.captured == [f"{gold}.history"] and len(result.snapshot_ids) == 1
    assert sorted(result.rollback_verified) == [f"{gold}.history", f"{gold}.plain"]
    assert (state(maria, gold, "history"), state(maria, gold, "plain")) == before


KILL_POINTS = [
    ("capture.after_intent", "fail"),
    ("capture.after_tables", "fail"),
    ("capture.after_triggers", "fail"),
    ("capture.after_replay", "fail"),
    ("run.during_etl", "slow"),
    ("run.after_etl", "fail"),
    ("run.before_commit", "ok"),
    ("run.before_close", "ok"),
    ("run.before_close", "fail"),
    ("run.after_etl", "ddl"),  # the hold made a full copy before the ALTER; not yet proved
    ("run.before_close", "ddl"),
]


@pytest.mark.parametrize(("point", "how"), KILL_POINTS, ids=[f"{p}-{h}" for p, h in KILL_POINTS])
def test_kill_at_each_point_then_recover(maria: Backend, tmp_path: Path, point: str, how: str) -> None:
    gold, t = make_table(maria, rows=30)
    plain = maria.table(gold, "plain")
    maria.sql(f"CREATE TABLE {plain} (a INT, b INT)")
    maria.sql(f"INSERT INTO {plain} VALUES (1, 1)")
    config = maria.write_config(
        tmp_path / "etlguard.yml", [f"{gold}.history", f"{gold}.plain"], snapshot={"capture": True}
    )
    pre = (state(maria, gold, "history"), state(maria, gold, "plain"))
    statements = [
        f"UPDATE {t} SET name = 'etl' WHERE id < 10",
        f"DELETE FROM {t} WHERE id > 25",
        f"INSERT INTO {t} (name) VALUES ('new')",
        f"UPDATE {plain} SET b = 5",
    ]
    if how == "slow":
        statements.append("SLEEP")
    if how == "ddl":
        statements += [f"ALTER TABLE {t} ADD COLUMN extra INT", f"UPDATE {t} SET extra = 1"]
    command = etl(maria, statements, exit=0 if how == "ok" else 1, sleep=30)
    env = {"ETLGUARD_FAULT": f"{point}:kill", "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "etlguard", "run", "--config", str(config), "--", *command]
    killed = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, f"{point} not reached: {killed.returncode} {killed.stderr[-2000:]}"
    if how == "slow":
        time.sleep(1)  # the watchdog stops the ETL's process group
    recovered = subprocess.run(
        [sys.executable, "-m", "etlguard", "recover", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    after = (state(maria, gold, "history"), state(maria, gold, "plain"))
    if how == "ok" and point in ("run.before_commit", "run.before_close"):
        assert after != pre  # the good run's result is kept
        assert maria.sql(f"SELECT COUNT(*) FROM {t} WHERE name = 'new'") == [(1,)]
    else:
        assert after == pre
    assert triggers(maria, gold) == []
    statuses = {r["status"] for r in records(maria) if r["kind"] == "changes"}
    assert statuses <= {"failed", "restored", "captured", "deleted"}, statuses
    again = subprocess.run(
        [sys.executable, "-m", "etlguard", "recover", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "nothing" in (again.stdout + again.stderr).lower(), again.stdout


def _plain_table(b: Backend) -> tuple[str, str]:
    """A table with no generated column: its check after a replay is read after the locks go."""
    gold = b.schema("gold")
    b.sql(f"CREATE DATABASE {b.q(gold)}")
    t = b.table(gold, "plain")
    b.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2)) ENGINE=InnoDB")
    b.sql(f"INSERT INTO {t} SELECT seq, CONCAT('n', seq), seq / 7 FROM {b.q(gold)}.seq_1_to_300")
    return gold, t


def test_a_plain_table_is_put_back_and_proved_after_readers_are_let_in(maria: Backend) -> None:
    gold, t = _plain_table(maria)
    before = state(maria, gold, "plain")
    statements = [f"UPDATE {t} SET name = 'x' WHERE id % 3 = 0", f"DELETE FROM {t} WHERE id > 290"]
    result = guard(maria, [f"{gold}.plain"]).run(
        etl(maria, [*statements, f"INSERT INTO {t} VALUES (999, 'y', 1)"], exit=1)
    )
    assert result.exit_code == 10 and result.rollback_verified == [f"{gold}.plain"], result.message
    assert state(maria, gold, "plain") == before


def test_a_replay_that_does_not_give_the_pre_run_table_is_not_called_verified(maria: Backend) -> None:
    gold, t = _plain_table(maria)
    snaps = maria.snapshot_schema
    # the ETL changes rows, then empties the capture (found by its _etlguard_ columns): the
    # replay then puts nothing back, and the check against the pre-run checksum must say so
    damage = [
        f"UPDATE {t} SET name = 'x' WHERE id % 3 = 0",
        "SELECT CONCAT('DELETE FROM `', TABLE_SCHEMA, '`.`', TABLE_NAME, '`') INTO @q FROM "
        f"information_schema.COLUMNS WHERE TABLE_SCHEMA = '{snaps}' AND COLUMN_NAME = '_etlguard_present' LIMIT 1",
        "PREPARE wipe FROM @q",
        "EXECUTE wipe",
    ]
    result = guard(maria, [f"{gold}.plain"]).run(etl(maria, damage, exit=1))
    assert result.exit_code == 20, result.message
    assert not result.rollback_verified
    assert "differs from the pre-run checksum" in result.message

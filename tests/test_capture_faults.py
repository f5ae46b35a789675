"""Changed-rows capture when its DDL hold breaks (mysql_capture.Hold, MariaDB): a holder
session killed mid-run (as KILL or the server's wait_timeout would), the watcher's session
killed, and the full copy before a DDL failing (so the DDL is stopped with KILL QUERY). Each
test interrupts the hold of a real run at a known moment: the ETL waits for a file that the
test writes once it has acted on the hold's sessions."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from etlguard import capture
from etlguard.adapters import Adapter, adapter_for
from etlguard.adapters.mysql_capture import Hold, Layout, Replay
from etlguard.errors import RollbackFailed, TargetUnreachable, UnfinishedOperation
from etlguard.tables import TableRef
from etlguard.target import parse_target
from test_capture import guard, make_table, records, state, triggers

from conftest import BACKENDS, Backend, _one

pytestmark = pytest.mark.skipif("mariadb" not in BACKENDS, reason="capture is MySQL/MariaDB only")

# "WAIT" blocks until the go file exists; a failed statement is printed (the run's ETL tail)
ETL = """
import json, os, sys, time, pymysql
spec = json.loads(sys.argv[1])
conn = pymysql.connect(host="127.0.0.1", port=spec["port"], user="root", password="", autocommit=True,
                       charset="utf8mb4")
with conn.cursor() as cur:
    cur.execute("SET SESSION lock_wait_timeout = 30")  # a DDL nobody lets go on fails, never hangs
    for statement in spec["sql"]:
        if statement == "WAIT":
            for _ in range(600):
                if os.path.exists(spec["go"]):
                    break
                time.sleep(0.1)
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


@pytest.fixture
def holds(monkeypatch: pytest.MonkeyPatch) -> list[Hold]:
    """The holds the runs of a test start (capture.hold is what run.py calls)."""
    seen: list[Hold] = []
    original = capture.hold

    def recorded(db: Any, items: Any) -> Hold | None:
        made = original(db, items)
        if made is not None:
            seen.append(made)
        return made

    monkeypatch.setattr(capture, "hold", recorded)
    return seen


def etl(b: Backend, go: Path, statements: list[str], exit: int = 1) -> list[str]:
    spec = {"port": getattr(b, "port", 3306), "sql": ["WAIT", *statements], "exit": exit, "go": str(go)}
    return [sys.executable, "-c", ETL, json.dumps(spec)]


def kill(b: Backend, sessions: list[int]) -> None:
    """KILL each session from another client, then wait until the server has ended it."""
    other = b._connect()  # type: ignore[attr-defined]
    try:
        with other.cursor() as cur:
            for sid in sessions:
                cur.execute(f"KILL CONNECTION {int(sid)}")
            for _ in range(100):
                marks = ", ".join(["%s"] * len(sessions))
                cur.execute(
                    f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN ({marks})", sessions
                )
                if cur.fetchall()[0][0] == 0:
                    return
                time.sleep(0.05)
        raise AssertionError(f"sessions {sessions} still alive after KILL")
    finally:
        other.close()


@contextlib.contextmanager
def during_etl(holds: list[Hold], go: Path, act: Callable[[Hold], None]) -> Iterator[list[BaseException]]:
    """Once the run's hold has started, `act` on it, then let the ETL go on (also if `act`
    failed: the test then reports that error rather than a hung ETL)."""
    errors: list[BaseException] = []

    def saboteur() -> None:
        try:
            for _ in range(600):
                if holds:
                    break
                time.sleep(0.05)
            assert holds, "the run started no hold"
            act(holds[0])
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)
        finally:
            go.touch()

    thread = threading.Thread(target=saboteur, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        thread.join(60)
    assert not errors, errors


def holders_killed(b: Backend) -> Callable[[Hold], None]:
    return lambda hold: kill(b, hold.sessions())


def watcher_killed(b: Backend) -> Callable[[Hold], None]:
    def act(hold: Hold) -> None:
        watcher = hold._watcher
        assert watcher is not None and getattr(watcher, "session_id", None)
        kill(b, [int(watcher.session_id)])  # type: ignore[attr-defined]

    return act


def columns(b: Backend, schema: str, name: str) -> list[str]:
    rows = b.sql(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION",
        [schema, name],
    )
    return [r[0] for r in rows]


def rows(b: Backend, t: str, cols: list[str]) -> list[tuple[Any, ...]]:
    """Every row's values of `cols`, in key order: the data, whatever columns were added."""
    return b.sql(f"SELECT {', '.join(b.q(c) for c in cols)} FROM {t} ORDER BY id")


DML = [
    "UPDATE {t} SET name = 'etl' WHERE id < 10",
    "DELETE FROM {t} WHERE id > 25",
    "INSERT INTO {t} (name) VALUES ('n')",
]


# -- 1a: a holder killed, the ETL writes rows only ------------------------------------------------
def test_a_killed_holder_is_noted_and_a_dml_run_is_rolled_back_exactly(
    maria: Backend, holds: list[Hold], tmp_path: Path
) -> None:
    gold, t = make_table(maria, rows=30)
    before = state(maria, gold, "history")
    go = tmp_path / "go"
    with during_etl(holds, go, holders_killed(maria)):
        result = guard(maria, [f"{gold}.history"]).run(etl(maria, go, [s.format(t=t) for s in DML]))
    assert result.exit_code == 10, result.message
    assert result.rollback_verified == [f"{gold}.history"]
    assert state(maria, gold, "history") == before
    assert triggers(maria, gold) == []
    assert any("hold of" in n and "ended during the run" in n for n in result.notes), result.notes
    [rec] = [r for r in records(maria) if r["kind"] == "changes"]
    assert rec["status"] == "restored"


# -- 1b: a holder killed, then a DDL the hold no longer sees -------------------------------------
def test_a_killed_holder_then_an_alter_ends_in_exit_20_and_recover_closes_the_run(
    maria: Backend, holds: list[Hold], tmp_path: Path
) -> None:
    """Nothing made a full copy before the ALTER, so the capture cannot put the structure back:
    the replay puts back every pre-run row (the added column stays, NULL), the proof by
    structure fails, exit 20. Nothing is lost: dropping the added column gives the pre-run
    table. The run's journal entry stays open until `etlguard recover`, which replays again,
    records the run as rollback_failed with what to do, and closes it; the next run proceeds."""
    gold, t = make_table(maria, rows=30)
    before = state(maria, gold, "history")
    pre_columns = columns(maria, gold, "history")
    pre_rows = rows(maria, t, pre_columns)
    go = tmp_path / "go"
    statements = [*(s.format(t=t) for s in DML), f"ALTER TABLE {t} ADD COLUMN extra INT"]
    g = guard(maria, [f"{gold}.history"])
    with during_etl(holds, go, holders_killed(maria)):
        result = g.run(etl(maria, go, statements))
    assert result.exit_code == 20 and result.status == "rollback_failed", result.message
    assert f"{gold}.history: its structure differs from the pre-run one" in result.message
    assert "a person must act" in result.message and not result.rollback_verified
    assert result.recovery_command == "etlguard recover", "the run stays open: recover is the next step"
    assert any("hold of" in n and "ended during the run" in n for n in result.notes), result.notes
    assert columns(maria, gold, "history") == [*pre_columns, "extra"]  # not silently "back"
    assert rows(maria, t, pre_columns) == pre_rows  # every pre-run row is back
    assert triggers(maria, gold) == []
    assert {(r["kind"], r["status"]) for r in records(maria)} == {
        ("changes", "damaged"),
        ("snapshot", "failed"),
    }

    with pytest.raises(UnfinishedOperation, match="etlguard recover"):
        g.run(etl(maria, go, [], exit=0))
    with pytest.raises(RollbackFailed, match=r"structure differs from the pre-run one.*older snapshot"):
        g.recover()
    assert rows(maria, t, pre_columns) == pre_rows
    assert g.runs(result.run_id)[0]["status"] == "rollback_failed"
    assert g.recover().actions == []  # the run is closed
    maria.sql(f"ALTER TABLE {t} DROP COLUMN extra")  # what a person does: the pre-run table
    assert state(maria, gold, "history") == before
    assert g.run(etl(maria, go, [], exit=0)).exit_code == 0


# -- 1c: the watcher's session killed ------------------------------------------------------------
@pytest.mark.parametrize("ddl", [False, True], ids=["dml", "alter"])
def test_a_killed_watcher_is_replaced_and_the_rollback_is_exact(
    maria: Backend, holds: list[Hold], tmp_path: Path, ddl: bool
) -> None:
    """The holders still hold: without a watcher a later DDL would wait for their locks until
    the ETL's lock_wait_timeout (a day by default). The watcher opens a new session and goes on
    watching, so the ALTER still gets its full copy and the rollback is exact."""
    gold, t = make_table(maria, rows=30)
    before = state(maria, gold, "history")
    go = tmp_path / "go"
    statements = [s.format(t=t) for s in DML] + ([f"ALTER TABLE {t} ADD COLUMN extra INT"] if ddl else [])
    with during_etl(holds, go, watcher_killed(maria)):
        result = guard(maria, [f"{gold}.history"]).run(etl(maria, go, statements))
    assert result.exit_code == 10, (result.message, result.etl.tail if result.etl else None)
    assert result.rollback_verified == [f"{gold}.history"]
    assert state(maria, gold, "history") == before
    assert triggers(maria, gold) == []
    copied = any("full copies of" in n for n in result.notes)
    assert copied == ddl, result.notes
    assert len(result.snapshot_ids) == (1 if ddl else 0)


def test_a_watcher_that_cannot_be_replaced_lets_the_tables_go(maria: Backend) -> None:
    """No new session for the watcher (the server refuses connections): the hold ends, noted,
    and lets its tables go, so a DDL goes on (the rollback's proof decides) instead of waiting
    for locks nobody will release until the ETL ends."""
    gold, t = make_table(maria, rows=5)
    refused = threading.Event()

    def connect() -> Adapter:
        if refused.is_set():
            raise TargetUnreachable("the server refuses new connections (the test)")
        return adapter_for(parse_target(maria.url), 5)

    ref = TableRef(gold, "history")
    unused = Replay(ref, TableRef(gold, "no_capture"), Layout((), ()), "no_scratch")
    hold = Hold(connect, [(unused, TableRef(gold, "no_copy"))]).start()
    try:
        watcher = hold._watcher
        assert watcher is not None
        refused.set()
        kill(maria, [int(watcher.session_id)])  # type: ignore[attr-defined]
        for _ in range(100):
            if hold.lost:
                break
            time.sleep(0.05)
        assert hold.lost and "watcher" in hold.lost, hold.lost
        other = maria._connect()  # type: ignore[attr-defined]
        with contextlib.closing(other), other.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 5")
            cur.execute(f"ALTER TABLE {t} ADD COLUMN extra INT")  # not held: no lock wait timeout
    finally:
        hold.stop()
    assert "extra" in columns(maria, gold, "history")


# -- 2: the full copy before a DDL fails: the DDL is stopped -------------------------------------
def test_a_failed_copy_before_a_ddl_stops_the_ddl_and_the_capture_undoes_the_run(
    maria: Backend, holds: list[Hold], tmp_path: Path
) -> None:
    """Someone dropped the empty copy the hold fills before a DDL: the copy fails, so the
    waiting ALTER is stopped (KILL QUERY) before it can change the table, the ETL fails on
    it, and the capture puts the table back."""
    gold, t = make_table(maria, rows=30)
    before = state(maria, gold, "history")
    go = tmp_path / "go"

    def drop_the_copy(hold: Hold) -> None:
        [(_, copy)] = hold.items
        maria.sql(f"DROP TABLE {maria.table(copy.schema, copy.name)}")

    statements = [*(s.format(t=t) for s in DML), f"ALTER TABLE {t} ADD COLUMN extra INT"]
    with during_etl(holds, go, drop_the_copy):
        result = guard(maria, [f"{gold}.history"]).run(etl(maria, go, statements, exit=0))
    assert result.exit_code == 10, (result.message, result.notes, columns(maria, gold, "history")[-1])
    assert result.etl is not None and result.etl.exit_code == 3
    assert any("statement failed" in line and "interrupted" in line for line in result.etl.tail), (
        result.etl.tail
    )
    assert result.rollback_verified == [f"{gold}.history"]
    assert state(maria, gold, "history") == before
    assert triggers(maria, gold) == []
    assert any(
        n.startswith("changed-rows capture: stopped a statement")
        and "ADD COLUMN extra" in n
        and "could not be made" in n
        for n in result.notes
    ), result.notes
    assert any("the copy before a DDL failed" in n for n in result.notes), result.notes
    assert result.snapshot_ids == []

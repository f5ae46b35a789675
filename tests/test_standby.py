"""Standby snapshots (`snapshot.standby`, with capture, MariaDB): a captured table keeps a full
snapshot that each guarded run rolls forward by the rows the last run changed, proven equal to
the live table by checksum; a failed run is rolled back by renaming it into place. Covered: every
kind of change across nights, a change outside a guarded run, a tampered standby, DDL during
the run, and a kill at each new fault point followed by `recover`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etlguard import Guard
from etlguard.config import Config
from etlguard.errors import ChecksumMismatch, ConfigError, SnapshotNotFound
from test_capture import CHANGES, etl, make_table, state, triggers

from conftest import BACKENDS, Backend, _one

pytestmark = pytest.mark.skipif("mariadb" not in BACKENDS, reason="standby snapshots are MySQL/MariaDB only")


@pytest.fixture
def maria(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("mariadb", tmp_path)


def guard(b: Backend, tables: list[str], consistency: str = "set") -> Guard:
    return b.guard(
        tables,
        snapshot={"capture": True, "standby": True, "consistency": consistency},
        retention={"keep_last": 10, "days": None},
    )


def records(b: Backend, table: str) -> list[dict[str, Any]]:
    t = b.table(b.catalog_schema, "snapshots")
    cols = ["id", "kind", "status", "snapshot_table", "run_id", "note"]
    rows = b.sql(
        f"SELECT {', '.join(b.q(c) for c in cols)} FROM {t} WHERE table_name = %s ORDER BY id", [table]
    )
    return [dict(zip(cols, r, strict=True)) for r in rows]


def night(b: Backend, g: Guard, statements: list[str], ok: bool = True) -> Any:
    result = g.run(etl(b, statements, exit=0 if ok else 1))
    assert result.ok == ok, result.message
    return result


def test_rolled_forward_each_night_and_a_failed_night_is_renamed_back(maria: Backend) -> None:
    gold, t = make_table(maria, rows=40)
    g = guard(maria, [f"{gold}.history"])
    first = night(maria, g, [f"UPDATE {t} SET name = 'night1' WHERE id < 5"])
    assert first.standby == [], "the first night has no standby to roll: the table is copied"
    assert first.captured == [f"{gold}.history"]
    second = night(maria, g, [f"DELETE FROM {t} WHERE id > 35", f"INSERT INTO {t} (name) VALUES ('n2')"])
    assert [s["proven"] for s in second.standby] == [True]
    assert second.standby[0]["rows_written"] == 4 * 2, (
        "the first night's 4 changed keys, deleted and put back"
    )
    rolled = second.standby[0]["snapshot_id"]
    assert second.snapshot_ids == [rolled]
    checked = {v.snapshot.id: v.ok for v in g.verify()}
    assert checked[rolled] is True, "`etlguard verify` proves the standby like any snapshot"
    before = state(maria, gold, "history")
    failed = night(maria, g, [f"UPDATE {t} SET name = 'bad'", f"DELETE FROM {t} WHERE id < 20"], ok=False)
    assert failed.rolled_back == [f"{gold}.history"] and failed.rollback_verified == [f"{gold}.history"]
    assert [s["proven"] for s in failed.standby] == [True]
    assert state(maria, gold, "history") == before
    assert triggers(maria, gold) == []
    statuses = {r["id"]: r["status"] for r in records(maria, "history")}
    assert statuses[failed.standby[0]["snapshot_id"]] == "restored", "the standby itself was renamed in"
    assert statuses[rolled] == "superseded", "the rolled standby moved on to the failed night's record"
    changes = [r for r in records(maria, "history") if r["kind"] == "changes"]
    assert changes[-1]["status"] == "deleted", "not needed: pruned with the rollback"
    assert "rolled back by its standby" in changes[-1]["note"]


def test_per_table_consistency_proves_the_standby_from_a_consistent_read(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    plain = maria.table(gold, "plain")
    maria.sql(f"CREATE TABLE {plain} (id INT PRIMARY KEY, v INT)")
    maria.sql(f"INSERT INTO {plain} VALUES (1, 1), (2, 2)")
    g = guard(maria, [f"{gold}.history", f"{gold}.plain"], consistency="table")
    night(maria, g, [f"UPDATE {t} SET name = 'n1' WHERE id < 5", f"UPDATE {plain} SET v = 3"])
    after = (state(maria, gold, "history"), state(maria, gold, "plain"))
    failed = night(maria, g, [f"DELETE FROM {t}", f"DELETE FROM {plain}"], ok=False)
    assert sorted(s["proven"] for s in failed.standby) == [True, True]
    assert (state(maria, gold, "history"), state(maria, gold, "plain")) == after


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_kind_of_change_rolls_forward_exactly(maria: Backend, change: str) -> None:
    gold, t = make_table(maria, rows=30)
    g = guard(maria, [f"{gold}.history"])
    night(maria, g, [s.format(t=t) for s in CHANGES[change]])
    after = state(maria, gold, "history")
    failed = night(maria, g, [f"UPDATE {t} SET note = 'bad'", f"DELETE FROM {t} WHERE id < 10"], ok=False)
    assert [s["proven"] for s in failed.standby] == [True], failed.notes
    assert state(maria, gold, "history") == after


def test_a_superseded_snapshot_is_rebuilt_from_the_standby_and_the_changes_since(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    g = guard(maria, [f"{gold}.history"])
    states, ids = [], []
    for n, change in enumerate(sorted(CHANGES)[:4]):  # four nights, each rolled forward from the last
        states.append(state(maria, gold, "history"))
        result = night(maria, g, [s.format(t=t) for s in CHANGES[change]])
        ids.append(result.snapshot_ids[0])
        assert [s["proven"] for s in result.standby] == ([True] if n else [])
    statuses = {r["id"]: r["status"] for r in records(maria, "history")}
    assert [statuses[i] for i in ids] == ["superseded"] * 3 + ["verified"]
    for sid, expected in zip(ids, states, strict=True):  # every night's state, the oldest first
        restored = g.restore([f"{gold}.history"], snapshot_ids=[sid], keep_snapshot=True)
        assert restored.verified == [f"{gold}.history"]
        assert state(maria, gold, "history") == expected, f"snapshot {sid}"
    when = next(s.taken_at for s in g.snapshots(f"{gold}.history") if s.id == ids[1])
    g.restore([f"{gold}.history"], as_of=when, keep_snapshot=True)  # picks the superseded one
    assert state(maria, gold, "history") == states[1]


def test_retention_counts_superseded_snapshots_and_keeps_the_changes_they_need(maria: Backend) -> None:
    gold, t = make_table(maria, rows=20)
    g = maria.guard(
        [f"{gold}.history"],
        snapshot={"capture": True, "standby": True},
        retention={"keep_last": 2, "days": None, "displaced_days": 0.000001},
    )
    ids, states = [], []
    for n in range(4):
        states.append(state(maria, gold, "history"))
        ids.append(night(maria, g, [f"UPDATE {t} SET name = 'n{n}' WHERE id < {3 + n}"]).snapshot_ids[0])
    recs = {r["id"]: r for r in records(maria, "history")}
    assert [recs[i]["status"] for i in ids] == ["deleted", "deleted", "superseded", "verified"]
    logs = {r["run_id"]: r["status"] for r in recs.values() if r["kind"] == "changes"}
    assert logs[1] == logs[2] == "deleted", "no kept snapshot needs them"
    assert logs[3] == "captured", "it rebuilds the kept superseded snapshot"
    assert logs[4] == "captured", "the next run rolls the standby forward by it"
    g.restore([f"{gold}.history"], snapshot_ids=[ids[2]], keep_snapshot=True)
    assert state(maria, gold, "history") == states[2]


def test_a_superseded_snapshot_whose_changes_are_gone_is_refused(maria: Backend) -> None:
    gold, t = make_table(maria, rows=20)
    g = guard(maria, [f"{gold}.history"])
    first = night(maria, g, [f"UPDATE {t} SET name = 'n1' WHERE id < 5"])
    night(maria, g, [f"UPDATE {t} SET name = 'n2' WHERE id < 3"])
    log = next(r for r in records(maria, "history") if r["kind"] == "changes" and r["run_id"] == 1)
    maria.sql(f"DROP TABLE {maria.table(maria.snapshot_schema, log['snapshot_table'])}")
    before = state(maria, gold, "history")
    with pytest.raises(SnapshotNotFound, match=r"cannot be rebuilt: the changes record .* lost its table"):
        g.restore([f"{gold}.history"], snapshot_ids=first.snapshot_ids)
    assert state(maria, gold, "history") == before, "nothing was touched"


def test_a_tampered_changes_record_fails_the_rebuild_and_nothing_is_touched(maria: Backend) -> None:
    gold, t = make_table(maria, rows=20)
    g = guard(maria, [f"{gold}.history"])
    first = night(maria, g, [f"UPDATE {t} SET name = 'n1' WHERE id < 5"])
    night(maria, g, [f"UPDATE {t} SET name = 'n2' WHERE id < 3"])
    log = next(r for r in records(maria, "history") if r["kind"] == "changes" and r["run_id"] == 1)
    maria.sql(f"UPDATE {maria.table(maria.snapshot_schema, log['snapshot_table'])} SET name = 'forged'")
    before = state(maria, gold, "history")
    with pytest.raises(ChecksumMismatch, match="table has rebuilt: "):
        g.restore([f"{gold}.history"], snapshot_ids=first.snapshot_ids)
    assert state(maria, gold, "history") == before, "nothing was touched"
    left = maria.sql(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE 'r%%'",
        [maria.snapshot_schema],
    )
    assert left == [], "the rebuilt staging table was dropped"


def test_a_change_outside_a_guarded_run_is_copied_in_full(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    g = guard(maria, [f"{gold}.history"])
    night(maria, g, [f"UPDATE {t} SET name = 'night1' WHERE id < 5"])
    maria.sql(f"UPDATE {t} SET name = 'by hand' WHERE id = 20")  # no trigger saw this
    after = state(maria, gold, "history")
    failed = night(maria, g, [f"DELETE FROM {t}"], ok=False)
    assert failed.standby == [], "the live table is not as the last run left it: no roll forward"
    assert state(maria, gold, "history") == after
    assert next(r["status"] for r in records(maria, "history") if r["kind"] == "snapshot") == "verified"


def test_a_tampered_standby_fails_its_proof_and_the_table_is_copied(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    g = guard(maria, [f"{gold}.history"])
    first = night(maria, g, [f"UPDATE {t} SET name = 'night1' WHERE id < 5"])
    standby = next(r for r in records(maria, "history") if r["id"] == first.snapshot_ids[0])
    maria.sql(
        f"UPDATE {maria.table(maria.snapshot_schema, standby['snapshot_table'])} SET note = 'forged' WHERE id = 25"
    )
    after = state(maria, gold, "history")
    failed = night(maria, g, [f"DELETE FROM {t}"], ok=False)
    assert [s["proven"] for s in failed.standby] == [False]
    assert failed.snapshot_ids != [failed.standby[0]["snapshot_id"]], "a copy, not the forged standby"
    assert state(maria, gold, "history") == after


def test_ddl_during_the_run_is_undone_by_the_standby(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    g = guard(maria, [f"{gold}.history"])
    night(maria, g, [f"UPDATE {t} SET name = 'night1' WHERE id < 5"])
    after = state(maria, gold, "history")
    failed = night(
        maria,
        g,
        [f"ALTER TABLE {t} ADD COLUMN extra INT", f"UPDATE {t} SET extra = 1", f"TRUNCATE TABLE {t}"],
        ok=False,
    )
    assert [s["proven"] for s in failed.standby] == [True]
    assert state(maria, gold, "history") == after
    # a good night that changes the structure: the next night cannot roll forward, and copies
    night(maria, g, [f"ALTER TABLE {t} ADD COLUMN extra INT", f"UPDATE {t} SET extra = 2"])
    after = state(maria, gold, "history")
    failed = night(maria, g, [f"DELETE FROM {t}"], ok=False)
    assert failed.standby == []
    assert state(maria, gold, "history") == after


KILL_POINTS = ["standby.after_intent", "standby.after_roll"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_while_rolling_forward_then_recover(maria: Backend, tmp_path: Path, point: str) -> None:
    gold, t = make_table(maria, rows=30)
    config = maria.write_config(
        tmp_path / "etlguard.yml",
        [f"{gold}.history"],
        snapshot={"capture": True, "standby": True},
        retention={"keep_last": 10, "days": None},
    )
    cli = [sys.executable, "-m", "etlguard"]
    env = {"PATH": "/usr/bin:/bin"}
    first = subprocess.run(
        [
            *cli,
            "run",
            "--config",
            str(config),
            "--",
            *etl(maria, [f"UPDATE {t} SET name = 'n1' WHERE id < 5"]),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    after = state(maria, gold, "history")
    killed = subprocess.run(
        [*cli, "run", "--config", str(config), "--", *etl(maria, [f"DELETE FROM {t}"])],
        env={**env, "ETLGUARD_FAULT": f"{point}:kill"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, f"{point} not reached: {killed.returncode} {killed.stderr[-2000:]}"
    assert state(maria, gold, "history") == after, "the live table is never written before the ETL"
    recovered = subprocess.run(
        [*cli, "recover", "--config", str(config)], env=env, capture_output=True, text=True, timeout=300
    )
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert triggers(maria, gold) == []
    half = [r for r in records(maria, "history") if r["kind"] == "snapshot" and r["status"] == "creating"]
    assert half == []
    tables = {
        r[0]
        for r in maria.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            [maria.snapshot_schema],
        )
    }
    live = {r["snapshot_table"] for r in records(maria, "history") if r["status"] == "verified"}
    assert live <= tables, "every verified record's table exists"
    if point == "standby.after_intent":
        assert live, "the standby was never renamed: recover makes it a restore point again"
    failed = subprocess.run(
        [*cli, "run", "--config", str(config), "--", *etl(maria, [f"DELETE FROM {t}"], exit=1)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 10, failed.stderr[-2000:]
    assert state(maria, gold, "history") == after


RUN_KILLS = [("run.during_etl", "slow"), ("run.after_etl", "fail"), ("run.before_commit", "ok")]


@pytest.mark.parametrize(("point", "how"), RUN_KILLS, ids=[p for p, _ in RUN_KILLS])
def test_kill_around_the_etl_then_recover(maria: Backend, tmp_path: Path, point: str, how: str) -> None:
    """A run whose history is rolled forward, killed during or after its ETL: recover puts the
    standby back (or keeps a passed run, recording its change log for the next roll forward)."""
    gold, t = make_table(maria, rows=30)
    config = maria.write_config(
        tmp_path / "etlguard.yml",
        [f"{gold}.history"],
        snapshot={"capture": True, "standby": True},
        retention={"keep_last": 10, "days": None},
    )
    cli, env = [sys.executable, "-m", "etlguard"], {"PATH": "/usr/bin:/bin"}

    def run(statements: list[str], exit: int, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"ETLGUARD_FAULT": f"{fault}:kill"} if fault else {}
        command = etl(maria, statements, exit=exit, sleep=30)
        return subprocess.run(
            [*cli, "run", "--config", str(config), "--", *command],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert run([f"UPDATE {t} SET name = 'n1' WHERE id < 5"], 0).returncode == 0
    pre = state(maria, gold, "history")
    work = [f"DELETE FROM {t} WHERE id > 20", f"UPDATE {t} SET note = 'etl'"] + (
        ["SLEEP"] if how == "slow" else []
    )
    killed = run(work, 0 if how == "ok" else 1, point)
    assert killed.returncode == -9, f"{point} not reached: {killed.returncode} {killed.stderr[-2000:]}"
    if how == "slow":
        time.sleep(1)  # the watchdog stops the ETL's process group
    recovered = subprocess.run(
        [*cli, "recover", "--config", str(config)], env=env, capture_output=True, text=True, timeout=300
    )
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert triggers(maria, gold) == []
    if how == "ok":  # kept: and its change log rolls the standby forward next run
        kept = state(maria, gold, "history")
        assert kept != pre
        again = run([f"UPDATE {t} SET name = 'bad'"], 1)
        assert again.returncode == 10, again.stderr[-2000:]
        recs = {r["id"]: r for r in records(maria, "history")}
        into = [
            int(r["note"].split("snapshot ")[1].split(";")[0])
            for r in recs.values()
            if r["status"] == "superseded"
        ]
        assert recs[into[-1]]["status"] == "restored", (
            "rolled forward by the recovered run's log, renamed back"
        )
        assert state(maria, gold, "history") == kept
    else:
        assert state(maria, gold, "history") == pre


def test_a_table_below_capture_min_bytes_is_copied_without_triggers(maria: Backend) -> None:
    gold, t = make_table(maria, rows=30)
    plain = maria.table(gold, "small")
    maria.sql(f"CREATE TABLE {plain} (id INT PRIMARY KEY, v INT)")
    maria.sql(f"INSERT INTO {plain} VALUES (1, 1)")
    size = int(
        maria.sql(
            "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = 'history'",
            [gold],
        )[0][0]
    )
    g = maria.guard(
        [f"{gold}.history", f"{gold}.small"],
        snapshot={"capture": True, "standby": True, "capture_min_bytes": size},
    )
    result = g.run(etl(maria, [f"SELECT 1 FROM {t} LIMIT 1"]))
    assert result.captured == [f"{gold}.history"], "the small table is below the limit, the history is not"
    assert "capture_min_bytes" in result.capture_copied[f"{gold}.small"]


def test_standby_without_capture_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "etlguard.yml"
    path.write_text("target: duckdb:///x.duckdb\nprotect: [main.t]\nsnapshot:\n  standby: true\n")
    with pytest.raises(ConfigError, match="standby: true needs capture: true"):
        Config.load(path)

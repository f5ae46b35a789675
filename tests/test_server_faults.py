"""RELIABILITY scenarios 5-9 and 11: the database server is killed, paused, starved of space or
loses etlguard's connection at exact steps (etlguard pauses itself at a named fault point, the
test acts, then lets it go on). Throwaway servers only; the shared one is never touched."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Figures, MariaDBBackend
from faultlib import Rig
from servers import Server, make_server

pytestmark = pytest.mark.mariadb


def _rig(server: Server, tmp_path: Path, rows: int = 300) -> Rig:
    backend = MariaDBBackend(tmp_path, port=server.port, url=server.url + "?read_timeout=5")
    return Rig(backend, rows=rows)


def _start_paused(rig: Rig, fault: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ETLGUARD_FAULT": f"{fault}:pause"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etlguard", args[0], "-c", str(rig.config), *args[1:]],
        env=env,
        cwd=rig.dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_stopped(proc, fault)
    return proc


def _wait_stopped(proc: subprocess.Popen[str], fault: str = "the fault point") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"etlguard exited before {fault}: {proc.communicate()}")
        if Path(f"/proc/{proc.pid}/stat").read_text().split()[2] == "T":
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{fault} was not reached")


def _resume(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=timeout)  # raises if etlguard hangs
    return proc.returncode, err


def _recover(rig: Rig) -> None:
    for _ in range(50):  # the server may take a moment to notice the dead session's lock
        proc = rig.etlguard("recover")
        if proc.returncode != 3:
            break
        time.sleep(0.2)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("point", ["copy.after_create", "snapshot.after_copy"])
def test_server_killed_mid_snapshot(throwaway: Server, tmp_path: Path, point: str, figures: Figures) -> None:
    rig = _rig(throwaway, tmp_path)
    pre = rig.state()
    proc = _start_paused(rig, point, "snapshot")
    throwaway.kill()
    started = time.monotonic()
    code, err = _resume(proc)
    assert code != 0 and time.monotonic() - started < 30
    # reconnect attempts may be logged first (retries with backoff); the outcome is one error line
    assert err.strip().splitlines()[-1].startswith("etlguard: error:"), err
    throwaway.start()
    _recover(rig)
    assert rig.state() == pre
    rig.assert_clean()
    assert rig.catalog_rows("status = 'verified'") == []  # nothing half-made was ever marked complete
    figures.add("server_faults_injected")
    figures.add("server_faults_invariant_held")


@pytest.mark.parametrize("op", ["restore", "run-fail"])
def test_server_killed_during_swap(throwaway: Server, tmp_path: Path, op: str, figures: Figures) -> None:
    rig = _rig(throwaway, tmp_path)
    pre = rig.state()
    if op == "restore":
        assert rig.etlguard("snapshot").returncode == 0
        rig.run_etl_directly("ok")
        args = ["restore", f"{rig.schema}.orders", f"{rig.schema}.order_lines", "--latest"]
        acceptable = [pre, rig.state()]
    else:
        args = ["run", "--", *rig.etl_command("fail")]
        acceptable = [pre]
    proc = _start_paused(rig, "restore.before_swap", *args)
    os.kill(proc.pid, signal.SIGCONT)  # let it send the RENAME, and kill the server under it
    time.sleep(0.005)
    throwaway.kill()
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    throwaway.start()
    _recover(rig)
    assert rig.state() in acceptable
    rig.assert_clean()
    figures.add("server_faults_injected")
    figures.add("server_faults_invariant_held")


def test_server_paused_during_swap(throwaway: Server, tmp_path: Path, figures: Figures) -> None:
    rig = _rig(throwaway, tmp_path)
    assert rig.etlguard("snapshot").returncode == 0
    snapshot_state = rig.state()
    rig.run_etl_directly("ok")
    damaged = rig.state()
    args = ["restore", f"{rig.schema}.orders", f"{rig.schema}.order_lines", "--latest"]
    proc = _start_paused(rig, "restore.before_swap", *args)
    throwaway.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        code, err = _resume(proc, timeout=60)  # read_timeout=5 in the URL: etlguard gives up
        assert code != 0 and time.monotonic() - started < 30, err
        assert "etlguard: error:" in err
    finally:
        throwaway.signal(signal.SIGCONT)
    _recover(rig)
    assert rig.state() in (damaged, snapshot_state)
    rig.assert_clean()
    # the RENAME may be the statement the stopped server held: it ran on SIGCONT, and recover
    # recorded the restore as done (the snapshot is consumed); otherwise a rerun does it
    if rig.state() == damaged:
        rerun = rig.etlguard(*args)
        assert rerun.returncode == 0, rerun.stderr
    assert rig.state() == snapshot_state
    figures.add("server_faults_injected")
    figures.add("server_faults_invariant_held")


@pytest.mark.parametrize("point", ["copy.after_create", "restore.before_swap"])
def test_connection_dropped_then_clean_abort(
    throwaway: Server, tmp_path: Path, point: str, figures: Figures
) -> None:
    rig = _rig(throwaway, tmp_path)
    if point == "restore.before_swap":
        assert rig.etlguard("snapshot").returncode == 0
        rig.run_etl_directly("ok")
        args = ["restore", f"{rig.schema}.orders", f"{rig.schema}.order_lines", "--latest"]
    else:
        args = ["snapshot"]
    pre = rig.state()
    proc = _start_paused(rig, point, *args)
    [(session,)] = throwaway.sql("SELECT IS_USED_LOCK(%s)", [f"etlguard:{rig.b.catalog_schema}"])
    throwaway.sql(f"KILL {int(session)}")
    code, err = _resume(proc)
    assert code != 0 and "etlguard: error:" in err
    _recover(rig)
    assert rig.state() == pre  # the copy or the swap never happened
    rig.assert_clean()
    assert rig.etlguard("verify").returncode == 0
    figures.add("server_faults_injected")
    figures.add("server_faults_invariant_held")


def test_disk_full_during_copy_stops_before_the_etl(mariadb_template: Path, tmp_path: Path) -> None:
    server = make_server(
        mariadb_template,
        tmp_path / "small",
        ["--innodb-data-file-path=ibdata1:12M:autoextend:max:40M", "--innodb-file-per-table=0"],
    )
    try:
        (tmp_path / "rig").mkdir()
        rig = _rig(server, tmp_path / "rig", rows=10)
        big_table = rig.b.table(rig.schema, "big")
        rig.b.sql(f"CREATE TABLE {big_table} (id INT PRIMARY KEY, pad CHAR(200))")
        rig.b.sql(f"USE {rig.b.q(rig.schema)}")  # the sequence engine needs a current database
        rig.b.sql(f"INSERT INTO {big_table} SELECT seq, REPEAT('x', 200) FROM seq_1_to_70000")
        pre = rig.state()
        big = rig.b.golden(rig.schema, "big")
        marker = rig.dir / "etl-ran"
        proc = rig.etlguard("run", "--", "touch", str(marker))
        assert proc.returncode == 12, proc.stderr  # snapshot failed; the ETL never ran
        assert not marker.exists()
        assert "full" in proc.stderr
        assert rig.state() == pre and rig.b.golden(rig.schema, "big") == big
        assert rig.snapshot_schema_tables() == set()  # the partial snapshot was dropped
        rig.assert_clean()
    finally:
        server.stop()


def test_two_runs_at_once_exactly_one_proceeds(
    mariadb_template: Path, tmp_path: Path, figures: Figures
) -> None:
    log = tmp_path / "general.log"
    server = make_server(mariadb_template, tmp_path / "srv", ["--general-log=1", f"--general-log-file={log}"])
    try:
        (tmp_path / "rig").mkdir()
        rig = _rig(server, tmp_path / "rig", rows=2000)
        winners = 0
        for trial in range(20):
            log_start = log.stat().st_size
            etl = [
                sys.executable,
                "-c",
                "import time; time.sleep(1.5)",
            ]  # the winner holds the lock past the loser's start-up
            env = {k: v for k, v in os.environ.items() if k != "ETLGUARD_FAULT"}
            cmd = [sys.executable, "-m", "etlguard", "run", "-c", str(rig.config), "--", *etl]
            procs = [
                subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)
            ]
            results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
            codes = sorted(code for code, _ in results)
            assert codes == [0, 3], f"trial {trial}: {results}"
            loser_err = next(err for code, err in results if code == 3)
            assert "locked by another etlguard" in loser_err and "connection" in loser_err
            winners += 1
            _assert_loser_wrote_nothing(log.read_text(errors="replace")[log_start:])
            figures.add("concurrent_trials")
            figures.add("concurrent_winners", codes.count(0))
        assert winners == 20
    finally:
        server.stop()


_WRITES = re.compile(
    r"\b(INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|RENAME|REPLACE|TRUNCATE|LOCK TABLES)\b", re.I
)


def _assert_loser_wrote_nothing(log: str) -> None:
    """Group the general log by connection; exactly one connection that asked for the lock
    went on to write."""
    statements: dict[str, list[str]] = {}
    for line in log.splitlines():
        m = re.match(r"^(?:\d{6}\s+[\d:]+\s+|\s+)(\d+)\s+(Query|Connect|Quit)\s*(.*)$", line)
        if m:
            statements.setdefault(m.group(1), []).append(m.group(3))
    lockers = [cid for cid, stmts in statements.items() if any("GET_LOCK" in s for s in stmts)]
    writers = [cid for cid in lockers if any(_WRITES.search(s) for s in statements[cid])]
    assert len(lockers) >= 2, f"expected two contenders in the log, got {lockers}"
    assert len(writers) == 1, {cid: statements[cid] for cid in lockers}


def test_paired_writes_are_in_the_snapshot_both_or_neither(maria) -> None:
    """Scenario 17: LOCK TABLES ... READ over every source gives one consistency point."""
    backend = maria
    schema = backend.create_schema("pairs")
    for name in ("left_side", "right_side"):
        backend.sql(f"CREATE TABLE {backend.table(schema, name)} (id INT PRIMARY KEY, pad CHAR(100))")
        backend.sql(f"USE {backend.q(schema)}")
        backend.sql(f"INSERT INTO {backend.table(schema, name)} SELECT seq, 'x' FROM seq_1_to_50000")
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        import pymysql

        conn = pymysql.connect(
            host=backend.host, port=backend.port, user="root", password="", autocommit=False
        )
        i = 1_000_000
        with conn.cursor() as cur:
            while not stop.is_set():
                i += 1
                try:
                    cur.execute(f"INSERT INTO {backend.table(schema, 'left_side')} VALUES ({i}, 'p')")
                    cur.execute(f"INSERT INTO {backend.table(schema, 'right_side')} VALUES ({i}, 'p')")
                    conn.commit()
                except pymysql.err.Error as exc:  # a deadlock victim rolls back the whole pair
                    conn.rollback()
                    errors.append(str(exc))
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        snaps = backend.guard([f"{schema}.*"]).snapshot()
    finally:
        stop.set()
        thread.join()
    ids = {}
    for s in snaps:
        rows = backend.sql(
            f"SELECT id FROM {backend.table(s.snapshot.schema, s.snapshot.name)} WHERE id > 1000000"
        )
        ids[s.table.name] = {r[0] for r in rows}
    assert ids["left_side"] == ids["right_side"]
    assert ids["left_side"], "the writer made no pairs before the snapshot; the test proved nothing"


def test_server_restarted_during_preflight_is_ridden_out(throwaway: Server, tmp_path: Path) -> None:
    """An Aurora failover between connect and snapshot: the lock and the checks are taken again
    on a new session, and the run goes on (issue: retryable failures during preflight)."""
    rig = _rig(throwaway, tmp_path)
    pre = rig.state()
    proc = _start_paused(rig, "run.in_preflight", "run", "--", sys.executable, "-c", "pass")
    throwaway.kill()
    throwaway.start()
    os.kill(proc.pid, signal.SIGCONT)
    _wait_stopped(proc)  # the retry took the lock and the checks again, up to the same point

    code, err = _resume(proc)

    assert code == 0, err
    assert re.search(r"lost the connection to .* during the checks before the ETL; retry 1 of \d+", err), err
    assert rig.state() == pre
    assert len(rig.catalog_rows("status = 'verified'")) >= 1  # this run's snapshots, taken after the retry


def test_server_gone_during_preflight_is_exit_5_and_nothing_is_run(throwaway: Server, tmp_path: Path) -> None:
    rig = _rig(throwaway, tmp_path)
    pre = rig.state()
    marker = tmp_path / "etl-ran"
    etl = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    proc = _start_paused(rig, "run.in_preflight", "run", "--", *etl)
    throwaway.kill()

    code, err = _resume(proc, timeout=120)

    assert code == 5, err  # transient, unlike a configuration error (2): a retry policy can tell
    assert err.strip().splitlines()[-1].startswith("etlguard: error: cannot reach"), err
    assert not marker.exists()
    throwaway.start()
    assert rig.state() == pre
    assert rig.catalog_rows("status = 'verified'") == []

"""Run supervision (RELIABILITY scenarios 20-22 and 24): a lock that holds for the whole run and
is proven before acting, an ETL process tree that cannot outlive its guard, statements stopped
before a rollback, one etlguard per protected table whatever the catalog, and a printed
recovery command that works when run as printed."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from etlguard import Config, Guard
from etlguard.adapters import adapter_for
from etlguard.errors import (
    EXIT_BUSY,
    EXIT_ETL_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCK_LOST,
    EXIT_OK,
    EXIT_ROLLBACK_FAILED,
    EXIT_USAGE,
)
from etlguard.sessions import settle_sessions
from etlguard.tables import TableRef

from conftest import PG_HOST, PG_PORT, Backend, Figures, MariaDBBackend
from servers import Server
from support import catalog_rows, cli, tables_in

ETLGUARD = [sys.executable, "-m", "etlguard"]
MYSQL_CONNECT = "import pymysql; conn = pymysql.connect(host={host!r}, port={port}, user='root', autocommit=True); run = conn.cursor().execute"
PG_CONNECT = "import psycopg; conn = psycopg.connect(host={host!r}, port={port}, user='postgres', dbname='postgres', autocommit=True); run = conn.execute"


def protected_table(b: Backend, rows: int = 30) -> tuple[str, str]:
    schema = b.create_schema("prot")
    t = b.table(schema, "orders")
    b.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v VARCHAR(40))")
    b.sql(f"INSERT INTO {t} (id, v) " + " UNION ALL ".join(f"SELECT {i}, 'v{i}'" for i in range(1, rows + 1)))
    return schema, t


def etl_script(b: Backend, body: str, before: str = "") -> list[str]:
    """A Python ETL that runs `before`, connects to the backend as `run(sql)`, and runs `body`."""
    template = PG_CONNECT if b.kind == "postgresql" else MYSQL_CONNECT
    head = template.format(host=getattr(b, "host", "127.0.0.1"), port=getattr(b, "port", 0))
    path = b.tmp_path / f"etl_{uuid.uuid4().hex[:6]}.py"
    path.write_text(f"import sys, time\n{before}\n{head}\n{body}\n", encoding="utf-8")
    return [sys.executable, str(path)]


def sql(statement: str) -> str:
    """One `run(...)` line of an ETL script."""
    return f"run({statement!r})\n"


def run_state(b: Backend, run_id: int = 1) -> str:
    t = b.table(b.catalog_schema, "runs")
    return str(b.sql(f"SELECT status FROM {t} WHERE id = {run_id}")[0][0])


def open_journal(b: Backend) -> list[dict[str, object]]:
    return [e for e in catalog_rows(b, "journal") if e["state"] == "started"]


# -- item 1: the lock session outlives server idle timeouts, and a lost lock is never acted on --


@pytest.fixture
def short_wait_server(mariadb_template: Path, tmp_path: Path) -> Iterator[MariaDBBackend]:
    """A throwaway MariaDB whose idle sessions are closed after 4 s, as a proxy or a strict
    server setting would close etlguard's lock session during a long ETL."""
    server = Server(mariadb_template, tmp_path / "mariadb", ["--wait-timeout=4", "--interactive-timeout=4"])
    server.start()
    b = MariaDBBackend(tmp_path, port=server.port, url=server.url)
    try:
        yield b
    finally:
        b.cleanup()
        server.stop()


def test_a_ten_second_etl_commits_on_a_server_that_drops_idle_sessions_after_4_s(
    short_wait_server: MariaDBBackend,
) -> None:
    b = short_wait_server
    schema, t = protected_table(b)
    etl = etl_script(b, sql(f"UPDATE {t} SET v = 'new' WHERE id = 1"), before="time.sleep(10)")
    result = b.guard([f"{schema}.orders"]).run(etl)
    assert (result.status, result.exit_code) == ("ok", EXIT_OK), result.message
    assert b.sql(f"SELECT v FROM {t} WHERE id = 1") == [("new",)]
    assert open_journal(b) == []


def test_a_lock_session_killed_mid_run_is_reported_and_nothing_is_rolled_back_blindly(maria: Backend) -> None:
    schema, t = protected_table(maria)
    key = f"etlguard:{maria.catalog_schema}"
    etl = etl_script(
        maria,
        f"run(\"UPDATE {t} SET v = 'etl' WHERE id <= 5\")\n"
        f"cur = conn.cursor(); cur.execute('SELECT IS_USED_LOCK(%s)', [{key!r}]); (holder,) = cur.fetchone()\n"
        "run(f'KILL {int(holder)}')\ntime.sleep(0.5)",
    )
    before = maria.golden(schema, "orders")
    result = maria.guard([f"{schema}.orders"]).run(etl)
    assert (result.status, result.exit_code) == ("lock_lost", EXIT_LOCK_LOST), result.message
    assert "lock was lost" in result.message and "etlguard recover" in result.message
    after_etl = maria.golden(schema, "orders")
    assert after_etl != before  # the ETL's writes are still there: no blind rollback
    assert run_state(maria) == "lock_lost" and len(open_journal(maria)) == 1
    # recover decides with the facts: the ETL has ended, so it rolls the run back
    report = maria.guard([f"{schema}.orders"]).recover()
    assert any("lock was lost" in a for a in report.actions), report.actions
    assert maria.golden(schema, "orders") == before
    assert run_state(maria) == "rolled_back" and open_journal(maria) == []


@pytest.fixture
def idle_role(pg: Backend) -> Iterator[str]:
    """A PostgreSQL role whose sessions end after 4 s idle (idle_session_timeout = 4s)."""
    role = f"etlg_idle_{pg.tag}"
    pg.sql(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    pg.sql(f"ALTER ROLE \"{role}\" SET idle_session_timeout = '4s'")
    try:
        yield f"postgresql+psycopg://{role}@{PG_HOST}:{PG_PORT}/postgres"
    finally:
        pg.sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}' AND pid <> pg_backend_pid()"
        )
        pg.sql(f'REASSIGN OWNED BY "{role}" TO postgres')
        pg.sql(f'DROP ROLE IF EXISTS "{role}"')


def test_postgres_idle_session_timeout_does_not_end_the_lock(pg: Backend, idle_role: str) -> None:
    schema, t = protected_table(pg)
    etl = etl_script(pg, sql(f"UPDATE {t} SET v = 'new' WHERE id = 1"), before="time.sleep(10)")
    guard = Guard(Config.from_dict(pg.settings(protect=[f"{schema}.orders"], target=idle_role)))
    result = guard.run(etl)
    assert (result.status, result.exit_code) == ("ok", EXIT_OK), result.message
    assert pg.sql(f"SELECT v FROM {t} WHERE id = 1") == [("new",)]


def test_postgres_lock_session_terminated_mid_run_is_reported(pg: Backend, idle_role: str) -> None:
    schema, t = protected_table(pg)
    role = idle_role.split("://")[1].split("@")[0]
    etl = etl_script(
        pg,
        sql(f"UPDATE {t} SET v = 'etl' WHERE id <= 5")
        + sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        + "time.sleep(0.5)",
    )
    before = pg.golden(schema, "orders")
    guard = Guard(Config.from_dict(pg.settings(protect=[f"{schema}.orders"], target=idle_role)))
    result = guard.run(etl)
    assert (result.status, result.exit_code) == ("lock_lost", EXIT_LOCK_LOST), result.message
    assert pg.golden(schema, "orders") != before
    guard.recover()
    assert pg.golden(schema, "orders") == before


# -- item 5: the lock's scope is the protected tables, not the catalog --------------------------


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_two_catalogs_protecting_one_table_exclude_each_other(
    kind: str, maria: Backend, pg: Backend, tmp_path: Path
) -> None:
    b = maria if kind == "mariadb" else pg
    schema, _ = protected_table(b)
    marker, go = tmp_path / "etl-started", tmp_path / "etl-may-end"
    # the first ETL runs until the second etlguard has been refused (not for a fixed time: on a
    # loaded machine the second one may take longer than that to start)
    wait = f"open({str(marker)!r}, 'w').close()\nimport os\nt = time.time()\n"
    wait += f"while not os.path.exists({str(go)!r}) and time.time() - t < 90:\n    time.sleep(0.05)"
    etl = etl_script(b, wait)
    first_cfg = b.write_config(tmp_path / "first.yml", [f"{schema}.orders"])
    second_cfg = b.write_config(
        tmp_path / "second.yml",
        [f"{schema}.orders"],
        catalog_schema=b.schema("other_catalog"),
        snapshot_schema=b.schema("other_snaps"),
    )
    first = subprocess.Popen(
        [*ETLGUARD, "run", "-c", str(first_cfg), "--", *etl], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second = subprocess.run(
        [*ETLGUARD, "run", "-c", str(second_cfg), "--", sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    go.touch()
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == EXIT_OK, first_err
    assert second.returncode == EXIT_BUSY, second.stderr
    assert "locked by another etlguard" in second.stderr
    assert tables_in(b, b.schema("other_snaps")) == []


# -- item 2: the ETL's process tree cannot outlive etlguard ---------------------------------------

WRITER = """
import sys, time
{connect}
for i in range(100000):
    run("INSERT INTO {log} (ts) VALUES (NOW(6))")
    run("INSERT INTO {t} (id, v) VALUES (%s, 'grandchild')" % (1000 + i))
    time.sleep(0.1)
"""


def test_kill_9_of_etlguard_leaves_no_grandchild_writing_20_trials(maria: Backend, figures: Figures) -> None:
    schema, t = protected_table(maria)
    log_schema = maria.create_schema("log")
    log = maria.table(log_schema, "writes")
    maria.sql(f"CREATE TABLE {log} (ts DATETIME(6))")
    writer = maria.tmp_path / "writer.py"
    connect = MYSQL_CONNECT.format(host=maria.host, port=maria.port)  # type: ignore[attr-defined]
    writer.write_text(WRITER.format(connect=connect, log=log, t=t), encoding="utf-8")
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [f"{schema}.orders"])
    guard = Guard(Config.load(config))
    before = maria.golden(schema, "orders")
    wrapper = ["sh", "-c", f"{shlex.quote(sys.executable)} {shlex.quote(str(writer))} & wait"]
    for trial in range(20):
        maria.sql(f"DELETE FROM {log}")
        proc = subprocess.Popen(
            [*ETLGUARD, "run", "-c", str(config), "--", *wrapper], stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while maria.sql(f"SELECT COUNT(*) FROM {log}")[0][0] < 2:
            assert proc.poll() is None and time.monotonic() < deadline, f"trial {trial}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        guard.recover()
        (rolled_back_at,) = maria.sql("SELECT NOW(6)")[0]
        time.sleep(0.3)  # three write intervals: a surviving writer would have written
        (last,) = maria.sql(f"SELECT MAX(ts) FROM {log}")[0]
        figures.add("kill9_trials")
        figures.add("writes_after_rollback", int(last >= rolled_back_at))
        assert last < rolled_back_at, f"trial {trial}: a write landed after the rollback"
        assert maria.golden(schema, "orders") == before, f"trial {trial}"
    assert open_journal(maria) == []


def test_sighup_stops_the_whole_group_then_rolls_back(maria: Backend) -> None:
    schema, t = protected_table(maria)
    marker = maria.tmp_path / "started"
    etl = etl_script(
        maria, f"run(\"UPDATE {t} SET v = 'etl'\")\nopen({str(marker)!r}, 'w').close()\ntime.sleep(60)"
    )
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [f"{schema}.orders"])
    before = maria.golden(schema, "orders")
    proc = subprocess.Popen(
        [*ETLGUARD, "run", "-c", str(config), "--", "sh", "-c", shlex.join(etl)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_ETL_FAILED, err
    assert "stopped by SIGHUP" in err
    assert maria.golden(schema, "orders") == before


def test_a_rollback_neither_waits_for_nor_stops_etlguards_own_other_session(maria: MariaDBBackend) -> None:
    """A run's side session names the protected tables in its catalog lookups: the rollback's
    search for sessions still on them must pass it over, and never KILL it; any other client's
    statement is still stopped after the grace period."""
    schema, t = protected_table(maria)
    db = adapter_for(maria.guard([f"{schema}.orders"]).config.target, 10)
    db.connect()
    results: dict[str, object] = {}

    def sleeper(key: str, seconds: int) -> int:
        conn = pymysql.connect(host="127.0.0.1", port=maria.port, user="root", autocommit=True)
        session = conn.thread_id()

        def work() -> None:
            with conn.cursor() as cur:
                try:
                    cur.execute(f"SELECT SLEEP({seconds}) FROM {t} LIMIT 1")
                    results[key] = "slept" if cur.fetchone()[0] == 0 else "interrupted"
                except pymysql.err.OperationalError as exc:  # 1317: interrupted by KILL QUERY
                    results[key] = "interrupted" if exc.args[0] == 1317 else str(exc)
            conn.close()

        threading.Thread(target=work, daemon=True).start()
        deadline = time.monotonic() + 10
        while not any(s.id == session for s in db.sessions_on([TableRef(schema, "orders")])):
            assert time.monotonic() < deadline, "the sleeper never showed up in the processlist"
            time.sleep(0.02)
        return session

    try:
        ours = sleeper("ours", 2)
        assert settle_sessions(db, [TableRef(schema, "orders")], 0.2, ours=[ours]) == []
        theirs = sleeper("theirs", 30)
        notes = settle_sessions(db, [TableRef(schema, "orders")], 0.2, ours=[ours])
        assert len(notes) == 1 and f"{theirs}" in notes[0] and "cancelled the statement" in notes[0], notes
        deadline = time.monotonic() + 10
        while len(results) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert results == {"ours": "slept", "theirs": "interrupted"}
    finally:
        db.close()


# -- item 3: --timeout stops the statement, not only the process ----------------------------------


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_timeout_kills_the_runaway_update_before_the_rollback(kind: str, maria: Backend, pg: Backend) -> None:
    b = maria if kind == "mariadb" else pg
    schema, t = protected_table(b)
    sleepy = "SLEEP(1) = 0" if kind == "mariadb" else "pg_sleep(1) IS NOT NULL"
    etl = etl_script(b, sql(f"UPDATE {t} SET v = 'runaway' WHERE {sleepy}"))
    before = b.golden(schema, "orders")
    guard = b.guard([f"{schema}.orders"], statement_grace_seconds=1, lock_wait_seconds=20)
    result = guard.run(etl, timeout=2)
    assert (result.status, result.exit_code) == ("etl_failed", EXIT_ETL_FAILED), result.message
    assert result.etl is not None and result.etl.timed_out
    assert result.stopped_sessions and "UPDATE" in result.stopped_sessions[0]
    assert result.rollback_verified == [f"{schema}.orders"]
    time.sleep(2)  # the statement would have committed by now had it kept running
    assert b.golden(schema, "orders") == before
    assert b.sql(f"SELECT COUNT(*) FROM {t} WHERE v = 'runaway'")[0][0] == 0


# -- item 8: the command printed at exit 20 works as printed --------------------------------------


def test_the_printed_recovery_command_brings_the_tables_back(maria: Backend) -> None:
    schema, t = protected_table(maria)
    config = maria.write_config(
        maria.tmp_path / "nightly.yml", [f"{schema}.orders"], lock_wait_seconds=1, statement_grace_seconds=0
    )
    etl = etl_script(maria, f"run(\"UPDATE {t} SET v = 'broken'\")\nsys.exit(1)")
    before = maria.golden(schema, "orders")
    # a reporting tool's idle transaction holds the table: no statement to see, so not killed
    blocker = pymysql.connect(host=maria.host, port=maria.port, user="root", autocommit=False)  # type: ignore[attr-defined]
    run = subprocess.Popen(
        [*ETLGUARD, "run", "-c", str(config), "--", *etl], stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.1)
    deadline = time.monotonic() + 60
    while maria.sql(f"SELECT COUNT(*) FROM {t} WHERE v = 'broken'")[0][0] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with blocker.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {t}")
    _, err = run.communicate(timeout=120)
    assert run.returncode == EXIT_ROLLBACK_FAILED, err
    printed = err.split("run `", 1)[1].split("`", 1)[0]
    assert printed.startswith("etlguard recover --config ")
    # at 03:00 the blocker is still there: recover says so and records it, nothing relabelled
    again = subprocess.run(printed, shell=True, capture_output=True, text=True, env=_path_env(), timeout=120)
    assert again.returncode == EXIT_ROLLBACK_FAILED, again.stderr
    assert run_state(maria) == "rollback_failed"
    blocker.rollback()
    blocker.close()
    fixed = subprocess.run(printed, shell=True, capture_output=True, text=True, env=_path_env(), timeout=120)
    assert fixed.returncode == EXIT_OK, fixed.stderr
    assert maria.golden(schema, "orders") == before
    assert run_state(maria) == "rolled_back" and open_journal(maria) == []


def _path_env() -> dict[str, str]:
    """PATH with this interpreter's scripts first: `etlguard` is what the operator types."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


# -- item 11: the smaller ones ---------------------------------------------------------------------


def test_a_missing_program_is_refused_before_anything_is_snapshotted(
    duck: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    duck.sql("CREATE TABLE t (id INTEGER)")
    config = duck.write_config(duck.tmp_path / "etlguard.yml", ["main.t"])
    r = cli(capsys, "run", "-c", config, "--", "no-such-etl-binary", "--flag")
    assert r.code == EXIT_USAGE
    assert r.err_lines == [
        "etlguard: error: cannot run 'no-such-etl-binary': no such executable file on PATH; "
        "check the command after --"
    ]
    assert catalog_rows(duck) == []


def test_a_negative_timeout_is_refused(duck: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    duck.sql("CREATE TABLE t (id INTEGER)")
    config = duck.write_config(duck.tmp_path / "etlguard.yml", ["main.t"])
    r = cli(capsys, "run", "-c", config, "--timeout", "-5", "--", "true")
    assert r.code == EXIT_USAGE and "--timeout" in r.err
    assert catalog_rows(duck) == []


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_ctrl_c_during_a_snapshot_stops_it_and_leaves_nothing_behind(
    kind: str, maria: Backend, pg: Backend
) -> None:
    b = maria if kind == "mariadb" else pg
    schema = b.create_schema("big")
    t = b.table(schema, "big")
    b.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v VARCHAR(40))")
    if kind == "mariadb":
        b.sql(f"INSERT INTO {t} SELECT seq, MD5(seq) FROM {b.q(schema)}.seq_1_to_600000")
    else:
        b.sql(f"INSERT INTO {t} SELECT i, md5(i::text) FROM generate_series(1, 600000) AS i")
    config = b.write_config(b.tmp_path / "etlguard.yml", [f"{schema}.big"])
    proc = subprocess.Popen(
        [*ETLGUARD, "run", "-c", str(config), "--", "true"], stderr=subprocess.PIPE, text=True
    )
    copying = f"INSERT INTO {b.q(b.snapshot_schema)}"
    activity = (
        "SELECT INFO FROM information_schema.PROCESSLIST"
        if kind == "mariadb"
        else "SELECT query FROM pg_stat_activity WHERE state = 'active'"
    )
    deadline = time.monotonic() + 60
    while not any(copying in str(r[0] or "") for r in b.sql(activity)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted by SIGINT while snapshotting" in err
    assert tables_in(b, b.snapshot_schema) == []
    assert open_journal(b) == []
    assert subprocess.run([*ETLGUARD, "snapshots", "-c", str(config)], capture_output=True).returncode == 0
    assert run_state(b) == "interrupted"


def test_the_etl_does_not_inherit_etlguard_url_or_the_password_variable(
    duck: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    duck.sql("CREATE SCHEMA w")
    duck.sql("CREATE TABLE w.t (id INTEGER)")
    monkeypatch.setenv("WAREHOUSE_FILE", str(duck.path))  # type: ignore[attr-defined]
    monkeypatch.setenv("UNRELATED", "kept")
    seen = duck.tmp_path / "env.txt"
    settings = duck.settings(protect=["w.t"], target="duckdb:///${WAREHOUSE_FILE}")
    dump = [sys.executable, "-c", f"import os; open({str(seen)!r}, 'w').write(' '.join(sorted(os.environ)))"]
    assert Guard(Config.from_dict(settings)).run(dump).exit_code == EXIT_OK
    names = seen.read_text().split()
    assert "WAREHOUSE_FILE" not in names and "ETLGUARD_URL" not in names and "UNRELATED" in names
    assert Guard(Config.from_dict(settings)).run(dump, pass_env=["WAREHOUSE_FILE"]).exit_code == EXIT_OK
    assert "WAREHOUSE_FILE" in seen.read_text().split()


def test_snapshots_taken_under_a_clock_10_days_behind_are_not_pruned_as_old(
    maria: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    schema, _ = protected_table(maria)
    guard = maria.guard([f"{schema}.orders"], retention={"days": 7, "keep_last": 1})
    behind = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=10)
    with monkeypatch.context() as m:  # this machine's clock runs 10 days behind
        for module in ("catalog", "snapshot", "run", "guard"):
            m.setattr(f"etlguard.{module}.utcnow", lambda: behind, raising=False)
        first, second = guard.snapshot(), guard.snapshot()
    decisions = guard.prune()  # the clock was corrected since
    assert [d.snapshot.id for d in decisions if d.delete] == []
    assert {s.id for s in guard.snapshots()} == {first[0].id, second[0].id}


def test_failed_runs_prune_their_old_snapshots_too(maria: Backend) -> None:
    schema, _ = protected_table(maria)
    guard = maria.guard([f"{schema}.orders"], retention={"days": None, "keep_last": 2})
    for _ in range(4):
        assert guard.run([sys.executable, "-c", "raise SystemExit(1)"]).exit_code == EXIT_ETL_FAILED
    # A rollback swaps its snapshot into place (status `restored`, no table left behind), so
    # what a failed run leaves is its displaced table; retention still runs after each rollback.
    kept = [s for s in guard.snapshots() if s.kind == "snapshot" and s.status == "verified"]
    assert len(kept) <= 2
    listed = [s for s in guard.snapshots() if s.status != "restored"]
    assert len(tables_in(maria, maria.snapshot_schema)) == len(listed)


@pytest.mark.parametrize("user", ["root", "limited"])
def test_a_statement_binlog_server_runs_snapshot_rollback_and_restore(
    user: str, mariadb_template: Path, tmp_path: Path
) -> None:
    server = Server(mariadb_template, tmp_path / "mariadb", ["--log-bin=binlog", "--binlog-format=STATEMENT"])
    server.start()
    b = MariaDBBackend(tmp_path, port=server.port, url=server.url)
    try:
        assert b.sql("SELECT @@binlog_format, @@log_bin") == [("STATEMENT", 1)]
        schema, t = protected_table(b)
        if user == "limited":  # no SUPER, no BINLOG ADMIN: cannot switch the session's format
            b.sql("CREATE USER 'etl'@'%' IDENTIFIED BY 'pw'")
            for s in (schema, b.snapshot_schema, b.catalog_schema):
                b.sql(f"GRANT ALL PRIVILEGES ON {b.q(s)}.* TO 'etl'@'%'")
            b.url = f"mariadb+pymysql://etl:pw@127.0.0.1:{server.port}"
        before = b.golden(schema, "orders")
        guard = b.guard([f"{schema}.orders"])
        failed = guard.run(etl_script(b, sql(f"UPDATE {t} SET v = 'x'") + "sys.exit(3)"))
        assert (failed.status, failed.exit_code) == ("etl_failed", EXIT_ETL_FAILED), failed.message
        assert b.golden(schema, "orders") == before
        assert guard.run(etl_script(b, sql(f"UPDATE {t} SET v = 'y'"))).exit_code == EXIT_OK
        guard.restore([f"{schema}.orders"], latest=True)
        assert b.golden(schema, "orders") == before
    finally:
        b.cleanup()
        server.stop()


def test_system_versioned_tables_sequences_and_views_are_named_for_what_they_are(
    maria: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    s = maria.create_schema("odd")
    maria.sql(f"CREATE TABLE {maria.table(s, 'hist')} (id INT PRIMARY KEY) WITH SYSTEM VERSIONING")
    maria.sql(f"CREATE SEQUENCE {maria.table(s, 'seq')}")
    maria.sql(f"CREATE VIEW {maria.table(s, 'v')} AS SELECT 1 AS x")
    config = maria.tmp_path / "etlguard.yml"
    for name, kind in (("seq", "a sequence"), ("v", "a view")):
        maria.write_config(config, [f"{s}.{name}"])
        r = cli(capsys, "snapshot", "-c", config)
        assert r.code == EXIT_USAGE
        assert r.err_lines == [
            f"etlguard: error: {s}.{name} is {kind}, not a base table etlguard can snapshot; remove it from protect:"
        ]
    maria.write_config(config, [f"{s}.hist"])  # a base table, but one whose history no copy keeps
    r = cli(capsys, "snapshot", "-c", config)
    assert r.code == EXIT_USAGE
    assert r.err_lines == [
        f"etlguard: error: table {s}.hist cannot be snapshotted exactly: it is system-versioned (WITH SYSTEM "
        "VERSIONING): a copy cannot keep its history or row_start/row_end values; protect it by another means "
        "and name the other tables instead of a glob that matches it"
    ]


def test_a_name_mysql_cannot_hold_is_a_usage_error(
    maria: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, _ = protected_table(maria)
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [f"{schema}.orders\U0001f600"])
    r = cli(capsys, "run", "-c", config, "--", "true")
    assert r.code == EXIT_USAGE
    assert len(r.err_lines) == 1 and "outside Unicode's basic plane" in r.err
    assert catalog_rows(maria) == []


def test_a_background_writer_left_by_the_etl_is_stopped_before_the_commit(maria: Backend) -> None:
    schema, t = protected_table(maria)
    log_schema = maria.create_schema("log")
    log = maria.table(log_schema, "writes")
    maria.sql(f"CREATE TABLE {log} (ts DATETIME(6))")
    writer = maria.tmp_path / "writer.py"
    connect = MYSQL_CONNECT.format(host=maria.host, port=maria.port)  # type: ignore[attr-defined]
    writer.write_text(WRITER.format(connect=connect, log=log, t=t), encoding="utf-8")
    leaves_it_running = ["sh", "-c", f"{shlex.quote(sys.executable)} {shlex.quote(str(writer))} &"]
    result = maria.guard([f"{schema}.orders"]).run(leaves_it_running)
    assert result.status == "ok", result.message
    assert result.etl is not None and result.etl.stragglers >= 1
    (count,) = maria.sql(f"SELECT COUNT(*) FROM {log}")[0]
    time.sleep(0.5)
    assert maria.sql(f"SELECT COUNT(*) FROM {log}")[0][0] == count


def test_recover_refuses_a_run_whose_etl_ran_on_another_host_unless_forced(maria: Backend) -> None:
    from faultlib import Rig

    rig = Rig(maria)
    pre = rig.state()
    killed = rig.etlguard("run", "--", *rig.etl_command("slow"), fault="run.during_etl:kill")
    assert killed.returncode == -9
    journal = maria.table(maria.catalog_schema, "journal")
    [(payload,)] = maria.sql(f"SELECT payload FROM {journal} WHERE op = 'run'")
    moved = payload.replace(f'"host": "{os.uname().nodename}"', '"host": "etl-box-2"')
    assert moved != payload
    maria.sql(f"UPDATE {journal} SET payload = %s WHERE op = 'run'", [moved])
    refused = rig.etlguard("recover")
    assert refused.returncode == 4, refused.stderr
    assert "ran on host etl-box-2" in refused.stderr and "etlguard recover --force" in refused.stderr
    assert run_state(maria) == "running" and open_journal(maria)  # nothing acted on
    forced = rig.etlguard("recover", "--force")
    assert forced.returncode == EXIT_OK, forced.stderr
    assert rig.state() == pre and run_state(maria) == "rolled_back" and open_journal(maria) == []


def test_protect_raises_lock_lost_when_its_session_is_killed(maria: Backend) -> None:
    from etlguard import LockLost

    schema, t = protected_table(maria)
    guard = maria.guard([f"{schema}.orders"])
    with pytest.raises(LockLost, match="lock was lost"), guard.protect():
        (holder,) = maria.sql("SELECT IS_USED_LOCK(%s)", [f"etlguard:{maria.catalog_schema}"])[0]
        maria.sql(f"KILL {int(holder)}")
        maria.sql(f"UPDATE {t} SET v = 'python etl'")
    assert maria.sql(f"SELECT COUNT(*) FROM {t} WHERE v = 'python etl'")[0][0] == 30
    assert run_state(maria) == "lock_lost"

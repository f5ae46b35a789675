"""`snapshot.kept_by_etl`: an ETL script (not dbt) that rebuilds a table whole and swaps it in
keeps the old table under the name etlguard gives in ETLGUARD_ZERO_COPY, so the table is not
copied before the run. The content is always checked with the test's own checksum (golden)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from etlguard.adapters import adapter_for
from etlguard.adapters.base import COPY_CHECK
from etlguard.errors import (
    EXIT_ETL_FAILED,
    EXIT_ROLLBACK_FAILED,
    ChecksumMismatch,
    ConfigError,
    RollbackFailed,
)
from etlguard.tables import TableRef
from etlguard.target import parse_target

from conftest import MYSQL_HOST, Backend, MariaDBBackend
from servers import Server, make_server

# The ETL: rebuild `table` into `table__new` (old rows + one), then swap it in keeping the old
# table where ETLGUARD_ZERO_COPY says, or dropping it when the table is not named there.
SCRIPT = r"""
import json, os, sys
kind, where, schema, table, fail, seen = sys.argv[1:7]
plan = json.loads(os.environ.get("ETLGUARD_ZERO_COPY", "{}"))
open(seen, "w").write(json.dumps(plan))
kept = plan.get(f"{schema}.{table}")
if kind == "mariadb":
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=int(where), user="root", autocommit=True)
    q = lambda *n: ".".join("`" + x.replace("`", "``") + "`" for x in n)
    cur = conn.cursor()
    run = cur.execute
    run(f"CREATE TABLE {q(schema, table + '__new')} LIKE {q(schema, table)}")
    run(f"INSERT INTO {q(schema, table + '__new')} SELECT * FROM {q(schema, table)}")
    run(f"INSERT INTO {q(schema, table + '__new')} (id, v) VALUES (1000, 'tonight')")
    other = pymysql.connect(host="127.0.0.1", port=int(where), user="root", autocommit=True).cursor()
    if fail == "other-writes-live":  # another client, after etlguard's check, before the swap
        other.execute(f"UPDATE {q(schema, table)} SET v = 'theirs' WHERE id = 1")
    if kept:
        run(f"RENAME TABLE {q(schema, table)} TO {q(*kept)}, {q(schema, table + '__new')} TO {q(schema, table)}")
        if fail == "other-writes-kept":  # another client, in the kept table after the swap
            other.execute(f"UPDATE {q(*kept)} SET v = 'theirs' WHERE id = 1")
    else:
        run(f"RENAME TABLE {q(schema, table)} TO {q(schema, table + '__old')}, "
            f"{q(schema, table + '__new')} TO {q(schema, table)}")
        run(f"DROP TABLE {q(schema, table + '__old')}")
else:
    import duckdb
    conn = duckdb.connect(where)
    q = lambda *n: ".".join('"' + x.replace('"', '""') + '"' for x in n)
    run = conn.execute
    run(f"CREATE TABLE {q(schema, table + '__new')} AS SELECT * FROM {q(schema, table)}")
    run(f"INSERT INTO {q(schema, table + '__new')} VALUES (1000, 'tonight')")
    run("BEGIN")
    if kept:
        run(f"ALTER TABLE {q(schema, table)} RENAME TO {q(kept[1])}")
    else:
        run(f"DROP TABLE {q(schema, table)}")
    run(f"ALTER TABLE {q(schema, table + '__new')} RENAME TO {q(table)}")
    run("COMMIT")
    conn.close()
sys.exit(0 if fail == "ok" else 1)
"""


@pytest.fixture(params=["duckdb", "mariadb"])
def db(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.getfixturevalue({"duckdb": "duck", "mariadb": "maria"}[request.param])
    return _tables(b)


def _tables(b: Backend) -> Backend:
    schema = b.schema("gold")
    pk = "PRIMARY KEY" if b.kind == "mariadb" else ""
    if b.kind == "duckdb":
        b.sql(f"CREATE SCHEMA {b.q(schema)}")
    else:
        b.sql(f"CREATE DATABASE {b.q(schema)}")
    b.sql(f"CREATE TABLE {b.table(schema, 'summary')} (id INTEGER {pk}, v VARCHAR(40))")
    b.sql(f"INSERT INTO {b.table(schema, 'summary')} VALUES (1, 'one'), (2, NULL), (3, 'three')")
    b.sql(f"CREATE TABLE {b.table(schema, 'other')} (id INTEGER {pk}, v VARCHAR(40))")
    b.sql(f"INSERT INTO {b.table(schema, 'other')} VALUES (1, 'kept as is')")
    return b


def _run(b: Backend, tmp_path: Path, fail: bool | str, **settings: Any) -> tuple[Any, dict[str, Any]]:
    script = tmp_path / "rebuild.py"
    script.write_text(SCRIPT, encoding="utf-8")
    seen = tmp_path / "seen.json"
    schema = b.schema("gold")
    where = str(getattr(b, "port", None) or getattr(b, "path", ""))
    guard = b.guard(
        [f"{schema}.summary", f"{schema}.other"],
        snapshot={"kept_by_etl": [f"{schema}.summary"]},
        **settings,
    )
    mode = fail if isinstance(fail, str) else ("fail" if fail else "ok")
    cmd = [sys.executable, str(script), b.kind, where, schema, "summary", mode, str(seen)]
    result = guard.run(cmd)
    return result, json.loads(seen.read_text(encoding="utf-8"))


def test_a_good_night_keeps_the_old_table_as_its_snapshot(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    before = db.golden(schema, "summary")
    result, seen = _run(db, tmp_path, fail=False)
    assert result.ok, result.message
    assert list(seen) == [f"{schema}.summary"], "only the listed table is handed to the ETL"
    assert result.zero_copy["kept"] == [f"{schema}.summary"]
    assert db.golden(schema, "summary")[0] == before[0] + 1  # the ETL's table is live
    snap = next(s for s in db.guard().snapshots(f"{schema}.summary") if s.id in result.snapshot_ids)
    assert snap.verified and snap.note is None
    assert [snap.snapshot.schema, snap.snapshot.name] == seen[f"{schema}.summary"]
    assert db.golden(snap.snapshot.schema, snap.snapshot.name) == before, "the kept table is the old one"
    copied = [s for s in db.guard().snapshots(f"{schema}.other") if s.id in result.snapshot_ids]
    assert len(copied) == 1, "a table not listed is snapshotted as usual"


def test_a_failed_night_swaps_the_kept_table_back(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    before = {t: db.golden(schema, t) for t in ("summary", "other")}
    result, seen = _run(db, tmp_path, fail=True)
    assert result.exit_code == EXIT_ETL_FAILED and result.rolled_back, result.message
    assert f"{schema}.summary" in seen
    assert result.rollback_verified
    assert {t: db.golden(schema, t) for t in ("summary", "other")} == before


def test_a_listed_table_must_be_protected(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    guard = db.guard([f"{schema}.other"], snapshot={"kept_by_etl": [f"{schema}.summary"]})
    with pytest.raises(ConfigError, match="does not protect"):
        guard.run([sys.executable, "-c", "raise SystemExit(0)"])
    assert db.guard().snapshots(f"{schema}.other") == []


def test_a_listed_table_the_etl_left_alone_needs_nothing_undone(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    before = db.golden(schema, "summary")
    guard = db.guard(
        [f"{schema}.summary", f"{schema}.other"], snapshot={"kept_by_etl": [f"{schema}.summary"]}
    )
    result = guard.run([sys.executable, "-c", "raise SystemExit(1)"])
    assert result.exit_code == EXIT_ETL_FAILED and result.rollback_verified, result.message
    assert result.zero_copy["untouched"] == [f"{schema}.summary"]
    assert result.zero_copy["kept"] == [], "nothing was kept, so nothing is swapped in"
    assert not [s for s in db.guard().snapshots(f"{schema}.summary") if s.id in result.snapshot_ids]
    assert db.golden(schema, "summary") == before


# -- MariaDB: a kept table proven by its seal, never read after the ETL ----------------------------
# A server of the test's own with the general log on: every statement any session sent is there,
# so "etlguard did not read the kept table" is a fact of the log, not of etlguard's own report.


@pytest.fixture
def logged(mariadb_template: Path, tmp_path: Path) -> Iterator[tuple[Server, MariaDBBackend]]:
    server = make_server(mariadb_template, tmp_path / "mariadb", _general_log(tmp_path / "mariadb"))
    try:
        b = MariaDBBackend(tmp_path, port=server.port, url=server.url)
        _tables(b)
        while int(b.sql("SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]) < 4:  # younger: no seals
            time.sleep(0.2)
        _next_second(b)  # a table written in the second its seal is read gets none
        yield server, b
        b.conn.close()
    finally:
        server.stop()


def _general_log(root: Path) -> list[str]:
    return ["--general-log=1", f"--general-log-file={root / 'general.log'}"]


def _next_second(b: Backend) -> None:
    [(start,)] = b.sql("SELECT UNIX_TIMESTAMP(NOW())")
    while b.sql("SELECT UNIX_TIMESTAMP(NOW())")[0][0] == start:
        time.sleep(0.05)


def _reads(log: str, schema: str, name: str) -> list[str]:
    """The logged statements that read the table's rows (a count, a checksum, a fingerprint,
    a copy): any that names it after FROM or CHECKSUM TABLE."""
    ref = f"`{schema}`.`{name}`"
    return [line for line in log.splitlines() if f"FROM {ref}" in line or f"CHECKSUM TABLE {ref}" in line]


def _catalog(b: Backend, sid: int) -> dict[str, Any]:
    columns = ("status", "fingerprint", "seal", "row_count", "checksum")
    t = b.table(b.catalog_schema, "snapshots")
    [row] = b.sql(f"SELECT {', '.join(columns)} FROM {t} WHERE id = %s", [sid])
    return dict(zip(columns, row, strict=True))


def _kept_id(b: Backend, schema: str, kept: list[str]) -> int:
    t = b.table(b.catalog_schema, "snapshots")
    [(sid,)] = b.sql(
        f"SELECT id FROM {t} WHERE table_schema = %s AND snapshot_schema = %s AND snapshot_table = %s",
        [schema, *kept],
    )
    return int(sid)


def test_a_failed_night_puts_the_kept_table_back_without_reading_it(
    logged: tuple[Server, MariaDBBackend], tmp_path: Path
) -> None:
    server, b = logged
    schema = b.schema("gold")
    before = {t: b.golden(schema, t) for t in ("summary", "other")}
    result, seen = _run(b, tmp_path, fail=True)
    log = (server.root / "general.log").read_text(errors="replace")
    assert result.exit_code == EXIT_ETL_FAILED and result.rollback_verified, result.message
    assert result.zero_copy["proven_by_seal"] == [f"{schema}.summary"]
    kept = seen[f"{schema}.summary"]
    # read once, before the ETL, under its live name; never under the name the ETL kept it as
    assert _reads(log, *kept) == []
    renamed_back = max(
        i for i, line in enumerate(log.splitlines()) if "RENAME TABLE" in line and kept[1] in line
    )
    after_swap = "\n".join(log.splitlines()[renamed_back + 1 :])
    assert _reads(after_swap, schema, "summary") == [], "the table put back is not read either"
    assert {t: b.golden(schema, t) for t in ("summary", "other")} == before
    # the record is the check taken before the run, sealed under the kept name; the kept
    # table is consumed (it is live again)
    row = _catalog(b, _kept_id(b, schema, kept))
    assert row["status"] == "restored" and row["fingerprint"] == COPY_CHECK and row["seal"]


def test_a_good_night_keeps_the_sealed_check_as_the_record_and_it_verifies(
    logged: tuple[Server, MariaDBBackend], tmp_path: Path
) -> None:
    """The kept snapshot's record (count and CHECKSUM TABLE, with a seal under its kept name)
    serves every later use: verify, a restore proven by seal, and a refusal once changed."""
    _, b = logged
    schema = b.schema("gold")
    before = b.golden(schema, "summary")
    result, seen = _run(b, tmp_path, fail=False)
    assert result.ok and result.zero_copy["proven_by_seal"] == [f"{schema}.summary"], result.message
    sid = _kept_id(b, schema, seen[f"{schema}.summary"])
    row = _catalog(b, sid)
    assert row["status"] == "verified" and row["fingerprint"] == COPY_CHECK and row["seal"]
    assert row["row_count"] == before[0]
    guard = b.guard([f"{schema}.summary", f"{schema}.other"])
    assert [v.ok for v in guard.verify([f"{schema}.summary"]) if v.snapshot.id == sid] == [True]
    restored = guard.restore(snapshot_ids=[sid])
    assert [s.proof for s in restored.steps] == ["seal"] and restored.verified == [f"{schema}.summary"]
    assert b.golden(schema, "summary") == before
    # another night keeps it again; changed behind etlguard's back, its seal breaks and the
    # record (CHECKSUM TABLE) refuses it: verify says so, a restore leaves the live table alone
    result, seen = _run(b, tmp_path, fail=False)
    sid = _kept_id(b, schema, seen[f"{schema}.summary"])
    b.sql(f"UPDATE {b.table(*seen[f'{schema}.summary'])} SET v = 'forged' WHERE id = 1")
    assert [v.ok for v in guard.verify([f"{schema}.summary"]) if v.snapshot.id == sid] == [False]
    live = b.golden(schema, "summary")
    with pytest.raises(ChecksumMismatch):
        guard.restore(snapshot_ids=[sid])
    assert b.golden(schema, "summary") == live


@pytest.mark.parametrize("mode", ["other-writes-live", "other-writes-kept"])
def test_a_kept_table_another_client_wrote_breaks_its_seal_and_is_caught(
    logged: tuple[Server, MariaDBBackend], tmp_path: Path, mode: str
) -> None:
    """Written before the swap (under its live name) or after it (in the snapshot schema): the
    seal no longer holds, the table is read in full, and it is not used as the snapshot."""
    _, b = logged
    schema = b.schema("gold")
    other_before = b.golden(schema, "other")
    result, seen = _run(b, tmp_path, fail=mode)
    assert result.exit_code == EXIT_ROLLBACK_FAILED, result.message
    assert f"{schema}.summary: the table dbt replaced" in result.message
    assert result.zero_copy["proven_by_seal"] == []
    row = _catalog(b, _kept_id(b, schema, seen[f"{schema}.summary"]))
    assert row["status"] == "damaged" and row["seal"], "it had a seal, and the seal did not vouch"
    assert b.golden(schema, "other") == other_before, "the other table is rolled back"
    assert b.golden(schema, "summary")[0] == 4, "the ETL's table stays live: nothing holds the old one"


def _killed_after_the_etl(b: MariaDBBackend, tmp_path: Path) -> list[str]:
    """A failing night whose etlguard is SIGKILLed once the ETL has swapped: the kept name."""
    schema = b.schema("gold")
    config = b.write_config(
        tmp_path / "etlguard.yml",
        [f"{schema}.summary", f"{schema}.other"],
        snapshot={"kept_by_etl": [f"{schema}.summary"]},
    )
    script, seen = tmp_path / "rebuild.py", tmp_path / "seen.json"
    script.write_text(SCRIPT, encoding="utf-8")
    etl = [sys.executable, str(script), b.kind, str(b.port), schema, "summary", "fail", str(seen)]
    env = {**os.environ, "ETLGUARD_FAULT": "run.after_etl:kill"}
    cmd = [sys.executable, "-m", "etlguard", "run", "-c", str(config), "--", *etl]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    kept: list[str] = json.loads(seen.read_text(encoding="utf-8"))[f"{schema}.summary"]
    return kept


def _restart(server: Server, b: MariaDBBackend) -> int:
    """Restart the server; return where its general log stood (what comes after is new)."""
    b.conn.close()
    server.restart()
    b.conn = b._connect()
    while int(b.sql("SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]) < 4:
        time.sleep(0.2)
    return len((server.root / "general.log").read_text(errors="replace"))


def test_after_a_restart_the_kept_table_is_checked_in_full(
    logged: tuple[Server, MariaDBBackend], tmp_path: Path
) -> None:
    """etlguard dies after the ETL, the server restarts, `recover` settles the run: the seal
    names the old boot, so the kept table is read in full (CHECKSUM TABLE) and proven by it,
    and the rollback puts it back."""
    server, b = logged
    schema = b.schema("gold")
    before = {t: b.golden(schema, t) for t in ("summary", "other")}
    kept = _killed_after_the_etl(b, tmp_path)
    sid = _kept_id(b, schema, kept)
    sealed_before = _catalog(b, sid)["seal"]
    assert sealed_before, "sealed before the run"
    restarted = _restart(server, b)
    report = b.guard([f"{schema}.summary", f"{schema}.other"]).recover()
    log = (server.root / "general.log").read_text(errors="replace")[restarted:]
    assert _reads(log, *kept), "after the restart the kept table is read in full"
    assert {t: b.golden(schema, t) for t in ("summary", "other")} == before, report
    row = _catalog(b, sid)
    assert row["status"] == "restored" and row["fingerprint"] == COPY_CHECK
    # the seal of the live table is not kept; a new one needs an UPDATE_TIME, which a table
    # has after a restart only once it is written again
    assert row["seal"] is None


def test_a_kept_table_changed_before_a_restart_is_caught(
    logged: tuple[Server, MariaDBBackend], tmp_path: Path
) -> None:
    """UPDATE_TIME is not kept across a restart, so a change made before it would look
    unwritten to a seal that ignored the boot. The full check after the restart catches it."""
    server, b = logged
    schema = b.schema("gold")
    kept = _killed_after_the_etl(b, tmp_path)
    b.sql(f"UPDATE {b.table(*kept)} SET v = 'forged' WHERE id = 1")
    _restart(server, b)
    with pytest.raises(RollbackFailed, match="summary: the table dbt replaced"):
        b.guard([f"{schema}.summary", f"{schema}.other"]).recover()
    assert _catalog(b, _kept_id(b, schema, kept))["status"] == "damaged"
    assert b.golden(schema, "summary")[0] == 4, "the ETL's table stays live"


def test_a_table_written_while_it_is_checked_gets_no_seal(maria: Backend) -> None:
    """The live table is not locked for the check before the run. Another client holds it
    write-locked, commits a change once the seal facts are first read, waits into the next
    second and lets go: the check reads the changed table, and by the second read of the facts
    its UPDATE_TIME is no longer in the current second, so only the change between the two
    reads shows that the checksum is not of the state first read. No seal. A quiet table beside
    it is sealed, so the check can tell the two apart."""
    schema = maria.create_schema("gold")
    for name in ("busy", "quiet"):
        t = maria.table(schema, name)
        maria.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER)")
        maria.sql(f"INSERT INTO {t} SELECT seq, seq FROM {maria.q(schema)}.seq_1_to_1000")
    _next_second(maria)
    other = pymysql.connect(host=MYSQL_HOST, port=maria.port, user="root", autocommit=True)  # type: ignore[attr-defined]
    cur = other.cursor()
    cur.execute(f"LOCK TABLES {maria.table(schema, 'busy')} WRITE")

    def change_then_let_go() -> None:
        time.sleep(0.3)
        cur.execute(f"UPDATE {maria.table(schema, 'busy')} SET v = -1 WHERE id = 7")
        cur.execute("SELECT UNIX_TIMESTAMP(NOW())")
        (start,) = cur.fetchone()
        while cur.execute("SELECT UNIX_TIMESTAMP(NOW())") and cur.fetchone()[0] == start:
            time.sleep(0.05)
        cur.execute("UNLOCK TABLES")

    writer = threading.Thread(target=change_then_let_go)
    db = adapter_for(parse_target(maria.url))
    try:
        db.connect()
        writer.start()
        checks = db.sealed_copy_checks([TableRef(schema, "busy"), TableRef(schema, "quiet")])
    finally:
        writer.join()
        other.close()
        db.close()
    assert [seal is not None for _, seal in checks] == [False, True]
    assert checks[0][0].rows == 1000  # the check waited for the lock and read the changed table

"""Physical snapshots (`snapshot.physical`, MariaDB on this host): a table copied by its
tablespace file is byte-exact (CHECKSUM TABLE, every row, SHOW CREATE TABLE, AUTO_INCREMENT)
and restorable; a guarded run rolls back exactly; a table the server cannot move by file is
copied by rows and the run says why; bad setups are one-line errors; a kill while the sources
are FLUSHed FOR EXPORT leaves nothing `recover` cannot remove, and a failure there releases the
lock (fail closed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from etlguard import Guard
from etlguard.config import Config
from etlguard.errors import ConfigError
from etlguard.faults import FaultInjected
from etlguard.tables import TableRef
from test_capture import etl, make_table, state

from conftest import BACKENDS, Backend, _one

pytestmark = pytest.mark.skipif("mariadb" not in BACKENDS, reason="physical snapshots are MySQL/MariaDB only")

KILL_POINTS = ["copy.after_export"]


@pytest.fixture
def maria(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("mariadb", tmp_path)


@pytest.fixture
def datadir(maria: Backend) -> str:
    (found,) = maria.sql("SELECT @@datadir")[0]
    if not os.access(found, os.R_OK | os.W_OK | os.X_OK):
        pytest.skip(f"the server's data directory {found} is not readable and writable here")
    return str(found)


def physical(b: Backend, datadir: str, tables: list[str], **snapshot: Any) -> Guard:
    return b.guard(
        tables,
        snapshot={"physical": {"datadir": datadir}, **snapshot},
        retention={"keep_last": 10, "days": None},
    )


def exact(b: Backend, schema: str, name: str) -> tuple[Any, ...]:
    """CHECKSUM TABLE, the golden checksum, and SHOW CREATE TABLE in full (its AUTO_INCREMENT
    too) but for the table's name."""
    ddl = b.show_create(schema, name)  # type: ignore[attr-defined]
    return (*state(b, schema, name)[:2], ddl.split("\n", 1)[1])


def snapshot_files(b: Backend, datadir: str) -> list[str]:
    folder = Path(datadir) / b.snapshot_schema
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def snapshot_tables(b: Backend) -> set[str]:
    rows = b.sql(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", [b.snapshot_schema]
    )
    return {r[0] for r in rows}


@pytest.mark.parametrize("consistency", ["set", "table"])
def test_a_physical_snapshot_is_byte_exact_and_restorable(
    maria: Backend, datadir: str, consistency: str
) -> None:
    gold, t = make_table(maria, rows=300)
    maria.sql(f"DELETE FROM {t} WHERE id > 290")
    maria.sql(f"ALTER TABLE {t} AUTO_INCREMENT = 5000")  # a counter no row explains
    before = exact(maria, gold, "history")
    g = physical(maria, datadir, [f"{gold}.history"], consistency=consistency)
    (snap,) = g.snapshot()
    assert snap.verified and snap.row_count == 290 and snap.auto_increment == 5000
    assert exact(maria, snap.snapshot.schema, snap.snapshot.name) == before
    assert maria.golden(snap.snapshot.schema, snap.snapshot.name) == maria.golden(gold, "history")
    assert not [f for f in snapshot_files(maria, datadir) if f.endswith(".cfg")], "no .cfg is left behind"
    maria.sql(f"UPDATE {t} SET name = 'changed' WHERE id < 100")
    maria.sql(f"DELETE FROM {t} WHERE id > 280")  # the counter stays: a restore could raise it
    result = g.restore([f"{gold}.history"], latest=True)
    assert result.verified == [f"{gold}.history"] and not result.unverified, result
    assert exact(maria, gold, "history") == before
    maria.sql(f"INSERT INTO {t} (name) VALUES ('after')")
    assert maria.sql(f"SELECT MAX(id) FROM {t}")[0][0] == 5000, "the counter came back with the rows"


def test_a_guarded_run_with_physical_copies_rolls_back_exactly(maria: Backend, datadir: str) -> None:
    gold, t = make_table(maria, rows=120)
    other = maria.table(gold, "lines")
    maria.sql(f"CREATE TABLE {other} (id BIGINT PRIMARY KEY, n INT NOT NULL, KEY (n)) ENGINE=InnoDB")
    maria.sql(f"INSERT INTO {other} SELECT id, id * 3 FROM {t}")
    before = {name: exact(maria, gold, name) for name in ("history", "lines")}
    g = physical(maria, datadir, [f"{gold}.history", f"{gold}.lines"])
    result = g.run(etl(maria, [f"DELETE FROM {t} WHERE id < 50", f"UPDATE {other} SET n = 0"], exit=1))
    assert result.status == "etl_failed", result.message
    assert sorted(result.physical) == [f"{gold}.history", f"{gold}.lines"]
    assert result.physical_fallback == {}
    assert {name: exact(maria, gold, name) for name in ("history", "lines")} == before


def test_an_unsupported_table_is_copied_by_rows_and_the_run_says_why(maria: Backend, datadir: str) -> None:
    gold, t = make_table(maria, rows=40)
    text, plain = maria.table(gold, "texts"), maria.table(gold, "plain")
    maria.sql(f"CREATE TABLE {text} (id INT PRIMARY KEY, body TEXT, FULLTEXT (body)) ENGINE=InnoDB")
    maria.sql(f"INSERT INTO {text} VALUES (1, 'hello world'), (2, 'night run')")
    maria.sql(f"CREATE TABLE {plain} (id INT PRIMARY KEY, v INT) ENGINE=Aria")
    maria.sql(f"INSERT INTO {plain} VALUES (1, 1), (2, 2)")
    names = ("history", "texts", "plain")
    before = {n: exact(maria, gold, n) for n in names}
    g = physical(maria, datadir, [f"{gold}.{n}" for n in names])
    statements = [f"DELETE FROM {t}", f"DELETE FROM {text}", f"UPDATE {plain} SET v = 9"]
    result = g.run(etl(maria, statements, exit=1))
    assert result.status == "etl_failed", result.message
    assert result.physical == [f"{gold}.history"]
    assert set(result.physical_fallback) == {f"{gold}.texts", f"{gold}.plain"}
    assert "FULLTEXT" in result.physical_fallback[f"{gold}.texts"]
    assert "not an InnoDB table (Aria)" in result.physical_fallback[f"{gold}.plain"]
    assert {n: exact(maria, gold, n) for n in names} == before


def test_names_the_server_encodes_in_file_names(maria: Backend, datadir: str) -> None:
    """ASCII punctuation is spelled @00xx in file names and copied by file; a non-ASCII name,
    whose file name etlguard does not derive, is copied by rows."""
    gold = maria.create_schema("odd-schema")
    names = ("with-dash $x", "naïve")
    for n in names:
        maria.sql(f"CREATE TABLE {maria.table(gold, n)} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        maria.sql(f"INSERT INTO {maria.table(gold, n)} (v) VALUES (1), (2), (3)")
    before = {n: exact(maria, gold, n) for n in names}
    g = physical(maria, datadir, [f"{gold}.{n}" for n in names])
    result = g.run(etl(maria, [f"DELETE FROM {maria.table(gold, n)}" for n in names], exit=1))
    assert result.status == "etl_failed", result.message
    assert result.physical == [str(TableRef(gold, "with-dash $x"))]
    assert "not found" in result.physical_fallback[str(TableRef(gold, "naïve"))]
    assert {n: exact(maria, gold, n) for n in names} == before


def _config(b: Backend, tables: list[str], physical: Any) -> Config:
    return Config.from_dict(b.settings(protect=tables, snapshot={"physical": physical}))


def test_bad_setups_are_one_line_errors_and_touch_nothing(
    maria: Backend, datadir: str, tmp_path: Path
) -> None:
    gold, _ = make_table(maria, rows=5)
    tables = [f"{gold}.history"]
    with pytest.raises(ConfigError, match=r"^config key 'snapshot.physical.datadir' is missing$"):
        _config(maria, tables, {})
    cases = {
        str(tmp_path / "nowhere"): "is not a directory here; set it to the server's data directory",
        str(tmp_path): "is not the server's data directory",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError, match=message) as info:
            Guard(_config(maria, tables, {"datadir": path})).snapshot()
        assert "\n" not in str(info.value)
    assert snapshot_tables(maria) == set()
    with pytest.raises(ConfigError, match="is not the server's data directory"):
        Guard(_config(maria, tables, {"datadir": str(tmp_path)})).run(["true"])
    assert snapshot_tables(maria) == set()


def test_physical_is_refused_on_other_databases(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    import duckdb

    duckdb.connect(str(tmp_path / "w.duckdb")).execute("CREATE TABLE t (id INT)").close()
    g = Guard(
        Config.from_dict({"target": url, "protect": ["main.t"], "snapshot": {"physical": {"datadir": "/x"}}})
    )
    with pytest.raises(
        ConfigError, match=r"^snapshot\.physical is for MySQL/MariaDB targets, not duckdb; remove it$"
    ):
        g.snapshot()


def _writer_waits(b: Backend, table: str) -> float:
    """Seconds an INSERT on a connection of its own waits (lock_wait_timeout 5)."""
    conn = pymysql.connect(host=b.host, port=b.port, user="root", autocommit=True)  # type: ignore[attr-defined]
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 5")
            began = time.monotonic()
            cur.execute(f"INSERT INTO {table} (name) VALUES ('writer')")
            return time.monotonic() - began
    finally:
        conn.close()


def test_a_failure_under_the_export_lock_releases_it_and_keeps_nothing(
    maria: Backend, datadir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gold, t = make_table(maria, rows=30)
    g = physical(maria, datadir, [f"{gold}.history"])
    monkeypatch.setenv("ETLGUARD_FAULT", "copy.after_export:raise")
    with pytest.raises(FaultInjected):
        g.snapshot()
    monkeypatch.delenv("ETLGUARD_FAULT")
    assert _writer_waits(maria, t) < 5, "the FOR EXPORT lock was released"
    assert snapshot_tables(maria) == set() and snapshot_files(maria, datadir) == ["db.opt"]
    statuses = maria.sql(f"SELECT status FROM {maria.table(maria.catalog_schema, 'snapshots')}")
    assert [s for (s,) in statuses] == ["failed"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_under_the_export_lock_then_recover(
    maria: Backend, datadir: str, tmp_path: Path, point: str
) -> None:
    gold, t = make_table(maria, rows=30)
    config = maria.write_config(
        tmp_path / "etlguard.yml",
        [f"{gold}.history"],
        snapshot={"physical": {"datadir": datadir}},
        retention={"keep_last": 10, "days": None},
    )
    before = exact(maria, gold, "history")
    cli, env = [sys.executable, "-m", "etlguard"], {"PATH": "/usr/bin:/bin"}

    def etlguard(*args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
        extra = {"ETLGUARD_FAULT": fault} if fault else {}
        return subprocess.run(
            [*cli, *args], env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    killed = etlguard(
        "run", "--config", str(config), "--", *etl(maria, [f"DELETE FROM {t}"]), fault=f"{point}:kill"
    )
    assert killed.returncode == -9, f"{point} not reached: {killed.returncode} {killed.stderr[-2000:]}"
    assert exact(maria, gold, "history") == before, "the ETL never started"
    assert len(snapshot_tables(maria)) == 1, "the discarded-tablespace copy is there for recover"
    recovered = etlguard("recover", "--config", str(config))
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert snapshot_tables(maria) == set(), "recover dropped the half-made copy"
    assert snapshot_files(maria, datadir) == ["db.opt"], "and the files copied for it"
    assert _writer_waits(maria, t) < 5
    maria.sql(f"DELETE FROM {t} WHERE name = 'writer'")
    before = exact(maria, gold, "history")
    failed = etlguard("run", "--config", str(config), "--", *etl(maria, [f"DELETE FROM {t}"], exit=1))
    assert failed.returncode == 10, failed.stderr[-2000:]
    assert "by its tablespace file" in failed.stderr + failed.stdout
    assert exact(maria, gold, "history") == before

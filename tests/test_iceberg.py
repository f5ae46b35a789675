"""The Iceberg adapter on a SQL catalog (SQLite): snapshots are tags, a rollback moves every
table's pointer back in one transaction, and the data AND the schema come back exactly, checked by
a fingerprint computed here from the rows and the columns."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyiceberg")

from etlguard import Config, Guard
from etlguard.errors import EtlguardError
from etlguard.faults import POINTS
from etlguard.tables import TableRef
from icebergdata import golden, make_table, open_catalog, sql_catalog

from conftest import PG_HOST, PG_PORT

TESTS = Path(__file__).parent

# The failed run: appends to a, overwrites b, deletes from c and adds a column to c, then fails.
FAILED_ETL = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from icebergdata import open_catalog
from pyiceberg.types import StringType
cat = open_catalog({spec!r})
a = cat.load_table(({ns!r}, {a!r})); a.append(a.scan().to_arrow().slice(0, 5))
b = cat.load_table(({ns!r}, {b!r})); b.overwrite(b.scan().to_arrow().slice(10, 3))
c = cat.load_table(({ns!r}, {c!r})); c.delete("id < 50")
with c.update_schema() as u:
    u.add_column("extra", StringType())
sys.exit(3)
"""


CATALOGS = ["sqlite", "postgresql", "glue"]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A local moto server for Glue and S3, shared by the tests (reset for each)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def glue_lake(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Glue + S3 on moto; etlguard's catalog in a local SQLite file, as documented."""
    import urllib.request

    import boto3

    monkeypatch = request.getfixturevalue("monkeypatch")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    endpoint = request.getfixturevalue("moto_endpoint")
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake")
    spec = {"kind": "glue", "endpoint": endpoint, "warehouse": "s3://lake/wh"}
    url = (
        f"iceberg+glue:///{tmp_path}/etlguard.db?region=us-east-1&glue.endpoint={endpoint}"
        f"&s3.endpoint={endpoint}"
    )
    return {"dir": tmp_path, "spec": spec, "catalog": open_catalog(spec), "url": url}


@pytest.fixture
def sqlite_lake(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "catalog.db"
    spec = {"kind": "sqlite", "db": str(db)}
    return {
        "db": db,
        "dir": tmp_path,
        "spec": spec,
        "catalog": sql_catalog(db),
        "url": f"iceberg+sql:///{db}",
    }


@pytest.fixture(params=CATALOGS)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The same lake on each catalog: SQLite, PostgreSQL (a database of its own, dropped after)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_lake")
        return
    if request.param == "glue":
        yield glue_lake(request, tmp_path)
        return
    import psycopg

    name = f"etlguard_ice_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    spec = {
        "kind": "postgresql",
        "uri": f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}",
        "warehouse": warehouse.as_uri(),
    }
    catalog = open_catalog(spec)
    url = f"iceberg+postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}?warehouse={warehouse.as_uri()}"
    try:
        yield {"dir": tmp_path, "spec": spec, "catalog": catalog, "url": url}
    finally:
        catalog.engine.dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def guard(lake: dict[str, Any], protect: list[str], **extra: Any) -> Guard:
    return Guard(Config.from_dict({"target": lake["url"], "protect": protect, **extra}))


def failed_etl(lake: dict[str, Any], ns: str, names: tuple[str, str, str]) -> list[str]:
    a, b, c = names
    code = FAILED_ETL.format(tests=str(TESTS), spec=lake["spec"], ns=ns, a=a, b=b, c=c)
    return [sys.executable, "-c", code]


@pytest.mark.parametrize(
    "ns, names",
    [
        ("gold", ("orders", "customers", "events")),
        ("we'ird; ns--", ('ta"ble', "spaced name", "ünïcödé_таблица")),
    ],
    ids=["plain", "hostile"],
)
def test_failed_run_is_rolled_back_to_exact_data_and_schema(
    lake: dict[str, Any], ns: str, names: Any
) -> None:
    cat = lake["catalog"]
    for name in names:
        make_table(cat, ns, name, 200)
    make_table(cat, ns, "canary", 10)
    before = {n: golden(cat, ns, n) for n in (*names, "canary")}
    protected = [str(TableRef(ns, n)) for n in names]
    result = guard(lake, protected).run(failed_etl(lake, ns, names))
    assert result.exit_code == 10, result.message
    assert sorted(result.rollback_verified) == sorted(protected)
    assert {n: golden(cat, ns, n) for n in (*names, "canary")} == before
    assert "extra" not in [f.name for f in cat.load_table((ns, names[2])).schema().fields]


def test_the_failed_run_really_changed_every_table(sqlite_lake: dict[str, Any]) -> None:
    lake = sqlite_lake
    """The control: without etlguard, the same ETL leaves all three tables changed."""
    cat = lake["catalog"]
    names = ("a", "b", "c")
    for name in names:
        make_table(cat, "gold", name, 200)
    before = {n: golden(cat, "gold", n) for n in names}
    assert subprocess.run(failed_etl(lake, "gold", names)).returncode == 3
    after = {n: golden(cat, "gold", n) for n in names}
    assert [after[n][0] for n in names] == [205, 3, 150]
    assert after["c"][2] == "id long, label string, extra string"
    assert all(after[n] != before[n] for n in names)


def test_snapshot_is_a_tag_and_restore_brings_back_schema(lake: dict[str, Any]) -> None:
    cat = lake["catalog"]
    make_table(cat, "silver", "t", 50)
    before = golden(cat, "silver", "t")
    g = guard(lake, ["silver.t"])
    (snap,) = g.snapshot()
    table = cat.load_table(("silver", "t"))
    assert f"etlguard-{snap.snapshot.name}" in table.metadata.refs
    table.delete("id >= 0")
    from pyiceberg.types import LongType

    with table.update_schema() as u:
        u.add_column("late", LongType())
    assert golden(cat, "silver", "t") != before
    g.restore(["silver.t"], snapshot_ids=[snap.id])
    assert golden(cat, "silver", "t") == before


def write_config(lake: dict[str, Any], protect: list[str]) -> Path:
    import yaml

    path = Path(lake["dir"]) / "etlguard.yml"
    path.write_text(yaml.safe_dump({"target": lake["url"], "protect": protect}), encoding="utf-8")
    return path


def etlguard(config: Path, *args: str, fault: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "ETLGUARD_FAULT": fault} if fault else dict(os.environ)
    exe = str(Path(sys.executable).parent / "etlguard")
    return subprocess.Popen(
        [exe, args[0], "-c", str(config), *args[1:]],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_stopped(proc: subprocess.Popen[str]) -> None:
    """Until the process has stopped itself at its fault point (or exited)."""
    while proc.poll() is None:
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    raise AssertionError(f"etlguard exited with {proc.returncode} before its fault point: {proc.stderr}")


def test_restore_refuses_when_someone_writes_before_the_pointer_moves(lake: dict[str, Any]) -> None:
    """Compare-and-swap: a writer that commits while the restore is paused just before the pointer
    swap wins; the restore moves nothing and says why."""
    cat = lake["catalog"]
    make_table(cat, "gold", "t", 20)
    config = write_config(lake, ["gold.t"])
    (snap,) = guard(lake, ["gold.t"]).snapshot()
    cat.load_table(("gold", "t")).delete("id < 5")
    proc = etlguard(
        config, "restore", "gold.t", "--snapshot", str(snap.id), fault="iceberg.before_pointer_swap:pause"
    )
    wait_stopped(proc)
    cat.load_table(("gold", "t")).delete("id < 10")
    written = golden(cat, "gold", "t")
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "gold.t was written to during the restore" in err
    assert golden(cat, "gold", "t") == written
    assert written[0] == 10


# Not here: run.before_commit (a failing ETL never reaches it: its audits never pass),
# snapshot.after_reuse (an Iceberg snapshot is a tag, never a reused copy) and run.in_preflight
# (nothing is written yet; test_server_faults.py covers it).
ROLLBACK_POINTS = [
    p
    for p in POINTS
    if p.split(".")[0] in ("snapshot", "restore", "iceberg", "run")
    and p not in ("run.before_commit", "snapshot.after_reuse", "run.in_preflight")
]
# The points where the catalogs differ (the pointer moves and what recover finds after them) run on
# every catalog; the rest, where the adapter has only tagged, on SQLite (the suite's time budget).
CATALOG_POINTS = [
    "restore.after_intent",
    "iceberg.before_pointer_swap",
    "restore.after_swap",
    "restore.before_finish",
    "run.during_etl",
]
KILL_CASES = [("sqlite", p) for p in ROLLBACK_POINTS] + [
    (c, p) for c in CATALOGS if c != "sqlite" for p in CATALOG_POINTS
]


@pytest.mark.parametrize("lake, point", KILL_CASES, indirect=["lake"])
def test_killed_at_every_fault_point_then_recover_is_intact(lake: dict[str, Any], point: str) -> None:
    """etlguard SIGKILLed at each point of a failing run; `recover` puts every table back to
    its exact pre-run data and schema, and a second `recover` has nothing to change."""
    cat = lake["catalog"]
    names = ("a", "b", "c")
    for name in names:
        make_table(cat, "gold", name, 100)
    before = {n: golden(cat, "gold", n) for n in names}
    config = write_config(lake, [f"gold.{n}" for n in names])
    proc = etlguard(config, "run", "--", *failed_etl(lake, "gold", names), fault=f"{point}:kill")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, point
    rec = etlguard(config, "recover")
    _, err = rec.communicate(timeout=300)
    assert rec.returncode == 0, err
    # the run never committed: wherever it died, recover leaves the pre-run state, all tables
    final = {n: golden(cat, "gold", n) for n in names}
    assert final == before, point
    again = etlguard(config, "recover")
    again.communicate(timeout=300)
    assert {n: golden(cat, "gold", n) for n in names} == final
    assert stray_tags(lake, names) == [], point


def stray_tags(lake: dict[str, Any], names: Sequence[str]) -> list[str]:
    """etlguard's tags on the live tables that no snapshot reference holds: a kill after
    tagging and before the reference is written leaves one; recover must not leave it behind."""
    from etlguard.adapters import adapter_for
    from etlguard.target import parse_target

    db = adapter_for(parse_target(lake["url"]))
    db.connect()
    try:
        held = {r[0] for r in db.query("SELECT tag FROM etlguard_iceberg_refs WHERE tag IS NOT NULL")}
    finally:
        db.close()
    tags = [t for n in names for t in lake["catalog"].load_table(("gold", n)).metadata.refs]
    return sorted(t for t in tags if t.startswith("etlguard-") and t not in held)


def test_retention_removes_etlguards_tags(lake: dict[str, Any]) -> None:
    cat = lake["catalog"]
    make_table(cat, "gold", "t", 20)
    g = guard(lake, ["gold.t"], retention={"keep_last": 1, "days": None})
    first = g.snapshot()[0]
    second = g.snapshot()[0]
    g.prune()
    refs = cat.load_table(("gold", "t")).metadata.refs
    assert f"etlguard-{first.snapshot.name}" not in refs
    assert f"etlguard-{second.snapshot.name}" in refs


def test_bad_target_is_one_line_error(tmp_path: Path) -> None:
    """A missing SQLite catalog file is named; the file is not created."""
    g = Guard(Config.from_dict({"target": f"iceberg+sql:///{tmp_path}/missing.db", "protect": ["a.b"]}))
    with pytest.raises(EtlguardError, match="no Iceberg SQL catalog at"):
        g.snapshot()
    assert not (tmp_path / "missing.db").exists()


def test_verify_deep_reads_the_data_files(lake: dict[str, Any]) -> None:
    """The identity fingerprint names the data; --deep reads it, so a lost data file is caught."""
    cat = lake["catalog"]
    make_table(cat, "gold", "t", 30)
    g = guard(lake, ["gold.t"])
    g.snapshot()
    assert [r.ok for r in g.verify(deep=True)] == [True]
    table = cat.load_table(("gold", "t"))
    data_file = next(iter(table.inspect.files().column("file_path").to_pylist()))
    table.io.delete(data_file)
    assert [r.ok for r in g.verify()] == [True]  # the identity alone cannot see it
    (deep,) = g.verify(deep=True)
    assert not deep.ok
    assert "cannot be read" in deep.actual


def test_demo_iceberg_rolls_back_data_and_schema() -> None:
    exe = str(Path(sys.executable).parent / "etlguard")
    done = subprocess.run([exe, "demo", "--iceberg"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "exit 10: the ETL exited with status 1; rolled back 2 tables" in done.stdout
    states = [line.strip() for line in lines if line.strip().startswith("gold.orders:")]
    assert states[0] == "gold.orders: 1000 rows (id, name); gold.customers: 100 rows (id, name)"
    assert states[-1].startswith(states[0])


CREATING_ETL = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from icebergdata import make_table, open_catalog
cat = open_catalog({spec!r})
make_table(cat, "gold", "b", 7, offset=500)
a = cat.load_table(("gold", "a")); a.append(a.scan().to_arrow().slice(0, 5))
sys.exit(3)
"""


def test_a_table_the_failed_run_created_under_a_glob_is_moved_aside_and_can_come_back(
    lake: dict[str, Any],
) -> None:
    """Membership rollback on Iceberg: the new table's catalog row goes in the pointer
    transaction, its files stay under a displaced reference, and restoring that snapshot
    registers the table again."""
    cat = lake["catalog"]
    make_table(cat, "gold", "a", 40)
    before = golden(cat, "gold", "a")
    g = guard(lake, ["gold.*"])
    code = CREATING_ETL.format(tests=str(TESTS), spec=lake["spec"])
    result = g.run([sys.executable, "-c", code])
    assert result.exit_code == 10, result.message
    assert result.moved_aside == ["gold.b"]
    assert golden(cat, "gold", "a") == before
    assert ("gold", "b") not in cat.list_tables("gold")
    [displaced] = [s for s in g.snapshots("gold.b") if s.kind == "displaced"]
    assert (displaced.status, displaced.row_count) == ("verified", 7)
    g.restore(["gold.b"], snapshot_ids=[displaced.id])
    assert golden(cat, "gold", "b")[0] == 7


@pytest.mark.parametrize(
    "point", ["iceberg.before_pointer_swap", "restore.after_swap", "restore.before_verify"]
)
def test_killed_around_a_move_aside_then_recover_settles_it(lake: dict[str, Any], point: str) -> None:
    """Killed around the pointer transaction that moves a new table aside: recover leaves the
    pre-run catalog (the new table out of it, exactly once) and a second recover changes nothing."""
    cat = lake["catalog"]
    make_table(cat, "gold", "a", 40)
    before = golden(cat, "gold", "a")
    config = write_config(lake, ["gold.*"])
    code = CREATING_ETL.format(tests=str(TESTS), spec=lake["spec"])
    proc = etlguard(config, "run", "--", sys.executable, "-c", code, fault=f"{point}:kill")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, point
    for _ in range(2):
        rec = etlguard(config, "recover")
        _, err = rec.communicate(timeout=300)
        assert rec.returncode == 0, err
        assert golden(cat, "gold", "a") == before
        assert ("gold", "b") not in cat.list_tables("gold")
    displaced = [s for s in guard(lake, ["gold.*"]).snapshots("gold.b") if s.kind == "displaced"]
    assert [(s.status, s.row_count) for s in displaced if s.status == "verified"] == [("verified", 7)]


@pytest.mark.parametrize("lake", ["sqlite", "postgresql"], indirect=True)
def test_readers_of_the_catalog_never_see_a_mix_of_states(lake: dict[str, Any]) -> None:
    """A reader polls all three pointers in one statement while the rollback runs: every read is
    all tables at the failed run's state or all back at the snapshot's, never some of each (the
    displaced tags move the pointers table by table first, but not the current snapshot). Glue
    has no multi-table transaction: there readers can see a mix, as documented."""
    import threading

    from pyiceberg.table import StaticTable
    from sqlalchemy import text

    cat = lake["catalog"]
    names = ("a", "b", "c")
    for name in names:
        make_table(cat, "gold", name, 60)
    g = guard(lake, [f"gold.{n}" for n in names])
    snaps = g.snapshot()
    pre = {n: cat.load_table(("gold", n)).metadata.current_snapshot_id for n in names}
    assert subprocess.run(failed_etl(lake, "gold", names)).returncode == 3
    post = {n: cat.load_table(("gold", n)).metadata.current_snapshot_id for n in names}
    assert all(pre[n] != post[n] for n in names)
    snapshot_of: dict[str, int | None] = {}
    seen: list[tuple[str, ...]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                with cat.engine.connect() as conn:
                    rows = conn.execute(
                        text(
                            "SELECT table_name, metadata_location FROM iceberg_tables WHERE table_namespace = 'gold'"
                        )
                    ).fetchall()
            except Exception:  # SQLite: busy while the writer commits; read again
                continue
            state = []
            for name, location in sorted(rows):
                if location not in snapshot_of:
                    snapshot_of[location] = StaticTable.from_metadata(location).metadata.current_snapshot_id
                sid = snapshot_of[location]
                state.append("pre" if sid == pre[name] else "post" if sid == post[name] else f"other {sid}")
            seen.append(tuple(state))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        g.restore([f"gold.{n}" for n in names], snapshot_ids=[s.id for s in snaps])
        time.sleep(0.2)
    finally:
        stop.set()
        reader.join()
    assert set(seen) <= {("post",) * 3, ("pre",) * 3}, set(seen)
    assert seen[0] == ("post",) * 3 and seen[-1] == ("pre",) * 3


def test_the_lock_is_held_against_a_second_guard(lake: dict[str, Any]) -> None:
    """The target lock (flock on SQLite, an advisory lock in a session of its own on PostgreSQL)
    keeps a second etlguard out and names the holder; released, it can be taken again."""
    from etlguard.adapters import adapter_for
    from etlguard.errors import LockHeld
    from etlguard.target import parse_target

    first, second = adapter_for(parse_target(lake["url"])), adapter_for(parse_target(lake["url"]))
    first.connect()
    second.connect()
    try:
        first.lock("etlguard", "etlguard run by the first")
        assert first.holds_lock()
        with pytest.raises(LockHeld, match="the first"):
            second.lock("etlguard", "etlguard run by the second")
        first.unlock()
        assert not first.holds_lock()
        second.lock("etlguard", "etlguard run by the second")
        assert second.holds_lock()
    finally:
        first.unlock()
        second.unlock()
        first.close()
        second.close()


def journaled_moves(lake: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The Glue moves etlguard journaled and has not finished, from its local catalog file."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(Path(lake["dir"]) / "etlguard.db")) as conn:
        return conn.execute(
            "SELECT namespace, table_name, from_location, to_location FROM etlguard_iceberg_moves ORDER BY 2"
        ).fetchall()


def killed_glue_rollback(lake: dict[str, Any], names: tuple[str, ...]) -> Path:
    """A failing run on Glue, killed after its moves were journaled and before the first one."""
    config = write_config(lake, [f"gold.{n}" for n in names])
    proc = etlguard(
        config, "run", "--", *failed_etl(lake, "gold", names), fault="iceberg.before_pointer_swap:kill"
    )
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert [r[1] for r in journaled_moves(lake)] == list(names)
    return config


@pytest.mark.parametrize("lake", ["glue"], indirect=True)
def test_glue_rollback_killed_between_tables_converges(lake: dict[str, Any]) -> None:
    """Glue moves tables one by one: with the first table already moved back when the rollback
    died (done here with etlguard's own move, as the killed process would have), recover skips
    it, moves the others and clears the journal."""
    from etlguard.adapters.iceberg_glue import move

    cat = lake["catalog"]
    names = ("a", "b", "c")
    for name in names:
        make_table(cat, "gold", name, 80)
    before = {n: golden(cat, "gold", n) for n in names}
    config = killed_glue_rollback(lake, names)
    ns, name, current, target = journaled_moves(lake)[0]
    move(cat, ns, name, current, target)
    assert golden(cat, "gold", "a") == before["a"] and golden(cat, "gold", "b") != before["b"]
    rec = etlguard(config, "recover")
    _, err = rec.communicate(timeout=300)
    assert rec.returncode == 0, err
    assert {n: golden(cat, "gold", n) for n in names} == before
    assert journaled_moves(lake) == []
    assert stray_tags(lake, names) == []


@pytest.mark.parametrize("lake", ["glue"], indirect=True)
def test_glue_recover_refuses_a_table_someone_wrote_to_since(lake: dict[str, Any]) -> None:
    """After a killed rollback, someone writes to one table: recover refuses with exit 20,
    naming it, and moves nothing (that write is not silently undone)."""
    cat = lake["catalog"]
    names = ("a", "b", "c")
    for name in names:
        make_table(cat, "gold", name, 80)
    config = killed_glue_rollback(lake, names)
    b = cat.load_table(("gold", "b"))
    b.append(b.scan().to_arrow().slice(0, 1))
    written = {n: golden(cat, "gold", n) for n in names}
    rec = etlguard(config, "recover")
    _, err = rec.communicate(timeout=300)
    assert rec.returncode == 20, err
    assert "gold.b was written to since the interrupted rollback" in err
    assert {n: golden(cat, "gold", n) for n in names} == written


def test_iceberg_target_urls_name_their_catalog() -> None:
    """Each catalog's URL parses to its kind; a password is never printed; an unknown catalog is
    one error naming the three forms."""
    from etlguard.errors import ConfigError
    from etlguard.target import parse_target

    sql = parse_target("iceberg+sql:///data/catalog.db?warehouse=file:///data/wh")
    assert (sql.catalog, sql.database, sql.option("warehouse")) == (
        "sql",
        "data/catalog.db",
        "file:///data/wh",
    )
    assert parse_target("iceberg:///c.db").catalog == "sql"
    pg = parse_target("iceberg+postgresql://etl:s3cr%40t@db.internal/lake?warehouse=s3://b/wh")
    assert (pg.catalog, pg.host, pg.port, pg.password, pg.database) == (
        "postgresql",
        "db.internal",
        5432,
        "s3cr@t",
        "lake",
    )
    assert pg.redacted == "iceberg+postgresql://etl:***@db.internal:5432/lake"
    glue = parse_target("iceberg+glue:///var/lib/etlguard/glue.db?region=eu-west-1")
    assert (glue.catalog, glue.database, glue.option("region")) == (
        "glue",
        "var/lib/etlguard/glue.db",
        "eu-west-1",
    )
    with pytest.raises(ConfigError, match="unsupported Iceberg catalog 'iceberg\\+rest'; use iceberg\\+sql"):
        parse_target("iceberg+rest://host/x")


def test_a_dbt_athena_iceberg_table_model_is_refused_before_the_run(sqlite_lake: dict[str, Any]) -> None:
    """dbt-athena rebuilds an Iceberg `table` model by DROP + CREATE: no history survives to roll
    back to, so a protected one is refused with one line naming it, and the ETL never runs."""
    import json

    lake = sqlite_lake
    make_table(lake["catalog"], "gold", "orders", 10)
    project = Path(lake["dir"]) / "project"
    (project / "target").mkdir(parents=True)
    node = {
        "resource_type": "model",
        "name": "orders",
        "schema": "gold",
        "config": {"materialized": "table", "table_type": "iceberg"},
    }
    manifest = {"metadata": {"adapter_type": "athena"}, "nodes": {"model.p.orders": node}}
    (project / "target" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    marker = Path(lake["dir"]) / "ran"
    g = guard(lake, ["gold.orders"], dbt={"project_dir": str(project)})
    with pytest.raises(EtlguardError, match=r"dbt model gold\.orders is an Iceberg `table` on dbt-athena"):
        g.run([sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    assert not marker.exists()
    node["config"]["materialized"] = "incremental"  # keeps its history: protected as usual
    (project / "target" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert g.run([sys.executable, "-c", "pass"]).exit_code == 0

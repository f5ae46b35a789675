"""Tables back in milliseconds without trusting a tampered snapshot (MariaDB).

A snapshot is sealed when it is fingerprinted: the engine's own record of the table's identity
and last change (InnoDB TABLE_ID and space, CREATE_TIME, UPDATE_TIME, the server's boot). A
restore or rollback checks the seal in O(1) before its one RENAME; where the seal does not hold
(any change, any DDL, a restart, an evicted definition) the snapshot is fingerprinted before the
swap as before. Either way a tampered snapshot is refused with every live table untouched, and
the live table is not read for data after the swap, so other writers cannot fake an exit 20."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pymysql
import pytest

from etlguard.adapters import adapter_for
from etlguard.adapters.base import COPY_CHECK, FINGERPRINT
from etlguard.adapters.mysql import MySQLAdapter
from etlguard.errors import EXIT_ROLLBACK_FAILED, ChecksumMismatch, EtlguardError, RollbackFailed
from etlguard.tables import TableRef
from etlguard.target import parse_target
from test_atomic_restore import DAMAGED_STATE, DEADLINE, KEPT, SNAPSHOT_STATE, TABLES, fill, start_poller

from conftest import MYSQL_HOST, MYSQL_PORT, Backend, MariaDBBackend, in_every_schema
from support import catalog_rows

MARIADB = in_every_schema(defaults=(), kinds=("mariadb",))


def _facts(backend: Backend, rows: int = 50) -> tuple[str, str]:
    gold = backend.create_schema("gold")
    t = backend.table(gold, "facts")
    backend.sql(
        f"CREATE TABLE {t} (id INTEGER NOT NULL PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20) NOT NULL, "
        "KEY by_name (name))"
    )
    backend.sql(
        f"INSERT INTO {t} (id, name) SELECT seq, CONCAT('n', seq) FROM {backend.q(gold)}.seq_1_to_{rows}"
    )
    return gold, t


def _row(backend: Backend, snapshot_id: int) -> dict[str, object]:
    [row] = [r for r in catalog_rows(backend) if r["id"] == snapshot_id]
    return row


def _seal(backend: Backend, snapshot_id: int) -> str | None:
    [(seal,)] = backend.sql(
        f"SELECT seal FROM {backend.table(backend.catalog_schema, 'snapshots')} WHERE id = %s", [snapshot_id]
    )
    return None if seal is None else str(seal)


def _up_for_a_while(db: Backend) -> None:
    """A server up for under 3 s gives no seals (a restart must move its boot time by more than
    rounding): a fresh throwaway server is waited for."""
    while int(db.sql("SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]) < 4:
        time.sleep(0.2)


def _adapter(backend: Backend) -> MySQLAdapter:
    db = adapter_for(parse_target(str(backend.settings()["target"])))
    assert isinstance(db, MySQLAdapter)
    db.connect()
    return db


def _damage(backend: Backend, t: str) -> tuple[int, str]:
    backend.sql(f"UPDATE {t} SET name = 'damaged' WHERE id <= 10")
    backend.sql(f"DELETE FROM {t} WHERE id > 40")
    return backend.golden(*_parts(t))


def _parts(t: str) -> tuple[str, str]:
    schema, name = t.split("`.`")
    return schema.strip("`"), name.strip("`")


@MARIADB
def test_a_restore_proves_a_sealed_snapshot_in_o1_and_puts_the_table_back(backend: Backend) -> None:
    gold, t = _facts(backend)
    original = backend.golden(gold, "facts")
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    assert _seal(backend, snap.id) is not None
    _damage(backend, t)
    _next_second(backend)  # a table written in the second its seal is read gets none (next test)
    result = guard.restore([f"{gold}.facts"], latest=True)
    assert [s.proof for s in result.steps] == ["seal"]
    assert result.verified == [f"{gold}.facts"] and backend.golden(gold, "facts") == original
    assert 0 < result.back_seconds <= result.total_seconds and result.verify_seconds > 0
    # the displaced table is recorded by CHECKSUM TABLE, not fingerprinted, and sealed too:
    # undoing the restore is as fast
    [displaced] = [s.displaced_id for s in result.steps]
    assert displaced is not None and _seal(backend, displaced) is not None
    assert _recorded(backend, displaced, "fingerprint") == COPY_CHECK
    undo = guard.restore(snapshot_ids=[displaced])
    assert [s.proof for s in undo.steps] == ["seal"] and undo.verified == [f"{gold}.facts"]


def _recorded(backend: Backend, snapshot_id: int, column: str) -> object:
    [(value,)] = backend.sql(
        f"SELECT {backend.q(column)} FROM {backend.table(backend.catalog_schema, 'snapshots')} WHERE id = %s",
        [snapshot_id],
    )
    return value


def _next_second(backend: Backend) -> None:
    """Wait until the server's clock is in a later second than now (UPDATE_TIME's resolution)."""
    [(start,)] = backend.sql("SELECT UNIX_TIMESTAMP(NOW())")
    while backend.sql("SELECT UNIX_TIMESTAMP(NOW())")[0][0] == start:
        time.sleep(0.05)


def _forget_seal(backend: Backend, snapshot_id: int) -> None:
    """As after a restart: the seal proves nothing, the recorded checksum must decide."""
    backend.sql(
        f"UPDATE {backend.table(backend.catalog_schema, 'snapshots')} SET seal = NULL WHERE id = %s",
        [snapshot_id],
    )


@MARIADB
def test_a_displaced_table_without_a_seal_is_restored_exactly_and_proven_by_its_checksum(
    backend: Backend,
) -> None:
    gold, t = _facts(backend)
    guard = backend.guard([f"{gold}.facts"])
    guard.snapshot()
    damaged = _damage(backend, t)
    [displaced] = [s.displaced_id for s in guard.restore([f"{gold}.facts"], latest=True).steps]
    assert displaced is not None and _recorded(backend, displaced, "row_count") == damaged[0]
    _forget_seal(backend, displaced)
    assert [v.ok for v in guard.verify([f"{gold}.facts"]) if v.snapshot.id == displaced] == [True]
    undo = guard.restore(snapshot_ids=[displaced])
    assert [s.proof for s in undo.steps] == ["checksum"] and undo.verified == [f"{gold}.facts"]
    assert backend.golden(gold, "facts") == damaged


@MARIADB
@pytest.mark.parametrize("sealed", [True, False])
def test_a_tampered_displaced_table_is_refused_and_the_live_table_left_untouched(
    backend: Backend, sealed: bool
) -> None:
    gold, t = _facts(backend)
    original = backend.golden(gold, "facts")
    guard = backend.guard([f"{gold}.facts"])
    guard.snapshot()
    _damage(backend, t)
    [step] = guard.restore([f"{gold}.facts"], latest=True).steps
    assert step.displaced is not None and step.displaced_id is not None
    if not sealed:
        _forget_seal(backend, step.displaced_id)
    backend.sql(
        f"UPDATE {backend.table(step.displaced.schema, step.displaced.name)} SET name = 'x' WHERE id = 5"
    )
    assert [v.ok for v in guard.verify([f"{gold}.facts"]) if v.snapshot.id == step.displaced_id] == [False]
    with pytest.raises(ChecksumMismatch):
        guard.restore(snapshot_ids=[step.displaced_id])
    assert backend.golden(gold, "facts") == original


@MARIADB
def test_the_storage_identity_a_restore_checks_after_its_rename_follows_the_table(backend: Backend) -> None:
    """After the RENAME the live table is proven to be the sealed snapshot table by its InnoDB
    identity, which RENAME keeps; a copy of the same rows under the name is another table."""
    gold, _ = _facts(backend)
    [snap] = backend.guard([f"{gold}.facts"]).snapshot()
    seal = _seal(backend, snap.id)
    assert seal is not None
    s = backend.table(snap.snapshot.schema, snap.snapshot.name)
    moved, copy = backend.table(gold, "moved"), backend.table(gold, "copy")
    db = _adapter(backend)
    try:
        assert db.same_storage(snap.snapshot, seal)
        backend.sql(f"RENAME TABLE {s} TO {moved}")
        assert db.same_storage(TableRef(gold, "moved"), seal)
        backend.sql(f"CREATE TABLE {copy} LIKE {moved}")
        backend.sql(f"INSERT INTO {copy} SELECT * FROM {moved}")
        assert not db.same_storage(TableRef(gold, "copy"), seal)
    finally:
        db.close()


# Each changes the snapshot's data; run the moment the snapshot is taken (the same second as
# its seal). {s} is the snapshot table, {o} a helper table in the same schema as the live one.
TAMPERS = {
    "insert": ["INSERT INTO {s} (id, name) VALUES (1000, 'forged')"],
    "update": ["UPDATE {s} SET name = 'forged' WHERE id = 3"],
    "delete": ["DELETE FROM {s} WHERE id = 3"],
    "replace": ["REPLACE INTO {s} (id, name) VALUES (3, 'forged')"],
    "multi-table update": ["UPDATE {s} a JOIN {o} b ON a.id = b.id SET a.name = 'forged'"],
    "xa transaction": [
        "XA START 'tamper'",
        "UPDATE {s} SET name = 'forged' WHERE id = 3",
        "XA END 'tamper'",
        "XA PREPARE 'tamper'",
        "XA COMMIT 'tamper'",
    ],
    "truncate and refill": [
        "CREATE TABLE {k} AS SELECT * FROM {s}",
        "TRUNCATE {s}",
        "INSERT INTO {s} SELECT * FROM {k} WHERE id <> 3",
    ],
    "rebuilt by ALTER": [
        "SET SESSION sql_log_bin = 0",
        "ALTER TABLE {s} FORCE",
        "DELETE FROM {s} WHERE id = 3",
    ],
    "dropped and made again": [
        "CREATE TABLE {f} LIKE {s}",
        "INSERT INTO {f} SELECT * FROM {s} WHERE id <> 3",
        "DROP TABLE {s}",
        "RENAME TABLE {f} TO {s}",
    ],
}


@MARIADB
@pytest.mark.parametrize("kind", list(TAMPERS))
def test_a_tampered_snapshot_breaks_its_seal_and_a_restore_refuses_it_untouched(
    backend: Backend, kind: str
) -> None:
    gold, t = _facts(backend)
    other = backend.table(gold, "other")
    backend.sql(f"CREATE TABLE {other} (id INTEGER PRIMARY KEY)")
    backend.sql(f"INSERT INTO {other} VALUES (3)")
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    seal = _seal(backend, snap.id)
    assert seal is not None
    s = backend.table(snap.snapshot.schema, snap.snapshot.name)
    for statement in TAMPERS[kind]:
        k, f = backend.table(gold, "kept"), backend.table(gold, "fake")
        backend.sql(statement.format(s=s, o=other, k=k, f=f))
    db = _adapter(backend)
    try:
        assert not db.seal_holds(snap.snapshot, seal)
    finally:
        db.close()
    damaged = _damage(backend, t)
    with pytest.raises(ChecksumMismatch):
        guard.restore([f"{gold}.facts"], latest=True)
    assert backend.golden(gold, "facts") == damaged
    assert _row(backend, snap.id)["status"] == "verified"
    # refused while only reading: no journal entry, no displaced record was written
    assert [e for e in catalog_rows(backend, "journal") if e["op"] == "restore"] == []
    assert [r["kind"] for r in catalog_rows(backend)] == ["snapshot"]


# Each leaves the data as it was: the seal no longer holds, the fingerprint decides, and the
# restore goes ahead (a rebuilt table is still the snapshot).
REBUILDS = {
    "OPTIMIZE": ["OPTIMIZE TABLE {s}"],
    "ALTER FORCE": ["ALTER TABLE {s} FORCE"],
    "changed and changed back": [
        "UPDATE {s} SET name = 'x' WHERE id = 3",
        "UPDATE {s} SET name = 'n3' WHERE id = 3",
    ],
}


@MARIADB
@pytest.mark.parametrize("kind", list(REBUILDS))
def test_a_snapshot_whose_seal_broke_without_a_data_change_is_proven_by_fingerprint(
    backend: Backend, kind: str
) -> None:
    gold, t = _facts(backend)
    original = backend.golden(gold, "facts")
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    s = backend.table(snap.snapshot.schema, snap.snapshot.name)
    for statement in REBUILDS[kind]:
        backend.sql(statement.format(s=s))
    _damage(backend, t)
    result = guard.restore([f"{gold}.facts"], latest=True)
    assert [st.proof for st in result.steps] == ["fingerprint"]
    assert result.verified == [f"{gold}.facts"] and backend.golden(gold, "facts") == original


@MARIADB
def test_a_rollback_from_a_snapshot_truncated_and_refilled_is_exit_20_with_the_etl_table_left_live(
    backend: Backend,
) -> None:
    gold, t = _facts(backend)
    guard = backend.guard([f"{gold}.facts"])
    with pytest.raises(RollbackFailed) as failed, guard.protect() as run:
        [sid] = run.snapshot_ids
        assert _seal(backend, sid) is not None
        damaged = _damage(backend, t)
        s = backend.table(
            str(_row(backend, sid)["snapshot_schema"]), str(_row(backend, sid)["snapshot_table"])
        )
        keep = backend.table(gold, "kept")
        backend.sql(f"CREATE TABLE {keep} AS SELECT * FROM {s}")
        backend.sql(f"TRUNCATE {s}")
        backend.sql(f"INSERT INTO {s} SELECT * FROM {keep} WHERE id <> 7")
        raise RuntimeError("the ETL failed")
    assert failed.value.exit_code == EXIT_ROLLBACK_FAILED
    assert backend.golden(gold, "facts") == damaged
    assert _row(backend, sid)["status"] == "verified"


@MARIADB
def test_a_rollback_proves_by_seal_and_reports_time_until_back_apart_from_verification(
    backend: Backend,
) -> None:
    gold, t = _facts(backend)
    original = backend.golden(gold, "facts")
    guard = backend.guard([f"{gold}.facts"])
    with pytest.raises(RuntimeError, match="ETL failed"), guard.protect() as run:
        _damage(backend, t)
        raise RuntimeError("the ETL failed")
    assert backend.golden(gold, "facts") == original
    assert run.rollback_verified == [f"{gold}.facts"]
    assert 0 < run.rollback_back_seconds < run.rollback_seconds
    assert run.as_dict()["rollback_back_seconds"] == round(run.rollback_back_seconds, 6)


@MARIADB
def test_a_restore_while_another_client_writes_the_live_table_is_verified(backend: Backend) -> None:
    """The writer inserts into the live name in a loop from before the restore until after it:
    right after the swap it writes into the restored table. The proof was made before the swap
    (seal), and the live table is not read for data again, so this is not an exit 20."""
    gold, t = _facts(backend)
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    _damage(backend, t)
    stop = threading.Event()
    written: list[int] = []
    errors: list[str] = []

    def write() -> None:
        conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="", autocommit=True)
        try:
            while not stop.is_set():
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {t} (name) VALUES ('writer')")
                    written.append(1)
                except pymysql.err.Error as exc:
                    errors.append(str(exc))
        finally:
            conn.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        while len(written) < 5:
            stop.wait(0.01)
        result = guard.restore([f"{gold}.facts"], latest=True)
        before = len(written)
        while len(written) < before + 5:
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join(DEADLINE)
    assert result.verified == [f"{gold}.facts"] and result.unverified == {}
    assert [s.proof for s in result.steps] == ["seal"]
    assert backend.sql(f"SELECT COUNT(*) FROM {t} WHERE name = 'writer' AND id <= {snap.row_count}") == [(0,)]
    assert not [e for e in errors if "exist" in e.lower()], errors[:3]


@MARIADB
def test_a_reader_every_10ms_never_misses_a_table_during_a_rollback(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    for name in TABLES:
        fill(backend, gold, name)
    guard = backend.guard([f"{gold}.*"])
    poller = start_poller(backend, gold)
    try:
        poller.wait_for(lambda: len(poller.polls) >= 3, "its first reads")
        with pytest.raises(RuntimeError, match="ETL failed"), guard.protect() as run:
            for name in TABLES:
                t = backend.table(gold, name)
                backend.sql(f"UPDATE {t} SET marker = 'damaged'")
                backend.sql(f"DELETE FROM {t} WHERE id > {KEPT}")
            seen = len(poller.polls)
            poller.wait_for(lambda: len(poller.polls) >= seen + 3, "reads of the damage")
            raise RuntimeError("the ETL failed")
        back = len(poller.polls)
        poller.wait_for(lambda: len(poller.polls) >= back + 3, "reads after the rollback")
    finally:
        poller.stop.set()
        poller.join(DEADLINE)
    assert sorted(run.rollback_verified) == sorted(f"{gold}.{t}" for t in TABLES)
    assert poller.errors == []
    # the ETL damaged the tables one by one; from the first read of all three damaged, the
    # rollback switches them together, once, and the reader never finds one missing
    damaged = (DAMAGED_STATE,) * len(TABLES)
    polls = poller.polls[poller.polls.index(damaged) :]
    assert [p for p in polls if len(set(p)) != 1] == []
    states = [p[0] for p in polls]
    restored_at = states.index(SNAPSHOT_STATE)
    assert set(states[:restored_at]) == {DAMAGED_STATE} and set(states[restored_at:]) == {SNAPSHOT_STATE}


def test_after_a_restart_a_seal_proves_nothing_and_a_snapshot_tampered_before_it_is_refused(
    mariadb_template: Path, tmp_path: Path
) -> None:
    """UPDATE_TIME is not kept across a restart: a snapshot changed before the restart looks
    untouched by it, so no seal holds after a restart and the fingerprint decides."""
    from servers import make_server

    server = make_server(mariadb_template, tmp_path / "mariadb")
    try:
        db = MariaDBBackend(tmp_path, port=server.port, url=server.url)
        gold, t = _facts(db)
        db.sql(f"CREATE TABLE {db.table(gold, 'kept')} LIKE {t}")
        db.sql(f"INSERT INTO {db.table(gold, 'kept')} SELECT * FROM {t}")
        kept_original = db.golden(gold, "kept")
        guard = db.guard([f"{gold}.facts", f"{gold}.kept"])
        _up_for_a_while(db)
        snaps = {s.table.name: s for s in guard.snapshot()}
        assert all(_seal(db, s.id) for s in snaps.values())
        tampered = snaps["facts"].snapshot
        db.sql(f"UPDATE {db.table(tampered.schema, tampered.name)} SET name = 'forged' WHERE id = 3")
        db.conn.close()
        server.restart()
        db.conn = db._connect()
        damaged = _damage(db, t)
        _damage(db, db.table(gold, "kept"))
        with pytest.raises(ChecksumMismatch):
            guard.restore([f"{gold}.facts"], latest=True)
        assert db.golden(gold, "facts") == damaged
        result = guard.restore([f"{gold}.kept"], latest=True)
        assert [s.proof for s in result.steps] == ["fingerprint"]
        assert result.verified == [f"{gold}.kept"] and db.golden(gold, "kept") == kept_original
        db.conn.close()
    finally:
        server.stop()


def test_a_snapshot_whose_tablespace_was_swapped_by_import_is_refused(
    mariadb_template: Path, tmp_path: Path
) -> None:
    """DISCARD and IMPORT TABLESPACE put other data under the snapshot's name without a row
    change: the seal does not hold and the restore refuses it, the live table untouched."""
    from servers import make_server

    server = make_server(mariadb_template, tmp_path / "mariadb")
    try:
        db = MariaDBBackend(tmp_path, port=server.port, url=server.url)
        gold, t = _facts(db)
        guard = db.guard([f"{gold}.facts"])
        _up_for_a_while(db)
        [snap] = guard.snapshot()
        seal = _seal(db, snap.id)
        assert seal is not None
        forged = db.table(gold, "forged")
        db.sql(f"CREATE TABLE {forged} LIKE {t}")
        db.sql(f"INSERT INTO {forged} SELECT * FROM {t} WHERE id <> 3")
        s = db.table(snap.snapshot.schema, snap.snapshot.name)
        db.sql(f"ALTER TABLE {s} DISCARD TABLESPACE")
        db.sql(f"FLUSH TABLES {forged} FOR EXPORT")
        for ext in ("ibd", "cfg"):
            shutil.copy(
                server.datadir / gold / f"forged.{ext}",
                server.datadir / snap.snapshot.schema / f"{snap.snapshot.name}.{ext}",
            )
        db.sql("UNLOCK TABLES")
        db.sql(f"ALTER TABLE {s} IMPORT TABLESPACE")
        assert db.sql(f"SELECT COUNT(*) FROM {s}") == [(49,)]
        adapter = adapter_for(parse_target(server.url + f"/{gold}"))
        assert isinstance(adapter, MySQLAdapter)
        try:
            adapter.connect()
            assert not adapter.seal_holds(snap.snapshot, seal)
        finally:
            adapter.close()
        damaged = _damage(db, t)
        with pytest.raises(ChecksumMismatch):
            guard.restore([f"{gold}.facts"], latest=True)
        assert db.golden(gold, "facts") == damaged
        db.conn.close()
    finally:
        server.stop()


# -- DuckDB: a native fingerprint, old algorithms still verified ---------------------------------
def _duck_facts(duck: Backend) -> str:
    gold = duck.create_schema("gold")
    t = duck.table(gold, "facts")
    duck.sql(
        f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR COLLATE NOCASE, x DOUBLE, "
        "tags VARCHAR[], seen TIMESTAMPTZ, b BLOB)"
    )
    duck.sql(
        f"INSERT INTO {t} SELECT i, 'Name ' || i, i / 7.0, ['a', 'b' || i], TIMESTAMPTZ '2026-01-01 00:00:00+00' "
        "+ i * INTERVAL 1 MINUTE, encode('b' || i) FROM range(1, 2001) r(i)"
    )
    duck.sql(f"INSERT INTO {t} VALUES (0, 'A', '-0.0'::DOUBLE, NULL, NULL, NULL)")
    return gold


def test_a_duckdb_snapshot_is_fingerprinted_natively_and_round_trips_exactly(duck: Backend) -> None:
    gold = _duck_facts(duck)
    original = duck.golden(gold, "facts")
    guard = duck.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    assert snap.fingerprint.startswith("duckdb-hash1:")
    duck.sql(f"UPDATE {duck.table(gold, 'facts')} SET x = -x, name = upper(name)")
    duck.sql(f"DELETE FROM {duck.table(gold, 'facts')} WHERE id > 1500")
    result = guard.restore([f"{gold}.facts"], latest=True)
    assert result.verified == [f"{gold}.facts"] and duck.golden(gold, "facts") == original
    checked = guard.verify([f"{gold}.facts"])  # the snapshot (copied back, kept) and the displaced table
    assert [v.ok for v in checked] == [True, True]
    assert all(v.snapshot.fingerprint == snap.fingerprint for v in checked)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {s} SET name = 'a' WHERE id = 0",  # equal under NOCASE, other bytes
        # hash(-0.0) = hash(0.0) (an UPDATE between them stores nothing: they compare equal)
        "DELETE FROM {s} WHERE id = 0; INSERT INTO {s} VALUES (0, 'A', 0.0, NULL, NULL, NULL)",
        "UPDATE {s} SET tags = ['a', 'c'] WHERE id = 1",
        "UPDATE {s} SET b = encode('c') WHERE id = 1",
        "DELETE FROM {s} WHERE id = 2",
        "INSERT INTO {s} SELECT id + 5000, name, x, tags, seen, b FROM {s} WHERE id = 3",
    ],
)
def test_the_native_fingerprint_sees_what_hash_alone_would_miss(duck: Backend, change: str) -> None:
    gold = _duck_facts(duck)
    guard = duck.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    duck.sql(change.format(s=duck.table(snap.snapshot.schema, snap.snapshot.name)))
    assert [v.ok for v in guard.verify([f"{gold}.facts"])] == [False]
    damaged = duck.golden(gold, "facts")
    with pytest.raises(ChecksumMismatch):
        guard.restore([f"{gold}.facts"], latest=True)
    assert duck.golden(gold, "facts") == damaged


def test_a_duckdb_snapshot_recorded_with_v2_still_verifies_and_restores_by_v2(duck: Backend) -> None:
    """A snapshot an older release took: its row carries the v2 SHA-256 digest (computed here by
    the v2 code path on the real table) and is checked with v2, not with the native hash."""
    gold = _duck_facts(duck)
    original = duck.golden(gold, "facts")
    guard = duck.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    db = adapter_for(parse_target(duck.url))
    try:
        db.connect()
        v2 = db.checksum(snap.snapshot, FINGERPRINT)
    finally:
        db.close()
    assert v2.algorithm == FINGERPRINT and v2.digest != snap.checksum
    catalog = duck.table(duck.catalog_schema, "snapshots")
    duck.sql(f"UPDATE {catalog} SET fingerprint = 'v2', checksum = ? WHERE id = ?", [v2.digest, snap.id])
    assert [v.ok for v in guard.verify([f"{gold}.facts"])] == [True]
    duck.sql(f"DELETE FROM {duck.table(gold, 'facts')} WHERE id < 100")
    result = guard.restore([f"{gold}.facts"], latest=True)
    assert result.verified == [f"{gold}.facts"] and duck.golden(gold, "facts") == original


def test_a_native_fingerprint_of_another_duckdb_release_is_refused_by_name(duck: Backend) -> None:
    gold = _duck_facts(duck)
    guard = duck.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    catalog = duck.table(duck.catalog_schema, "snapshots")
    duck.sql(
        f"UPDATE {catalog} SET fingerprint = 'duckdb-hash1:0.9.2:0000000000000001' WHERE id = ?", [snap.id]
    )
    damaged = duck.golden(gold, "facts")
    with pytest.raises(EtlguardError, match=r"DuckDB 0\.9\.2"):
        guard.restore([f"{gold}.facts"], latest=True)
    assert duck.golden(gold, "facts") == damaged

"""Snapshot counters are raised before a failed run's swap needs them (restore.raise_counters_early,
MariaDB): while the ETL runs, ahead of the live counter by a headroom of twice the table's recent
growth (restore.counter_headroom); when the ETL fails, any still behind, past the live counter with
the swap's margin. Only when the seal holds, and sealed again (every record sharing the table), so
the proof before the RENAME, and a later reuse, stay O(1); no id is ever handed out twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etlguard import Guard
from etlguard.adapters import adapter_for
from etlguard.catalog import Catalog
from etlguard.errors import ChecksumMismatch
from etlguard.restore import COUNTER_MARGIN, counter_headroom, raise_counters_early
from test_capture import etl

from conftest import BACKENDS, Backend, _one

pytestmark = pytest.mark.skipif("mariadb" not in BACKENDS, reason="seals and counters: MariaDB")


@pytest.fixture
def maria(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("mariadb", tmp_path)


def counter(b: Backend, schema: str, name: str) -> int:
    ddl = str(b.sql(f"SHOW CREATE TABLE {b.table(schema, name)}")[0][1])
    return int(ddl.split("AUTO_INCREMENT=")[1].split()[0])


def test_raised_past_the_live_counter_and_sealed_again(maria: Backend) -> None:
    gold = maria.create_schema("gold")
    t = maria.table(gold, "orders")
    maria.sql(f"CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    maria.sql(f"INSERT INTO {t} (v) VALUES (1), (2), (3)")
    g = maria.guard([f"{gold}.orders"])
    [snap] = g.snapshot()
    assert snap.seal, "a fresh copy is sealed"
    maria.sql(f"INSERT INTO {t} (v) SELECT seq FROM mysql.seq_1_to_50")  # the failed ETL's rows
    live = counter(maria, gold, "orders")
    db = adapter_for(g.config.target, 10)
    db.connect()
    try:
        catalog = Catalog(db, g.config.catalog_schema)
        assert raise_counters_early(db, catalog, [snap]) == [snap.id]
        assert counter(maria, snap.snapshot.schema, snap.snapshot.name) == live + COUNTER_MARGIN
        record = catalog.snapshot(snap.id)
        assert record is not None and record.seal == snap.seal != None  # noqa: E711
        assert db.seals_hold([(snap.snapshot, record.seal)]) == [True], "the new seal holds"
        assert raise_counters_early(db, catalog, [snap]) == [], "already ahead: nothing to do"
        maria.sql(f"UPDATE {maria.table(snap.snapshot.schema, snap.snapshot.name)} SET v = 9 WHERE id = 1")
        maria.sql(f"INSERT INTO {t} (v) SELECT seq FROM mysql.seq_1_to_2000")
        assert raise_counters_early(db, catalog, [snap]) == [], "a broken seal: left to the swap"
    finally:
        db.close()
    with pytest.raises(ChecksumMismatch):  # the written snapshot: refused by the restore's own proof
        g.restore([f"{gold}.orders"], snapshot_ids=[snap.id])


def orders_table(maria: Backend, column: str = "id INT AUTO_INCREMENT PRIMARY KEY") -> tuple[str, str]:
    gold = maria.create_schema("gold")
    t = maria.table(gold, "orders")
    maria.sql(f"CREATE TABLE {t} ({column}, v INT) ENGINE=InnoDB")
    maria.sql(f"INSERT INTO {t} (v) VALUES (1), (2), (3)")
    return gold, t


def snapshot_counter(maria: Backend, g: Guard, snapshot_id: int) -> int:
    [record] = [s for s in g.snapshots() if s.id == snapshot_id]
    return counter(maria, record.snapshot.schema, record.snapshot.name)


def test_a_run_keeps_its_snapshot_counter_ahead_by_twice_the_recent_growth(maria: Backend) -> None:
    gold, t = orders_table(maria)
    g = maria.guard([f"{gold}.orders"], retention={"keep_last": 20, "days": None})
    g.snapshot()  # records the counter, 4
    maria.sql(f"INSERT INTO {t} (id, v) SELECT seq, seq FROM mysql.seq_4_to_203")  # 204: a growth of 200
    night = f"INSERT INTO {t} (id, v) SELECT seq, seq FROM mysql.seq_204_to_213"
    good = g.run(etl(maria, ["SLEEP", night]))
    assert good.ok, good.message
    assert snapshot_counter(maria, g, good.snapshot_ids[0]) == 204 + COUNTER_MARGIN + 2 * 200

    bad = g.run(etl(maria, ["SLEEP", f"INSERT INTO {t} (v) SELECT seq FROM mysql.seq_1_to_50"], exit=1))
    assert not bad.ok and bad.rollback_verified == [f"{gold}.orders"], bad.message
    back = 214 + COUNTER_MARGIN + 2 * 200  # the headroom's counter, not the failed run's + the margin
    assert counter(maria, gold, "orders") == back, "the snapshot renamed in was already ahead"
    maria.sql(f"INSERT INTO {t} (v) VALUES (7)")
    assert maria.sql(f"SELECT MAX(id) FROM {t}")[0][0] == back, (
        "no id of the failed run's is handed out again"
    )

    # the rollback raised the live counter by the headroom: that growth is not counted again
    after = g.run(etl(maria, ["SLEEP"]))
    assert after.ok, after.message
    assert snapshot_counter(maria, g, after.snapshot_ids[0]) == back + 1 + COUNTER_MARGIN + 2 * 200


def test_the_headroom_leaves_a_narrow_column_half_the_ids_it_has_left(maria: Backend) -> None:
    gold, t = orders_table(maria, "id TINYINT UNSIGNED AUTO_INCREMENT PRIMARY KEY")
    g = maria.guard([f"{gold}.orders"], retention={"keep_last": 20, "days": None})
    [flat] = g.snapshot()
    db = adapter_for(g.config.target, 10)
    db.connect()
    try:
        catalog = Catalog(db, g.config.catalog_schema)
        assert counter_headroom(db, catalog, [flat]) == {flat.table: 0}, "a counter that never grew: none"
        maria.sql(f"INSERT INTO {t} (id, v) SELECT seq, seq FROM mysql.seq_4_to_200")  # counter 201
        [snap] = g.snapshot()
        room = counter_headroom(db, catalog, [snap])
        assert room == {snap.table: (255 - 201) // 2}
        assert raise_counters_early(db, catalog, [snap], room) == [snap.id]
        assert counter(maria, snap.snapshot.schema, snap.snapshot.name) == 201 + 27
    finally:
        db.close()


def test_raising_a_reused_snapshot_reseals_every_record_of_its_table(maria: Backend) -> None:
    gold, _ = orders_table(maria)
    g = maria.guard([f"{gold}.orders"], retention={"keep_last": 20, "days": None})
    [first] = g.snapshot()
    [second] = g.snapshot()
    assert second.reuses == first.id, "nothing changed: the second record shares the first's table"
    db = adapter_for(g.config.target, 10)
    db.connect()
    try:
        catalog = Catalog(db, g.config.catalog_schema)
        assert raise_counters_early(db, catalog, [second], {second.table: 5000}) == [second.id]
        assert counter(maria, second.snapshot.schema, second.snapshot.name) == 4 + 5000
        for sid in (first.id, second.id):
            record = catalog.snapshot(sid)
            assert record is not None and record.seal == second.seal
            assert db.seals_hold([(record.snapshot, record.seal or "")]) == [True], sid
    finally:
        db.close()
    [third] = g.snapshot()
    assert third.reuses == first.id, "the raised snapshot table is still proven the table's state"
    g.restore([f"{gold}.orders"], snapshot_ids=[first.id])
    assert counter(maria, gold, "orders") >= 4 + 5000

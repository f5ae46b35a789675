"""A failed run's snapshots get their AUTO_INCREMENT raised while the run settles, before the
swap (restore.raise_counters_early, MariaDB): past the live counter with the swap's margin, only
when the seal holds, and sealed again, so the proof before the RENAME stays O(1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etlguard.adapters import adapter_for
from etlguard.catalog import Catalog
from etlguard.errors import ChecksumMismatch
from etlguard.restore import COUNTER_MARGIN, raise_counters_early

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

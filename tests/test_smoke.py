from __future__ import annotations

from conftest import Backend


def test_snapshot_damage_restore_round_trip(backend: Backend) -> None:
    gold = backend.create_schema("gold")
    t = backend.table(gold, "facts")
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2))")
    backend.sql(f"INSERT INTO {t} VALUES (1, 'a', 1.50), (2, NULL, NULL), (3, 'c', 3.25)")
    before = backend.golden(gold, "facts")
    shape = backend.show_create(gold, "facts")
    guard = backend.guard([f"{gold}.*"])

    [snap] = guard.snapshot()
    assert snap.verified and snap.row_count == 3

    backend.sql(f"DELETE FROM {t} WHERE id = 1")
    backend.sql(f"UPDATE {t} SET name = 'zz' WHERE id = 3")
    assert backend.golden(gold, "facts") != before

    result = guard.restore([f"{gold}.facts"], latest=True)
    assert result.verified == [f"{gold}.facts"]
    assert backend.golden(gold, "facts") == before
    assert backend.show_create(gold, "facts") == shape

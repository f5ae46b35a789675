"""Tables back in milliseconds: restores and rollbacks swap first, then verify the live table
against the snapshot's recorded fingerprint. A rollback never copies the snapshot back; a
manual restore does so only with --keep-snapshot, copying from the snapshot table."""

from __future__ import annotations

import pytest

from etlguard.errors import EXIT_ETL_FAILED, EXIT_ROLLBACK_FAILED, ChecksumMismatch, RollbackFailed

from conftest import Backend
from faultlib import Rig
from support import catalog_rows, tables_in


def _facts(backend: Backend) -> tuple[str, str]:
    gold = backend.create_schema("gold")
    t = backend.table(gold, "facts")
    backend.sql(f"CREATE TABLE {t} (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(20) NOT NULL)")
    backend.sql(f"INSERT INTO {t} VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    return gold, t


def _snapshot_row(backend: Backend, snapshot_id: int) -> dict[str, object]:
    [row] = [r for r in catalog_rows(backend) if r["id"] == snapshot_id]
    return row


def test_a_tampered_snapshot_is_refused_by_a_restore_with_every_live_table_untouched(
    backend: Backend,
) -> None:
    gold, t = _facts(backend)
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    backend.sql(f"UPDATE {t} SET name = 'damaged'")
    damaged = backend.golden(gold, "facts")
    backend.sql(f"UPDATE {backend.table(snap.snapshot.schema, snap.snapshot.name)} SET name = 'tampered'")
    with pytest.raises(ChecksumMismatch):  # a restore by hand proves the snapshot before the swap
        guard.restore([f"{gold}.facts"], latest=True)
    assert backend.golden(gold, "facts") == damaged
    assert _snapshot_row(backend, snap.id)["status"] == "verified"


def test_a_rollback_from_a_tampered_snapshot_is_exit_20_with_the_etl_table_left_live(
    backend: Backend,
) -> None:
    gold, t = _facts(backend)
    guard = backend.guard([f"{gold}.facts"])
    with pytest.raises(RollbackFailed) as failed, guard.protect() as run:
        [sid] = run.snapshot_ids
        [row] = [r for r in catalog_rows(backend) if r["id"] == sid]
        backend.sql(f"UPDATE {t} SET name = 'damaged'")
        damaged = backend.golden(gold, "facts")
        backend.sql(
            f"UPDATE {backend.table(row['snapshot_schema'], row['snapshot_table'])} SET name = 'tampered'"
        )
        raise RuntimeError("the ETL failed")
    assert failed.value.exit_code == EXIT_ROLLBACK_FAILED
    assert backend.golden(gold, "facts") == damaged  # proven before the swap: nothing was swapped in
    assert _snapshot_row(backend, sid)["status"] == "verified"


def test_a_restore_consumes_its_snapshot_unless_asked_to_keep_it(backend: Backend) -> None:
    gold, t = _facts(backend)
    guard = backend.guard([f"{gold}.facts"])
    original = backend.golden(gold, "facts")
    [first] = guard.snapshot()
    backend.sql(f"DELETE FROM {t} WHERE id = 1")

    kept = guard.restore([f"{gold}.facts"], latest=True, keep_snapshot=True)
    assert kept.verified == [f"{gold}.facts"] and backend.golden(gold, "facts") == original
    row = _snapshot_row(backend, first.id)
    assert row["status"] == "verified" and row["snapshot_table"] in tables_in(
        backend, backend.snapshot_schema
    )
    assert [v.ok for v in guard.verify([f"{gold}.facts"])] == [True, True]  # the kept one and the displaced

    backend.sql(f"DELETE FROM {t} WHERE id = 2")
    consumed = guard.restore([f"{gold}.facts"], latest=True)
    assert consumed.verified == [f"{gold}.facts"] and backend.golden(gold, "facts") == original
    row = _snapshot_row(backend, first.id)
    if backend.kind == "mariadb":  # the snapshot table is now the live table: not restorable
        assert row["status"] == "restored"
        assert row["snapshot_table"] not in tables_in(backend, backend.snapshot_schema)
    else:  # copied into place: the snapshot stays as it was
        assert row["status"] == "verified"


def test_a_rollback_swaps_the_snapshot_in_and_copies_nothing_back(backend: Backend) -> None:
    rig = Rig(backend)
    pre = rig.state()
    before = set(tables_in(backend, backend.snapshot_schema))

    run = rig.etlguard("run", "--", *rig.etl_command("fail"))

    assert run.returncode == EXIT_ETL_FAILED, run.stdout + run.stderr
    assert rig.state() == pre
    rows = catalog_rows(backend)
    snaps = [r for r in rows if r["kind"] == "snapshot"]
    displaced = [r for r in rows if r["kind"] == "displaced"]
    assert len(snaps) == len(displaced) == 2
    assert {r["status"] for r in displaced} == {"verified"}
    after = set(tables_in(backend, backend.snapshot_schema)) - before
    if backend.kind == "mariadb":  # renamed into place: consumed, and no copy made back
        assert {r["status"] for r in snaps} == {"restored"}
        assert after == {r["snapshot_table"] for r in displaced}
    else:  # copied into place: the snapshots stay; DuckDB renames the ETL's tables beside the live ones
        assert {r["status"] for r in snaps} == {"verified"}
        assert after == {r["snapshot_table"] for r in snaps}
        for r in displaced:
            assert (
                r["snapshot_table"]
                in tables_in(backend, r["table_schema"])
                == tables_in(backend, r["snapshot_schema"])
            )
    rig.assert_clean()


def test_duckdb_snapshots_beside_their_tables_are_renamed_back_and_a_tampered_one_is_refused(
    duck: Backend,
) -> None:
    """snapshot.beside_live: each snapshot is a hidden table in its table's own schema; a
    rollback proves it and renames it into place (consumed, nothing copied back), and a restore
    refuses one that was changed since it was verified, with the live table untouched."""
    rig = Rig(duck)
    rig.config = duck.write_config(rig.config, protect=[f"{rig.schema}.*"], snapshot={"beside_live": True})
    pre = rig.state()

    run = rig.etlguard("run", "--", *rig.etl_command("fail"))

    assert run.returncode == EXIT_ETL_FAILED, run.stdout + run.stderr
    assert rig.state() == pre
    rows = catalog_rows(duck)
    snaps = [r for r in rows if r["kind"] == "snapshot"]
    assert len(snaps) == 2 and {r["status"] for r in snaps} == {"restored"}
    assert {r["snapshot_schema"] for r in snaps} == {rig.schema}
    assert all(r["snapshot_table"].startswith("_etlguard_k") for r in snaps)
    assert tables_in(duck, duck.snapshot_schema) == []  # no copy anywhere
    rig.assert_clean()

    guard = duck.guard([f"{rig.schema}.*"], snapshot={"beside_live": True})
    [snap, _] = guard.snapshot()
    assert snap.snapshot.schema == rig.schema
    duck.sql(f"UPDATE {duck.table(rig.schema, snap.snapshot.name)} SET note = 'tampered'")
    duck.sql(f"UPDATE {duck.table(rig.schema, snap.table.name)} SET note = 'damaged'")
    damaged = rig.state()
    with pytest.raises(ChecksumMismatch):
        guard.restore([str(snap.table)], latest=True)
    assert rig.state() == damaged

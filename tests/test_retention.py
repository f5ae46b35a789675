"""Retention: prune deletes what the policy lets go, by id-order and never the newest verified
snapshot of a table, whatever the clock said when the snapshots were taken."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from etlguard import Retention, Snapshot, TableRef
from etlguard.retention import PruneDecision, plan_prune

from conftest import Backend
from support import catalog_rows, cli, set_taken_at, table_exists

NOW = dt.datetime(2026, 6, 1, 12, 0)
LONG_AGO = dt.datetime(2001, 1, 1)
FUTURE = dt.datetime(2099, 1, 1)


def snap(
    snapshot_id: int,
    taken_at: dt.datetime,
    table: str = "a",
    status: str = "verified",
    kind: str = "snapshot",
) -> Snapshot:
    return Snapshot(
        id=snapshot_id,
        table=TableRef("gold", table),
        snapshot=TableRef("etlguard_snapshots", f"s{snapshot_id}_abcdefgh"),
        kind=kind,
        status=status,
        taken_at=taken_at,
        row_count=1,
        size_bytes=1,
        checksum="1",
        auto_increment=None,
        structure="[]",
    )


def deleted_ids(decisions: list[PruneDecision]) -> set[int]:
    return {d.snapshot.id for d in decisions if d.delete}


def kept_ids(decisions: list[PruneDecision]) -> set[int]:
    return {d.snapshot.id for d in decisions if not d.delete}


# -- plan_prune, a pure function ------------------------------------------------------------------


def test_the_newest_verified_snapshot_is_kept_however_old() -> None:
    snaps = [snap(i, LONG_AGO + dt.timedelta(days=i)) for i in (1, 2, 3)]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert (kept_ids(decisions), deleted_ids(decisions)) == ({3}, {1, 2})
    [newest] = [d for d in decisions if not d.delete]
    assert newest.reason == "newest verified snapshot of the table"


def test_newest_is_by_id_not_by_date() -> None:
    """The newest snapshot (by id) carries the oldest date: a clock was set back before it."""
    snaps = [snap(1, NOW - dt.timedelta(hours=1)), snap(2, NOW - dt.timedelta(hours=2)), snap(3, LONG_AGO)]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert 3 in kept_ids(decisions)


def test_a_future_date_does_not_keep_an_older_snapshot_young() -> None:
    """Snapshots 1 and 2 were dated by a clock running ahead; snapshot 3, taken after them, is
    old: so are they."""
    snaps = [snap(1, FUTURE), snap(2, FUTURE + dt.timedelta(days=1)), snap(3, LONG_AGO)]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert (kept_ids(decisions), deleted_ids(decisions)) == ({3}, {1, 2})


def test_all_dates_in_the_future_keeps_them_by_age() -> None:
    snaps = [snap(i, FUTURE + dt.timedelta(days=i)) for i in (1, 2, 3)]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert kept_ids(decisions) == {1, 2, 3}


def test_keep_last_keeps_the_newest_few_whatever_their_age() -> None:
    snaps = [snap(i, LONG_AGO) for i in range(1, 6)]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=3), NOW)
    assert (kept_ids(decisions), deleted_ids(decisions)) == ({3, 4, 5}, {1, 2})


def test_days_keeps_young_snapshots_beyond_keep_last() -> None:
    snaps = [
        snap(1, NOW - dt.timedelta(days=10)),
        snap(2, NOW - dt.timedelta(days=3)),
        snap(3, NOW - dt.timedelta(days=1)),
        snap(4, NOW - dt.timedelta(hours=1)),
    ]
    decisions = plan_prune(snaps, Retention(days=2, keep_last=1), NOW)
    assert (kept_ids(decisions), deleted_ids(decisions)) == ({3, 4}, {1, 2})


def test_count_only_and_age_only_and_keep_everything() -> None:
    snaps = [snap(i, NOW - dt.timedelta(days=10 - i)) for i in range(1, 6)]  # ages 9..5 days
    assert deleted_ids(plan_prune(snaps, Retention(days=None, keep_last=2), NOW)) == {1, 2, 3}
    assert deleted_ids(plan_prune(snaps, Retention(days=7, keep_last=None), NOW)) == {1, 2}
    assert deleted_ids(plan_prune(snaps, Retention(days=1, keep_last=None), NOW)) == {1, 2, 3, 4}
    assert deleted_ids(plan_prune(snaps, Retention(days=None, keep_last=None), NOW)) == set()


def test_failed_snapshots_go_and_unfinished_or_deleted_ones_are_left_alone() -> None:
    snaps = [
        snap(1, NOW, status="verified"),
        snap(2, NOW, status="failed"),
        snap(3, NOW, status="damaged"),
        snap(4, NOW, status="creating"),  # another etlguard may be taking it right now
        snap(5, NOW, status="deleted"),
    ]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert deleted_ids(decisions) == {2, 3}
    assert 4 not in deleted_ids(decisions) and 1 in kept_ids(decisions)
    assert 5 not in {d.snapshot.id for d in decisions}


def test_a_newer_failed_snapshot_does_not_displace_the_newest_verified() -> None:
    snaps = [snap(1, LONG_AGO), snap(2, LONG_AGO), snap(3, NOW, status="failed")]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert (kept_ids(decisions), deleted_ids(decisions)) == ({2}, {1, 3})


def test_a_displaced_copy_does_not_push_out_the_snapshot_restore_latest_uses() -> None:
    """A restore keeps the table it replaced as a newer snapshot of kind 'displaced'; the
    snapshot `restore --latest` picks must still survive prune."""
    snaps = [snap(1, LONG_AGO), snap(2, LONG_AGO), snap(3, LONG_AGO + dt.timedelta(days=1), kind="displaced")]
    decisions = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert 2 in kept_ids(decisions)
    assert 1 in deleted_ids(decisions)


def test_each_table_keeps_its_own_newest_and_input_order_does_not_matter() -> None:
    snaps = [snap(i, LONG_AGO, table="ab"[i % 2]) for i in range(1, 9)]
    expected = plan_prune(snaps, Retention(days=1, keep_last=1), NOW)
    assert kept_ids(expected) == {7, 8}
    shuffled = snaps[:]
    random.Random(4).shuffle(shuffled)
    assert plan_prune(shuffled, Retention(days=1, keep_last=1), NOW) == expected


# -- prune on a real catalog ----------------------------------------------------------------------


@pytest.mark.parametrize("clock", ["long-ago", "set-back"])
def test_prune_keeps_the_newest_verified_snapshot_of_each_table(
    backend: Backend, clock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.create_schema("gold")
    for name in ("a", "b"):
        backend.sql(f"CREATE TABLE {backend.table(gold, name)} (id INTEGER PRIMARY KEY, v INTEGER)")
    guard = backend.guard([f"{gold}.*"], retention={"days": 1, "keep_last": 1})
    for round_ in range(3):
        for name in ("a", "b"):
            backend.sql(f"INSERT INTO {backend.table(gold, name)} VALUES ({round_}, {round_})")
        guard.snapshot()
    newest = {"a": 5, "b": 6}
    for row in catalog_rows(backend):
        if row["id"] in newest.values():
            when = LONG_AGO  # taken last, by a clock set far back
        else:
            when = LONG_AGO + dt.timedelta(days=row["id"]) if clock == "long-ago" else FUTURE
        set_taken_at(backend, row["id"], when)
    goldens = {name: backend.golden(gold, name) for name in ("a", "b")}
    config = backend.write_config(
        backend.tmp_path / "etlguard.yml", [f"{gold}.*"], retention={"days": 1, "keep_last": 1}
    )

    dry = cli(capsys, "prune", "--dry-run", "-c", str(config))
    assert dry.code == 0 and "4 would be deleted" in dry.out
    assert {r["status"] for r in catalog_rows(backend)} == {"verified"}

    decisions = guard.prune()

    assert deleted_ids(decisions) == {1, 2, 3, 4}
    rows = {r["id"]: r for r in catalog_rows(backend)}
    for sid, row in rows.items():
        exists = table_exists(backend, row["snapshot_schema"], row["snapshot_table"])
        if sid in newest.values():
            assert (row["status"], exists) == ("verified", True)
        else:
            assert (row["status"], exists) == ("deleted", False)
    for name in ("a", "b"):  # what is kept still restores
        backend.sql(f"DELETE FROM {backend.table(gold, name)}")
    guard.restore([f"{gold}.a", f"{gold}.b"], latest=True)
    assert {name: backend.golden(gold, name) for name in ("a", "b")} == goldens

    before = catalog_rows(backend)
    journal = catalog_rows(backend, "journal")
    again = cli(capsys, "prune", "--json", "-c", str(config))
    assert again.code == 0
    assert [d for d in json.loads(again.out) if d["delete"]] == []
    assert catalog_rows(backend) == before
    assert catalog_rows(backend, "journal") == journal


# -- displaced tables: a retention of their own -----------------------------------------------------


def test_displaced_tables_are_kept_for_displaced_days_whatever_keep_last_says() -> None:
    day = dt.timedelta(days=1)
    snaps = [
        snap(1, NOW - 20 * day),
        snap(2, NOW - 19 * day, kind="displaced"),  # older than 14 days: goes
        snap(3, NOW - 2 * day),
        snap(4, NOW - 2 * day, kind="displaced"),
        snap(5, NOW - day),
        snap(6, NOW - day, kind="displaced"),
        snap(7, NOW, kind="displaced"),
    ]
    decisions = plan_prune(snaps, Retention(days=7, keep_last=2, displaced_days=14), NOW)
    assert deleted_ids(decisions) == {1, 2}
    # the displaced copies of a night of failed runs push no restorable snapshot out
    assert {3, 5} <= kept_ids(decisions)
    reasons = {d.snapshot.id: d.reason for d in decisions}
    assert reasons[2] == "displaced, older than 14 days" and reasons[7] == "displaced, younger than 14 days"


def test_displaced_days_null_keeps_displaced_tables_forever() -> None:
    snaps = [snap(1, NOW), snap(2, LONG_AGO, kind="displaced")]
    assert kept_ids(plan_prune(snaps, Retention(days=1, keep_last=1, displaced_days=None), NOW)) == {1, 2}


@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_displaced_days_must_be_a_positive_number(duck: Backend, value: object) -> None:
    from etlguard import Config
    from etlguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"retention.displaced_days"):
        Config.from_dict(duck.settings(protect=["a.b"], retention={"displaced_days": value}))

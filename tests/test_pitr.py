"""`etlguard pitr` with the AWS calls answered by moto and the copy step run against a second
MariaDB schema standing in for the clone's database: the clone is created as asked, used, and
deleted on success, on failure and after a crash (by recover)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from etlguard import Guard
from etlguard.errors import ConfigError, EtlguardError
from etlguard.pitr import Endpoint, _create, journal_clone, new_clone, parse_when
from etlguard.target import Target, parse_target

from conftest import Backend

CLUSTER = "prod-aurora"


@pytest.fixture
def rds(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("rds")
        client.create_db_cluster(
            DBClusterIdentifier=CLUSTER,
            Engine="aurora-mysql",
            MasterUsername="etl",
            MasterUserPassword="secret123",
        )
        yield client


@pytest.fixture
def scene(maria: Backend, tmp_path: Path) -> tuple[Guard, str, str, str]:
    """A damaged live table and a 'clone' schema holding it as it was."""
    live, clone = maria.create_schema("gold"), maria.create_schema("clone")
    for schema, rows in ((live, 10), (clone, 400)):
        t = maria.table(schema, "moveouts")
        maria.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, note VARCHAR(20))")
        maria.sql(f"INSERT INTO {t} SELECT seq, CONCAT('n', seq) FROM {maria.q(schema)}.seq_1_to_{rows}")
    guard = Guard.from_config(maria.write_config(tmp_path / "etlguard.yml", []))
    return guard, live, clone, maria.url


def clusters(rds: Any) -> list[str]:
    return [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]]


def instances(rds: Any) -> list[str]:
    return [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]


def stand_in(url: str, seen: list[Endpoint]) -> Any:
    def target(endpoint: Endpoint) -> Target:
        seen.append(endpoint)
        return parse_target(url)

    return target


def test_pitr_copies_from_the_clone_and_deletes_it(
    rds: Any, scene: tuple[Guard, str, str, str], maria: Backend
) -> None:
    guard, live, clone, url = scene
    seen: list[Endpoint] = []
    calls: list[dict[str, Any]] = []
    rds.meta.events.register(
        "provide-client-params.rds.*", lambda params, model, **_: calls.append({model.name: params})
    )
    messages: list[str] = []

    result = guard.pitr(
        [f"{live}.moveouts"],
        None,
        CLUSTER,
        schema_map={live: clone},
        echo=messages.append,
        rds=rds,
        clone_target=stand_in(url, seen),
    )

    assert [str(s.table) for s in result.steps] == [f"{live}.moveouts"]
    assert maria.golden(live, "moveouts") == maria.golden(clone, "moveouts")
    [restore] = [c["RestoreDBClusterToPointInTime"] for c in calls if "RestoreDBClusterToPointInTime" in c]
    assert restore["SourceDBClusterIdentifier"] == CLUSTER
    assert (restore["RestoreType"], restore["UseLatestRestorableTime"]) == ("copy-on-write", True)
    [create] = [c["CreateDBInstance"] for c in calls if "CreateDBInstance" in c]
    assert create["DBClusterIdentifier"] == restore["DBClusterIdentifier"]
    assert create["Engine"] == "aurora-mysql"
    assert len(seen) == 1 and seen[0].host  # the clone's endpoint, as RDS described it
    assert clusters(rds) == [CLUSTER] and instances(rds) == []  # the clone is gone
    assert any(m.startswith("deleted clone etlguard-pitr-") for m in messages)
    assert guard.recover().nothing_to_do


def test_an_earlier_time_is_a_full_copy_restore(rds: Any, scene: tuple[Guard, str, str, str]) -> None:
    guard, live, clone, url = scene
    calls: list[dict[str, Any]] = []
    rds.meta.events.register(
        "provide-client-params.rds.*", lambda params, model, **_: calls.append({model.name: params})
    )
    earliest = rds.describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0][
        "EarliestRestorableTime"
    ]
    when = parse_when((earliest + dt.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S"))
    assert when is not None and when > earliest

    guard.pitr(
        [f"{live}.moveouts"], when, CLUSTER, schema_map={live: clone}, rds=rds, clone_target=stand_in(url, [])
    )

    [restore] = [c["RestoreDBClusterToPointInTime"] for c in calls if "RestoreDBClusterToPointInTime" in c]
    assert (restore["RestoreType"], restore["RestoreToTime"]) == ("full-copy", when)


def test_a_failed_copy_still_deletes_the_clone(
    rds: Any, scene: tuple[Guard, str, str, str], maria: Backend
) -> None:
    guard, live, _, url = scene
    before = maria.golden(live, "moveouts")
    with pytest.raises(EtlguardError, match=r"no_such_schema"):
        guard.pitr(
            [f"{live}.moveouts"],
            None,
            CLUSTER,
            schema_map={live: "no_such_schema"},
            rds=rds,
            clone_target=stand_in(url, []),
        )
    assert maria.golden(live, "moveouts") == before
    assert clusters(rds) == [CLUSTER] and instances(rds) == []
    assert guard.recover().nothing_to_do


def test_ctrl_c_during_the_wait_deletes_the_clone(rds: Any, scene: tuple[Guard, str, str, str]) -> None:
    guard, live, clone, url = scene

    def interrupt(endpoint: Endpoint) -> Target:
        os.kill(os.getpid(), signal.SIGINT)  # as if the person pressed Ctrl-C once the clone was up
        return parse_target(url)

    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyboardInterrupt):
        guard.pitr(
            [f"{live}.moveouts"], None, CLUSTER, schema_map={live: clone}, rds=rds, clone_target=interrupt
        )
    assert clusters(rds) == [CLUSTER] and instances(rds) == []


def test_recover_deletes_a_clone_left_by_a_crash(rds: Any, scene: tuple[Guard, str, str, str]) -> None:
    """What a SIGKILL between creating the clone and deleting it leaves: the journal entry
    written before the clone was asked for, and the clone itself, with nothing cleaning up."""
    guard, live, _, _ = scene
    clone = new_clone(CLUSTER, None)
    journal_clone(guard, clone)  # the state a crash leaves
    [source] = rds.describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"]
    _create(rds, clone, source, None, "db.r6g.large")
    assert sorted(clusters(rds)) == sorted([CLUSTER, clone.cluster]) and instances(rds) == [clone.instance]
    guard.snapshot([f"{live}.moveouts"])  # a leftover clone blocks no other command

    report = guard.recover()

    assert clusters(rds) == [CLUSTER] and instances(rds) == []
    assert report.actions == [f"pitr (journal 1): deleted clone {clone.instance}, {clone.cluster}"]
    assert guard.recover().nothing_to_do


def test_a_time_before_the_earliest_restorable_time_is_refused(
    rds: Any, scene: tuple[Guard, str, str, str]
) -> None:
    guard, live, _, url = scene
    earliest = rds.describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0].get(
        "EarliestRestorableTime"
    )
    if earliest is None:
        pytest.skip("moto reports no EarliestRestorableTime for this cluster")
    with pytest.raises(ConfigError, match="before the earliest restorable time"):
        guard.pitr(
            [f"{live}.moveouts"],
            earliest - dt.timedelta(days=1),
            CLUSTER,
            rds=rds,
            clone_target=stand_in(url, []),
        )
    assert clusters(rds) == [CLUSTER]


def test_times_are_utc_unless_an_offset_is_given() -> None:
    assert parse_when("2026-02-03 06:00") == dt.datetime(2026, 2, 3, 6, 0, tzinfo=dt.UTC)
    assert parse_when("2026-02-03T15:00+09:00") == dt.datetime(2026, 2, 3, 6, 0, tzinfo=dt.UTC)
    assert parse_when("latest") is None


def test_bad_times_are_one_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_when("yesterday at six")
    assert (
        str(exc.value)
        == "--time 'yesterday at six' is not a time; write 2026-02-03T06:00:00Z or 2026-02-03 06:00"
    )

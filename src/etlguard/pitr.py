"""`etlguard pitr`: the design note's hand-run "Aurora PITR" procedure, made safe.

A clone of the cluster at time T is created, given one instance, and waited for. RDS makes
copy-on-write clones (fast and cheap: storage pages are shared until they diverge) only of the
latest restorable time and refuses `RestoreToTime` with them, so `--time latest` gets a
copy-on-write clone and an earlier time gets a full-copy point-in-time restore. The named tables
are then copied from it with `restore --from` (verified by fingerprint, swapped in atomically).
The clone is deleted afterwards, also after a failure or Ctrl-C; its names are journaled before
it is created, so `etlguard recover` deletes a clone that a crash left behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, EtlguardError
from .tables import TableRef
from .target import Target

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .guard import Guard
    from .restore import RestoreResult

Echo = Callable[[str], None]
DEFAULT_INSTANCE_CLASS = "db.r6g.large"
# What `etlguard pitr` calls; docs/recovery.md and deploy/terraform grant exactly these.
IAM_ACTIONS = (
    "rds:DescribeDBClusters",
    "rds:DescribeDBInstances",
    "rds:RestoreDBClusterToPointInTime",
    "rds:CreateDBInstance",
    "rds:DeleteDBInstance",
    "rds:DeleteDBCluster",
    "rds:AddTagsToResource",
)


@dataclass(frozen=True)
class Clone:
    cluster: str  # the clone's cluster identifier
    instance: str
    source: str
    region: str | None

    def as_payload(self) -> dict[str, Any]:
        return {
            "clone_cluster": self.cluster,
            "clone_instance": self.instance,
            "source": self.source,
            "region": self.region,
        }


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class Options:
    keep_clone: bool = False
    instance_class: str = DEFAULT_INSTANCE_CLASS
    region: str | None = None
    echo: Echo | None = None
    rds: Any = None  # a boto3 RDS client; made for `region` when None
    clone_target: Callable[[Endpoint], Target] | None = None


def point_in_time_restore(
    guard: Guard,
    tables: Sequence[str | TableRef],
    when: dt.datetime | None,
    cluster: str,
    schema_map: Mapping[str, str] | None,
    options: Options,
) -> RestoreResult:
    """Journal the clone, make it, restore --from it, delete it; the journal entry stays open
    only if a crash (or a failed delete) leaves a clone behind, for `recover` to delete."""
    say = options.echo or log.info
    clone = new_clone(cluster, options.region)
    rds = options.rds if options.rds is not None else rds_client(options.region)
    entry = journal_clone(guard, clone)
    try:
        with running_clone(rds, clone, when, options.instance_class, say, options.keep_clone) as endpoint:
            source = options.clone_target(endpoint) if options.clone_target else _at(guard, endpoint)
            result = guard.restore_from(tables, source, schema_map)
    except BaseException:
        if not options.keep_clone:
            delete_clone(rds, clone)  # idempotent; if it raises, the entry stays open for recover
        _close(guard, entry, "failed")
        raise
    _close(guard, entry, "kept" if options.keep_clone else "done")
    return result


def journal_clone(guard: Guard, clone: Clone) -> int:
    """Write the clone's names to the journal before it exists."""
    with guard.session("pitr", check_journal=False) as (_, catalog):
        return catalog.begin("pitr", clone.as_payload())


def _close(guard: Guard, entry: int, state: str) -> None:
    with guard.session("pitr", check_journal=False) as (_, catalog):
        catalog.finish(entry, state)


def _at(guard: Guard, endpoint: Endpoint) -> Target:
    return dataclasses.replace(guard.config.target, host=endpoint.host, port=endpoint.port)


def new_clone(source: str, region: str | None) -> Clone:
    """Names that are etlguard's (a prefix and a random token), under RDS's 63-character limit."""
    token = secrets.token_hex(4)
    name = f"etlguard-pitr-{token}"
    return Clone(cluster=name, instance=f"{name}-1", source=source, region=region)


def parse_when(text: str) -> dt.datetime | None:
    """An ISO time (without an offset: UTC, as RDS takes it), or `latest` (None)."""
    if text.strip().lower() == "latest":
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--time {text!r} is not a time; write 2026-02-03T06:00:00Z or 2026-02-03 06:00"
        ) from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def rds_client(region: str | None) -> Any:
    import boto3

    return boto3.client("rds", region_name=region)


@contextmanager
def running_clone(
    rds: Any,
    clone: Clone,
    when: dt.datetime | None,
    instance_class: str,
    echo: Echo,
    keep: bool = False,
    poll: float = 15.0,
) -> Iterator[Endpoint]:
    """Create the clone, wait until it serves, yield its endpoint; delete it on the way out."""
    try:
        source = _describe_source(rds, clone.source, when)
        _create(rds, clone, source, when, instance_class)
        echo(f"restoring clone {clone.cluster} of {clone.source} to {_point(when)}")
        yield _wait(rds, clone, echo, poll)
    finally:
        if keep:
            echo(
                f"kept clone {clone.cluster}: delete it with `aws rds delete-db-instance` and `delete-db-cluster`"
            )
        else:
            delete_clone(rds, clone)
            echo(f"deleted clone {clone.cluster}")


def _point(when: dt.datetime | None) -> str:
    return "the latest restorable time (copy-on-write)" if when is None else f"{when:%Y-%m-%d %H:%M:%S} UTC"


def _describe_source(rds: Any, cluster: str, when: dt.datetime | None) -> dict[str, Any]:
    import botocore.exceptions

    try:
        [source] = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"]
    except botocore.exceptions.ClientError as exc:
        raise ConfigError(f"cannot use cluster {cluster!r}: {exc.response['Error']['Message']}") from exc
    earliest = source.get("EarliestRestorableTime")
    if when is not None and earliest is not None and when < earliest:
        raise ConfigError(
            f"--time {when:%Y-%m-%d %H:%M:%S} UTC is before the earliest restorable time of {cluster} "
            f"({earliest:%Y-%m-%d %H:%M:%S} UTC); use a later time or restore a snapshot"
        )
    return dict(source)


def _create(
    rds: Any, clone: Clone, source: dict[str, Any], when: dt.datetime | None, instance_class: str
) -> None:
    tags = [{"Key": "etlguard", "Value": "pitr-clone"}, {"Key": "etlguard-source", "Value": clone.source}]
    network: dict[str, Any] = {}
    if source.get("DBSubnetGroup"):
        network["DBSubnetGroupName"] = source["DBSubnetGroup"]
    groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])]
    if groups:
        network["VpcSecurityGroupIds"] = groups
    _aws(
        rds.restore_db_cluster_to_point_in_time,
        DBClusterIdentifier=clone.cluster,
        SourceDBClusterIdentifier=clone.source,
        Tags=tags,
        **_restore_point(when),
        **network,
    )
    _aws(
        rds.create_db_instance,
        DBInstanceIdentifier=clone.instance,
        DBClusterIdentifier=clone.cluster,
        Engine=source["Engine"],
        DBInstanceClass=instance_class,
        Tags=tags,
    )


def _restore_point(when: dt.datetime | None) -> dict[str, Any]:
    if when is None:
        return {"RestoreType": "copy-on-write", "UseLatestRestorableTime": True}
    return {"RestoreType": "full-copy", "RestoreToTime": when}


def _wait(rds: Any, clone: Clone, echo: Echo, poll: float) -> Endpoint:
    """Poll (with progress) until the clone's cluster and its instance are available."""
    started = time.monotonic()
    while True:
        [cluster] = _aws(rds.describe_db_clusters, DBClusterIdentifier=clone.cluster)["DBClusters"]
        [instance] = _aws(rds.describe_db_instances, DBInstanceIdentifier=clone.instance)["DBInstances"]
        states = (cluster.get("Status"), instance.get("DBInstanceStatus"))
        if states == ("available", "available"):
            return Endpoint(cluster["Endpoint"], int(cluster.get("Port") or 3306))
        if "failed" in states or "incompatible-restore" in states:
            raise EtlguardError(
                f"clone {clone.cluster} did not come up: cluster {states[0]}, instance {states[1]}"
            )
        echo(
            f"waiting for clone {clone.cluster}: cluster {states[0]}, instance {states[1]} ({time.monotonic() - started:.0f} s)"
        )
        time.sleep(poll)


def delete_clone(rds: Any, clone: Clone) -> list[str]:
    """Delete the instance, then the cluster, without final snapshots; gone already is fine."""
    deleted = []
    for call, key, name in (
        (rds.delete_db_instance, "DBInstanceIdentifier", clone.instance),
        (rds.delete_db_cluster, "DBClusterIdentifier", clone.cluster),
    ):
        if _delete(call, name, **{key: name, "SkipFinalSnapshot": True}):
            deleted.append(name)
    return deleted


def _delete(call: Callable[..., Any], name: str, **kwargs: Any) -> bool:
    import botocore.exceptions

    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in (
            "DBInstanceNotFound",
            "DBInstanceNotFoundFault",
            "DBClusterNotFoundFault",
        ):
            return False
        raise EtlguardError(f"could not delete {name}: {exc.response['Error']['Message']}") from exc
    return True


def _aws(call: Callable[..., Any], **kwargs: Any) -> Any:
    import botocore.exceptions

    try:
        return call(**kwargs)
    except botocore.exceptions.ClientError as exc:
        raise EtlguardError(f"AWS refused {exc.operation_name}: {exc.response['Error']['Message']}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise EtlguardError(f"AWS call failed: {exc}") from exc


__all__ = [
    "IAM_ACTIONS",
    "Clone",
    "Endpoint",
    "Options",
    "delete_clone",
    "journal_clone",
    "new_clone",
    "parse_when",
    "point_in_time_restore",
    "running_clone",
]

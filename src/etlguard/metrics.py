"""Metrics for every guarded run: CloudWatch, a Prometheus textfile, a Pushgateway.

Each sink is independent and optional; a sink that fails becomes a note in the run record and
never changes the run's outcome. CloudWatch data is published twice, once with the dimension
JobName alone (what the Terraform alarms in deploy/terraform watch: CloudWatch does not add up
across dimensions, so an alarm on {JobName} sees only data published with exactly {JobName})
and once with JobName and Target, for dashboards per database.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, generate_latest, pushadd_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from .config.notify import CloudWatchSettings, MetricSettings
from .posting import post

if TYPE_CHECKING:
    from .config import Config
    from .run import RunResult
    from .target import Target

STATUSES = ("ok", "etl_failed", "audit_failed", "snapshot_failed", "rollback_failed")
_CHUNK = 20  # PutMetricData's per-call limit before 2023; still safe everywhere


def target_label(target: Target) -> str:
    """The target without user or password: dialect://host:port[/database], or the DuckDB file."""
    if target.dialect == "duckdb":
        return f"duckdb:///{target.database}"
    db = f"/{target.database}" if target.database else ""
    return f"{target.dialect}://{target.host}:{target.port}{db}"


# -- the numbers ----------------------------------------------------------------------------------


def values(result: RunResult) -> dict[str, float]:
    """One run's numbers, by CloudWatch metric name."""
    return {
        "RunsSucceeded": float(result.status == "ok"),
        "RunsFailed": float(result.status != "ok"),
        "RunsRolledBack": float(result.status in ("etl_failed", "audit_failed")),
        "RollbackFailures": float(result.status == "rollback_failed"),
        "SnapshotSeconds": round(result.snapshot_seconds, 3),
        "SnapshotBytes": float(result.snapshot_bytes),
        "EtlSeconds": round(result.etl.seconds, 3) if result.etl else 0.0,
    }


_UNITS = {"SnapshotSeconds": "Seconds", "EtlSeconds": "Seconds", "SnapshotBytes": "Bytes"}


def cloudwatch_data(result: RunResult, job_name: str, target: str) -> list[dict[str, Any]]:
    by_job = [{"Name": "JobName", "Value": job_name}]
    by_target = [*by_job, {"Name": "Target", "Value": target[:1024]}]
    return [
        {"MetricName": name, "Dimensions": dims, "Value": value, "Unit": _UNITS.get(name, "Count")}
        for dims in (by_job, by_target)
        for name, value in values(result).items()
    ]


_PROM = (  # name, help; values in this order in `_gauges`
    ("etlguard_last_run_timestamp_seconds", "Unix time the last guarded run finished."),
    ("etlguard_last_run_id", "Run id of the last guarded run in the catalog."),
    ("etlguard_last_run_success", "1 if the last guarded run succeeded, else 0."),
    ("etlguard_last_run_exit_code", "etlguard's exit code for the last guarded run."),
    ("etlguard_last_run_rolled_back", "1 if the last run failed and was rolled back and verified."),
    ("etlguard_last_rollback_failed", "1 if the last run's rollback failed: a person must act."),
    ("etlguard_last_snapshot_seconds", "Seconds the last run spent taking snapshots."),
    ("etlguard_last_snapshot_bytes", "Bytes of the last run's snapshots."),
    ("etlguard_last_etl_seconds", "Seconds the last run's ETL command ran (0 if it never started)."),
    ("etlguard_last_run_seconds", "Seconds the last guarded run took in all."),
    ("etlguard_last_protected_tables", "Tables in the last run's protected set."),
)
_STATUS = ("etlguard_last_run_status", "1 for the status of the last guarded run, 0 for the others.")
_LAST_SUCCESS = ("etlguard_last_success_timestamp_seconds", "Unix time of the last successful run.")


def prometheus_registry(
    result: RunResult, job_name: str, target: str, now: float | None = None, last_success: float | None = None
) -> CollectorRegistry:
    """The run's gauges, labelled with the job and the target. The last success time is `now`
    after a good run, else `last_success` (carried over by the caller), else absent: batch-job
    practice is to alert when it is older than a day."""
    now = time.time() if now is None else now
    registry = CollectorRegistry(auto_describe=True)
    labels = {"job_name": job_name, "target": target}
    for (name, help_text), number in zip(_PROM, _gauges(result, now), strict=True):
        Gauge(name, help_text, list(labels), registry=registry).labels(**labels).set(number)
    status = Gauge(*_STATUS, [*labels, "status"], registry=registry)
    for s in STATUSES:
        status.labels(**labels, status=s).set(int(result.status == s))
    success = now if result.ok else last_success
    if success is not None:
        Gauge(*_LAST_SUCCESS, list(labels), registry=registry).labels(**labels).set(success)
    return registry


def _gauges(result: RunResult, now: float) -> list[float]:
    v = values(result)
    return [
        now,
        result.run_id or 0,
        v["RunsSucceeded"],
        result.exit_code,
        v["RunsRolledBack"],
        v["RollbackFailures"],
        v["SnapshotSeconds"],
        v["SnapshotBytes"],
        v["EtlSeconds"],
        round(result.total_seconds, 3),
        len(result.protected),
    ]


def prometheus_text(registry: CollectorRegistry) -> str:
    """The Prometheus text exposition format, for node_exporter's textfile collector."""
    return generate_latest(registry).decode("utf-8")


# -- the sinks --------------------------------------------------------------------------------------


def put_cloudwatch(settings: CloudWatchSettings, data: list[dict[str, Any]], timeout: float) -> None:
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise RuntimeError("boto3 is not installed; pip install 'etlguard[aws]'") from None
    client = boto3.client(
        "cloudwatch",
        region_name=settings.region,
        config=BotoConfig(connect_timeout=timeout, read_timeout=timeout),
    )
    for i in range(0, len(data), _CHUNK):
        client.put_metric_data(Namespace=settings.namespace, MetricData=data[i : i + _CHUNK])


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Write aside in the same directory, readable by node_exporter (often another user), then
    rename: node_exporter never reads half a file. prometheus_client's own write_to_textfile
    leaves the mode to the umask, so under a strict umask the collector could not read the file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(prometheus_text(registry))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def last_success(path: Path) -> float | None:
    """The last success time in an earlier textfile, so a failed run keeps it and "no success
    for a day" alerts still work."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            if family.name == _LAST_SUCCESS[0] and family.samples:
                return float(family.samples[0].value)
    except ValueError:  # a damaged file: this run's file replaces it
        return None
    return None


def push(gateway: str, job_name: str, registry: CollectorRegistry, timeout: float) -> None:
    """POST to the Pushgateway's group for this job (prometheus_client's pushadd). POST, not
    PUT, replaces only the series pushed, so a failed run leaves the last success time of an
    earlier run in place. Basic auth comes from the URL's user and password."""
    parts = urlsplit(gateway)
    auth: dict[str, str] = {}
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth["Authorization"] = "Basic " + base64.b64encode(token).decode()
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        gateway = urlunsplit(parts._replace(netloc=netloc))

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Any:
        return lambda: post(url, data, {**dict(headers), **auth}, timeout or 10.0)

    pushadd_to_gateway(gateway, job=job_name, registry=registry, timeout=timeout, handler=handler)


def publish(config: Config, result: RunResult) -> list[str]:
    """Every configured sink, each on its own; returns a note per failed sink."""
    settings: MetricSettings = config.metrics
    if not settings.enabled:
        return []
    target, job, now = target_label(config.target), config.job_name, time.time()
    sinks: list[tuple[str, Any]] = []
    if settings.cloudwatch:
        cw = settings.cloudwatch
        sinks.append(
            (
                "CloudWatch",
                lambda: put_cloudwatch(cw, cloudwatch_data(result, job, target), settings.timeout_seconds),
            )
        )
    if settings.prometheus_file:
        path = settings.prometheus_file
        textfile = prometheus_registry(result, job, target, now, last_success(path))
        sinks.append(("the Prometheus file", lambda: write_textfile(path, textfile)))
    if settings.pushgateway:
        gateway, pushed = settings.pushgateway, prometheus_registry(result, job, target, now)
        sinks.append(("the Pushgateway", lambda: push(gateway, job, pushed, settings.timeout_seconds)))
    return [note for name, sink in sinks if (note := _attempt(config, name, sink))]


def _attempt(config: Config, name: str, sink: Any) -> str:
    try:
        sink()
    except Exception as exc:  # a metrics outage must never fail a run
        reason = " ".join((str(exc) or type(exc).__name__).split())
        return f"metrics to {name} failed: {config.secrets.scrub(reason)[:500]}"
    return ""


__all__ = [
    "cloudwatch_data",
    "prometheus_registry",
    "prometheus_text",
    "publish",
    "target_label",
    "values",
]

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
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .config.notify import CloudWatchSettings, MetricSettings

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


_PROM = (  # name, help; values in this order in prometheus_text
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


def prometheus_text(result: RunResult, job_name: str, target: str, now: float | None = None) -> str:
    """The Prometheus text exposition format, for node_exporter's textfile collector."""
    now = time.time() if now is None else now
    v = values(result)
    numbers = [
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
    labels = f'job_name="{_escape(job_name)}",target="{_escape(target)}"'
    lines: list[str] = []
    for (name, help_text), number in zip(_PROM, numbers, strict=True):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{labels}}} {_num(number)}"]
    lines += [
        "# HELP etlguard_last_run_status 1 for the status of the last guarded run, 0 for the others.",
        "# TYPE etlguard_last_run_status gauge",
        *(f'etlguard_last_run_status{{{labels},status="{s}"}} {int(result.status == s)}' for s in STATUSES),
    ]
    if result.ok:  # batch-job practice: alert when this is older than a day
        lines += [
            "# HELP etlguard_last_success_timestamp_seconds Unix time of the last successful run.",
            "# TYPE etlguard_last_success_timestamp_seconds gauge",
            f"etlguard_last_success_timestamp_seconds{{{labels}}} {_num(now)}",
        ]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


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


def write_textfile(path: Path, text: str) -> None:
    """Write aside in the same directory, then rename: node_exporter never reads half a file.
    A failed run keeps the previous file's last-success time, so "no success for a day" works."""
    if "etlguard_last_success_timestamp_seconds{" not in text:
        text += _last_success(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # node_exporter usually runs as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _last_success(path: Path) -> str:
    try:
        old = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    kept = [line for line in old if line.startswith("# HELP etlguard_last_success_timestamp_seconds")]
    kept += [line for line in old if line.startswith("# TYPE etlguard_last_success_timestamp_seconds")]
    kept += [line for line in old if line.startswith("etlguard_last_success_timestamp_seconds{")]
    return "\n".join(kept) + "\n" if kept else ""


def push(gateway: str, job_name: str, text: str, timeout: float) -> None:
    """POST to the Pushgateway's group for this job. POST (not PUT) replaces only the series
    pushed, so a failed run leaves the last success time of an earlier run in place."""
    parts = urlsplit(gateway)
    headers = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(auth).decode()
        netloc = parts.hostname or ""
        netloc += f":{parts.port}" if parts.port else ""
        parts = parts._replace(netloc=netloc)
    url = urlunsplit(parts) + _group_path(job_name)
    request = urllib.request.Request(url, data=text.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 300:
            raise RuntimeError(f"HTTP {response.status}")


def _group_path(job_name: str) -> str:
    if "/" in job_name:  # the Pushgateway's documented escape for a slash in a label value
        return "/metrics/job@base64/" + base64.urlsafe_b64encode(job_name.encode()).decode()
    return "/metrics/job/" + quote(job_name, safe="")


def publish(config: Config, result: RunResult) -> list[str]:
    """Every configured sink, each on its own; returns a note per failed sink."""
    settings: MetricSettings = config.metrics
    if not settings.enabled:
        return []
    target = target_label(config.target)
    job = config.job_name
    sinks: list[tuple[str, Any]] = []
    if settings.cloudwatch:
        cw = settings.cloudwatch
        sinks.append(
            (
                "CloudWatch",
                lambda: put_cloudwatch(cw, cloudwatch_data(result, job, target), settings.timeout_seconds),
            )
        )
    text = prometheus_text(result, job, target)
    if settings.prometheus_file:
        path = settings.prometheus_file
        sinks.append(("the Prometheus file", lambda: write_textfile(path, text)))
    if settings.pushgateway:
        gateway = settings.pushgateway
        sinks.append(("the Pushgateway", lambda: push(gateway, job, text, settings.timeout_seconds)))
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
    "prometheus_text",
    "publish",
    "target_label",
    "values",
]

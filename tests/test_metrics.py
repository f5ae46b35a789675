"""Metrics of real guarded runs: CloudWatch (through moto), the Prometheus textfile for
node_exporter, and a Pushgateway (a local HTTP server). A sink that is down never changes
a run's outcome."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from etlguard.errors import EXIT_ETL_FAILED, EXIT_OK
from etlguard.metrics import target_label
from etlguard.target import parse_target

from alertlib import FAIL, SUCCEED, http_server, warehouse
from conftest import Backend

_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")


def samples(text: str) -> dict[tuple[str, str], float]:
    """Parse the text exposition format: {(name, 'label="value",...'): value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, line
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield


def test_target_label_has_no_user_or_password() -> None:
    target = parse_target("mysql+pymysql://etl:pw@aurora.example:3306/gold")
    assert target_label(target) == "mysql://aurora.example:3306/gold"
    assert target_label(parse_target("duckdb:///data/w.duckdb")) == "duckdb:///data/w.duckdb"


# -- CloudWatch -----------------------------------------------------------------------------------


def _statistics(cw: object, name: str, dims: list[dict[str, str]]) -> tuple[float, float, str]:
    now = dt.datetime.now(dt.UTC)
    points = cw.get_metric_statistics(  # type: ignore[attr-defined]
        Namespace="etlguard",
        MetricName=name,
        Dimensions=dims,
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(minutes=5),
        Period=3600,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert len(points) == 1, (name, dims, points)
    return points[0]["Sum"], points[0]["SampleCount"], points[0]["Unit"]


def test_cloudwatch_gets_every_metric_by_job_and_by_target(duck: Backend, aws: None) -> None:
    import boto3

    tables = warehouse(duck)
    guard = duck.guard(
        tables,
        job_name="nightly-dbt",
        metrics={"cloudwatch": {"namespace": "etlguard", "region": "ap-northeast-1"}},
    )

    failed = guard.run(FAIL)
    succeeded = guard.run(SUCCEED)

    assert (failed.exit_code, succeeded.exit_code) == (EXIT_ETL_FAILED, EXIT_OK)
    assert not [n for n in failed.notes + succeeded.notes if n.startswith("metrics")]
    cw = boto3.client("cloudwatch", region_name="ap-northeast-1")
    by_target = [
        {"Name": "JobName", "Value": "nightly-dbt"},
        {"Name": "Target", "Value": f"duckdb:///{duck.path}"},
    ]  # type: ignore[attr-defined]
    expected = {
        "RunsSucceeded": (1.0, "Count"),
        "RunsFailed": (1.0, "Count"),
        "RunsRolledBack": (1.0, "Count"),
        "RollbackFailures": (0.0, "Count"),
        "SnapshotBytes": (float(failed.snapshot_bytes + succeeded.snapshot_bytes), "Bytes"),
        "SnapshotSeconds": (
            round(failed.snapshot_seconds, 3) + round(succeeded.snapshot_seconds, 3),
            "Seconds",
        ),
        "EtlSeconds": (round(failed.etl.seconds, 3) + round(succeeded.etl.seconds, 3), "Seconds"),  # type: ignore[union-attr]
    }
    for name, (total, unit) in expected.items():
        got_sum, count, got_unit = _statistics(cw, name, by_target)
        assert (got_sum, count, got_unit) == (pytest.approx(total), 2, unit), name
    assert failed.snapshot_bytes > 0
    # every metric also exists with JobName alone, the dimension set the Terraform alarms watch
    # (moto, unlike CloudWatch, matches dimension subsets, so the values are read by_target above)
    listed = cw.list_metrics(Namespace="etlguard")["Metrics"]
    dimension_sets = {(m["MetricName"], tuple(d["Name"] for d in m["Dimensions"])) for m in listed}
    assert dimension_sets == {(n, d) for n in expected for d in (("JobName",), ("JobName", "Target"))}
    assert {d["Value"] for m in listed for d in m["Dimensions"] if d["Name"] == "JobName"} == {"nightly-dbt"}


def test_cloudwatch_failure_is_a_note(duck: Backend, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = warehouse(duck)
    guard = duck.guard(
        tables, metrics={"cloudwatch": {"namespace": "etlguard", "region": "no-such-region-1"}}
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")  # no credentials: boto3 refuses before any network

    result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    [note] = result.notes
    assert note.startswith("metrics to CloudWatch failed: ")


# -- Prometheus textfile -------------------------------------------------------------------------


def test_prometheus_file_has_the_last_run(duck: Backend, tmp_path: Path) -> None:
    tables = warehouse(duck)
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    prom = textfile_dir / "etlguard.prom"
    guard = duck.guard(tables, job_name="nightly-dbt", metrics={"prometheus_file": str(prom)})
    labels = f'job_name="nightly-dbt",target="duckdb:///{duck.path}"'  # type: ignore[attr-defined]

    ok = guard.run(SUCCEED)
    first = samples(prom.read_text())
    failed = guard.run(FAIL)
    second = samples(prom.read_text())

    assert first[("etlguard_last_run_success", labels)] == 1
    assert first[("etlguard_last_run_id", labels)] == ok.run_id
    success_time = first[("etlguard_last_success_timestamp_seconds", labels)]
    assert success_time == first[("etlguard_last_run_timestamp_seconds", labels)]
    assert second == {
        **second,
        ("etlguard_last_run_id", labels): failed.run_id,
        ("etlguard_last_run_success", labels): 0,
        ("etlguard_last_run_exit_code", labels): EXIT_ETL_FAILED,
        ("etlguard_last_run_rolled_back", labels): 1,
        ("etlguard_last_rollback_failed", labels): 0,
        ("etlguard_last_snapshot_bytes", labels): failed.snapshot_bytes,
        ("etlguard_last_snapshot_seconds", labels): round(failed.snapshot_seconds, 3),
        ("etlguard_last_etl_seconds", labels): round(failed.etl.seconds, 3),  # type: ignore[union-attr]
        ("etlguard_last_protected_tables", labels): 2,
        ("etlguard_last_success_timestamp_seconds", labels): success_time,  # kept from the good run
    }
    statuses = {  # label order is not part of the format: prometheus_client sorts them
        re.search(r'status="([^"]*)"', k[1]).group(1): v  # type: ignore[union-attr]
        for k, v in second.items()
        if k[0] == "etlguard_last_run_status"
    }
    assert statuses == {
        "ok": 0,
        "etl_failed": 1,
        "audit_failed": 0,
        "snapshot_failed": 0,
        "rollback_failed": 0,
    }
    assert sorted(p.name for p in textfile_dir.iterdir()) == ["etlguard.prom"]  # no temp files left
    assert oct(prom.stat().st_mode & 0o777) == "0o644"


def test_prometheus_file_in_a_missing_directory_is_a_note(duck: Backend, tmp_path: Path) -> None:
    tables = warehouse(duck)
    guard = duck.guard(tables, metrics={"prometheus_file": str(tmp_path / "missing" / "etlguard.prom")})

    result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    [note] = result.notes
    assert note.startswith("metrics to the Prometheus file failed: [Errno 2] No such file or directory")


# -- Pushgateway -----------------------------------------------------------------------------------


def test_pushgateway_gets_the_same_series(duck: Backend) -> None:
    tables = warehouse(duck)
    with http_server() as gateway:
        guard = duck.guard(tables, job_name="nightly dbt", metrics={"pushgateway": gateway.url + "/"})
        result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED and result.notes == []
    [request] = gateway.requests
    # the job's group; a space (or slash) in the name is sent base64-encoded, as Pushgateway 0.9+ reads it
    assert (request.method, request.path) == ("POST", "/metrics/job@base64/bmlnaHRseSBkYnQ=")
    assert request.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    pushed = samples(request.body.decode())
    labels = f'job_name="nightly dbt",target="duckdb:///{duck.path}"'  # type: ignore[attr-defined]
    assert pushed[("etlguard_last_run_exit_code", labels)] == EXIT_ETL_FAILED
    assert pushed[("etlguard_last_run_rolled_back", labels)] == 1


def test_pushgateway_basic_auth_comes_from_the_url(duck: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = warehouse(duck)
    monkeypatch.setenv("PUSH_PASSWORD", "push-s3cret")
    with http_server() as gateway:
        url = f"http://etl:${{PUSH_PASSWORD}}@127.0.0.1:{gateway.port}"
        guard = duck.guard(tables, job_name="a/b", metrics={"pushgateway": url})
        guard.run(FAIL)

    [request] = gateway.requests
    assert request.path == "/metrics/job@base64/YS9i"
    assert request.headers["Authorization"] == "Basic ZXRsOnB1c2gtczNjcmV0"  # etl:push-s3cret


def test_pushgateway_down_is_a_note_and_the_other_sinks_still_run(duck: Backend, tmp_path: Path) -> None:
    tables = warehouse(duck)
    prom = tmp_path / "etlguard.prom"
    with http_server() as hook:
        guard = duck.guard(
            tables,
            alerts={"channels": [{"webhook": hook.url}]},
            metrics={"pushgateway": "http://127.0.0.1:1", "prometheus_file": str(prom)},
        )
        result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    assert result.notes[0] == f"alert sent via webhook {hook.url}"
    assert result.notes[1].startswith("metrics to the Pushgateway failed: ")
    assert "Connection refused" in result.notes[1]
    assert len(result.notes) == 2 and prom.exists()

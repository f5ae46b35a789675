"""`etlguard report` and `etlguard cost` from a catalog filled by real guarded runs (succeeded,
rolled back after an ETL failure, rolled back after a failed audit, pruned by retention). The
page is opened in headless Chromium: no console errors, no network requests, readable on a
phone, and the numbers on it equal the catalog's. The screenshot is kept as a test artifact."""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from etlguard import Guard
from etlguard.alerts import compose
from etlguard.cost import GIB, io_requests
from etlguard.errors import EXIT_AUDIT_FAILED, EXIT_ETL_FAILED, EXIT_OK, EXIT_USAGE
from etlguard.report import render_html, write_report

from chromium import open_page
from conftest import Backend
from support import cli

ARTIFACTS = Path(
    os.environ.get("ETLGUARD_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "build/test-artifacts")
)
PRICES = {"storage_gb_month": 0.1, "io_per_million": 0.2, "runs_per_month": 30}
# Everything the test compares, read from the rendered page by the browser, not by a parser.
READ_PAGE = """JSON.stringify({
  cards: Object.fromEntries([...document.querySelectorAll('.card [data-k]')].map(e => [e.dataset.k, e.dataset.v])),
  runs: [...document.querySelectorAll('tr[data-run]')].map(tr => ({
    id: +tr.dataset.run,
    values: Object.fromEntries([...tr.querySelectorAll('td[data-k]')].map(e => [e.dataset.k, e.dataset.v])),
    text: tr.innerText,
    audits: [...tr.querySelectorAll('[data-k=failed_audit]')].map(e => e.innerText),
  })),
  snapshots: [...document.querySelectorAll('section[data-table]')].flatMap(s =>
    [...s.querySelectorAll('tr[data-snapshot]')].map(tr => ({
      table: s.dataset.table, id: +tr.dataset.snapshot,
      rows: +tr.querySelector('[data-k=rows]').dataset.v, size: +tr.querySelector('[data-k=size_bytes]').dataset.v,
    }))),
  retained: Object.fromEntries([...document.querySelectorAll('section[data-table]')].map(
    s => [s.dataset.table, +s.querySelector('[data-k=retained]').dataset.v])),
  svgs: document.querySelectorAll('svg').length,
})"""


def etl(path: Path, sql: str, exit_code: int = 0) -> list[str]:
    """An ETL that changes the DuckDB file the way a real job would, then exits with `exit_code`."""
    code = f"import duckdb, sys; c = duckdb.connect({str(path)!r}); c.execute({sql!r}); c.close(); sys.exit({exit_code})"
    return [sys.executable, "-c", code]


@dataclass
class Nights:
    guard: Guard
    config: Path
    tables: list[str]
    statuses: list[str]


@pytest.fixture
def nights(duck: Backend, tmp_path: Path) -> Nights:
    gold = duck.create_schema("gold")
    moveouts, notices = duck.table(gold, "moveouts"), duck.table(gold, "notices")
    duck.sql(f"CREATE TABLE {moveouts} (id INTEGER PRIMARY KEY, tenant VARCHAR)")
    duck.sql(f"INSERT INTO {moveouts} SELECT i, 'tenant ' || i FROM range(1, 201) t(i)")
    duck.sql(f"CREATE TABLE {notices} (id INTEGER PRIMARY KEY)")
    duck.sql(f"INSERT INTO {notices} SELECT i FROM range(1, 51) t(i)")
    tables = [f"{gold}.moveouts", f"{gold}.notices"]
    settings = {
        "audits": [{"table": tables[0], "min_rows": 100}],
        "retention": {"days": None, "keep_last": 2},
        "snapshot": {"reuse": False},  # every night copies: each run's bytes are its tables' own
        "report": {"prices": PRICES, "url": "https://ops.example.com/etlguard/report.html"},
    }
    config = duck.write_config(tmp_path / "etlguard.yml", tables, **settings)
    guard = Guard.from_config(config)
    path = duck.path  # type: ignore[attr-defined]
    plan = [
        (etl(path, f"INSERT INTO {moveouts} SELECT i, 'new' FROM range(201, 1201) t(i)"), EXIT_OK),
        (etl(path, f"DELETE FROM {notices}", exit_code=3), EXIT_ETL_FAILED),
        (etl(path, f"DELETE FROM {moveouts} WHERE id > 10"), EXIT_AUDIT_FAILED),
        (etl(path, f"INSERT INTO {notices} SELECT i FROM range(51, 3051) t(i)"), EXIT_OK),
        (etl(path, f"INSERT INTO {moveouts} SELECT i, 'more' FROM range(1201, 5201) t(i)"), EXIT_OK),
    ]
    statuses = []
    for command, expected in plan:
        result = guard.run(command)
        assert result.exit_code == expected, result.message
        statuses.append(result.status)
    return Nights(guard, config, tables, statuses)


def test_the_report_shows_the_catalogs_numbers_in_a_browser(
    nights: Nights, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "report.html"
    assert cli(capsys, "report", "--config", nights.config, "--html", page).code == 0
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html and "https://" not in html.split("</title>")[1]

    visit = open_page(page, READ_PAGE, tmp_path / "profile")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-phone.png").write_bytes(visit.screenshot)
    assert visit.screenshot.startswith(b"\x89PNG")
    assert visit.errors == []
    assert visit.requests == [page.resolve().as_uri()]  # the page itself, and nothing else
    assert visit.scroll_width <= 390  # wide tables scroll inside their box; the page does not
    shown = json.loads(visit.value)
    assert shown["svgs"] >= 2 + len(nights.tables)

    runs = nights.guard.runs()
    assert [r["status"] for r in runs] == nights.statuses == ["ok", "etl_failed", "audit_failed", "ok", "ok"]
    assert sorted(r["id"] for r in shown["runs"]) == [r["id"] for r in runs]
    by_id = {r["id"]: r for r in shown["runs"]}
    for run in runs:
        d, on_page = run["details"], by_id[run["id"]]
        assert on_page["values"]["status"] == run["status"]
        assert int(on_page["values"]["snapshot_bytes"]) == d["snapshot_bytes"] > 0
        assert int(on_page["values"]["tables"]) == len(d["protected"]) == 2
        for phase in ("snapshot", "audit", "rollback"):
            assert float(on_page["values"][f"{phase}_seconds"]) == pytest.approx(
                d[f"{phase}_seconds"], abs=1e-3
            )
        assert float(on_page["values"]["etl_seconds"]) == pytest.approx(d["etl"]["seconds"], abs=1e-3)
        assert f"{d['snapshot_bytes']:,}" in on_page["text"]
    audit_run = runs[2]
    [failed] = [a for a in audit_run["details"]["audits"] if not a["ok"]]
    assert by_id[audit_run["id"]]["audits"] == [
        f"audit {failed['table']} {failed['check']}: {failed['detail']}"
    ]
    assert "rolled back 2 tables" in by_id[runs[1]["id"]]["text"]
    assert runs[2]["details"]["audit_seconds"] > 0

    snapshots = [s for s in nights.guard.snapshots(include_deleted=True) if s.kind == "snapshot"]
    assert sorted((s["id"], s["table"], s["rows"], s["size"]) for s in shown["snapshots"]) == sorted(
        (s.id, str(s.table), s.row_count, s.size_bytes) for s in snapshots
    )
    assert shown["retained"] == {t: 2 for t in nights.tables}  # keep_last: 2 pruned the rest

    cost = nights.guard.cost().as_dict()
    for key in ("held_bytes", "held_snapshots", "month_usd", "storage_month_usd", "io_month_usd"):
        assert float(shown["cards"][key]) == cost[key]
    assert float(shown["cards"]["seconds_added_per_night"]) == pytest.approx(cost["seconds_added_per_night"])


def test_cost_is_measured_from_what_the_snapshots_hold(
    nights: Nights, duck: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, "cost", "--config", nights.config, "--json")
    assert result.code == 0, result.err
    cost = json.loads(result.out)

    held = duck.sql(
        f"SELECT count(*), sum(size_bytes) FROM {duck.table(duck.catalog_schema, 'snapshots')} "
        "WHERE status <> 'deleted'"
    )[0]
    assert (cost["held_snapshots"], cost["held_bytes"]) == (held[0], held[1])
    # two per table kept by keep_last, plus the two rollbacks' displaced tables (retention.displaced_days)
    assert cost["held_snapshots"] == 4 + 4
    runs = nights.guard.runs()
    added = [sum(r["details"][f"{p}_seconds"] for p in ("snapshot", "audit", "rollback")) for r in runs]
    assert cost["seconds_added_per_night"] == pytest.approx(sum(added) / len(added), abs=1e-3)
    per_night = sum(io_requests(r["details"]["snapshot_bytes"]) for r in runs) / len(runs)
    assert cost["storage_month_usd"] == round(held[1] / GIB * 0.1, 2)
    assert cost["io_month_usd"] == round(per_night * 30 * 0.2 / 1e6, 2)
    # the trend rises with every snapshot and falls when retention drops one
    trend = [p["held_bytes"] for p in cost["trend"]]
    assert trend[-1] == cost["held_bytes"]
    assert any(b < a for a, b in itertools.pairwise(trend))

    text = cli(capsys, "cost", "--config", nights.config)
    assert text.code == 0
    assert f"in {cost['held_snapshots']} snapshots" in text.out
    assert "storage $0.1 per GB-month, I/O $0.2 per million requests, 30 runs a month" in text.out


def test_since_limits_the_runs_shown(nights: Nights) -> None:
    assert len(nights.guard.report().runs) == 5
    assert nights.guard.report(since_days=1e-9).runs == []


def test_alerts_link_to_the_published_report(nights: Nights) -> None:
    result = nights.guard.run([sys.executable, "-c", "raise SystemExit(4)"])
    message = compose(nights.guard.config, result)
    assert "Report: https://ops.example.com/etlguard/report.html" in message.body
    assert message.data["report_url"] == "https://ops.example.com/etlguard/report.html"


def test_the_report_can_be_written_to_s3(nights: Nights, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    page = render_html(nights.guard.report())
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="ops-reports")
        assert write_report(page, "s3://ops-reports/etl/nightly.html") == "s3://ops-reports/etl/nightly.html"
        stored = s3.get_object(Bucket="ops-reports", Key="etl/nightly.html")
        assert stored["Body"].read().decode() == page
        assert stored["ContentType"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (
            {"prices": {"storage_gb_month": -1}},
            "config key 'report.prices.storage_gb_month' must be at least 0, not -1",
        ),
        (
            {"prices": {"storage": 1}},
            "unknown config key 'report.prices.storage'; known keys are: storage_gb_month, io_per_million, runs_per_month",
        ),
        ({"link": "x"}, "unknown config key 'report.link'; known keys are: url, prices"),
    ],
)
def test_bad_report_settings_are_one_line(
    duck: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str], report: dict[str, Any], message: str
) -> None:
    config = duck.write_config(tmp_path / "etlguard.yml", [], report=report)
    result = cli(capsys, "cost", "--config", config)
    assert (result.code, result.err) == (EXIT_USAGE, f"etlguard: error: {message}\n")


def test_bad_report_destinations_touch_nothing(
    nights: Nights, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir" / "r.html"
    result = cli(capsys, "report", "--config", nights.config, "--html", missing)
    assert (result.code, result.err) == (
        EXIT_USAGE,
        f"etlguard: error: cannot write the report to {missing}: directory {missing.parent} does not exist\n",
    )
    result = cli(capsys, "report", "--config", nights.config, "--html", "s3://bucket-only")
    assert (result.code, result.err) == (
        EXIT_USAGE,
        "etlguard: error: s3://bucket-only is not an S3 object address; write s3://BUCKET/path/report.html\n",
    )
    assert not missing.parent.exists()

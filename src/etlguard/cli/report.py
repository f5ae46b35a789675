"""Seeing the runs: the HTML report and the measured cost."""

from __future__ import annotations

from pathlib import Path

import click

from ..report import render_html, write_report
from .app import command, config_option, emit_json, guard_for, json_option, out, size_text

# -- seeing the runs: report and cost ---------------------------------------------------------------

since_option = click.option(
    "--since", "since_days", type=click.FloatRange(min=0, min_open=True), help="Only the last DAYS days."
)


@command(
    "report",
    """
  etlguard report                                  # writes ./etlguard-report.html
  etlguard report --html /var/www/etl/index.html --since 30
  etlguard report --html s3://ops-reports/etlguard/nightly.html
""",
)
@config_option
@click.option(
    "--html",
    "dest",
    default="etlguard-report.html",
    show_default=True,
    help="File or s3://BUCKET/KEY to write the self-contained HTML page to.",
)
@since_option
def report_cmd(config_path: Path | None, dest: str, since_days: float | None) -> None:
    """Write one self-contained HTML page (no network, readable on a phone): the runs with their
    duration split and rollbacks, each protected table's history, and the measured cost."""
    where = write_report(render_html(guard_for(config_path).report(since_days)), dest)
    out.print(f"report written to {where}", markup=False)


@command(
    "cost",
    """
  etlguard cost
  etlguard cost --json --since 30
""",
)
@config_option
@json_option
@since_option
def cost_cmd(config_path: Path | None, as_json: bool, since_days: float | None) -> None:
    """What protection costs, measured: storage held by snapshots, time added per night, and a
    monthly projection from report.prices (defaults: Aurora Standard storage and I/O)."""
    cost = guard_for(config_path).cost(since_days)
    if as_json:
        emit_json(cost.as_dict())
        return
    out.print(
        f"held by snapshots: {size_text(cost.held_bytes) or '0 B'} in {cost.held_snapshots} snapshots",
        markup=False,
    )
    out.print(
        f"time added per night: {cost.seconds_added_per_night:.1f} s (over {len(cost.nights)} runs)",
        markup=False,
    )
    out.print(
        f"projected per month: ${cost.month_usd:,.2f} (storage ${cost.storage_month_usd:,.2f}, "
        f"I/O ${cost.io_month_usd:,.2f}) at {cost.prices.describe()}",
        markup=False,
    )

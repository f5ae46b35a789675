"""Commands on guarded runs: run, runs, show, and the drill that runs the Testing Plan."""

from __future__ import annotations

from pathlib import Path

import click

from . import logs
from .app import (
    command,
    config_option,
    emit_json,
    format_option,
    guard_for,
    json_option,
    listing_format,
    out,
    progress_bar,
    show_listing,
)


@command(
    "run",
    """
  etlguard run -- dbt run --target prod
  etlguard run --timeout 3600 --json-report run.json -- dbt build --target prod
  etlguard run -c /etc/etlguard.yml -- python daily_etl.py
  etlguard run --auto-recover -- dbt run --target prod      # unattended: settle a crashed run first

Exit codes: 0 ok; 10 the ETL failed and the protected set was rolled back and verified;
11 an audit failed and it was rolled back; 12 the snapshot failed and the ETL never ran;
2 bad configuration (nothing touched, the ETL never ran); 5 the target was unreachable after
retries (transient: nothing touched, retry later); 3 another etlguard holds the target or one
of its tables; 20 the rollback failed, 21 the run's lock was lost during the ETL (nothing
committed or rolled back): a person must act, the command to run is printed; 130 interrupted
while snapshotting (partial snapshot removed, the ETL never ran).
The ETL does not see ETLGUARD_URL nor the variables the target URL reads; --pass-env NAME
passes one on.
""",
)
@config_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop the ETL's whole process group after this many seconds (then roll back).",
)
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Pass this variable on to the ETL although the target URL reads it (repeatable).",
)
@click.option(
    "--json-report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's result as JSON here.",
)
@click.option(
    "--auto-recover",
    is_flag=True,
    help="First finish or undo what an interrupted earlier run left (for cron).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cmd(
    config_path: Path | None,
    timeout: float | None,
    pass_env: tuple[str, ...],
    json_report: Path | None,
    auto_recover: bool,
    command: tuple[str, ...],
) -> None:
    """Snapshot the protected set, run COMMAND, audit, and commit or roll everything back."""
    guard = guard_for(config_path, command)

    echo = logs.say
    with progress_bar(guard, "snapshot"):
        result = guard.run(
            list(command),
            timeout=timeout,
            json_report=json_report,
            echo=echo,
            auto_recover=auto_recover,
            pass_env=pass_env,
        )
    for audit in result.audits:
        echo(f"audit {audit}")
    for note in result.notes:
        echo(note)
    if result.ok:
        echo(f"ok: {result.message}")
    else:
        logs.say(result.message, "error")
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)


@command(
    "runs",
    """
  etlguard runs
  etlguard runs --json
""",
)
@config_option
@json_option
@format_option
@click.option("--last", default=20, show_default=True, help="Show at most this many recent runs.")
def runs_cmd(config_path: Path | None, as_json: bool, fmt: str | None, last: int) -> None:
    """List guarded runs, newest last: status, duration, and whether they rolled back."""
    runs = guard_for(config_path).runs()[-last:]
    fmt = listing_format(fmt, as_json)
    if fmt == "json":
        emit_json(runs)
        return
    columns = ("run", "started (UTC)", "status", "exit", "seconds", "tables", "rolled back")
    rows = [
        (
            str(r["id"]),
            f"{r['started_at']:%Y-%m-%d %H:%M}",
            r["status"],
            str(r["exit_code"] or 0),
            f"{r['details'].get('total_seconds', 0):.1f}",
            str(len(r["details"].get("protected", []))),
            "yes" if r["details"].get("rolled_back") else "",
        )
        for r in runs
    ]
    show_listing(fmt, columns, rows, right=0b11001)


@command(
    "show",
    """
  etlguard show 42
  etlguard show 42 --json
""",
)
@config_option
@json_option
@click.argument("run_id", type=int)
def show_cmd(config_path: Path | None, as_json: bool, run_id: int) -> None:
    """Show one run: protected tables, snapshots, audits, dbt failures, rollback."""
    [r] = guard_for(config_path).runs(run_id)
    if as_json:
        emit_json(r)
        return
    d = r["details"]
    out.print(
        f"run {r['id']}: {r['status']} (exit {r['exit_code']}), started {r['started_at']:%Y-%m-%d %H:%M:%S} UTC",
        markup=False,
    )
    out.print(f"command:   {' '.join(r['command'])}", markup=False)
    out.print(f"message:   {d.get('message', '')}", markup=False)
    out.print(f"protected: {', '.join(d.get('protected', []))}", markup=False)
    out.print(f"snapshots: {', '.join(map(str, d.get('snapshot_ids', [])))}", markup=False)
    for node in d.get("dbt_failures", []):
        out.print(f"dbt:       {node['unique_id']} {node['status']}: {node['message']}", markup=False)
    for a in d.get("audits", []):
        out.print(
            f"audit:     {a.get('table') or ''} {a['check']} {'ok' if a['ok'] else 'FAILED'} ({a['detail']})",
            markup=False,
        )
    if d.get("rolled_back"):
        out.print(
            f"rolled back: {', '.join(d['rolled_back'])} (verified: {', '.join(d.get('rollback_verified', []))})",
            markup=False,
        )
    if d.get("recovery_command"):
        out.print(f"ACTION NEEDED: {d['recovery_command']}", markup=False)
    out.print(
        f"durations: snapshot {d.get('snapshot_seconds', 0):.2f} s, total {d.get('total_seconds', 0):.2f} s",
        markup=False,
    )


@command(
    "drill",
    """
  etlguard drill                                   # snapshot, restore, verify: data unchanged
  etlguard drill -- dbt run --target prod          # also: run, roll back on purpose, roll forward
  etlguard drill --json -- dbt build --target staging
""",
)
@config_option
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def drill_cmd(config_path: Path | None, as_json: bool, command: tuple[str, ...]) -> None:
    """Run the Testing Plan as a drill against this setup: recover every protected table from a
    fresh snapshot; with COMMAND, also run the ETL, roll the good result back on purpose, verify
    the pre-run state, and roll forward to the ETL's result. Data ends as a normal night would
    leave it. Run it when nothing but the ETL writes to the protected tables. Exit 1 if a check fails."""
    guard = guard_for(config_path)

    def echo(message: str) -> None:
        if not as_json:
            logs.say(message)

    report = guard.drill(list(command), echo)
    if as_json:
        emit_json(report.as_dict())
    else:
        passed = sum(c.ok for c in report.checks)
        out.print(f"drill: {passed} of {len(report.checks)} checks passed", markup=False)
    if not report.ok:
        raise click.exceptions.Exit(1)

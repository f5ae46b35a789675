"""Commands on snapshots and tables: init, snapshot, snapshots, restore (also --from another
server), pitr, verify, diff, prune, recover, and the demo tour.

Why this module is long: it holds ten thin commands (each parses options and makes one library
call) that share the table arguments, snapshot selectors and output helpers defined here; the
logic lives in the library. Splitting by command would repeat those option sets.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config.env import interpolate
from ..errors import EXIT_FAILED, EtlguardError
from ..guard import DiffResult, Guard
from ..pitr import DEFAULT_INSTANCE_CLASS, parse_when
from ..restore_from import parse_schema_map
from ..snapshot import how_taken
from ..tables import plural
from . import logs
from .app import (
    SNAPSHOT_COLUMNS,
    SNAPSHOT_RIGHT,
    command,
    config_option,
    emit_json,
    format_option,
    given_config,
    guard_for,
    json_option,
    listing_format,
    out,
    parse_time,
    progress_bar,
    show_listing,
    snapshot_rows,
)


@command(
    "init",
    """
  etlguard init --target 'mysql+pymysql://etl:${DB_PASSWORD}@db:3306' --protect 'gold.*'
  etlguard init --target duckdb:///warehouse.duckdb --protect silver.tenant_status_history
  etlguard init --target dbt --protect 'gold.*'   # the dbt project's profiles.yml, no URL
  etlguard init            # create the catalog for an existing etlguard.yml
""",
)
@config_option
@click.option(
    "--target",
    help="Target URL for a new config file (use ${VAR} for the password), or dbt: the connection "
    "of the dbt project's profiles.yml.",
)
@click.option("--protect", multiple=True, help="A table or glob for the new config's protected set.")
def init_cmd(config_path: Path | None, target: str | None, protect: tuple[str, ...]) -> None:
    """Write a commented starter etlguard.yml (if missing) and create the catalog."""
    path = given_config(config_path) or Path("etlguard.yml")
    if target and not path.exists():
        guard = Guard.from_url(target)
        written = guard.init(write_config=path, protect=protect, target_text=target)
    else:
        guard = guard_for(config_path)
        written = guard.init()
    if written:
        out.print(f"wrote {written}")
    out.print(f"catalog ready in schema {guard.config.catalog_schema} on {guard.config.target.redacted}")


@command(
    "snapshot",
    """
  etlguard snapshot                       # the whole protected set
  etlguard snapshot gold.moveouts silver.tenant_status_history
  etlguard snapshot 'gold.*' --json
""",
)
@config_option
@json_option
@format_option
@click.argument("tables", nargs=-1)
def snapshot_cmd(config_path: Path | None, as_json: bool, fmt: str | None, tables: tuple[str, ...]) -> None:
    """Take verified snapshots of TABLES (default: the protected set) at one consistency point."""
    guard = guard_for(config_path)
    fmt = listing_format(fmt, as_json)
    with progress_bar(guard, "snapshot", fmt != "json"):
        snaps = guard.snapshot(tables)
    if fmt == "json":
        emit_json([s.as_dict() for s in snaps])
    else:
        title = "snapshots taken and verified"
        show_listing(fmt, SNAPSHOT_COLUMNS, snapshot_rows(snaps), title, SNAPSHOT_RIGHT)
        for s in snaps:
            if s.reuses is not None:
                out.print(f"{s.table}: {how_taken(s)}, nothing copied")


@command(
    "snapshots",
    """
  etlguard snapshots
  etlguard snapshots gold.daily_activity_summary
  etlguard snapshots --all --json
""",
)
@config_option
@json_option
@format_option
@click.option("--all", "include_deleted", is_flag=True, help="Include pruned and failed snapshots.")
@click.argument("table", required=False)
def snapshots_cmd(
    config_path: Path | None, as_json: bool, fmt: str | None, include_deleted: bool, table: str | None
) -> None:
    """List snapshots (of TABLE, if given), oldest first."""
    snaps = guard_for(config_path).snapshots(table, include_deleted)
    fmt = listing_format(fmt, as_json)
    if fmt == "json":
        emit_json([s.as_dict() for s in snaps])
    elif not snaps and fmt in ("table", "plain"):
        out.print("no snapshots")
    else:
        show_listing(fmt, SNAPSHOT_COLUMNS, snapshot_rows(snaps), right=SNAPSHOT_RIGHT)


@command(
    "restore",
    """
  etlguard restore gold.moveouts --latest
  etlguard restore gold.daily_activity_summary --as-of "2026-02-03 06:00"
  etlguard restore gold.moveouts gold.moveout_notices --latest --dry-run
  etlguard restore --snapshot 41 --snapshot 42       # tables come from the snapshots
  etlguard restore gold.moveouts --from 'mysql+pymysql://etl:${DB_PASSWORD}@clone.example:3306'
""",
)
@config_option
@json_option
@click.argument("tables", nargs=-1)
@click.option(
    "--snapshot", "snapshot_ids", type=int, multiple=True, help="Snapshot id (repeat: one per table)."
)
@click.option("--latest", is_flag=True, help="The newest verified snapshot of each table.")
@click.option(
    "--as-of",
    "as_of",
    help="The newest verified snapshot taken at or before TIME (local time unless an offset is given).",
)
@click.option(
    "--from",
    "source_url",
    metavar="URL",
    help="Copy the tables from this server or database instead (a clone, a replica); ${VAR} is read from the environment.",
)
@click.option(
    "--schema-map",
    multiple=True,
    metavar="TARGET=SOURCE",
    help="With --from: the source keeps target schema TARGET under the name SOURCE.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
@click.option(
    "--keep-snapshot",
    is_flag=True,
    help="Copy each snapshot aside first, so it stays restorable (by default it becomes the table).",
)
def restore_cmd(
    config_path: Path | None,
    as_json: bool,
    tables: tuple[str, ...],
    snapshot_ids: tuple[int, ...],
    latest: bool,
    as_of: str | None,
    source_url: str | None,
    schema_map: tuple[str, ...],
    dry_run: bool,
    keep_snapshot: bool,
) -> None:
    """Put TABLES back to a snapshot, all in one atomic swap, then verify them. The replaced tables are kept as
    snapshots of kind 'displaced', so a restore can be undone the same way. With --from, the
    tables are streamed from another server, verified against it, and swapped in the same way."""
    guard = guard_for(config_path)
    with progress_bar(guard, "copying" if source_url else "staging", not as_json):
        if source_url:
            if snapshot_ids or latest or as_of:
                raise click.UsageError(
                    "--from copies from another server; leave out --snapshot, --latest and --as-of"
                )
            url = interpolate(source_url, "--from")
            result = guard.restore_from(tables, url, parse_schema_map(schema_map), dry_run)
        else:
            when = parse_time(as_of) if as_of else None
            result = guard.restore(tables, snapshot_ids, latest, when, dry_run, keep_snapshot)
    if as_json:
        emit_json(result.as_dict())
        return
    for step in result.steps:
        verb = "would restore" if dry_run else "restored"
        kept = (
            f"; the replaced table is kept as snapshot {step.displaced_id}"
            if step.displaced_id and not dry_run
            else ""
        )
        out.print(
            f"{verb} {step.table} to snapshot {step.snapshot.id} taken "
            f"{step.snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC ({step.snapshot.row_count:,} rows){kept}",
            markup=False,
        )
    if not dry_run:
        out.print(
            f"swap took {result.swap_seconds * 1000:.1f} ms; verified {len(result.verified)} of "
            f"{plural(len(result.steps), 'table')} against the snapshot checksums"
        )
        if len(result.verified) < len(result.steps):  # a restore is done only when every table verified
            logs.say("not every restored table verified; see `etlguard verify`", "error")
            raise click.exceptions.Exit(EXIT_FAILED)


@command(
    "verify",
    """
  etlguard verify
  etlguard verify gold.moveouts --json
  etlguard verify --deep                  # Iceberg: also read every data file of each snapshot
""",
)
@config_option
@json_option
@format_option
@click.option(
    "--deep", is_flag=True, help="Iceberg: also read each snapshot's data files and count their rows."
)
@click.argument("tables", nargs=-1)
def verify_cmd(
    config_path: Path | None, as_json: bool, fmt: str | None, deep: bool, tables: tuple[str, ...]
) -> None:
    """Recompute every verified snapshot's checksum (of TABLES, if given); exit 1 on a mismatch."""
    results = guard_for(config_path).verify(tables, deep=deep)
    bad = [r for r in results if not r.ok]
    if as_json or fmt == "json":
        emit_json([r.as_dict() for r in results])
    elif fmt is not None:  # asked for a listing: one row per snapshot
        rows = [
            (
                str(r.snapshot.id),
                str(r.snapshot.table),
                "ok" if r.ok else "MISMATCH",
                "" if r.ok else f"catalog {r.snapshot.row_count} rows/{r.snapshot.checksum}, now {r.actual}",
            )
            for r in results
        ]
        show_listing(fmt, ("id", "table", "state", "detail"), rows, right=0b1)
    else:
        for r in results:
            state = (
                "ok"
                if r.ok
                else f"MISMATCH: catalog {r.snapshot.row_count} rows/{r.snapshot.checksum}, now {r.actual}"
            )
            out.print(f"snapshot {r.snapshot.id} of {r.snapshot.table}: {state}", markup=False)
        out.print(f"{len(results) - len(bad)} of {plural(len(results), 'snapshot')} verified")
    if bad:
        raise EtlguardError(
            f"{plural(len(bad), 'snapshot')} no longer match the catalog: {', '.join(str(r.snapshot.id) for r in bad)}"
        )


@command(
    "diff",
    """
  etlguard diff gold.daily_activity_summary              # against its newest snapshot
  etlguard diff gold.daily_activity_summary --snapshot 41 --limit 50
""",
)
@config_option
@json_option
@format_option
@click.argument("table")
@click.option("--snapshot", "snapshot_id", type=int, help="Snapshot id (default: the newest verified).")
@click.option("--limit", default=20, show_default=True, help="At most this many differing rows.")
@click.option(
    "--exit-code", "exit_code", is_flag=True, help="Exit 1 if the table differs from the snapshot, 0 if not."
)
def diff_cmd(
    config_path: Path | None,
    as_json: bool,
    fmt: str | None,
    table: str,
    snapshot_id: int | None,
    limit: int,
    exit_code: bool,
) -> None:
    """Compare a live table with a snapshot: rows, checksums, structure, rows added, removed and
    changed (by primary key), and the differing rows themselves."""
    d = guard_for(config_path).diff(table, snapshot_id, limit)
    fmt = listing_format(fmt, as_json)
    if fmt == "json":
        emit_json(d.as_dict())
    elif fmt == "tsv":
        _diff_rows(d, fmt)
    else:
        _print_diff(d, fmt)
    if exit_code and not d.identical:
        raise click.exceptions.Exit(EXIT_FAILED)


def _diff_rows(d: DiffResult, fmt: str) -> None:
    """The differing rows, a side column first (- only in the snapshot, + only live)."""
    rows = [
        ("-" if side == "-" else "+", *["NULL" if v is None else str(v) for v in row]) for side, row in d.rows
    ]
    show_listing(fmt, ("side", *d.columns), rows)


def _print_diff(d: DiffResult, fmt: str) -> None:
    out.print(
        f"{d.table} now vs snapshot {d.snapshot.id} ({d.snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC)",
        markup=False,
    )
    out.print(f"  rows:      {d.snapshot.row_count:,} -> {d.live_rows:,}")
    out.print(f"  checksum:  {'same' if d.live_checksum == d.snapshot.checksum else 'different'}")
    out.print(f"  structure: {'same' if d.same_structure else 'DIFFERENT'}")
    if d.added is not None:
        changed = "" if d.changed is None else f", {d.changed:,} changed"
        out.print(f"  changes:   {d.added:,} added, {d.removed:,} removed{changed}")
    if d.identical:
        out.print("  identical")
        return
    if d.rows:
        _diff_rows(d, fmt)
        out.print("- only in the snapshot, + only in the live table", markup=False)


@command(
    "prune",
    """
  etlguard prune --dry-run
  etlguard prune --json
""",
)
@config_option
@json_option
@format_option
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
def prune_cmd(config_path: Path | None, as_json: bool, fmt: str | None, dry_run: bool) -> None:
    """Delete snapshots that retention no longer keeps. The newest verified snapshot of each
    table is never deleted."""
    decisions = guard_for(config_path).prune(dry_run)
    if as_json or fmt == "json":
        emit_json([d.as_dict() for d in decisions])
        return
    if fmt is not None:  # asked for a listing: every decision, kept ones too, one row each
        verb = "would delete" if dry_run else "deleted"
        rows = [
            (str(d.snapshot.id), str(d.snapshot.table), verb if d.delete else "kept", d.reason)
            for d in decisions
        ]
        show_listing(fmt, ("id", "table", "action", "reason"), rows, right=0b1)
        return
    doomed = [d for d in decisions if d.delete]
    for d in doomed:
        out.print(
            f"{'would delete' if dry_run else 'deleted'} snapshot {d.snapshot.id} of {d.snapshot.table}: {d.reason}",
            markup=False,
        )
    out.print(
        f"{len(doomed)} deleted, {len(decisions) - len(doomed)} kept"
        if not dry_run
        else f"{len(doomed)} would be deleted"
    )


@command(
    "demo",
    """
  etlguard demo
  etlguard demo --path /tmp/demo.duckdb --keep
  etlguard demo --dbt .venvs/dbt-duckdb/bin/dbt --project examples/warehouse   # what make demo runs
  etlguard demo --iceberg                 # Iceberg tables in a local SQL catalog (etlguard[iceberg])
""",
)
@click.option("--iceberg", is_flag=True, help="Tour Iceberg tables in a local SQL catalog instead.")
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="DuckDB file to build (default: a temp file).",
)
@click.option("--keep", is_flag=True, help="Keep the demo database afterwards.")
@click.option(
    "--dbt",
    "dbt_bin",
    type=click.Path(path_type=Path),
    help="A dbt with dbt-duckdb: also run the example pipeline under guard.",
)
@click.option(
    "--project", type=click.Path(path_type=Path), help="The example dbt project (examples/warehouse)."
)
def demo_cmd(
    iceberg: bool, path: Path | None, keep: bool, dbt_bin: Path | None, project: Path | None
) -> None:
    """A one-minute tour on an embedded DuckDB warehouse: snapshot, damage, diff, restore."""
    if iceberg:
        import tempfile

        from ..demo_iceberg import run_iceberg_demo

        with tempfile.TemporaryDirectory(prefix="etlguard-demo-iceberg-") as tmp:
            run_iceberg_demo(out, Path(tmp))
        return
    from ..demo import run_demo

    run_demo(out, path, keep, dbt_bin, project)


@command(
    "recover",
    """
  etlguard recover --dry-run
  etlguard recover
""",
)
@config_option
@click.option("--dry-run", is_flag=True, help="Say what is unfinished; change nothing.")
@click.option(
    "--force",
    is_flag=True,
    help="Act on a run whose ETL ran on another host, once you know it has ended there.",
)
def recover_cmd(config_path: Path | None, dry_run: bool, force: bool) -> None:
    """Finish or undo what an interrupted snapshot, restore, run or prune left behind. Every
    protected table ends wholly in its old or wholly in its new state. Safe to run twice.
    Refuses (exit 4) while a run's etlguard or ETL process group is still alive; exit 20
    if a run's rollback fails again (the run record says so)."""

    echo = logs.say
    report = guard_for(config_path).recover(dry_run, force, echo)
    for action in report.actions:
        out.print(action, markup=False)
    if report.nothing_to_do:
        out.print("nothing to recover")


# -- point-in-time recovery of single tables ------------------------------------------------------


@command(
    "pitr",
    """
  etlguard pitr gold.moveouts --time 2026-02-03T06:00:00Z --cluster prod-aurora
  etlguard pitr gold.moveouts --time latest --cluster prod-aurora    # a copy-on-write clone
  etlguard pitr gold.moveouts gold.moveout_notices --time "2026-02-03 06:00" --cluster prod-aurora --keep-clone
""",
)
@config_option
@json_option
@click.argument("tables", nargs=-1, required=True)
@click.option(
    "--time",
    "when",
    required=True,
    help="Restore the tables as they were at this time (UTC unless an offset is given).",
)
@click.option("--cluster", required=True, help="The Aurora cluster identifier of the target.")
@click.option("--keep-clone", is_flag=True, help="Keep the clone afterwards (you delete it).")
@click.option(
    "--instance-class", default=DEFAULT_INSTANCE_CLASS, show_default=True, help="The clone's one instance."
)
@click.option("--region", default=None, help="AWS region (default: the AWS configuration's).")
@click.option(
    "--schema-map", multiple=True, metavar="TARGET=SOURCE", help="The clone keeps schema TARGET as SOURCE."
)
def pitr_cmd(
    config_path: Path | None,
    as_json: bool,
    tables: tuple[str, ...],
    when: str,
    cluster: str,
    keep_clone: bool,
    instance_class: str,
    region: str | None,
    schema_map: tuple[str, ...],
) -> None:
    """Point-in-time recovery of single tables on Aurora: restore a clone of the cluster at TIME
    (copy-on-write for 'latest'; RDS clones no other time), copy TABLES from it (verified, one atomic swap, replaced tables kept), and
    delete the clone, also after a failure or Ctrl-C. `etlguard recover` deletes a clone a crash left."""

    echo = logs.say
    guard = guard_for(config_path)
    result = guard.pitr(
        tables,
        parse_when(when),
        cluster,
        keep_clone,
        instance_class,
        region,
        parse_schema_map(schema_map),
        echo,
    )
    if as_json:
        emit_json(result.as_dict())
        return
    for step in result.steps:
        out.print(
            f"restored {step.table} from {cluster} as of {when} ({step.snapshot.row_count:,} rows)",
            markup=False,
        )

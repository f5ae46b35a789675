"""The `etlguard` command. Thin: parse options, make one library call, print, map errors to
exit codes. Everything here can be done from Python through `etlguard.Guard`."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .catalog import Snapshot
from .config.schema import json_schema_text
from .errors import EXIT_FAILED, EXIT_USAGE, EtlguardError, ValidationFailed
from .guard import Guard
from .procedures import install_procedures, procedure_script
from .tables import TableRef
from .transaction import Check, GuardedTransaction, run_guarded

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Command(click.Command):
    """Print the Examples section of a docstring verbatim, as written."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:
            formatter.write("\n" + self.epilog.rstrip() + "\n")


def command(name: str, examples: str) -> Callable[[Callable[..., Any]], click.Command]:
    return cli.command(name, cls=Command, epilog="Examples:\n" + examples)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="etlguard")
def cli() -> None:
    """etlguard: snapshot the tables that matter, run the ETL, and roll every protected table
    back in one atomic swap if anything fails.

    Configuration is read from ./etlguard.yml (or --config); ETLGUARD_URL overrides the target.
    """


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (default: ./etlguard.yml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _guard(config_path: Path | None) -> Guard:
    return Guard.from_config(config_path)


@contextmanager
def _progress(guard: Guard, what: str, enabled: bool = True) -> Iterator[None]:
    if not enabled or not err.is_terminal:
        yield
        return
    with Progress(
        TextColumn(f"{what} [bold]{{task.fields[table]}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None, table="")

        def step(table: TableRef, rows: int) -> None:
            bar.update(task, advance=1, table=str(table))

        guard.progress = step
        yield


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="etlguard", standalone_mode=False
        )
        if isinstance(code, int):  # click returns ctx.exit(code) instead of raising, in this mode
            return code
    except EtlguardError as exc:
        err.print(f"etlguard: error: {exc}", markup=False)
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("etlguard: aborted", markup=False)
        return EXIT_FAILED
    except click.ClickException as exc:
        # one line, like every other error: a 03:00 job log should not need a usage screen
        ctx = exc.ctx if isinstance(exc, click.UsageError) else None
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        err.print(f"etlguard: error: {exc.format_message()}{hint}", markup=False)
        return EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("etlguard: interrupted", markup=False)
        return 130
    return 0


def run_main() -> None:
    sys.exit(main())


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _snapshot_table(snaps: Sequence[Snapshot], title: str = "") -> Table:
    table = Table(title=title or None, show_lines=False)
    for col in ("id", "table", "taken at (UTC)", "rows", "size", "status", "kind"):
        table.add_column(col, justify="right" if col in ("id", "rows", "size") else "left")
    for s in snaps:
        table.add_row(
            str(s.id),
            str(s.table),
            f"{s.taken_at:%Y-%m-%d %H:%M:%S}",
            "" if s.row_count is None else f"{s.row_count:,}",
            _size(s.size_bytes),
            s.status,
            s.kind,
        )
    return table


def _size(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


def _parse_time(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time; write 2026-02-03 06:00 or 2026-02-03T06:00+09:00"
        ) from None


# -- commands ----------------------------------------------------------------------------------


@command(
    "init",
    """
  etlguard init --target 'mysql+pymysql://etl:${DB_PASSWORD}@db:3306' --protect 'gold.*'
  etlguard init --target duckdb:///warehouse.duckdb --protect silver.tenant_status_history
  etlguard init            # create the catalog for an existing etlguard.yml
""",
)
@config_option
@click.option("--target", help="Target URL for a new config file (use ${VAR} for the password).")
@click.option("--protect", multiple=True, help="A table or glob for the new config's protected set.")
def init_cmd(config_path: Path | None, target: str | None, protect: tuple[str, ...]) -> None:
    """Write a commented starter etlguard.yml (if missing) and create the catalog."""
    path = config_path or Path("etlguard.yml")
    if target and not path.exists():
        guard = Guard.from_url(target)
        written = guard.init(write_config=path, protect=protect)
    else:
        guard = _guard(config_path)
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
@click.argument("tables", nargs=-1)
def snapshot_cmd(config_path: Path | None, as_json: bool, tables: tuple[str, ...]) -> None:
    """Take verified snapshots of TABLES (default: the protected set) at one consistency point."""
    guard = _guard(config_path)
    with _progress(guard, "snapshot", not as_json):
        snaps = guard.snapshot(tables)
    if as_json:
        _emit_json([s.as_dict() for s in snaps])
    else:
        out.print(_snapshot_table(snaps, "snapshots taken and verified"))


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
@click.option("--all", "include_deleted", is_flag=True, help="Include pruned and failed snapshots.")
@click.argument("table", required=False)
def snapshots_cmd(config_path: Path | None, as_json: bool, include_deleted: bool, table: str | None) -> None:
    """List snapshots (of TABLE, if given), oldest first."""
    snaps = _guard(config_path).snapshots(table, include_deleted)
    if as_json:
        _emit_json([s.as_dict() for s in snaps])
    elif not snaps:
        out.print("no snapshots")
    else:
        out.print(_snapshot_table(snaps))


@command(
    "restore",
    """
  etlguard restore gold.moveouts --latest
  etlguard restore gold.daily_activity_summary --as-of "2026-02-03 06:00"
  etlguard restore gold.moveouts gold.moveout_notices --latest --dry-run
  etlguard restore --snapshot 41 --snapshot 42       # tables come from the snapshots
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
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
def restore_cmd(
    config_path: Path | None,
    as_json: bool,
    tables: tuple[str, ...],
    snapshot_ids: tuple[int, ...],
    latest: bool,
    as_of: str | None,
    dry_run: bool,
) -> None:
    """Put TABLES back to a snapshot, all in one atomic swap. The replaced tables are kept as
    snapshots of kind 'displaced', so a restore can be undone the same way."""
    guard = _guard(config_path)
    with _progress(guard, "staging", not as_json):
        result = guard.restore(tables, snapshot_ids, latest, _parse_time(as_of) if as_of else None, dry_run)
    if as_json:
        _emit_json(result.as_dict())
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
            f"{len(result.steps)} tables against the snapshot checksums"
        )


@command(
    "verify",
    """
  etlguard verify
  etlguard verify gold.moveouts --json
""",
)
@config_option
@json_option
@click.argument("tables", nargs=-1)
def verify_cmd(config_path: Path | None, as_json: bool, tables: tuple[str, ...]) -> None:
    """Recompute every verified snapshot's checksum (of TABLES, if given); exit 1 on a mismatch."""
    results = _guard(config_path).verify(tables)
    bad = [r for r in results if not r.ok]
    if as_json:
        _emit_json([r.as_dict() for r in results])
    else:
        for r in results:
            state = (
                "ok"
                if r.ok
                else f"MISMATCH: catalog {r.snapshot.row_count} rows/{r.snapshot.checksum}, now {r.actual}"
            )
            out.print(f"snapshot {r.snapshot.id} of {r.snapshot.table}: {state}", markup=False)
        out.print(f"{len(results) - len(bad)} of {len(results)} snapshots verified")
    if bad:
        raise EtlguardError(
            f"{len(bad)} snapshot(s) no longer match the catalog: {', '.join(str(r.snapshot.id) for r in bad)}"
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
@click.argument("table")
@click.option("--snapshot", "snapshot_id", type=int, help="Snapshot id (default: the newest verified).")
@click.option("--limit", default=20, show_default=True, help="At most this many differing rows.")
def diff_cmd(
    config_path: Path | None, as_json: bool, table: str, snapshot_id: int | None, limit: int
) -> None:
    """Compare a live table with a snapshot: rows, checksums, structure, and differing rows by key."""
    d = _guard(config_path).diff(table, snapshot_id, limit)
    if as_json:
        _emit_json(d.as_dict())
        return
    out.print(
        f"{d.table} now vs snapshot {d.snapshot.id} ({d.snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC)",
        markup=False,
    )
    out.print(f"  rows:      {d.snapshot.row_count:,} -> {d.live_rows:,}")
    out.print(f"  checksum:  {'same' if d.live_checksum == d.snapshot.checksum else 'different'}")
    out.print(f"  structure: {'same' if d.same_structure else 'DIFFERENT'}")
    if d.identical:
        out.print("  identical")
        return
    if d.rows:
        grid = Table("", *d.columns)
        for side, row in d.rows:
            grid.add_row("-" if side == "-" else "+", *["NULL" if v is None else str(v) for v in row])
        out.print(grid)
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
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
def prune_cmd(config_path: Path | None, as_json: bool, dry_run: bool) -> None:
    """Delete snapshots that retention no longer keeps. The newest verified snapshot of each
    table is never deleted."""
    decisions = _guard(config_path).prune(dry_run)
    if as_json:
        _emit_json([d.as_dict() for d in decisions])
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
""",
)
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
def demo_cmd(path: Path | None, keep: bool, dbt_bin: Path | None, project: Path | None) -> None:
    """A one-minute tour on an embedded DuckDB warehouse: snapshot, damage, diff, restore."""
    from .demo import run_demo

    run_demo(out, path, keep, dbt_bin, project)


# -- guarded runs --------------------------------------------------------------------------------


@command(
    "run",
    """
  etlguard run -- dbt run --target prod
  etlguard run --timeout 3600 --json-report run.json -- dbt build --target prod
  etlguard run -c /etc/etlguard.yml -- python daily_etl.py
  etlguard run --auto-recover -- dbt run --target prod      # unattended: settle a crashed run first

Exit codes: 0 ok; 10 the ETL failed and the protected set was rolled back and verified;
11 an audit failed and it was rolled back; 12 the snapshot failed and the ETL never ran;
2 bad configuration (nothing touched, the ETL never ran); 3 another etlguard holds the
target; 20 the rollback failed: a person must act (the command to run is printed).
""",
)
@config_option
@click.option("--timeout", type=float, help="Stop the ETL after this many seconds (then roll back).")
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
    json_report: Path | None,
    auto_recover: bool,
    command: tuple[str, ...],
) -> None:
    """Snapshot the protected set, run COMMAND, audit, and commit or roll everything back."""
    guard = _guard(config_path)

    def echo(message: str) -> None:
        err.print(f"etlguard: {message}", markup=False)

    with _progress(guard, "snapshot"):
        result = guard.run(
            list(command), timeout=timeout, json_report=json_report, echo=echo, auto_recover=auto_recover
        )
    for audit in result.audits:
        echo(f"audit {audit}")
    for note in result.notes:
        echo(note)
    level = "ok" if result.ok else "error"
    err.print(f"etlguard: {level}: {result.message}", markup=False)
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
@click.option("--last", default=20, show_default=True, help="Show at most this many recent runs.")
def runs_cmd(config_path: Path | None, as_json: bool, last: int) -> None:
    """List guarded runs, newest last: status, duration, and whether they rolled back."""
    runs = _guard(config_path).runs()[-last:]
    if as_json:
        _emit_json(runs)
        return
    table = Table()
    for col in ("run", "started (UTC)", "status", "exit", "seconds", "tables", "rolled back"):
        table.add_column(col, no_wrap=True)
    for r in runs:
        d = r["details"]
        table.add_row(
            str(r["id"]),
            f"{r['started_at']:%Y-%m-%d %H:%M}",
            r["status"],
            str(r["exit_code"] or 0),
            f"{d.get('total_seconds', 0):.1f}",
            str(len(d.get("protected", []))),
            "yes" if d.get("rolled_back") else "",
        )
    out.print(table)


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
    [r] = _guard(config_path).runs(run_id)
    if as_json:
        _emit_json(r)
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


# -- guarded transactions --------------------------------------------------------------------------


def _count_range(text: str) -> tuple[float | None, float | None]:
    """MIN:MAX, MIN:, :MAX or N (exactly N)."""
    low, sep, high = text.partition(":")
    try:
        bounds = (float(low) if low else None, float(high) if high else None)
    except ValueError:
        bounds = (None, None)
    if bounds == (None, None):
        raise click.BadParameter(
            f"{text!r} is not a range; write MIN:MAX, MIN:, :MAX or N", param_hint="--validate-count"
        )
    return bounds if sep else (bounds[0], bounds[0])


def _checks(
    empty: Sequence[str],
    true: Sequence[str],
    counts: Sequence[tuple[str, str]],
    changes: Sequence[tuple[str, str]],
) -> list[Check]:
    checks = [Check.no_rows(sql) for sql in empty] + [Check.true(sql) for sql in true]
    checks += [Check.count(sql, *_count_range(bounds)) for sql, bounds in counts]
    for table, pct in changes:
        try:
            checks.append(Check.row_change(table, float(pct.rstrip("%"))))
        except ValueError:
            raise click.BadParameter(f"{pct!r} is not a percentage", param_hint="--validate-change") from None
    return checks


def _print_transaction(tx: GuardedTransaction) -> None:
    for s in tx.statements:
        out.print(f"ran   {' '.join(s.sql.split())[:100]} ({s.rows} rows)", markup=False)
    for c in tx.checks:
        state = "ok  " if c.passed else "FAIL" if c.passed is False else "-   "
        out.print(f"{state}  {c}", markup=False)
    if tx.outcome == "committed":
        out.print(f"committed guarded transaction {tx.id} ({tx.rows_affected} rows)", markup=False)
    elif tx.outcome == "dry_run":
        out.print(f"dry run: every validation passed; rolled back transaction {tx.id}", markup=False)


@command(
    "exec",
    """
  etlguard exec -e "UPDATE gold.moveouts SET status = 'closed' WHERE moveout_date < '2026-02-01'" \\
      --validate-empty "SELECT 1 FROM gold.moveouts WHERE status IS NULL"
  etlguard exec --sql fix.sql --validate-count "SELECT COUNT(*) FROM gold.moveouts" 1: --dry-run
  etlguard exec --sql fix.sql --validate-change gold.moveouts 5 --timeout 60 --json
  cat fix.sql | etlguard exec --sql - --validate-true "SELECT SUM(rent) > 0 FROM gold.moveouts"
""",
)
@config_option
@json_option
@click.option(
    "--sql",
    "sql_file",
    type=click.File("r", encoding="utf-8"),
    help="File of SQL statements separated by ; (- reads stdin).",
)
@click.option("-e", "--execute", "inline", multiple=True, metavar="SQL", help="SQL to run (repeatable).")
@click.option(
    "--validate-empty", multiple=True, metavar="SQL", help="Commit only if SQL returns no rows (bad rows)."
)
@click.option(
    "--validate-true",
    multiple=True,
    metavar="SQL",
    help="Commit only if the first value SQL returns is true (not NULL, 0 or FALSE).",
)
@click.option(
    "--validate-count",
    nargs=2,
    multiple=True,
    metavar="SQL RANGE",
    help="Commit only if the number SQL returns is in RANGE: MIN:MAX, MIN:, :MAX or N.",
)
@click.option(
    "--validate-change",
    nargs=2,
    multiple=True,
    metavar="TABLE PCT",
    help="Commit only if TABLE's row count changes by at most PCT percent, up or down.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Statement timeout in seconds (MariaDB: every statement; MySQL 8: SELECTs only; DuckDB: none).",
)
@click.option("--dry-run", is_flag=True, help="Run and validate, report, then always roll back.")
def exec_cmd(
    config_path: Path | None,
    as_json: bool,
    sql_file: Any,
    inline: tuple[str, ...],
    validate_empty: tuple[str, ...],
    validate_true: tuple[str, ...],
    validate_count: tuple[tuple[str, str], ...],
    validate_change: tuple[tuple[str, str], ...],
    timeout: float | None,
    dry_run: bool,
) -> None:
    """Run SQL in one guarded transaction: commit only if every validation passes, otherwise
    roll back. Validations run after the SQL, inside the same transaction.

    Refused before anything runs (exit 2): BEGIN, COMMIT, ROLLBACK, SET autocommit and other
    transaction control; on MySQL and MariaDB also DDL (CREATE, ALTER, DROP, RENAME, TRUNCATE)
    and every other statement that commits implicitly, plus CALL and PREPARE/EXECUTE, whose
    SQL cannot be checked. DuckDB's DDL is transactional and allowed. Exit 0: committed (or a
    dry run whose validations passed); 1: a validation or a statement failed, rolled back.
    """
    if bool(sql_file) == bool(inline):
        raise click.UsageError("give the SQL with either --sql FILE or -e SQL")
    sql = sql_file.read() if sql_file else ";\n".join(inline)
    checks = _checks(validate_empty, validate_true, validate_count, validate_change)
    try:
        tx = run_guarded(_guard(config_path), sql, checks, timeout, dry_run)
    except ValidationFailed as exc:
        if isinstance(exc.transaction, GuardedTransaction) and as_json:
            _emit_json(exc.transaction.as_dict())
        elif isinstance(exc.transaction, GuardedTransaction):
            _print_transaction(exc.transaction)
        raise
    if as_json:
        _emit_json(tx.as_dict())
    else:
        _print_transaction(tx)


@command(
    "install-procedures",
    """
  etlguard install-procedures                   # into the catalog schema (etlguard)
  etlguard install-procedures --schema ops
  etlguard install-procedures --print > procedures.sql && mysql -h db < procedures.sql
""",
)
@config_option
@click.option("--schema", help="Schema to install into (default: the catalog schema).")
@click.option(
    "--print", "print_only", is_flag=True, help="Print the SQL (for the mysql client); install nothing."
)
def install_procedures_cmd(config_path: Path | None, schema: str | None, print_only: bool) -> None:
    """Install run_safe_incremental_update(update_query, validation_query) on a MySQL or
    MariaDB target. CALL it with one UPDATE, INSERT or DELETE statement and a query that returns
    one value: it commits if that value is true, else rolls back and signals SQLSTATE 45000.

    It cannot protect DDL, which commits implicitly. Qualify table names with their schema:
    inside a procedure the default schema is the procedure's own. It runs with the caller's
    privileges (SQL SECURITY INVOKER), and its START TRANSACTION commits any open transaction.
    """
    guard = _guard(config_path)
    statements = install_procedures(guard, schema, dry_run=print_only)
    if print_only:
        click.echo(procedure_script(statements), nl=False)
    else:
        where = schema or guard.config.catalog_schema
        out.print(
            f"installed {where}.run_safe_incremental_update on {guard.config.target.redacted}", markup=False
        )


@command(
    "recover",
    """
  etlguard recover --dry-run
  etlguard recover
""",
)
@config_option
@click.option("--dry-run", is_flag=True, help="Say what is unfinished; change nothing.")
def recover_cmd(config_path: Path | None, dry_run: bool) -> None:
    """Finish or undo what an interrupted snapshot, restore, run or prune left behind. Every
    protected table ends wholly in its old or wholly in its new state. Safe to run twice."""
    report = _guard(config_path).recover(dry_run)
    for action in report.actions:
        out.print(action, markup=False)
    if report.nothing_to_do:
        out.print("nothing to recover")


@command(
    "schema",
    """
  etlguard schema > etlguard.schema.json
  # then, as the first line of etlguard.yml (VS Code, JetBrains, Neovim: yaml-language-server):
  # yaml-language-server: $schema=etlguard.schema.json
""",
)
def schema_cmd() -> None:
    """Print the JSON Schema of etlguard.yml, so editors complete and check the file and CI can
    validate it. The loader enforces the same rules; it also checks what only a value with
    ${VAR} filled in can show (URLs, topic ARNs, table names)."""
    click.echo(json_schema_text(), nl=False)


# -- alerts --------------------------------------------------------------------------------------


class _Group(click.Group):
    """A command group whose help ends with its examples, like every command's."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:
            formatter.write("\n" + self.epilog.rstrip() + "\n")


_ALERT_EXAMPLES = """
  etlguard alert test
  etlguard alert test -c /etc/etlguard.yml --json
"""


@cli.group("alert", cls=_Group, epilog="Examples:\n" + _ALERT_EXAMPLES)
def alert_group() -> None:
    """Alert channels (SNS, email, Slack, Teams, webhooks) configured under alerts: in etlguard.yml."""


@alert_group.command("test", cls=Command, epilog="Examples:\n" + _ALERT_EXAMPLES)
@config_option
@json_option
def alert_test_cmd(config_path: Path | None, as_json: bool) -> None:
    """Send a test alert through every configured channel and report each one; exit 1 if any
    channel failed. Nothing is run and the target is not contacted."""
    from .alerts import send_test

    config = _guard(config_path).config
    if not config.alerts.channels:
        raise EtlguardError("no alert channels configured; add them under alerts: channels: in the config")
    deliveries = send_test(config)
    if as_json:
        _emit_json([d.as_dict() for d in deliveries])
    else:
        for d in deliveries:
            out.print(
                f"{'sent  ' if d.ok else 'FAILED'}  {d.channel}" + (f": {d.error}" if d.error else ""),
                markup=False,
            )
    failed = [d for d in deliveries if not d.ok]
    if failed:
        if not as_json:
            err.print(
                f"etlguard: error: {len(failed)} of {len(deliveries)} alert channels failed", markup=False
            )
        raise click.exceptions.Exit(EXIT_FAILED)


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
    guard = _guard(config_path)

    def echo(message: str) -> None:
        if not as_json:
            err.print(f"etlguard: {message}", markup=False)

    report = guard.drill(list(command), echo)
    if as_json:
        _emit_json(report.as_dict())
    else:
        passed = sum(c.ok for c in report.checks)
        out.print(f"drill: {passed} of {len(report.checks)} checks passed", markup=False)
    if not report.ok:
        raise click.exceptions.Exit(1)

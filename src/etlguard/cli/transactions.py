"""Commands on guarded transactions: exec, and install-procedures for MySQL-side callers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import ValidationFailed
from ..procedures import install_procedures, procedure_script
from ..transaction import Check, GuardedTransaction, run_guarded
from .app import (
    command,
    config_option,
    emit_json,
    guard_for,
    json_option,
    out,
)


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
        tx = run_guarded(guard_for(config_path), sql, checks, timeout, dry_run)
    except ValidationFailed as exc:
        if isinstance(exc.transaction, GuardedTransaction) and as_json:
            emit_json(exc.transaction.as_dict())
        elif isinstance(exc.transaction, GuardedTransaction):
            _print_transaction(exc.transaction)
        raise
    if as_json:
        emit_json(tx.as_dict())
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
    guard = guard_for(config_path)
    statements = install_procedures(guard, schema, dry_run=print_only)
    if print_only:
        click.echo(procedure_script(statements), nl=False)
    else:
        where = schema or guard.config.catalog_schema
        out.print(
            f"installed {where}.run_safe_incremental_update on {guard.config.target.redacted}", markup=False
        )

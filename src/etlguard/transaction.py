"""Guarded transactions: run statements in one transaction on the target, declare validations,
and commit only if every validation passes; otherwise roll back and raise `ValidationFailed`.

>>> with guard.transaction(timeout=30) as tx:
...     tx.validate_row_change("gold.moveouts", max_pct=10)     # baseline counted now
...     tx.execute("UPDATE gold.moveouts SET status = 'done' WHERE moveout_date < '2026-02-01'")
...     tx.validate_no_rows("SELECT 1 FROM gold.moveouts WHERE status IS NULL")
...     tx.validate_count("SELECT COUNT(*) FROM gold.moveouts", min=1)
... # validations run here, then COMMIT; on failure ROLLBACK and ValidationFailed

Before anything runs, a statement that would end the transaction is refused (ConfigError):
transaction control everywhere, and on targets without transactional DDL (MySQL, MariaDB)
everything the MySQL manual lists as causing an implicit commit. The statements are read by a
small tokenizer that skips comments and string literals, so `SET note = 'drop table'` passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .adapters import adapter_for
from .adapters.base import Adapter, DatabaseError
from .catalog import Catalog, table_columns, utcnow
from .checks import Check, first_value
from .errors import ConfigError, EtlguardError, ValidationFailed
from .statements import check_one, check_statements
from .tables import parse_table

if TYPE_CHECKING:
    import datetime as dt

    from .guard import Guard

# -- the guarded transaction --------------------------------------------------------------------


@dataclass
class StatementResult:
    sql: str
    rows: int  # rows affected, as the database reports them

    def as_dict(self) -> dict[str, Any]:
        return {"sql": self.sql, "rows": self.rows}


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


class GuardedTransaction:
    """One open transaction on the target: `execute`, declare validations, and let the
    `with` block end. Afterwards `outcome` is committed, dry_run, validation_failed, refused,
    failed or interrupted, and `id` is the entry in the catalog's `transactions` table."""

    def __init__(self, db: Adapter, dry_run: bool = False) -> None:
        self.db = db
        self.dry_run = dry_run
        self.id: int | None = None
        self.statements: list[StatementResult] = []
        self.checks: list[Check] = []
        self.outcome = "open"
        self.error = ""
        self.timeout = ""  # what the statement timeout covers on this target
        self.started_at: dt.datetime = utcnow()
        self.finished_at: dt.datetime | None = None

    # -- statements -----------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement or a script of several; every statement is checked before the
        first one runs. Returns the rows affected, summed."""
        texts = check_statements(self.db, sql)
        if params and len(texts) != 1:
            raise ConfigError("parameters can be given with exactly one statement")
        total = 0
        for text in texts:
            rows = self.db.execute(text, params)
            self.statements.append(StatementResult(text, rows))
            total += rows
        return total

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read inside the transaction (it sees the transaction's own changes)."""
        return self.db.query(check_one(self.db, sql), params)

    # -- validations ----------------------------------------------------------------------------
    def validate(self, check: Check) -> Check:
        if check.kind == "row_change":
            return self._baseline(check)
        check.sql = check_one(self.db, check.sql)
        self.checks.append(check)
        return check

    def validate_no_rows(self, sql: str) -> Check:
        """Commit only if `sql` returns no rows (a query for bad rows)."""
        return self.validate(Check.no_rows(sql))

    def validate_true(self, sql: str) -> Check:
        """Commit only if the first value `sql` returns is true (not NULL, 0 or FALSE)."""
        return self.validate(Check.true(sql))

    def validate_count(self, sql: str, min: float | None = None, max: float | None = None) -> Check:
        """Commit only if the number `sql` returns is within [min, max]."""
        return self.validate(Check.count(sql, min, max))

    def validate_row_change(self, table: str, max_pct: float) -> Check:
        """Commit only if `table`'s row count changes by at most `max_pct` percent, up or down.
        The baseline is counted now, inside the transaction: declare this before `execute`."""
        return self.validate(Check.row_change(table, max_pct))

    def _baseline(self, check: Check) -> Check:
        if self.statements:
            raise ConfigError(
                f"declare the row-count change validation of {check.table} before the first "
                "statement: its baseline is counted when it is declared"
            )
        check.sql = f"SELECT COUNT(*) FROM {self.db.qualify(parse_table(check.table))}"
        check.baseline = int(first_value(self.db, check.sql) or 0)
        self.checks.append(check)
        return check

    def _finish(self) -> None:
        """Run every validation; raise to roll back, or return to commit."""
        failed: list[object] = [c for c in self.checks if not c.evaluate(self.db)]
        if failed:
            raise ValidationFailed(failed, self)
        if self.dry_run:
            raise _DryRun

    # -- reporting ------------------------------------------------------------------------------
    @property
    def rows_affected(self) -> int:
        return sum(s.rows for s in self.statements)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat() + "Z",
            "finished_at": self.finished_at.isoformat() + "Z" if self.finished_at else None,
            "rows_affected": self.rows_affected,
            "statements": [s.as_dict() for s in self.statements],
            "validations": [c.as_dict() for c in self.checks],
            "timeout": self.timeout,
            "error": self.error,
        }


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ValidationFailed):
        return "validation_failed"
    if isinstance(exc, ConfigError):
        return "refused"
    return "failed" if isinstance(exc, Exception) else "interrupted"


@contextlib.contextmanager
def guarded_transaction(
    guard: Guard, timeout: float | None = None, dry_run: bool = False
) -> Iterator[GuardedTransaction]:
    """Open a guarded transaction on the guard's target (see the module docstring). The
    etlguard lock is not taken: a guarded transaction is a step of an ETL, which may itself
    run under `etlguard run`, which holds that lock."""
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"the statement timeout must be a positive number of seconds, not {timeout}")
    db = adapter_for(guard.config.target, guard.config.lock_wait_seconds)
    try:
        catalog = _open_catalog(db, guard.config.catalog_schema)
        tx = GuardedTransaction(db, dry_run)
        if timeout is not None:
            tx.timeout = _set_timeout(db, timeout)
        tx.id = _record_start(catalog, tx)
        with _recorded(catalog, tx), contextlib.suppress(_DryRun), _atomic(db):
            yield tx
            tx._finish()
    finally:
        db.close()


@contextlib.contextmanager
def _atomic(db: Adapter) -> Iterator[None]:
    """`db.transaction()`, except that a failed ROLLBACK never replaces the error that caused
    it (a server rolls back the open transaction of a session that died)."""
    inner = db.transaction()
    inner.__enter__()
    try:
        yield
    except BaseException as exc:
        try:
            inner.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException as rollback_error:
            if rollback_error is not exc:
                exc.add_note(f"etlguard: the ROLLBACK failed too: {rollback_error}")
        raise
    inner.__exit__(None, None, None)


@contextlib.contextmanager
def _recorded(catalog: Catalog, tx: GuardedTransaction) -> Iterator[None]:
    """Write the outcome after the transaction ended, outside it, so a rollback keeps it."""
    try:
        yield
    except BaseException as exc:
        tx.outcome, tx.error = _outcome(exc), str(exc) or type(exc).__name__
        with contextlib.suppress(EtlguardError):  # never hide the original error
            _record_finish(catalog, tx)
        raise
    tx.outcome = "dry_run" if tx.dry_run else "committed"
    _record_finish(catalog, tx)


def _open_catalog(db: Adapter, schema: str) -> Catalog:
    db.connect()
    catalog = Catalog(db, schema)
    catalog.ensure()
    # catalogs made before guarded transactions existed lack the table: add it
    db.create_catalog_table(catalog.t("transactions"), table_columns("transactions"), key="id")
    return catalog


def _set_timeout(db: Adapter, seconds: float) -> str:
    setter = getattr(db, "set_statement_timeout", None)
    if setter is None:
        return f"none: {db.name} has no statement timeout"
    return str(setter(seconds))


def _record_start(catalog: Catalog, tx: GuardedTransaction) -> int:
    table = catalog.t("transactions")
    entry = catalog.db.next_id(table)
    catalog.db.insert(
        table,
        {
            "id": entry,
            "started_at": tx.started_at,
            "outcome": "started",
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )
    return entry


def _record_finish(catalog: Catalog, tx: GuardedTransaction) -> None:
    tx.finished_at = utcnow()
    catalog.db.update(
        catalog.t("transactions"),
        {
            "finished_at": tx.finished_at,
            "outcome": tx.outcome,
            "rows_affected": tx.rows_affected,
            "statements": json.dumps([s.as_dict() for s in tx.statements], default=str),
            "validations": json.dumps([c.as_dict() for c in tx.checks], default=str),
            "error": tx.error or None,
        },
        {"id": tx.id},
    )


def transactions(catalog: Catalog) -> list[dict[str, Any]]:
    """Every recorded guarded transaction, oldest first, with statements and validations decoded."""
    columns = [c for c, _ in table_columns("transactions")]
    rows = catalog.db.select(catalog.t("transactions"), columns, order_by="id")
    for r in rows:
        r["statements"] = json.loads(r["statements"] or "[]")
        r["validations"] = json.loads(r["validations"] or "[]")
    return rows


def run_guarded(
    guard: Guard,
    sql: str,
    checks: Sequence[Check] = (),
    timeout: float | None = None,
    dry_run: bool = False,
) -> GuardedTransaction:
    """Run a script in one guarded transaction with `checks`: what `etlguard exec` does. The
    script and every validation are checked before anything connects, let alone runs."""
    db = adapter_for(guard.config.target)
    check_statements(db, sql)
    for c in checks:
        if c.kind == "row_change":
            db.qualify(parse_table(c.table))  # a name the target cannot hold fails here
        else:
            check_one(db, c.sql)
    tx: GuardedTransaction | None = None
    try:
        with guard.transaction(timeout=timeout, dry_run=dry_run) as tx:
            for c in checks:  # row-count baselines are counted here, before the script runs
                tx.validate(c)
            tx.execute(sql)
    except DatabaseError as exc:
        if tx is None:
            raise
        raise DatabaseError(f"{exc}; guarded transaction {tx.id} was rolled back") from exc
    return tx

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
import decimal
import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .adapters import adapter_for
from .adapters.base import Adapter, DatabaseError
from .catalog import Catalog, table_columns, utcnow
from .errors import ConfigError, EtlguardError, ValidationFailed
from .tables import parse_table

if TYPE_CHECKING:
    import datetime as dt

    from .guard import Guard

# -- reading SQL text ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    """How a database spells comments and quoted text: enough to find statement boundaries
    and keywords, not a parser."""

    hash_comments: bool  # MySQL: '# ...'
    dash_comment_needs_space: bool  # MySQL: '--' starts a comment only before whitespace
    backslash_escapes: bool  # MySQL (default sql_mode): 'it\'s'
    executable_comments: bool  # MySQL: /*! ... */ and MariaDB /*M! ... */ are executed
    dollar_quotes: bool  # PostgreSQL, DuckDB: $tag$ ... $tag$
    nested_comments: bool  # PostgreSQL, DuckDB: /* /* */ */


MYSQL_LEXICON = Lexicon(True, True, True, True, False, False)
STANDARD_LEXICON = Lexicon(False, False, False, False, True, True)


def lexicon_for(db: Adapter) -> Lexicon:
    # The identifier quote tells the family: backticks are MySQL's, with MySQL's comments.
    return MYSQL_LEXICON if db.identifier_quote == "`" else STANDARD_LEXICON


@dataclass
class Statement:
    text: str  # as written, without the terminating semicolon
    words: list[str]  # keywords and names outside quotes and comments, upper case, in order
    tokens: list[str] = field(repr=False)  # words and punctuation (quoted text as "'")


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[\w@$]+")
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d*")


def split_statements(script: str, lex: Lexicon = MYSQL_LEXICON) -> list[Statement]:
    """Split on semicolons outside quotes and comments; statements that hold nothing but
    comments are dropped. Unterminated quotes or comments are refused: the server would read
    the rest of the script differently from us."""
    statements: list[Statement] = []
    tokens: list[str] = []
    start, open_exec = 0, 0
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c == ";":
            _add_statement(statements, script[start:i], tokens)
            start, tokens, i = i + 1, [], i + 1
        elif c.isspace():
            i += 1
        elif _starts_line_comment(script, i, lex):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
        elif script.startswith("/*", i):
            exec_marker = _executable_comment(script, i, lex)
            if exec_marker:  # the server runs what is inside: read it as code
                open_exec += 1
                i = exec_marker
            else:
                i = _skip_block_comment(script, i, lex)
        elif open_exec and script.startswith("*/", i):
            open_exec -= 1
            i += 2
        elif c in "'\"`":
            i = _skip_quoted(script, i, c, _backslash_escapes(lex, c, tokens, script, i))
            tokens.append("'")
        elif c == "$" and lex.dollar_quotes and (m := _DOLLAR_TAG.match(script, i)):
            close = script.find(m.group(0), m.end())
            if close < 0:
                raise ConfigError(f"unterminated {m.group(0)} quoted text in the SQL")
            i = close + len(m.group(0))
            tokens.append("'")
        elif m := _WORD.match(script, i):
            tokens.append(m.group(0).upper())
            i = m.end()
        else:
            tokens.append(c)
            i += 1
    _add_statement(statements, script[start:], tokens)
    return statements


def _add_statement(statements: list[Statement], text: str, tokens: list[str]) -> None:
    if tokens:
        statements.append(_statement(text.strip(), tokens))


def _statement(text: str, tokens: list[str]) -> Statement:
    return Statement(text, [t for t in tokens if t[0].isalnum() or t[0] in "_@$"], tokens)


def _starts_line_comment(script: str, i: int, lex: Lexicon) -> bool:
    if script[i] == "#":
        return lex.hash_comments
    if not script.startswith("--", i):
        return False
    after = script[i + 2 : i + 3]
    return not lex.dash_comment_needs_space or after == "" or after.isspace() or ord(after) < 32


def _executable_comment(script: str, i: int, lex: Lexicon) -> int:
    """Where the code of a MySQL executable comment (/*!50001 ... */, /*M!100100 ... */)
    starts, or 0 when this is an ordinary comment."""
    if not lex.executable_comments:
        return 0
    m = _EXECUTABLE_COMMENT.match(script, i)
    return m.end() if m else 0


def _skip_block_comment(script: str, i: int, lex: Lexicon) -> int:
    depth, j = 1, i + 2
    while depth:
        close = script.find("*/", j)
        opening = script.find("/*", j) if lex.nested_comments else -1
        if close < 0:
            raise ConfigError("unterminated /* comment in the SQL")
        if 0 <= opening < close:
            depth, j = depth + 1, opening + 2
        else:
            depth, j = depth - 1, close + 2
    return j


def _backslash_escapes(lex: Lexicon, quote: str, tokens: list[str], script: str, i: int) -> bool:
    if quote == "`":
        return False
    if lex.backslash_escapes:
        return True
    # PostgreSQL and DuckDB read backslash escapes only in E'...' strings
    return quote == "'" and tokens[-1:] == ["E"] and script[i - 1] in "eE"


def _skip_quoted(script: str, i: int, quote: str, backslash_escapes: bool) -> int:
    j = i + 1
    while j < len(script):
        c = script[j]
        if c == "\\" and backslash_escapes:
            j += 2
        elif c == quote and script.startswith(quote * 2, j):
            j += 2  # a doubled quote stands for itself
        elif c == quote:
            return j + 1
        else:
            j += 1
    raise ConfigError(f"unterminated {quote} quoted text in the SQL")


# -- what a guarded transaction refuses ---------------------------------------------------------

_TRANSACTION_CONTROL = {"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT", "XA"}
# The MySQL manual's "Statements That Cause an Implicit Commit" (MySQL 8.0, section 15.3.3) by
# first keyword: DDL, account management, locking, administration and replication control.
_DDL = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"}
_IMPLICIT_COMMIT = {
    "GRANT": "changes accounts",
    "REVOKE": "changes accounts",
    "LOCK": "is a table or instance lock statement",
    "UNLOCK": "is a table or instance lock statement",
    "ANALYZE": "is an administrative statement",
    "CACHE": "is an administrative statement",
    "CHECK": "is an administrative statement",
    "FLUSH": "is an administrative statement",
    "OPTIMIZE": "is an administrative statement",
    "REPAIR": "is an administrative statement",
    "RESET": "is an administrative statement",
    "INSTALL": "installs a plugin or component",
    "UNINSTALL": "removes a plugin or component",
    "BACKUP": "is a backup lock statement",
    "STOP": "is replication control",
    "CHANGE": "is replication control",
}
# Statements whose effect etlguard cannot read from the text: a procedure or a prepared
# statement may commit or run DDL, which would end the guarded transaction unseen.
_OPAQUE = {"CALL", "PREPARE", "EXECUTE"}


def refusal(stmt: Statement, transactional_ddl: bool) -> str | None:
    """Why `stmt` cannot run inside a guarded transaction, or None if it can."""
    words = stmt.words
    first = words[0] if words else ""
    if first == "SET" and words[1:2] == ["STATEMENT"] and "FOR" in stmt.tokens:
        # MariaDB's SET STATEMENT var = value FOR <statement>: judge the statement
        inner = stmt.tokens[stmt.tokens.index("FOR") + 1 :]
        return refusal(_statement(stmt.text, inner), transactional_ddl) if inner else None
    if first == "DELIMITER":
        return "DELIMITER is a command of the mysql client, not SQL; end statements with ;"
    if first in _TRANSACTION_CONTROL and not _is_replication(words):
        name = " ".join(words[:2]) if first == "START" else first
        return (
            f"{name} is transaction control; etlguard begins, commits and rolls back "
            "the guarded transaction itself"
        )
    if first == "SET" and _sets_autocommit(stmt.tokens):
        return "SET autocommit would commit or end the guarded transaction"
    if transactional_ddl or not first:
        return None
    return _implicit_commit(first, words)


def _implicit_commit(first: str, words: list[str]) -> str | None:
    if first in _DDL and not _is_temporary_table(words):
        what = f"{first} {_object_kind(words)}".strip()
        return (
            f"{what} is DDL, which MySQL and MariaDB commit implicitly and cannot roll back; "
            "it would end the guarded transaction"
        )
    if first in _OPAQUE:
        return (
            f"{first} runs SQL that etlguard cannot see, which could commit or run DDL and "
            "end the guarded transaction; run it outside one"
        )
    why = _IMPLICIT_COMMIT.get(first, "")
    if first == "LOAD" and words[1:2] == ["INDEX"]:
        why, first = "is an administrative statement", "LOAD INDEX"
    elif first == "START":  # START REPLICA / SLAVE / GROUP_REPLICATION
        why, first = "is replication control", f"START {words[1]}"
    elif first == "SET" and "PASSWORD" in words[1:3]:
        why, first = "changes accounts", "SET PASSWORD"
    if not why:
        return None
    return f"{first} {why}; MySQL and MariaDB commit implicitly before it, which would end the guarded transaction"


def _is_replication(words: list[str]) -> bool:
    """START REPLICA, START SLAVE, START GROUP_REPLICATION: not START TRANSACTION."""
    return words[0] == "START" and words[1:2] not in (["TRANSACTION"], [])


_SET_SCOPE = {"SET", ",", ".", "SESSION", "LOCAL", "GLOBAL"}


def _sets_autocommit(tokens: list[str]) -> bool:
    """An assignment to the autocommit variable, in any spelling (not a read of it)."""
    for k, token in enumerate(tokens):
        if token != "=":
            continue
        j = k - 2 if tokens[k - 1] == ":" else k - 1
        if j >= 1 and tokens[j] in ("AUTOCOMMIT", "@@AUTOCOMMIT") and tokens[j - 1] in _SET_SCOPE:
            return True
    return False


def _is_temporary_table(words: list[str]) -> bool:
    """CREATE [OR REPLACE] TEMPORARY TABLE and DROP TEMPORARY TABLE do not commit."""
    head = [w for w in words[1:5] if w not in ("OR", "REPLACE")]
    return words[0] in ("CREATE", "DROP") and head[:2] == ["TEMPORARY", "TABLE"]


_OBJECT_KINDS = {"TABLE", "VIEW", "INDEX", "DATABASE", "SCHEMA", "PROCEDURE", "FUNCTION", "TRIGGER"}
_OBJECT_KINDS |= {"EVENT", "USER", "ROLE", "SERVER", "TABLESPACE", "SEQUENCE", "TABLES"}


def _object_kind(words: list[str]) -> str:
    return next((w for w in words[1:5] if w in _OBJECT_KINDS), "")


def check_statements(db: Adapter, sql: str) -> list[str]:
    """Split `sql` and refuse all of it (ConfigError) if any statement would end the guarded
    transaction. Needs no connection: only the adapter's class attributes."""
    statements = split_statements(sql, lexicon_for(db))
    for number, stmt in enumerate(statements, 1):
        why = refusal(stmt, db.transactional_ddl)
        if why:
            where = f"statement {number} " if len(statements) > 1 else ""
            raise ConfigError(f"refused {where}`{_short(stmt.text, 50)}`: {why}; nothing was run")
    return [s.text for s in statements]


def check_one(db: Adapter, sql: str) -> str:
    """`check_statements` for a query that must be exactly one statement (a validation)."""
    texts = check_statements(db, sql)
    if len(texts) != 1:
        raise ConfigError(f"expected one SQL statement, got {len(texts)}: `{_short(sql, 50)}`")
    return texts[0]


def _short(sql: str, width: int = 80) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 3] + "..."


# -- validations --------------------------------------------------------------------------------


@dataclass
class Check:
    """One validation and, once evaluated, its value. Build with the class methods."""

    kind: str  # no_rows | true | count | row_change
    sql: str  # the query; for row_change, the COUNT(*) query etlguard builds
    min: float | None = None
    max: float | None = None
    table: str = ""  # row_change: the table as given
    baseline: int | None = None  # row_change: the count at declaration
    value: Any = None
    passed: bool | None = None

    @classmethod
    def no_rows(cls, sql: str) -> Check:
        return cls("no_rows", sql)

    @classmethod
    def true(cls, sql: str) -> Check:
        return cls("true", sql)

    @classmethod
    def count(cls, sql: str, min: float | None = None, max: float | None = None) -> Check:
        if min is None and max is None:
            raise ConfigError(f"count validation {_short(sql, 40)!r} needs a minimum, a maximum or both")
        if min is not None and max is not None and min > max:
            raise ConfigError(f"count validation {_short(sql, 40)!r}: minimum {min} is above maximum {max}")
        return cls("count", sql, min, max)

    @classmethod
    def row_change(cls, table: str, max_pct: float) -> Check:
        if max_pct < 0:
            raise ConfigError(f"row-count change limit for {table} must be 0 or more, not {max_pct}")
        return cls("row_change", "", None, max_pct, table=table)

    def evaluate(self, db: Adapter) -> bool:
        if self.kind == "no_rows":
            rows = db.query(self.sql)
            self.value = {"rows": len(rows), "first": [_plain(v) for v in rows[0]] if rows else None}
            self.passed = not rows
        elif self.kind == "true":
            self.value = _first_value(db, self.sql)
            self.passed = _truthy(self.value)
        elif self.kind == "count":
            self.value = _first_value(db, self.sql)
            self.passed = isinstance(self.value, int | float) and _within(self.value, self.min, self.max)
        else:
            after = int(_first_value(db, self.sql) or 0)
            change = _change_pct(self.baseline or 0, after)
            self.value = {"before": self.baseline, "after": after, "change_pct": change}
            self.passed = change is not None and abs(change) <= (self.max or 0)
        return self.passed

    def __str__(self) -> str:
        v = self.value
        if self.kind == "no_rows":
            got = "" if self.passed is None else f", got {v['rows']} (first: {v['first']})"
            return f"expected no rows from `{_short(self.sql)}`{got}"
        if self.kind == "true":
            return f"expected a true value from `{_short(self.sql)}`, got {v!r}"
        if self.kind == "count":
            return f"`{_short(self.sql)}` returned {v!r}, expected {_bounds(self.min, self.max)}"
        pct = "" if v is None or v["change_pct"] is None else f" by {v['change_pct']:+.1f}%"
        rows = "" if v is None else f" ({v['before']} -> {v['after']} rows)"
        return f"row count of {self.table} changed{pct}{rows}, limit {self.max:g}%"

    def as_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "sql": self.sql, "passed": self.passed, "value": self.value}
        if self.kind == "count":
            out.update(min=self.min, max=self.max)
        if self.kind == "row_change":
            out.update(table=self.table, max_pct=self.max)
        return out


def _first_value(db: Adapter, sql: str) -> Any:
    rows = db.query(sql)
    return _plain(rows[0][0]) if rows and rows[0] else None


def _plain(value: Any) -> Any:
    """MySQL's DECIMAL results (SUM, some COUNT expressions) as int or float."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _truthy(value: Any) -> bool:
    """SQL's idea of true: a non-zero number or TRUE. NULL, 0, FALSE, no row and text fail."""
    return isinstance(value, bool | int | float) and bool(value)


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and low == high:
        return f"exactly {low:g}"
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def _change_pct(before: int, after: int) -> float | None:
    """The change in percent of `before`; None when it is undefined (from 0 rows to some)."""
    if before == 0:
        return 0.0 if after == 0 else None
    return (after - before) * 100.0 / before


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
        check.baseline = int(_first_value(self.db, check.sql) or 0)
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

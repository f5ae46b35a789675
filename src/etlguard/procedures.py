"""Stored procedures etlguard installs on MySQL and MariaDB targets, for callers that cannot
run Python (a dbt post-hook, a scheduled event, a SQL client).

`run_safe_incremental_update(update_query, validation_query)` is the design note's Layer 3,
corrected: it runs one update statement and the validation query in one transaction, and
commits only if the validation returns a true value (not 0, not NULL, exactly one value).
Otherwise, and on any SQL error, it rolls back and signals SQLSTATE 45000 (MySQL error 1644)
with 'validation failed, rolled back' or 'rolled back: (errno) original message'.

Limits, by the server's rules rather than ours:
- It cannot protect DDL: CREATE, ALTER, DROP, RENAME and TRUNCATE commit implicitly before the
  validation runs, so the ROLLBACK has nothing to undo.
- Its START TRANSACTION commits whatever transaction the caller had open.
- Inside a procedure the default schema is the procedure's own, so qualify every table name.
- It runs with the caller's privileges (SQL SECURITY INVOKER).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapters import adapter_for
from .adapters.base import Adapter
from .errors import ConfigError

if TYPE_CHECKING:
    from .guard import Guard

PROCEDURES = ("run_safe_incremental_update",)


def procedure_statements(db: Adapter, schema: str) -> list[str]:
    """The statements that (re)install the procedures in `schema`, each sent to the server
    whole. Needs no connection."""
    build = getattr(db, "safe_update_procedure", None)
    if build is None:
        raise ConfigError(
            f"stored procedures are for MySQL and MariaDB targets, not {db.name}; "
            "use a guarded transaction (`etlguard exec`) instead"
        )
    return list(build(schema))


def procedure_script(statements: list[str]) -> str:
    """The statements as a script for the mysql command-line client, which needs DELIMITER
    around a procedure body."""
    lines = []
    for sql in statements:
        if sql.startswith("CREATE PROCEDURE"):
            lines += ["DELIMITER $$", f"{sql}$$", "DELIMITER ;"]
        else:
            lines.append(f"{sql};")
    return "\n".join(lines) + "\n"


def install_procedures(guard: Guard, schema: str | None = None, dry_run: bool = False) -> list[str]:
    """Install the procedures in `schema` (default: the catalog schema), replacing older
    versions, and return the statements. With `dry_run`, return them and touch nothing."""
    schema = schema or guard.config.catalog_schema
    db = adapter_for(guard.config.target, guard.config.lock_wait_seconds)
    statements = procedure_statements(db, schema)
    if dry_run:
        return statements
    try:
        db.connect()
        db.ensure_schema(schema)
        for sql in statements:
            db.execute(sql)
    finally:
        db.close()
    return statements

"""One error family. The CLI catches `EtlguardError` and nothing else.

Every error carries the exit code the CLI returns for it, so that automation can tell
"nothing was touched" apart from "a person must act now".
"""

from __future__ import annotations

# Exit codes, documented in docs/cli.md. Distinct on purpose: cron and Airflow act on them.
EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed; nothing was changed (verify mismatch, refused restore)
EXIT_USAGE = 2  # bad configuration or arguments; nothing was touched
EXIT_BUSY = 3  # another etlguard holds the target's lock; nothing was touched
EXIT_UNFINISHED = 4  # an interrupted operation must be recovered first
EXIT_UNREACHABLE = 5  # the server could not be reached after retries; transient: retry later
EXIT_ETL_FAILED = 10  # the ETL failed; the protected set was rolled back and verified
EXIT_AUDIT_FAILED = 11  # the ETL exited 0 but an audit failed; rolled back and verified
EXIT_SNAPSHOT_FAILED = 12  # the snapshot failed; the ETL never ran
EXIT_ROLLBACK_FAILED = 20  # the rollback failed, or a restore is unverified: a person must act
EXIT_LOCK_LOST = 21  # the run's lock was lost during the ETL: nothing committed or rolled back; recover
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP before the ETL started: partial work removed


class EtlguardError(Exception):
    """Base of every error etlguard raises on purpose. `str(err)` is one line for people."""

    exit_code = EXIT_FAILED


class ConfigError(EtlguardError):
    """The configuration or the arguments are wrong. Nothing was touched."""

    exit_code = EXIT_USAGE


class TargetError(EtlguardError):
    """The target cannot be reached or refused us (wrong password, missing grant)."""

    exit_code = EXIT_USAGE


class TargetUnreachable(TargetError):
    """The server did not answer or is restarting (an Aurora failover). Nothing was touched,
    and unlike a configuration error, running again later may well succeed."""

    exit_code = EXIT_UNREACHABLE


class IdentifierError(ConfigError):
    """A table or schema name that cannot be represented on the target."""


class TableNotFound(ConfigError):
    def __init__(self, table: str, hint: str = "") -> None:
        self.table = table
        super().__init__(f"table {table} does not exist" + (f"; {hint}" if hint else ""))


class UnsupportedTable(ConfigError):
    """A table etlguard cannot snapshot exactly (triggers, foreign keys, views)."""


class LockHeld(EtlguardError):
    exit_code = EXIT_BUSY

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(f"the target is locked by another etlguard: {holder}")


class SnapshotNotFound(EtlguardError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no snapshot found: {what}; list them with `etlguard snapshots`")


class ChecksumMismatch(EtlguardError):
    """A snapshot or a copy does not match what the catalog recorded."""

    def __init__(self, table: str, snapshot_id: int | None, expected: str, actual: str) -> None:
        self.table = table
        self.snapshot_id = snapshot_id
        self.expected = expected
        self.actual = actual
        where = f"snapshot {snapshot_id} of {table}" if snapshot_id else table
        super().__init__(
            f"checksum mismatch for {where}: catalog has {expected}, table has {actual}; "
            "it was changed or damaged after it was taken, so it will not be used"
        )


class SnapshotFailed(EtlguardError):
    exit_code = EXIT_SNAPSHOT_FAILED


class RestoreFailed(EtlguardError):
    """The swap did not happen; the live tables are as they were."""


class UnfinishedOperation(EtlguardError):
    exit_code = EXIT_UNFINISHED


class AuditFailed(EtlguardError):
    """The ETL finished but an audit failed; the protected set was rolled back."""

    exit_code = EXIT_AUDIT_FAILED

    def __init__(self, message: str, result: object = None) -> None:
        self.result = result
        super().__init__(message)


class RollbackFailed(EtlguardError):
    """The rollback did not complete: a person must act. The message names the command."""

    exit_code = EXIT_ROLLBACK_FAILED

    def __init__(self, message: str, result: object = None) -> None:
        self.result = result
        super().__init__(message)


class RestoreUnverified(RollbackFailed):
    """The swap happened but a restored table does not match its snapshot (structure or data):
    a person must look (exit 20, like a failed rollback). The replaced tables are kept as
    `displaced` snapshots."""


class LockLost(EtlguardError):
    """The run's lock was lost during the ETL: nothing was committed or rolled back."""

    exit_code = EXIT_LOCK_LOST

    def __init__(self, message: str, result: object = None) -> None:
        self.result = result
        super().__init__(message)


class ValidationFailed(EtlguardError):
    """A guarded transaction's validations failed, so it was rolled back. `failed` holds the
    failed checks with their values; `transaction` the whole guarded transaction."""

    def __init__(self, failed: list[object], transaction: object = None) -> None:
        self.failed = failed
        self.transaction = transaction
        super().__init__("validation failed, rolled back: " + "; ".join(str(c) for c in failed))

"""etlguard: snapshot the tables that matter, run the ETL, audit the result, and commit or roll
every protected table back in one atomic swap."""

from .catalog import Snapshot
from .config import Config, Retention
from .errors import (
    ChecksumMismatch,
    ConfigError,
    EtlguardError,
    LockHeld,
    LockLost,
    RestoreFailed,
    RestoreUnverified,
    SnapshotFailed,
    SnapshotNotFound,
    TableNotFound,
    TargetError,
    ValidationFailed,
)
from .guard import DiffResult, Guard, VerifyResult
from .procedures import install_procedures
from .restore import RestoreResult
from .retention import PruneDecision
from .tables import TableRef, parse_table
from .transaction import Check, GuardedTransaction, run_guarded

__all__ = [
    "Check",
    "ChecksumMismatch",
    "Config",
    "ConfigError",
    "DiffResult",
    "EtlguardError",
    "Guard",
    "GuardedTransaction",
    "LockHeld",
    "LockLost",
    "PruneDecision",
    "RestoreFailed",
    "RestoreResult",
    "RestoreUnverified",
    "Retention",
    "Snapshot",
    "SnapshotFailed",
    "SnapshotNotFound",
    "TableNotFound",
    "TableRef",
    "TargetError",
    "ValidationFailed",
    "VerifyResult",
    "install_procedures",
    "parse_table",
    "run_guarded",
]

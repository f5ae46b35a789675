"""etlguard: snapshot the tables that matter, run the ETL, audit the result, and commit or roll
every protected table back in one atomic swap."""

from .catalog import Snapshot
from .config import Config, Retention
from .errors import (
    ChecksumMismatch,
    ConfigError,
    EtlguardError,
    LockHeld,
    RestoreFailed,
    SnapshotFailed,
    SnapshotNotFound,
    TableNotFound,
    TargetError,
)
from .guard import DiffResult, Guard, VerifyResult
from .restore import RestoreResult
from .retention import PruneDecision
from .tables import TableRef, parse_table

__all__ = [
    "ChecksumMismatch",
    "Config",
    "ConfigError",
    "DiffResult",
    "EtlguardError",
    "Guard",
    "LockHeld",
    "PruneDecision",
    "RestoreFailed",
    "RestoreResult",
    "Retention",
    "Snapshot",
    "SnapshotFailed",
    "SnapshotNotFound",
    "TableNotFound",
    "TableRef",
    "TargetError",
    "VerifyResult",
    "parse_table",
]

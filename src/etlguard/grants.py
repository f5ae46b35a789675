"""Least privilege: check, before anything destructive, that the user may do every step.

The documented grants (docs/configuration.md) are exactly these sets; a test removes each one
in turn and expects this check to name it before the ETL starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from .adapters.base import Adapter
from .errors import TargetError
from .tables import TableRef

_SNAPSHOT_SOURCE = {"SELECT", "LOCK TABLES"}
# RENAME TABLE needs ALTER and DROP on the old name and CREATE and INSERT on the new one; the
# swap renames live tables out to the snapshot schema and staging copies in.
_SWAPPED = {"SELECT", "INSERT", "CREATE", "DROP", "ALTER", "LOCK TABLES"}
_CATALOG = {"SELECT", "INSERT", "UPDATE", "CREATE"}
_WHY = {
    "SELECT": "to read and checksum tables",
    "INSERT": "to copy rows and to rename tables in",
    "CREATE": "to create snapshot tables and to rename tables in",
    "DROP": "to drop snapshots and to rename tables out",
    "ALTER": "to rename tables out and set AUTO_INCREMENT",
    "LOCK TABLES": "to copy every table at one consistency point",
    "UPDATE": "to record outcomes in the catalog",
}


def check_privileges(
    db: Adapter, tables: Sequence[TableRef], snapshot_schema: str, catalog_schema: str, swaps: bool
) -> None:
    required: dict[str, set[str]] = {}
    for t in tables:
        required.setdefault(t.schema, set()).update(_SWAPPED if swaps else _SNAPSHOT_SOURCE)
    required.setdefault(snapshot_schema, set()).update(_SWAPPED)
    required.setdefault(catalog_schema, set()).update(_CATALOG)
    missing = db.missing_privileges(required)
    if missing:
        schema, priv = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TargetError(
            f"the database user lacks {priv} on schema {schema}, needed {_WHY[priv]}{more}; "
            f"grant it (GRANT {priv} ON `{schema}`.* TO ...) as docs/configuration.md lists"
        )

"""Iceberg tables in the AWS Glue Data Catalog: the catalog, and moving one table's pointer.

Glue has no multi-table transaction, so a restore moves the tables one at a time, each with a
compare-and-swap: the Glue table must still point at the metadata file etlguard read, and the
update carries the Glue table's `VersionId` (Glue refuses it if anyone updated the table since).
Before the first pointer moves, every planned move is journaled in etlguard's local catalog
(`etlguard_iceberg_moves`); a move's row goes once its displaced reference is recorded. A restore
run again over leftover rows (by `recover`) classifies each table by its current snapshot and
schema: at the target, skip; at the failed run's state, move it; anywhere else someone wrote
since, and it refuses, naming the table and the state it found.
"""

from __future__ import annotations

from typing import Any

from ..target import Target
from .base import DatabaseError

MOVES = "etlguard_iceberg_moves"


class GlueMoveError(DatabaseError):
    """A Glue table is not where the journaled move expects it."""


def glue_catalog(target: Target) -> Any:
    """pyiceberg's Glue catalog; `region` and every dotted option (glue.endpoint, s3.endpoint,
    glue.region, ...) are its properties, credentials come from the usual AWS chain."""
    from pyiceberg.catalog.glue import GlueCatalog

    props = {k: v for k, v in target.options if "." in k or k == "warehouse"}
    region = target.option("region")
    if region:
        for key in ("glue.region", "s3.region", "client.region"):
            props.setdefault(key, region)
    return GlueCatalog(target.option("catalog", "default"), **props)


def state_of(props: dict[str, str], location: str | None) -> tuple[int | None, int | None] | None:
    """(current snapshot id, current schema id) of a metadata file; None for no table. A tag
    commit writes a new metadata file but keeps both, so this is the table's data and schema."""
    if location is None:
        return None
    from pyiceberg.table import StaticTable

    meta = StaticTable.from_metadata(location, props).metadata
    return meta.current_snapshot_id, meta.current_schema_id


def pointer(catalog: Any, namespace: str, name: str) -> tuple[str, str] | None:
    """(metadata location, Glue VersionId) of a Glue table, None when it is not in Glue."""
    try:
        table = catalog.glue.get_table(DatabaseName=namespace, Name=name)["Table"]
    except catalog.glue.exceptions.EntityNotFoundException:
        return None
    return table.get("Parameters", {}).get("metadata_location", ""), table.get("VersionId", "")


def move(catalog: Any, namespace: str, name: str, current: str | None, target: str | None) -> None:
    """One table's pointer from `current` to `target` (None: no Glue table), compare-and-swap."""
    from pyiceberg.catalog.glue import _construct_table_input
    from pyiceberg.table import StaticTable

    now = pointer(catalog, namespace, name)
    if (now[0] if now else None) != current:
        raise GlueMoveError(f"{namespace}.{name} was written to during the restore; it was not moved")
    try:
        if target is None:
            catalog.glue.delete_table(DatabaseName=namespace, Name=name)
        elif now is None:
            catalog.register_table((namespace, name), target)
        else:
            glue_table = catalog.glue.get_table(DatabaseName=namespace, Name=name)["Table"]
            meta = StaticTable.from_metadata(target, dict(catalog.properties)).metadata
            table_input = _construct_table_input(name, target, meta.properties, meta, glue_table, current)
            catalog.glue.update_table(DatabaseName=namespace, TableInput=table_input, VersionId=now[1])
    except catalog.glue.exceptions.ConcurrentModificationException as exc:
        raise GlueMoveError(
            f"{namespace}.{name} was written to during the restore; it was not moved"
        ) from exc
    except GlueMoveError:
        raise
    except Exception as exc:  # botocore and pyiceberg errors: the move did not happen
        raise GlueMoveError(f"cannot move {namespace}.{name} in Glue: {exc}") from exc


def where_is(
    props: dict[str, str], live: str | None, journal_from: str | None, journal_to: str | None
) -> str:
    """Where a table stands against its leftover journal row: target | from | elsewhere."""
    now = state_of(props, live)
    if now == state_of(props, journal_to):
        return "target"
    if now == state_of(props, journal_from):
        return "from"
    return "elsewhere"

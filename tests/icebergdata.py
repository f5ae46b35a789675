"""Iceberg fixtures for tests: a catalog (SQL on SQLite or PostgreSQL, or Glue on a local moto
server) described by a JSON-able spec that a child process can open too, tables made with
pyiceberg, and a golden fingerprint computed here from the rows and the schema (never by etlguard)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog


def sql_catalog(path: Path) -> SqlCatalog:
    warehouse = path.parent / "warehouse"
    warehouse.mkdir(exist_ok=True)
    return SqlCatalog("default", uri=f"sqlite:///{path}", warehouse=warehouse.as_uri())


def open_catalog(spec: dict[str, Any]) -> Any:
    """The pyiceberg catalog a spec names (the same one etlguard's target URL points at)."""
    if spec["kind"] == "sqlite":
        return sql_catalog(Path(spec["db"]))
    if spec["kind"] == "postgresql":
        return SqlCatalog("default", uri=spec["uri"], warehouse=spec["warehouse"])
    if spec["kind"] == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        endpoint = spec["endpoint"]
        return GlueCatalog(
            "default",
            **{
                "glue.endpoint": endpoint,
                "s3.endpoint": endpoint,
                "glue.region": "us-east-1",
                "s3.region": "us-east-1",
                "warehouse": spec["warehouse"],
            },
        )
    raise ValueError(f"unknown catalog kind {spec['kind']!r}")


def make_table(catalog: Any, namespace: str, name: str, rows: int, offset: int = 0) -> Any:
    catalog.create_namespace_if_not_exists(namespace)
    data = pa.table(
        {
            "id": pa.array(range(offset, offset + rows), pa.int64()),
            "label": pa.array([f"row {i}" for i in range(offset, offset + rows)], pa.string()),
        }
    )
    table = catalog.create_table((namespace, name), schema=data.schema)
    table.append(data)
    return table


def golden(catalog: Any, namespace: str, name: str) -> tuple[int, str, str]:
    """Row count, a SHA-256 over every row in sorted order, and the column names and types."""
    table = catalog.load_table((namespace, name))
    rows = table.scan().to_arrow().to_pylist()
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: repr(sorted(r.items()))):
        digest.update(repr(sorted(row.items())).encode())
    schema = ", ".join(f"{f.name} {f.field_type}" for f in table.schema().fields)
    return len(rows), digest.hexdigest(), schema

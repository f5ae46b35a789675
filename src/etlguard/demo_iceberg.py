"""`etlguard demo --iceberg`: the tour on Apache Iceberg tables in a local SQL catalog (SQLite and
local files), so anyone can see a snapshot by tag and a rollback by pointer without AWS."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from . import Config, Guard

PROTECT = ["gold.orders", "gold.customers"]

# The failed run: appends duplicates to one table, adds a column to the other, then fails.
_BAD_RUN = """
import sys
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import StringType
cat = SqlCatalog("default", uri={uri!r}, warehouse={warehouse!r})
orders = cat.load_table(("gold", "orders"))
orders.append(orders.scan().to_arrow())
with cat.load_table(("gold", "customers")).update_schema() as u:
    u.add_column("half_written", StringType())
print("model gold.customers: ERROR, the run stops here", file=sys.stderr)
sys.exit(1)
"""


def run_iceberg_demo(out: Console, workdir: Path) -> None:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    db, warehouse = workdir / "catalog.db", (workdir / "warehouse")
    warehouse.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db}"
    catalog = SqlCatalog("default", uri=uri, warehouse=warehouse.as_uri())
    catalog.create_namespace("gold")
    for name, rows in (("orders", 1000), ("customers", 100)):
        data = pa.table(
            {"id": pa.array(range(rows), pa.int64()), "name": [f"{name} {i}" for i in range(rows)]}
        )
        catalog.create_table(("gold", name), schema=data.schema).append(data)
    out.print("[bold]etlguard demo --iceberg[/]: two Iceberg tables in a local SQL catalog")
    out.print(f"   {_state(catalog)}")
    guard = Guard(Config.from_dict({"target": f"iceberg+sql:///{db}", "protect": PROTECT}))
    out.print(
        "\n[bold cyan]A guarded run that fails halfway[/]   [dim]$ etlguard run -- python bad_run.py[/]"
    )
    code = _BAD_RUN.format(uri=uri, warehouse=warehouse.as_uri())
    result = guard.run([sys.executable, "-c", code])
    out.print(f"   exit {result.exit_code}: {result.message}", markup=False)
    out.print(
        f"   snapshot (a tag per table): {result.snapshot_seconds * 1000:.0f} ms; "
        f"rollback (pointers moved in one catalog transaction): {result.rollback_seconds * 1000:.0f} ms"
    )
    out.print(f"   {_state(catalog)}  (the added column is gone too)")


def _state(catalog: object) -> str:
    parts = []
    for name in ("orders", "customers"):
        table = catalog.load_table(("gold", name))  # type: ignore[attr-defined]
        cols = ", ".join(f.name for f in table.schema().fields)
        parts.append(f"gold.{name}: {table.scan().to_arrow().num_rows} rows ({cols})")
    return "; ".join(parts)

"""The crash-safety harness: a protected pair of tables, a canary that is never protected, an
ETL script that writes to the pair, and etlguard run as a real process with a fault point."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import Backend

ETL_SCRIPT = """
import sys, time
kind, target, schema, mode = sys.argv[1:5]
if kind == "duckdb":
    import duckdb
    conn = duckdb.connect(target)
    run = conn.execute
    q = lambda n: '"' + n.replace('"', '""') + '"'
elif kind == "postgresql":
    import psycopg
    host, port = target.split(":")
    conn = psycopg.connect(host=host, port=int(port), user="postgres", dbname="postgres", autocommit=True)
    run = conn.execute
    q = lambda n: '"' + n.replace('"', '""') + '"'
else:
    import pymysql
    host, port = target.split(":")
    conn = pymysql.connect(host=host, port=int(port), user="root", password="", autocommit=True)
    run = conn.cursor().execute
    q = lambda n: "`" + n.replace("`", "``") + "`"
a, b = f"{q(schema)}.{q('orders')}", f"{q(schema)}.{q('order_lines')}"
run(f"UPDATE {a} SET amount = amount + 1 WHERE id % 3 = 0")
run(f"INSERT INTO {a} (id, amount, note) VALUES (100001, 7.5, 'etl')")
run(f"DELETE FROM {b} WHERE id % 5 = 0")
if mode == "slow":
    time.sleep(30)
sys.exit(1 if mode == "fail" else 0)
"""


class Rig:
    """One protected schema with two tables, a canary schema, and etlguard as a subprocess."""

    def __init__(self, backend: Backend, rows: int = 300) -> None:
        self.b = backend
        self.schema = backend.create_schema("prot")
        self.canary_schema = backend.create_schema("canary")
        for name in ("orders", "order_lines"):
            t = backend.table(self.schema, name)
            backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), note VARCHAR(40))")
            backend.sql(
                f"INSERT INTO {t} (id, amount, note) "
                + " UNION ALL ".join(f"SELECT {i}, {i}.25, 'n{i}'" for i in range(1, rows + 1))
            )
        c = backend.table(self.canary_schema, "canary")
        backend.sql(f"CREATE TABLE {c} (id INTEGER PRIMARY KEY, v VARCHAR(10))")
        backend.sql(f"INSERT INTO {c} VALUES (1, 'x'), (2, 'y')")
        self.canary = backend.golden(self.canary_schema, "canary")
        self.dir = backend.tmp_path
        self.script = self.dir / "etl.py"
        self.script.write_text(ETL_SCRIPT, encoding="utf-8")
        self.config = backend.write_config(
            self.dir / "etlguard.yml", protect=[f"{self.schema}.*"], retention={"days": None, "keep_last": 1}
        )

    def rows(self) -> set[tuple]:
        """Every row of the protected pair, tagged by table: to count rows lost, not just detect it."""
        out = set()
        for name in ("orders", "order_lines"):
            out |= {
                (name, *map(str, r)) for r in self.b.sql(f"SELECT * FROM {self.b.table(self.schema, name)}")
            }
        return out

    def state(self) -> tuple[tuple[int, str], tuple[int, str]]:
        return (self.b.golden(self.schema, "orders"), self.b.golden(self.schema, "order_lines"))

    def etl_command(self, mode: str) -> list[str]:
        target = (
            str(getattr(self.b, "path", "")) if self.b.kind == "duckdb" else f"{self.b.host}:{self.b.port}"
        )
        return [sys.executable, str(self.script), self.b.kind, target, self.schema, mode]

    def run_etl_directly(self, mode: str = "ok") -> None:
        subprocess.run(self.etl_command(mode), check=mode != "fail", timeout=60)

    def etlguard(
        self, *args: str, fault: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "ETLGUARD_FAULT"}
        if fault:
            env["ETLGUARD_FAULT"] = fault
        cmd = [sys.executable, "-m", "etlguard", args[0], "-c", str(self.config), *args[1:]]
        return subprocess.run(cmd, env=env, cwd=self.dir, capture_output=True, text=True, timeout=timeout)

    def catalog_rows(self, where: str = "1=1") -> list[tuple]:
        t = self.b.table(self.b.catalog_schema, "snapshots")
        return self.b.sql(f"SELECT id, snapshot_schema, snapshot_table, status FROM {t} WHERE {where}")

    @property
    def source_schema(self) -> str:
        return self.b.schema("source")

    def copy_to_source(self) -> None:
        """Copy the protected pair, as it is now, into a source schema for restore --from."""
        source = self.b.create_schema("source")
        for name in ("orders", "order_lines"):
            live, copy = self.b.table(self.schema, name), self.b.table(source, name)
            self.b.sql(f"CREATE TABLE {copy} AS SELECT * FROM {live}")

    def snapshot_schema_tables(self) -> set[str]:
        return set(self.tables_in(self.b.snapshot_schema))

    def assert_clean(self) -> None:
        """No half-made snapshots, no orphans, every verified snapshot intact, canary unchanged,
        and a second recover has nothing to do."""
        again = self.etlguard("recover")
        assert again.returncode == 0, again.stderr
        assert "nothing to recover" in again.stdout, again.stdout
        assert self.catalog_rows("status = 'creating'") == []
        verified = {(r[1], r[2]) for r in self.catalog_rows("status = 'verified'")}
        assert self.etlguard_tables() == verified  # no orphan, nothing verified that is missing
        check = self.etlguard("verify")
        assert check.returncode == 0, check.stdout + check.stderr
        assert self.b.golden(self.canary_schema, "canary") == self.canary

    def etlguard_tables(self) -> set[tuple[str, str]]:
        """Every table etlguard made: the snapshot schema's, and the `_etlguard_` ones beside the
        live tables (DuckDB keeps displaced tables there: it renames only within a schema)."""
        tables = {(self.b.snapshot_schema, t) for t in self.snapshot_schema_tables()}
        return tables | {(self.schema, t) for t in self.tables_in(self.schema) if t.startswith("_etlguard_")}

    def tables_in(self, schema: str) -> list[str]:
        if self.b.kind == "duckdb":
            return [
                r[0]
                for r in self.b.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [schema])
            ]
        return [
            r[0]
            for r in self.b.sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
            )
        ]


class Probe:
    """A reader polling the protected pair every 10 ms on its own connection (MariaDB), counting
    "table doesn't exist" errors (1146) and any other error."""

    def __init__(self, rig: Rig) -> None:
        import threading

        self.rig = rig
        self.missing = 0
        self.other: list[str] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import time

        import pymysql

        conn = pymysql.connect(
            host=self.rig.b.host, port=self.rig.b.port, user="root", password="", autocommit=True
        )
        tables = [self.rig.b.table(self.rig.schema, n) for n in ("orders", "order_lines")]
        with conn.cursor() as cur:
            while not self._stop.is_set():
                for t in tables:
                    try:
                        cur.execute(f"SELECT COUNT(*) FROM {t}")
                        self.reads += 1
                    except pymysql.err.Error as exc:
                        if exc.args and exc.args[0] == 1146:
                            self.missing += 1
                        else:
                            self.other.append(str(exc))
                            conn.ping()
                time.sleep(0.01)
        conn.close()

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

"""Shared fixtures: real databases, unique schemas per test, and a golden checksum computed by
the tests themselves (never by etlguard's own checksum code).

The suite runs in parallel under pytest-xdist (`make test`: `-n auto --dist loadgroup`), each
worker a process of its own, tests handed out in any order. A test must therefore hold up
beside any other test of the suite running at the same moment:

- Names on a shared server come from a `Backend` (`schema()`, `unique()`, its `tag`): never a
  fixed schema, table, user or role name on 127.0.0.1:3306 or :5432. Server-wide settings (SET
  GLOBAL, max_connections, killing or pausing the server) only on a throwaway server
  (tests/servers.py: `throwaway`, `make_server`), which has its own port and datadir.
- Files under `tmp_path` (unique per test and worker); never a fixed path, and never a file in
  the checkout a test writes (the dbt project's `dbt deps` is shared, so it runs under a lock:
  tests/pipeline.py).
- A process is known by the pid the test started, never found by name: other workers run
  etlguard, dbt and mariadbd too.
- Expensive read-only setup is made once per worker with a session-scoped fixture (the throwaway
  server's template datadir, Airflow's migrated database) or a per-process cache (the example
  warehouse's first day, tests/pipeline.py), and each test works on its own copy.
- Tests that share something a worker builds once may run on one worker with
  `pytest.mark.xdist_group("name")` (test_airflow.py); `--dist loadgroup` honours it.
- Figures (ETLGUARD_FIGURES) are counted per worker and merged by the controller.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pymysql
import pytest

from etlguard import Config, Guard

MYSQL_URL = os.environ.get("ETLGUARD_TEST_MYSQL_URL", "mariadb+pymysql://root@127.0.0.1:3306")
MYSQL_HOST = os.environ.get("ETLGUARD_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("ETLGUARD_TEST_MYSQL_PORT", "3306"))
pytest_plugins = ["servers"]  # throwaway MariaDB servers: the mariadb_template and throwaway fixtures
BACKENDS = os.environ.get("ETLGUARD_TEST_BACKENDS", "duckdb,mariadb,postgresql").split(",")


class Backend:
    """One real database for one test: names are unique, everything is dropped afterwards.

    With `default_schema` the test's data lives in the database's default schema (`main` on
    DuckDB, `public` on PostgreSQL; on MariaDB, which has no default apart from a connection's
    current database, a per-test database that the target URL names, as a dbt-mysql profile's
    `schema` does): `data_schema()` returns it, and `unique()` makes table names unique where
    that schema is shared between tests. Catalog, snapshot and canary schemas stay named ones."""

    kind: str
    url: str
    default_schema_name = ""

    def __init__(self, tmp_path: Path, default_schema: bool = False) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.tmp_path = tmp_path
        self.created: list[str] = []
        self.home = self.default_schema_name if default_schema else ""

    # -- names --------------------------------------------------------------------------------
    def schema(self, name: str) -> str:
        """A schema name unique to this test (MariaDB is shared between tests)."""
        full = f"t{self.tag}_{name}"
        if full not in self.created:
            self.created.append(full)
        return full

    @property
    def catalog_schema(self) -> str:
        return self.schema("etlguard")

    @property
    def snapshot_schema(self) -> str:
        return self.schema("snaps")

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "target": self.url,
            "catalog_schema": self.catalog_schema,
            "snapshot_schema": self.snapshot_schema,
            **extra,
        }

    def guard(self, protect: Sequence[str] = (), **extra: Any) -> Guard:
        return Guard(Config.from_dict(self.settings(protect=list(protect), **extra)))

    def write_config(self, path: Path, protect: Sequence[str | dict[str, str]] = (), **extra: Any) -> Path:
        import yaml

        path.write_text(yaml.safe_dump(self.settings(protect=list(protect), **extra)), encoding="utf-8")
        return path

    # -- raw access (the test's own connection) ---------------------------------------------------
    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def q(self, name: str) -> str:
        raise NotImplementedError

    def table(self, schema: str, name: str) -> str:
        return f"{self.q(schema)}.{self.q(name)}"

    def create_schema(self, name: str) -> str:
        full = self.schema(name)
        self.sql(f"CREATE SCHEMA IF NOT EXISTS {self.q(full)}")
        return full

    def unique(self, name: str) -> str:
        """A table name for the data schema: as given, except where that schema is shared
        between tests (PostgreSQL's `public`), where it is made unique and dropped afterwards."""
        return name

    def data_schema(self, name: str = "gold") -> str:
        """Where a test keeps the tables it protects: the default schema in that variant,
        else a named schema of its own."""
        return self.home or self.create_schema(name)

    def golden(self, schema: str, name: str) -> tuple[int, str]:
        """Row count and a SHA-256 over every row in full-row order: independent of etlguard."""
        rows = self.sql(f"SELECT * FROM {self.table(schema, name)}")
        digest = hashlib.sha256()
        for row in sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r)):
            digest.update(repr(tuple(_norm(v) for v in row)).encode())
        return len(rows), digest.hexdigest()

    def cleanup(self) -> None:
        pass


def _norm(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes | bytearray) else value


class DuckDBBackend(Backend):
    kind = "duckdb"
    default_schema_name = "main"  # a plain duckdb.connect() and dbt-duckdb's default

    def __init__(self, tmp_path: Path, default_schema: bool = False) -> None:
        super().__init__(tmp_path, default_schema)  # one file per test: names in main are its own
        self.path = tmp_path / "warehouse.duckdb"
        self.url = f"duckdb:///{self.path}"

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(duckdb.connect(str(self.path))) as conn:
            cur = conn.execute(statement, list(params))
            return cur.fetchall() if cur.description else []

    def q(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def show_create(self, schema: str, name: str) -> str:
        rows = self.sql(
            "SELECT sql FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, name]
        )
        indexes = self.sql(
            "SELECT sql FROM duckdb_indexes() WHERE schema_name = ? AND table_name = ? ORDER BY index_name",
            [schema, name],
        )
        return "\n".join([rows[0][0], *(r[0] for r in indexes)])


class MariaDBBackend(Backend):
    kind = "mariadb"

    def __init__(
        self, tmp_path: Path, default_schema: bool = False, port: int = MYSQL_PORT, url: str = MYSQL_URL
    ) -> None:
        super().__init__(tmp_path)
        self.host, self.port, self.url = MYSQL_HOST, port, url
        self.conn = self._connect()
        if default_schema:  # the target URL names the test's own database
            self.home = self.create_schema("home")
            self.url = f"{url}/{self.home}"

    def _connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host, port=self.port, user="root", password="", charset="utf8mb4", autocommit=True
        )

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            self.conn.ping()
        except pymysql.err.Error:  # throwaway servers get killed and restarted under us
            self.conn = self._connect()
        with self.conn.cursor() as cur:
            cur.execute(statement, tuple(params) or None)
            return list(cur.fetchall()) if cur.description else []

    def q(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def show_create(self, schema: str, name: str) -> str:
        return str(self.sql(f"SHOW CREATE TABLE {self.table(schema, name)}")[0][1])

    def cleanup(self) -> None:
        for name in self.created:
            with contextlib.suppress(pymysql.err.Error):
                self.sql(f"DROP DATABASE IF EXISTS {self.q(name)}")
        self.conn.close()


PG_HOST = os.environ.get("ETLGUARD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ETLGUARD_TEST_PG_PORT", "5432"))


class PostgresBackend(Backend):
    kind = "postgresql"

    def __init__(self, tmp_path: Path, default_schema: bool = False) -> None:
        import psycopg

        super().__init__(tmp_path)
        self.home = "public" if default_schema else ""
        self.home_tables: list[str] = []
        self.host, self.port = PG_HOST, PG_PORT
        self.url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"
        self.conn = psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
        )

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(statement, tuple(params) or None)
        return list(cur.fetchall()) if cur.description else []

    def q(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def show_create(self, schema: str, name: str) -> str:
        """Columns, constraints and indexes as the catalog describes them (no SHOW CREATE here)."""
        rel = f"{self.q(schema)}.{self.q(name)}"
        cols = self.sql(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid), "
            "attgenerated, attidentity FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
            "AND d.adnum = a.attnum WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [rel],
        )
        idx = self.sql(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass ORDER BY 1", [rel]
        )
        return repr((cols, idx))

    def unique(self, name: str) -> str:
        if not self.home:
            return name
        full = f"{name}_t{self.tag}"  # `public` is shared by every test and every engineer
        self.home_tables.append(full)
        return full

    def cleanup(self) -> None:
        for name in self.home_tables:
            with contextlib.suppress(Exception):
                self.sql(f"DROP TABLE IF EXISTS {self.table(self.home, name)} CASCADE")
        for name in self.created:
            with contextlib.suppress(Exception):
                self.sql(f"DROP SCHEMA IF EXISTS {self.q(name)} CASCADE")
        self.conn.close()


def make_backend(kind: str, tmp_path: Path, default_schema: bool = False) -> Backend:
    classes: dict[str, type[Backend]] = {
        "duckdb": DuckDBBackend,
        "mariadb": MariaDBBackend,
        "postgresql": PostgresBackend,
    }
    return classes[kind](tmp_path, default_schema)


def _one(kind: str, tmp_path: Path, default_schema: bool = False) -> Iterator[Backend]:
    if kind not in BACKENDS:
        pytest.skip(f"{kind} tests disabled by ETLGUARD_TEST_BACKENDS")
    b = make_backend(kind, tmp_path, default_schema)
    try:
        yield b
    finally:
        b.cleanup()


SHARED = ("duckdb", "mariadb")  # the databases of the shared adapter suite
DEFAULT_SCHEMA = "-default"  # a `backend` parameter suffix: the data lives in the default schema


def in_every_schema(defaults: Sequence[str] = SHARED, kinds: Sequence[str] = SHARED) -> pytest.MarkDecorator:
    """Run a `backend` test in a named schema of each database in `kinds`, and again in the
    default schema of each one in `defaults` (ids like `duckdb-default`, `postgresql-default`)."""
    params = [k for k in kinds if k in BACKENDS]
    params += [k + DEFAULT_SCHEMA for k in defaults if k in kinds and k in BACKENDS]
    return pytest.mark.parametrize("backend", params, indirect=True)


@pytest.fixture(params=[b for b in SHARED if b in BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every test that takes this fixture runs once per database (PostgreSQL has its own suite);
    `@in_every_schema()` adds the default-schema runs."""
    kind = str(request.param).removesuffix(DEFAULT_SCHEMA)
    yield from _one(kind, tmp_path, default_schema=kind != request.param)


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("duckdb", tmp_path)


@pytest.fixture
def maria(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("mariadb", tmp_path)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _one("postgresql", tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _drop_first_day_warehouses() -> Iterator[None]:
    """The example warehouse's first day is built once per process (tests/pipeline.py); its
    schemas and folder go when the session (the xdist worker) ends."""
    yield
    pipeline = sys.modules.get("pipeline")
    if pipeline is not None:
        pipeline.drop_first_days()


# -- figures for docs/reliability.md (scripts/reliability-report) ------------------------------------


class Figures:
    """Counters the reliability tests record as they run; written out when ETLGUARD_FIGURES
    names a file. Only what a test actually observed is recorded. Under pytest-xdist each
    worker counts its own tests and the controller merges them (see FiguresRelay)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.sets: dict[str, set[str]] = {}
        self.maxima: set[str] = set()  # keys merged by max, not by sum

    def add(self, key: str, n: float = 1) -> None:
        self.values[key] = self.values.get(key, 0) + n

    def max(self, key: str, value: float) -> None:
        self.maxima.add(key)
        self.values[key] = max(self.values.get(key, value), value)

    def dump(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "sets": {k: sorted(v) for k, v in self.sets.items()},
            "maxima": sorted(self.maxima),
        }

    def merge(self, other: dict[str, Any]) -> None:
        """Fold in another process's `dump()`."""
        for key, value in other["values"].items():
            if key in other["maxima"]:
                self.max(key, value)
            else:
                self.add(key, value)
        for key, items in other["sets"].items():
            self.sets.setdefault(key, set()).update(items)

    def member(self, key: str, item: str) -> None:
        self.sets.setdefault(key, set()).add(item)


_FIGURES = Figures()


@pytest.fixture
def figures() -> Figures:
    return _FIGURES


class FiguresRelay:
    """pytest-xdist: a worker hands its figures to the controller when it finishes."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        dumped = getattr(node, "workeroutput", {}).get("etlguard_figures")
        if dumped:
            _FIGURES.merge(dumped)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(FiguresRelay(), "etlguard-figures-relay")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller writes the file
        workeroutput["etlguard_figures"] = _FIGURES.dump()
        return
    target = os.environ.get("ETLGUARD_FIGURES")
    if target:
        import json

        data = {
            **_FIGURES.values,
            **{k: sorted(v) for k, v in _FIGURES.sets.items()},
            "exitstatus": int(exitstatus),
        }
        Path(target).write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")

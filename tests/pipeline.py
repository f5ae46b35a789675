"""The example dbt warehouse (examples/warehouse) driven for real: dbt-duckdb on DuckDB,
dbt-mysql 1.7 on MariaDB and dbt-postgres on PostgreSQL, each from its own virtualenv built by
scripts/setup-dbt."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import MYSQL_HOST, MYSQL_PORT, PG_HOST, PG_PORT, Backend, make_backend

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "examples" / "warehouse"
DBT = {
    "duckdb": Path(os.environ.get("ETLGUARD_TEST_DBT_DUCKDB", ROOT / ".venvs/dbt-duckdb/bin/dbt")),
    "mariadb": Path(os.environ.get("ETLGUARD_TEST_DBT_MYSQL", ROOT / ".venvs/dbt-mysql/bin/dbt")),
    "postgresql": Path(os.environ.get("ETLGUARD_TEST_DBT_POSTGRES", ROOT / ".venvs/dbt-postgres/bin/dbt")),
}
TARGETS = {"duckdb": "duckdb", "mariadb": "mariadb", "postgresql": "postgres"}  # profiles.yml outputs
PROTECTED = [
    ("silver", "int_contracts"),
    ("silver", "tenant_status_history"),
    ("gold", "daily_activity_summary"),
    ("gold", "new_contracts"),
    ("gold", "moveouts"),
    ("gold", "moveout_notices"),
]


class Pipeline:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.dbt_bin = DBT[backend.kind]
        if not self.dbt_bin.exists():
            pytest.fail(f"{self.dbt_bin} is missing: run scripts/setup-dbt (make test does)")
        self.dir = backend.tmp_path
        self.prefix = "" if backend.kind == "duckdb" else f"t{backend.tag}_"  # servers are shared
        for layer in ("bronze", "silver", "gold"):
            backend.schema(layer)  # registered for cleanup; dbt creates them
        self.env = {
            **os.environ,
            "WAREHOUSE_SCHEMA_PREFIX": self.prefix,
            "WAREHOUSE_DUCKDB_PATH": str(getattr(backend, "path", "")),
            "WAREHOUSE_MYSQL_HOST": MYSQL_HOST,
            "WAREHOUSE_MYSQL_PORT": str(MYSQL_PORT),
            "WAREHOUSE_PG_HOST": PG_HOST,
            "WAREHOUSE_PG_PORT": str(PG_PORT),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        self.target_path = self.dir / "dbt-target"

    def schema(self, layer: str) -> str:
        return self.prefix + layer

    @property
    def tables(self) -> list[tuple[str, str]]:
        return [(self.schema(layer), name) for layer, name in PROTECTED]

    def dbt_command(self, verb: str, day: str | None = None, **variables: Any) -> list[str]:
        cmd = [
            str(self.dbt_bin),
            verb,
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--target",
            TARGETS[self.backend.kind],
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.dir / "dbt-logs"),
        ]
        if day or variables:
            cmd += ["--vars", json.dumps({**({"today": day} if day else {}), **variables})]
        return cmd

    def dbt(self, verb: str, day: str | None = None, **variables: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.dbt_command(verb, day, **variables),
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return proc

    def build_first_day(self) -> None:
        """The warehouse after its first day, as `dbt build` leaves it: the tables and dbt's
        target folder. dbt builds it once per backend and process (see _first_day); each test
        gets a copy under its own names, which is what its own `dbt build` would have made."""
        template = _first_day(self.backend.kind)
        if self.backend.kind == "duckdb":
            source: Path = template.backend.path  # type: ignore[attr-defined]
            shutil.copyfile(source, self.backend.path)  # type: ignore[attr-defined]
            assert not source.with_name(source.name + ".wal").exists()  # dbt closed it: all in the file
        else:
            for layer in ("bronze", "silver", "gold"):
                _copy_schema(self.backend, template.schema(layer), self.schema(layer))
        _copy_target(template, self)

    def dbt_build_first_day(self) -> None:
        self.install_deps()
        proc = self.dbt("build", "2026-02-01")  # seeds, models and tests in one dbt start-up
        assert proc.returncode == 0, proc.stdout[-3000:]

    def install_deps(self) -> None:
        """`dbt deps` into the checkout's project, once: the package folder is shared by every
        test and every xdist worker, so the check and the install happen under a lock on the
        project folder (another worker may be half-way through writing it)."""
        with _locked(PROJECT):
            if (PROJECT / "dbt_packages" / "etlguard_dbt").exists():  # the local etlguard_dbt package
                return
            (PROJECT / "package-lock.yml").unlink(missing_ok=True)  # dbt 1.7 cannot read 1.11's lock file
            deps = [str(self.dbt_bin), "deps", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
            proc = subprocess.run(
                deps, env=self.env, cwd=self.dir, capture_output=True, text=True, timeout=300
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def config(self, **extra: Any) -> Path:
        settings = self.backend.settings(
            **{
                "protect": [
                    {"dbt": "materialized:incremental"},
                    {"dbt": f"schema:{self.schema('gold')}"},
                    f"{self.schema('silver')}.int_contracts",
                ],
                "dbt": {"project_dir": str(PROJECT), "target_path": str(self.target_path)},
                **extra,
            }
        )
        path = self.dir / "etlguard.yml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        return path

    def etlguard(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "etlguard", *args[:1], "-c", str(config or self.config()), *args[1:]]
        return subprocess.run(cmd, env=self.env, cwd=self.dir, capture_output=True, text=True, timeout=600)

    def guarded(
        self, day: str, config: Path | None = None, verb: str = "run", **variables: Any
    ) -> subprocess.CompletedProcess[str]:
        return self.etlguard("run", "--", *self.dbt_command(verb, day, **variables), config=config)

    def goldens(self) -> dict[tuple[str, str], tuple[int, str]]:
        return {t: self.backend.golden(*t) for t in self.tables}


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on a folder, held across processes (xdist workers) for the block."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_FIRST_DAY: dict[str, Pipeline] = {}  # backend kind -> the warehouse dbt built, in this process


def _first_day(kind: str) -> Pipeline:
    """The first day built by dbt for real, once per backend kind and process (xdist worker),
    in a folder and schemas of its own; drop_first_days() removes them at the session's end."""
    if kind not in _FIRST_DAY:
        folder = Path(tempfile.mkdtemp(prefix=f"etlguard-first-day-{kind}-"))
        template = Pipeline(make_backend(kind, folder))
        template.dbt_build_first_day()
        _FIRST_DAY[kind] = template
    return _FIRST_DAY[kind]


def drop_first_days() -> None:
    while _FIRST_DAY:
        _, template = _FIRST_DAY.popitem()
        template.backend.cleanup()
        shutil.rmtree(template.dir, ignore_errors=True)


def _copy_schema(b: Backend, source: str, target: str) -> None:
    """Every table of a MariaDB or PostgreSQL schema, structure (CREATE TABLE LIKE: columns, keys,
    options) and rows, into a new schema. The warehouse has only tables: seeds, table and
    incremental models."""
    b.sql(f"CREATE SCHEMA {b.q(target)}")
    names = b.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [source])
    for (name,) in names:
        like = f"LIKE {b.table(source, name)}"
        b.sql(
            f"CREATE TABLE {b.table(target, name)} "
            + (f"({like} INCLUDING ALL)" if b.kind == "postgresql" else like)
        )
        b.sql(f"INSERT INTO {b.table(target, name)} SELECT * FROM {b.table(source, name)}")


def _copy_target(template: Pipeline, p: Pipeline) -> None:
    """dbt's target folder (manifest, run results, compiled SQL) with the template's folder and
    schema names replaced by the test's. The parse caches are left out: dbt reparses."""
    skip = shutil.ignore_patterns("partial_parse.msgpack", "graph.gpickle")
    shutil.copytree(template.target_path, p.target_path, ignore=skip)
    renames = [(str(template.target_path), str(p.target_path))]
    if template.prefix:
        renames.append((template.prefix, p.prefix))
    for path in p.target_path.rglob("*"):
        if path.suffix in (".json", ".sql"):
            text = path.read_text(encoding="utf-8")
            for old, new in renames:
                text = text.replace(old, new)
            path.write_text(text, encoding="utf-8")

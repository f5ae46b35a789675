"""`snapshot.kept_by_etl`: an ETL script (not dbt) that rebuilds a table whole and swaps it in
keeps the old table under the name etlguard gives in ETLGUARD_ZERO_COPY, so the table is not
copied before the run. The content is always checked with the test's own checksum (golden)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from etlguard.errors import EXIT_ETL_FAILED, ConfigError

from conftest import Backend

# The ETL: rebuild `table` into `table__new` (old rows + one), then swap it in keeping the old
# table where ETLGUARD_ZERO_COPY says, or dropping it when the table is not named there.
SCRIPT = r"""
import json, os, sys
kind, where, schema, table, fail, seen = sys.argv[1:7]
plan = json.loads(os.environ.get("ETLGUARD_ZERO_COPY", "{}"))
open(seen, "w").write(json.dumps(plan))
kept = plan.get(f"{schema}.{table}")
if kind == "mariadb":
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=int(where), user="root", autocommit=True)
    q = lambda *n: ".".join("`" + x.replace("`", "``") + "`" for x in n)
    cur = conn.cursor()
    run = cur.execute
    run(f"CREATE TABLE {q(schema, table + '__new')} LIKE {q(schema, table)}")
    run(f"INSERT INTO {q(schema, table + '__new')} SELECT * FROM {q(schema, table)}")
    run(f"INSERT INTO {q(schema, table + '__new')} (id, v) VALUES (1000, 'tonight')")
    if kept:
        run(f"RENAME TABLE {q(schema, table)} TO {q(*kept)}, {q(schema, table + '__new')} TO {q(schema, table)}")
    else:
        run(f"RENAME TABLE {q(schema, table)} TO {q(schema, table + '__old')}, "
            f"{q(schema, table + '__new')} TO {q(schema, table)}")
        run(f"DROP TABLE {q(schema, table + '__old')}")
else:
    import duckdb
    conn = duckdb.connect(where)
    q = lambda *n: ".".join('"' + x.replace('"', '""') + '"' for x in n)
    run = conn.execute
    run(f"CREATE TABLE {q(schema, table + '__new')} AS SELECT * FROM {q(schema, table)}")
    run(f"INSERT INTO {q(schema, table + '__new')} VALUES (1000, 'tonight')")
    run("BEGIN")
    if kept:
        run(f"ALTER TABLE {q(schema, table)} RENAME TO {q(kept[1])}")
    else:
        run(f"DROP TABLE {q(schema, table)}")
    run(f"ALTER TABLE {q(schema, table + '__new')} RENAME TO {q(table)}")
    run("COMMIT")
    conn.close()
sys.exit(1 if fail == "fail" else 0)
"""


@pytest.fixture(params=["duckdb", "mariadb"])
def db(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.getfixturevalue({"duckdb": "duck", "mariadb": "maria"}[request.param])
    schema = b.schema("gold")
    pk = "PRIMARY KEY" if b.kind == "mariadb" else ""
    if b.kind == "duckdb":
        b.sql(f"CREATE SCHEMA {b.q(schema)}")
    else:
        b.sql(f"CREATE DATABASE {b.q(schema)}")
    b.sql(f"CREATE TABLE {b.table(schema, 'summary')} (id INTEGER {pk}, v VARCHAR(40))")
    b.sql(f"INSERT INTO {b.table(schema, 'summary')} VALUES (1, 'one'), (2, NULL), (3, 'three')")
    b.sql(f"CREATE TABLE {b.table(schema, 'other')} (id INTEGER {pk}, v VARCHAR(40))")
    b.sql(f"INSERT INTO {b.table(schema, 'other')} VALUES (1, 'kept as is')")
    return b


def _run(b: Backend, tmp_path: Path, fail: bool, **settings: Any) -> tuple[Any, dict[str, Any]]:
    script = tmp_path / "rebuild.py"
    script.write_text(SCRIPT, encoding="utf-8")
    seen = tmp_path / "seen.json"
    schema = b.schema("gold")
    where = str(getattr(b, "port", None) or getattr(b, "path", ""))
    guard = b.guard(
        [f"{schema}.summary", f"{schema}.other"],
        snapshot={"kept_by_etl": [f"{schema}.summary"]},
        **settings,
    )
    cmd = [sys.executable, str(script), b.kind, where, schema, "summary", "fail" if fail else "ok", str(seen)]
    result = guard.run(cmd)
    return result, json.loads(seen.read_text(encoding="utf-8"))


def test_a_good_night_keeps_the_old_table_as_its_snapshot(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    before = db.golden(schema, "summary")
    result, seen = _run(db, tmp_path, fail=False)
    assert result.ok, result.message
    assert list(seen) == [f"{schema}.summary"], "only the listed table is handed to the ETL"
    assert result.zero_copy["kept"] == [f"{schema}.summary"]
    assert db.golden(schema, "summary")[0] == before[0] + 1  # the ETL's table is live
    snap = next(s for s in db.guard().snapshots(f"{schema}.summary") if s.id in result.snapshot_ids)
    assert snap.verified and snap.note is None
    assert [snap.snapshot.schema, snap.snapshot.name] == seen[f"{schema}.summary"]
    assert db.golden(snap.snapshot.schema, snap.snapshot.name) == before, "the kept table is the old one"
    copied = [s for s in db.guard().snapshots(f"{schema}.other") if s.id in result.snapshot_ids]
    assert len(copied) == 1, "a table not listed is snapshotted as usual"


def test_a_failed_night_swaps_the_kept_table_back(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    before = {t: db.golden(schema, t) for t in ("summary", "other")}
    result, seen = _run(db, tmp_path, fail=True)
    assert result.exit_code == EXIT_ETL_FAILED and result.rolled_back, result.message
    assert f"{schema}.summary" in seen
    assert result.rollback_verified
    assert {t: db.golden(schema, t) for t in ("summary", "other")} == before


def test_a_listed_table_must_be_protected(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    guard = db.guard([f"{schema}.other"], snapshot={"kept_by_etl": [f"{schema}.summary"]})
    with pytest.raises(ConfigError, match="does not protect"):
        guard.run([sys.executable, "-c", "raise SystemExit(0)"])
    assert db.guard().snapshots(f"{schema}.other") == []


def test_a_listed_table_the_etl_left_alone_needs_nothing_undone(db: Backend, tmp_path: Path) -> None:
    schema = db.schema("gold")
    before = db.golden(schema, "summary")
    guard = db.guard(
        [f"{schema}.summary", f"{schema}.other"], snapshot={"kept_by_etl": [f"{schema}.summary"]}
    )
    result = guard.run([sys.executable, "-c", "raise SystemExit(1)"])
    assert result.exit_code == EXIT_ETL_FAILED and result.rollback_verified, result.message
    assert result.zero_copy["untouched"] == [f"{schema}.summary"]
    assert result.zero_copy["kept"] == [], "nothing was kept, so nothing is swapped in"
    assert not [s for s in db.guard().snapshots(f"{schema}.summary") if s.id in result.snapshot_ids]
    assert db.golden(schema, "summary") == before

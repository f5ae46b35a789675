"""PostgreSQL: snapshots, restores that keep views bound, guarded runs, and etlguard killed at
the restore's fault points. A restore refills the live table in one transaction, because a
rename swap would leave views (bound to the table's OID) reading the displaced table."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from etlguard.errors import EXIT_ETL_FAILED
from test_fault_points import SCENARIOS, SESSION_COPY_POINTS, kill_and_recover

from conftest import Backend, Figures
from faultlib import Rig


def _facts(pg: Backend) -> tuple[str, str]:
    schema = pg.create_schema("gold")
    t = pg.table(schema, "facts")
    pg.sql(
        f"CREATE TABLE {t} (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant INT NOT NULL, "
        "amount NUMERIC(12,2) DEFAULT 0, note TEXT, doubled NUMERIC GENERATED ALWAYS AS (amount * 2) STORED)"
    )
    pg.sql(f"CREATE INDEX facts_tenant ON {t} (tenant)")
    pg.sql(
        f"INSERT INTO {t} (tenant, amount, note) SELECT i % 7, i / 3.0, CASE WHEN i % 5 = 0 THEN NULL ELSE 'n' || i || ' 😀' END FROM generate_series(1, 500) i"
    )
    return schema, t


def test_snapshot_change_restore_keeps_structure_and_data(pg: Backend) -> None:
    schema, t = _facts(pg)
    before, shape = pg.golden(schema, "facts"), pg.show_create(schema, "facts")
    guard = pg.guard([f"{schema}.*"])
    [snap] = guard.snapshot()
    assert snap.verified and snap.row_count == 500
    pg.sql(f"DELETE FROM {t} WHERE tenant = 3")
    pg.sql(f"UPDATE {t} SET note = 'changed'")
    result = guard.restore([f"{schema}.facts"], latest=True)
    assert result.verified == [f"{schema}.facts"]
    assert pg.golden(schema, "facts") == before
    assert pg.show_create(schema, "facts") == shape
    pg.sql(f"INSERT INTO {t} (tenant) VALUES (1)")  # identity still generates ids
    assert guard.verify() and all(r.ok for r in guard.verify())


def test_restore_keeps_dependent_views_bound_and_switches_tables_together(pg: Backend) -> None:
    schema = pg.create_schema("gold")
    tables = [pg.table(schema, n) for n in ("a", "b", "c")]
    for t in tables:
        pg.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, marker TEXT)")
        pg.sql(f"INSERT INTO {t} SELECT i, 'old' FROM generate_series(1, 20000) i")
    view = pg.table(schema, "all_markers")
    pg.sql(
        f"CREATE VIEW {view} AS SELECT marker FROM {tables[0]} UNION ALL SELECT marker FROM {tables[1]} "
        f"UNION ALL SELECT marker FROM {tables[2]}"
    )
    guard = pg.guard([f"{schema}.a", f"{schema}.b", f"{schema}.c"])
    guard.snapshot()
    for t in tables:
        pg.sql(f"UPDATE {t} SET marker = 'new'")
    seen: list[set[str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        conn = psycopg.connect(
            host=pg.host, port=pg.port, user="postgres", dbname="postgres", autocommit=True
        )
        while not stop.is_set():
            try:
                seen.append({r[0] for r in conn.execute(f"SELECT DISTINCT marker FROM {view}").fetchall()})
            except psycopg.Error as exc:
                errors.append(str(exc))
            time.sleep(0.01)
        conn.close()

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        time.sleep(0.05)
        guard.restore([f"{schema}.a", f"{schema}.b", f"{schema}.c"], latest=True)
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert all(len(markers) == 1 for markers in seen), "a reader saw the tables in two states at once"
    assert {"new"} in seen and {"old"} in seen
    assert {r[0] for r in pg.sql(f"SELECT DISTINCT marker FROM {view}")} == {"old"}  # the view follows


def test_guarded_run_rolls_back_on_postgres(pg: Backend) -> None:
    rig = Rig(pg)
    pre = rig.state()
    proc = rig.etlguard("run", "--", *rig.etl_command("fail"))
    assert proc.returncode == EXIT_ETL_FAILED, proc.stderr
    assert rig.state() == pre
    rig.assert_clean()


# A PostgreSQL restore refills from the snapshot without a copy, so copy.after_create is reached
# only by snapshots and runs there.
RESTORE_CASES = [
    (p, op, ok)
    for p, cases in SCENARIOS.items()
    for op, ok in cases
    if p.startswith(("restore.", "copy.", "snapshot.", "import."))
    and op in ("restore", "run-fail", "snapshot", "restore-from", "snapshot-again", "run-fail-again")
    and (p, op) != ("copy.after_create", "restore")
    and p not in SESSION_COPY_POINTS  # PostgreSQL copies on one session: never reached
]


@pytest.mark.parametrize(
    ("point", "op", "acceptable"), RESTORE_CASES, ids=[f"{p}-{o}" for p, o, _ in RESTORE_CASES]
)
def test_kill_at_fault_point_then_recover_postgres(
    pg: Backend, figures: Figures, point: str, op: str, acceptable: str
) -> None:
    kill_and_recover(pg, figures, point, op, acceptable)

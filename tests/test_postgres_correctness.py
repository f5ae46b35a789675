"""PostgreSQL correctness on a real server: tables etlguard cannot fully see or copy are refused
before any write, and every change an ETL makes to a table's structure is rolled back exactly.
Structure and data are checked by this file's own catalog queries and the test-side golden
checksum, never by etlguard's code."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from etlguard.errors import (
    EXIT_ETL_FAILED,
    EXIT_ROLLBACK_FAILED,
    EtlguardError,
    RollbackFailed,
    UnsupportedTable,
)
from etlguard.tables import TableRef

from conftest import Backend
from faultlib import Rig

SCHEMA_KINDS = ["named", "public"]


class Place:
    """Where a test's protected tables live: a named schema of its own, or `public` (with
    names unique to the test, dropped afterwards)."""

    def __init__(self, pg: Backend, kind: str) -> None:
        self.pg = pg
        self.schema = pg.create_schema("gold") if kind == "named" else "public"
        self.prefix = "" if kind == "named" else f"t{pg.tag}_"
        self.made: list[str] = []

    def name(self, base: str) -> str:
        full = self.prefix + base
        self.made.append(full)
        return full

    def ref(self, name: str) -> str:
        return f"{self.schema}.{name}"

    def table(self, name: str) -> str:
        return self.pg.table(self.schema, name)

    def drop(self) -> None:
        if self.schema == "public":
            for name in reversed(self.made):
                kinds = self.pg.sql(
                    "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [self.table(name)]
                )
                if kinds:
                    self.pg.sql(
                        f"DROP {'VIEW' if kinds[0][0] == 'v' else 'TABLE'} {self.table(name)} CASCADE"
                    )


@pytest.fixture(params=SCHEMA_KINDS)
def place(pg: Backend, request: pytest.FixtureRequest) -> Iterator[Place]:
    p = Place(pg, request.param)
    try:
        yield p
    finally:
        p.drop()


def shape(pg: Backend, schema: str, name: str) -> dict[str, Any]:
    """The test's own structure query: columns, types, defaults, constraints, indexes, owner
    and grants, by name."""
    rel = pg.table(schema, name)
    return {
        "columns": pg.sql(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid), "
            "attidentity, attgenerated, attcollation, col_description(a.attrelid, a.attnum) FROM pg_attribute a LEFT JOIN pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = %s::regclass "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [rel],
        ),
        "constraints": pg.sql(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass ORDER BY 1",
            [rel],
        ),
        "indexes": pg.sql(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass ORDER BY 1", [rel]
        ),
        "table": pg.sql(
            "SELECT relkind, pg_get_userbyid(relowner), relacl::text[], reloptions, obj_description(oid, 'pg_class') "
            "FROM pg_class WHERE oid = %s::regclass",
            [rel],
        ),
    }


def sequence_value(pg: Backend, schema: str, name: str, column: str) -> int:
    (seq,) = pg.sql("SELECT pg_get_serial_sequence(%s, %s)", [pg.table(schema, name), column])[0]
    return int(pg.sql(f"SELECT last_value FROM {seq}")[0][0])


def make_facts(place: Place, base: str = "facts") -> tuple[str, str]:
    """A serial-keyed table with a default, a CHECK, an index, a grant, comments and a storage
    option."""
    name = place.name(base)
    t = place.table(name)
    pg = place.pg
    pg.sql(
        f"CREATE TABLE {t} (id serial PRIMARY KEY, tenant INT NOT NULL, amount NUMERIC(10,2) DEFAULT 0 "
        f"CONSTRAINT {pg.q(name + '_amount_check')} CHECK (amount >= 0), note TEXT, "
        "created TIMESTAMPTZ DEFAULT '2024-01-01 00:00:00+00')"
    )
    pg.sql(f"CREATE INDEX {pg.q(name + '_tenant')} ON {t} (tenant)")
    pg.sql(
        f"INSERT INTO {t} (tenant, amount, note) SELECT i % 7, i + 0.25, "
        "CASE WHEN i % 5 = 0 THEN NULL ELSE 'n' || i END FROM generate_series(1, 300) i"
    )
    pg.sql(f"GRANT SELECT ON {t} TO PUBLIC")
    pg.sql(f"COMMENT ON TABLE {t} IS 'facts, with ''quotes'' and ü'")
    pg.sql(f"COMMENT ON COLUMN {t}.amount IS 'in euros'")
    pg.sql(f"ALTER TABLE {t} SET (fillfactor = 90)")
    return name, t


def make_view(place: Place, table: str) -> str:
    view = place.name("facts_by_tenant")
    place.pg.sql(
        f"CREATE VIEW {place.table(view)} AS SELECT tenant, count(*) AS n FROM {table} GROUP BY tenant"
    )
    return view


def failing_etl(pg: Backend, sql: str) -> list[str]:
    """An ETL command that runs `sql` on the server and then fails (exit 1)."""
    script = (
        "import psycopg, sys; c = psycopg.connect(host=sys.argv[1], port=int(sys.argv[2]), user='postgres', "
        "dbname='postgres', autocommit=True); c.execute(sys.argv[3]); sys.exit(1)"
    )
    return [sys.executable, "-c", script, pg.host, str(pg.port), sql]


# The seven ways an ETL (dbt's on_schema_change, a table materialization) changes a table.
VARIANTS = {
    "add_column": "ALTER TABLE {t} ADD COLUMN extra INT DEFAULT 5; UPDATE {t} SET amount = amount + 1",
    "drop_column": "ALTER TABLE {t} DROP COLUMN note; DELETE FROM {t} WHERE tenant = 2",
    "rename_column": "ALTER TABLE {t} RENAME COLUMN note TO remark; UPDATE {t} SET remark = 'x'",
    "narrow_type": "ALTER TABLE {t} ALTER COLUMN amount TYPE INTEGER",  # 10.25 -> 10
    "add_index": "CREATE INDEX {extra_index} ON {t} (note); INSERT INTO {t} (tenant) VALUES (99)",
    "drop_and_recreate": (
        "DROP TABLE {t} CASCADE; CREATE TABLE {t} (id serial, tenant INT, amount NUMERIC(10,2), note TEXT, "
        "created TIMESTAMPTZ); INSERT INTO {t} (tenant, amount) SELECT i, i FROM generate_series(1, 50) i"
    ),
    "change_constraint": (
        "ALTER TABLE {t} DROP CONSTRAINT {check}; "
        "ALTER TABLE {t} ADD CONSTRAINT {check} CHECK (amount >= -1000); UPDATE {t} SET amount = -amount"
    ),
}


def etl_sql(variant: str, place: Place, name: str, t: str) -> str:
    pg = place.pg
    return VARIANTS[variant].format(t=t, check=pg.q(name + "_amount_check"), extra_index=pg.q(name + "_note"))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_restore_after_structure_change_puts_back_the_exact_table(place: Place, variant: str) -> None:
    pg = place.pg
    name, t = make_facts(place)
    view = make_view(place, t) if variant != "drop_and_recreate" else None
    before = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    by_tenant = pg.sql(f"SELECT * FROM {place.table(view)} ORDER BY 1") if view else None
    seq_before = sequence_value(pg, place.schema, name, "id")
    guard = pg.guard([place.ref(name)])
    guard.snapshot()
    pg.sql(etl_sql(variant, place, name, t))
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) != before

    result = guard.restore([place.ref(name)], latest=True)

    assert result.verified == [place.ref(name)]
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == before
    if view:  # the view reads the restored table, not the one moved aside
        assert pg.sql(f"SELECT * FROM {place.table(view)} ORDER BY 1") == by_tenant
        assert pg.sql(
            "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "WHERE d.refobjid = %s::regclass AND r.ev_class = %s::regclass",
            [t, place.table(view)],
        ) != [(0,)]
    (new_id,) = pg.sql(f"INSERT INTO {t} (tenant) VALUES (1) RETURNING id")[0]
    assert new_id > seq_before  # the serial default works and never reuses an id
    assert sequence_value(pg, place.schema, name, "id") >= seq_before


def test_etl_that_drops_and_recreates_a_serial_table_runs_and_rolls_back(place: Place) -> None:
    pg = place.pg
    name, t = make_facts(place)
    before = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    seq_before = sequence_value(pg, place.schema, name, "id")
    sql = etl_sql("drop_and_recreate", place, name, t)
    guard = pg.guard([place.ref(name)])
    result = guard.run(failing_etl(pg, sql))
    assert result.exit_code == EXIT_ETL_FAILED, result.as_dict()
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == before
    (new_id,) = pg.sql(f"INSERT INTO {t} (tenant) VALUES (1) RETURNING id")[0]
    assert new_id > seq_before
    # the snapshots never held the live sequence: the ETL's DROP TABLE worked while protected
    assert pg.sql(f"SELECT count(*) FROM {t} WHERE tenant = 50") == [(0,)]


def test_snapshot_does_not_depend_on_the_live_sequence(place: Place) -> None:
    pg = place.pg
    name, t = make_facts(place)
    pg.guard([place.ref(name)]).snapshot()
    pg.sql(f"DROP TABLE {t} CASCADE")  # fails if a snapshot's default still uses the sequence
    assert pg.sql("SELECT to_regclass(%s)", [f"{place.schema}.{name}"]) == [(None,)]


def test_restore_refuses_a_swap_when_another_table_now_references_it(pg: Backend) -> None:
    place = Place(pg, "named")
    name, t = make_facts(place)
    guard = pg.guard([place.ref(name)])
    guard.snapshot()
    pg.sql(f"ALTER TABLE {t} ADD COLUMN extra INT")
    child = place.table("child")
    pg.sql(f"CREATE TABLE {child} (id INT REFERENCES {t} (id))")
    state = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    with pytest.raises(
        EtlguardError, match=r"(depends on it; drop that dependency|it has foreign keys.*nothing was changed)"
    ):
        guard.restore([place.ref(name)], latest=True)
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == state


# -- refused before any write -----------------------------------------------------------------


def _nothing_written(pg: Backend) -> None:
    """No snapshot table exists (the catalog may hold failed rows, never a table)."""
    rows = pg.sql(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        [pg.snapshot_schema],
    )
    assert rows == [(0,)]


@pytest.fixture
def role(pg: Backend) -> Iterator[str]:
    name = f"etlg_{pg.tag}"
    pg.sql(f"CREATE ROLE {pg.q(name)} LOGIN")
    for schema in ("etlguard", "snaps"):
        pg.sql(f"CREATE SCHEMA {pg.q(pg.schema(schema))} AUTHORIZATION {pg.q(name)}")
    try:
        yield name
    finally:
        pg.sql(f"DROP OWNED BY {pg.q(name)} CASCADE")
        pg.sql(f"DROP ROLE {pg.q(name)}")


def _rls_table(pg: Backend, place: Place, role: str, owner: str | None, force: bool) -> tuple[str, str]:
    name = place.name("secured")
    t = place.table(name)
    pg.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, tenant TEXT)")
    pg.sql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    pg.sql(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    pg.sql(f"CREATE POLICY only_z ON {t} USING (tenant = 'z')")
    if force:
        pg.sql(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    if owner:
        pg.sql(f"ALTER TABLE {t} OWNER TO {pg.q(owner)}")
    pg.sql(f"GRANT USAGE ON SCHEMA {pg.q(place.schema)} TO {pg.q(owner or role)}")
    return name, t


def _guard_as(pg: Backend, role: str, table: str) -> Any:
    from etlguard import Config, Guard

    settings = pg.settings(protect=[table])
    settings["target"] = f"postgresql+psycopg://{role}@{pg.host}:{pg.port}/postgres"
    return Guard(Config.from_dict(settings))


@pytest.mark.parametrize("case", ["owner_with_force", "non_owner_without_bypassrls"])
def test_row_level_security_that_hides_rows_is_refused(place: Place, role: str, case: str) -> None:
    pg = place.pg
    owner = role if case == "owner_with_force" else None
    name, t = _rls_table(pg, place, role, owner, force=case == "owner_with_force")
    if owner is None:
        pg.sql(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {t} TO {pg.q(role)}")
    guard = _guard_as(pg, role, place.ref(name))
    with pytest.raises(UnsupportedTable) as err:
        guard.snapshot()
    message = str(err.value)
    assert "\n" not in message and "row-level security applies to role" in message and "BYPASSRLS" in message
    _nothing_written(pg)
    assert pg.sql(f"SELECT count(*) FROM {t}") == [(3,)]

    pg.sql(f"ALTER ROLE {pg.q(role)} BYPASSRLS")  # the documented way out: every row is seen
    [snap] = guard.snapshot()
    assert snap.verified and snap.row_count == 3


def test_row_level_security_is_no_problem_for_an_owner_without_force(place: Place, role: str) -> None:
    pg = place.pg
    name, _ = _rls_table(pg, place, role, role, force=False)
    [snap] = _guard_as(pg, role, place.ref(name)).snapshot()
    assert snap.verified and snap.row_count == 3


def test_inheritance_parent_and_child_are_refused(place: Place) -> None:
    pg = place.pg
    parent, child = place.name("parent"), place.name("child")
    pg.sql(f"CREATE TABLE {place.table(parent)} (id INT, v TEXT)")
    pg.sql(f"CREATE TABLE {place.table(child)} (extra TEXT) INHERITS ({place.table(parent)})")
    pg.sql(f"INSERT INTO {place.table(child)} VALUES (1, 'a', 'kept')")
    for table, reason in ((parent, "has inheritance children"), (child, "is an inheritance child")):
        with pytest.raises(UnsupportedTable, match=reason):
            pg.guard([place.ref(table)]).snapshot()
    _nothing_written(pg)


def test_partitioned_tables_are_still_snapshotted_and_restored(place: Place) -> None:
    pg = place.pg
    name = place.name("events")
    t = place.table(name)
    pg.sql(f"CREATE TABLE {t} (id INT, day DATE, v TEXT, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)")
    for month in (1, 2):
        part = place.name(f"events_m{month}")
        pg.sql(
            f"CREATE TABLE {place.table(part)} PARTITION OF {t} "
            f"FOR VALUES FROM ('2024-0{month}-01') TO ('2024-0{month + 1}-01')"
        )
    pg.sql(f"INSERT INTO {t} SELECT i, DATE '2024-01-01' + (i % 50), 'v' || i FROM generate_series(1, 400) i")
    before = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    guard = pg.guard([place.ref(name)])
    [snap] = guard.snapshot()
    assert snap.row_count == 400
    pg.sql(f"DELETE FROM {t} WHERE day >= '2024-02-01'")
    pg.sql(f"UPDATE {t} SET v = 'changed'")
    result = guard.restore([place.ref(name)], latest=True)
    assert result.verified == [place.ref(name)]
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == before


# -- a snapshot racing another job's TRUNCATE + reload ------------------------------------------


def test_snapshots_racing_a_truncate_and_reload_always_see_the_rows(pg: Backend) -> None:
    place = Place(pg, "named")
    name = place.name("reloaded")
    t = place.table(name)
    pg.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v TEXT)")
    pg.sql(f"INSERT INTO {t} SELECT i, 'v' || i FROM generate_series(1, 1000) i")
    stop = threading.Event()
    reloads = [0]

    def reload() -> None:
        with psycopg.connect(host=pg.host, port=pg.port, user="postgres", dbname="postgres") as conn:
            while not stop.is_set():
                with conn.transaction():
                    conn.execute(f"TRUNCATE {t}")
                    conn.execute(f"INSERT INTO {t} SELECT i, 'v' || i FROM generate_series(1, 1000) i")
                reloads[0] += 1

    thread = threading.Thread(target=reload)
    thread.start()
    guard = pg.guard([place.ref(name)])
    try:
        snaps = [s for _ in range(12) for s in guard.snapshot()]
    finally:
        stop.set()
        thread.join()
    assert reloads[0] > 0
    assert [s.row_count for s in snaps] == [1000] * 12
    for s in snaps:  # the test counts the copies itself
        assert pg.sql(f"SELECT count(*) FROM {pg.table(s.snapshot.schema, s.snapshot.name)}") == [(1000,)]


# -- etlguard killed during a rebuilding restore --------------------------------------------------


@pytest.mark.parametrize("point", ["restore.before_swap", "restore.after_swap", "restore.before_finish"])
def test_kill_during_a_rebuilding_restore_then_recover(pg: Backend, point: str) -> None:
    rig = Rig(pg)
    original = (pg.golden(rig.schema, "orders"), shape(pg, rig.schema, "orders"))
    assert rig.etlguard("snapshot").returncode == 0
    t = pg.table(rig.schema, "orders")
    pg.sql(f"ALTER TABLE {t} ADD COLUMN extra INT DEFAULT 1; UPDATE {t} SET amount = 0")
    altered = (pg.golden(rig.schema, "orders"), shape(pg, rig.schema, "orders"))
    killed = rig.etlguard("restore", f"{rig.schema}.orders", "--latest", fault=f"{point}:kill")
    assert killed.returncode == -9
    recovered = rig.etlguard("recover")
    assert recovered.returncode == 0, recovered.stderr
    state = (pg.golden(rig.schema, "orders"), shape(pg, rig.schema, "orders"))
    assert state == (altered if point == "restore.before_swap" else original)
    rig.assert_clean()


def test_a_copy_that_row_level_security_would_filter_fails_instead(place: Place, role: str) -> None:
    """Behind the preflight's refusal: the copy itself runs with row_security off, so a policy
    that appears after the check makes the snapshot fail, never come out short."""
    from etlguard.adapters import adapter_for
    from etlguard.adapters.base import Copy
    from etlguard.errors import TargetError
    from etlguard.target import parse_target

    pg = place.pg
    name, _ = _rls_table(pg, place, role, role, force=True)
    db = adapter_for(parse_target(f"postgresql+psycopg://{role}@{pg.host}:{pg.port}/postgres"))
    dest = TableRef(pg.snapshot_schema, "copy")
    try:
        with pytest.raises(TargetError, match=r"row-level security.*BYPASSRLS"):
            db.copy_tables([Copy(TableRef(place.schema, name), dest)])
        assert not db.table_exists(dest)
    finally:
        db.close()


def test_rebuild_of_an_identity_table_with_hostile_names(place: Place) -> None:
    pg = place.pg
    name = place.name('Fa"cts; -- ü')
    t = place.table(name)
    pg.sql(
        f"CREATE TABLE {t} (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {pg.q('Te nant')} INT NOT NULL, "
        "amount NUMERIC(12,2) DEFAULT 0, doubled NUMERIC GENERATED ALWAYS AS (amount * 2) STORED, "
        f'note TEXT COLLATE "C", CONSTRAINT {pg.q("x; drop")} UNIQUE (note))'
    )
    pg.sql(f"CREATE INDEX {pg.q(name + ' idx')} ON {t} ({pg.q('Te nant')}) WHERE amount > 1")
    pg.sql(
        f"INSERT INTO {t} ({pg.q('Te nant')}, amount, note) SELECT i % 3, i / 4.0, 'n' || i FROM generate_series(1, 200) i"
    )
    before = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    guard = pg.guard([place.ref(name)])
    guard.snapshot()
    pg.sql(
        f"ALTER TABLE {t} DROP COLUMN doubled; ALTER TABLE {t} ADD COLUMN extra INT; DELETE FROM {t} WHERE id < 50"
    )
    diff = guard.diff(TableRef(place.schema, name))
    assert not diff.same_structure and not diff.identical
    result = guard.restore([TableRef(place.schema, name)], latest=True)
    assert result.verified == [str(TableRef(place.schema, name))]
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == before
    (new_id,) = pg.sql(f"INSERT INTO {t} ({pg.q('Te nant')}) VALUES (1) RETURNING id")[0]
    assert new_id == 201  # the identity counter continues where it was
    assert guard.diff(TableRef(place.schema, name)).same_structure


def test_rollback_that_cannot_rebuild_a_partitioned_table_fails_loudly(pg: Backend) -> None:
    """A partitioned table whose columns the ETL changed cannot be rebuilt from a plain snapshot
    table: the rollback says so (exit 20), changes nothing, and never reports it verified."""
    place = Place(pg, "named")
    name = place.name("events")
    t = place.table(name)
    pg.sql(f"CREATE TABLE {t} (id INT, day DATE) PARTITION BY RANGE (day)")
    pg.sql(
        f"CREATE TABLE {place.table('events_all')} PARTITION OF {t} FOR VALUES FROM ('2000-01-01') TO ('2100-01-01')"
    )
    pg.sql(f"INSERT INTO {t} SELECT i, DATE '2024-01-01' + i FROM generate_series(1, 100) i")
    sql = f"ALTER TABLE {t} ADD COLUMN extra INT; DELETE FROM {t} WHERE id > 50"
    result = pg.guard([place.ref(name)]).run(failing_etl(pg, sql))
    assert result.exit_code == EXIT_ROLLBACK_FAILED
    assert "partitioned table" in result.message and "\n" not in result.message
    assert result.rollback_verified == []
    assert pg.sql(f"SELECT count(*) FROM {t}") == [(50,)]  # the failed rollback changed nothing


def test_restore_of_a_table_the_etl_dropped(place: Place) -> None:
    pg = place.pg
    name, t = make_facts(place)
    before = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    seq_before = sequence_value(pg, place.schema, name, "id")
    guard = pg.guard([place.ref(name)])
    guard.snapshot()
    pg.sql(f"DROP TABLE {t}")  # its serial sequence goes with it
    result = guard.restore([place.ref(name)], latest=True)
    assert result.verified == [place.ref(name)]
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == before
    assert sequence_value(pg, place.schema, name, "id") >= seq_before
    (new_id,) = pg.sql(f"INSERT INTO {t} (tenant) VALUES (1) RETURNING id")[0]
    assert new_id > seq_before


def test_row_level_security_does_not_hide_rows_from_a_superuser(place: Place) -> None:
    pg = place.pg
    name = place.name("forced")
    t = place.table(name)
    pg.sql(f"CREATE TABLE {t} (id INT PRIMARY KEY)")
    pg.sql(f"INSERT INTO {t} VALUES (1), (2), (3)")
    pg.sql(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    pg.sql(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    pg.sql(f"CREATE POLICY nothing ON {t} USING (false)")
    [snap] = pg.guard([place.ref(name)]).snapshot()  # the tests' own user, postgres, is a superuser
    assert snap.verified and snap.row_count == 3


def test_a_structure_that_does_not_match_after_a_restore_is_never_verified(pg: Backend) -> None:
    """The catalog says the table had an inheritance child; no restore can produce that, so the
    restore must not call the table verified, though every row matches."""
    place = Place(pg, "named")
    name, _ = make_facts(place)
    guard = pg.guard([place.ref(name)])
    [snap] = guard.snapshot()
    catalog = pg.table(pg.catalog_schema, "snapshots")
    pg.sql(
        f"UPDATE {catalog} SET structure = jsonb_set(structure::jsonb, '{{children}}', '[\"ghost\"]')::text "
        "WHERE id = %s",
        [snap.id],
    )
    with pytest.raises(RollbackFailed) as failed:  # exit 20: swapped, not verified
        guard.restore([place.ref(name)], latest=True)
    assert failed.value.result.verified == []  # type: ignore[attr-defined]
    assert pg.golden(place.schema, name)[0] == 300


def test_one_rollback_refills_one_table_and_rebuilds_another(place: Place) -> None:
    pg = place.pg
    kept, t_kept = make_facts(place, "kept")
    altered, t_altered = make_facts(place, "altered")
    before = {n: (pg.golden(place.schema, n), shape(pg, place.schema, n)) for n in (kept, altered)}
    oid_kept, oid_altered = (pg.sql("SELECT %s::regclass::oid", [t]) for t in (t_kept, t_altered))
    sql = f"UPDATE {t_kept} SET note = 'x'; ALTER TABLE {t_altered} RENAME COLUMN note TO remark"
    guard = pg.guard([place.ref(kept), place.ref(altered)])
    result = guard.run(failing_etl(pg, sql))
    assert result.exit_code == EXIT_ETL_FAILED, result.as_dict()
    assert sorted(result.rollback_verified) == sorted([place.ref(kept), place.ref(altered)])
    assert {n: (pg.golden(place.schema, n), shape(pg, place.schema, n)) for n in (kept, altered)} == before
    assert pg.sql("SELECT %s::regclass::oid", [t_kept]) == oid_kept  # refilled: the same table
    assert pg.sql("SELECT %s::regclass::oid", [t_altered]) != oid_altered  # rebuilt: the snapshot's copy


def test_a_different_search_path_at_restore_time_changes_nothing(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded defaults name the serial sequence relative to the search_path; the restore
    runs with another one (PGOPTIONS), and still rebuilds exactly and verifies."""
    pg = place.pg
    name, t = make_facts(place)
    before = (pg.golden(place.schema, name), shape(pg, place.schema, name))
    guard = pg.guard([place.ref(name)])
    guard.snapshot()
    pg.sql(etl_sql("drop_and_recreate", place, name, t))
    monkeypatch.setenv("PGOPTIONS", f"-c search_path={pg.snapshot_schema}")
    result = guard.restore([place.ref(name)], latest=True)
    assert result.verified == [place.ref(name)]
    assert (pg.golden(place.schema, name), shape(pg, place.schema, name)) == before
    assert pg.guard([place.ref(name)]).diff(place.ref(name)).identical

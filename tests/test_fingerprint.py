"""The table fingerprint (v2) cannot be fooled: values that a separator-joined, 32-bit or
6-digit checksum confused are told apart on every database, a forged snapshot is refused, and
session settings (time zone, date and interval styles, float digits) never make a good snapshot
fail. Tables are filled and changed through the test's own connection; etlguard only
fingerprints them."""

from __future__ import annotations

import contextlib
import math
import os
import random
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from etlguard import ChecksumMismatch, Config
from etlguard.adapters import adapter_for
from etlguard.adapters.base import FINGERPRINT, LEGACY_FINGERPRINT, Adapter, Checksum
from etlguard.catalog import SCHEMA_VERSION
from etlguard.restore import displaced_check
from etlguard.tables import TableRef

from conftest import BACKENDS, Backend, MariaDBBackend, _one
from support import mark, tables_in

ALL = [b for b in ("duckdb", "mariadb", "postgresql") if b in BACKENDS]

# Column types per database, by role in the tests below.
TYPES = {
    "text": {"duckdb": "VARCHAR", "mariadb": "VARCHAR(40)", "postgresql": "VARCHAR(40)"},
    "float": {"duckdb": "FLOAT", "mariadb": "FLOAT", "postgresql": "REAL"},
    "double": {"duckdb": "DOUBLE", "mariadb": "DOUBLE", "postgresql": "DOUBLE PRECISION"},
    "decimal": {"duckdb": "DECIMAL(12,2)", "mariadb": "DECIMAL(12,2)", "postgresql": "NUMERIC(12,2)"},
    "int": {"duckdb": "INTEGER", "mariadb": "INT", "postgresql": "INTEGER"},
    "blob": {"duckdb": "BLOB", "mariadb": "VARBINARY(64)", "postgresql": "BYTEA"},
    "ts": {"duckdb": "TIMESTAMP", "mariadb": "DATETIME(6)", "postgresql": "TIMESTAMP"},
    "tstz": {"duckdb": "TIMESTAMPTZ", "mariadb": "TIMESTAMP(6) NULL", "postgresql": "TIMESTAMPTZ"},
}


@pytest.fixture(params=ALL)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every database, PostgreSQL included."""
    yield from _one(request.param, tmp_path)


@contextlib.contextmanager
def connected(backend: Backend, **extra: Any) -> Iterator[Adapter]:
    adapter = adapter_for(Config.from_dict(backend.settings(**extra)).target)
    adapter.connect()
    try:
        yield adapter
    finally:
        adapter.close()


def fill(
    backend: Backend, schema: str, name: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> TableRef:
    """CREATE TABLE name (c0 type0, c1 type1, ...) and insert `rows` as parameters."""
    body = ", ".join(f"c{i} {kind}" for i, kind in enumerate(columns))
    backend.sql(f"CREATE TABLE {backend.table(schema, name)} ({body})")
    marks = ", ".join([mark_of(backend)] * len(columns))
    for row in rows:
        backend.sql(f"INSERT INTO {backend.table(schema, name)} VALUES ({marks})", list(row))
    return TableRef(schema, name)


def mark_of(backend: Backend) -> str:
    return "%s" if backend.kind == "postgresql" else mark(backend)


def fingerprints(
    backend: Backend, columns: Sequence[str], *variants: Sequence[tuple[Any, ...]], prefix: str = "v"
) -> list[Checksum]:
    """One table per variant of the same columns (`<prefix>0`, ...); each table's fingerprint."""
    schema = backend.create_schema("fp")
    refs = [fill(backend, schema, f"{prefix}{i}", columns, rows) for i, rows in enumerate(variants)]
    with connected(backend) as adapter:
        return [adapter.checksum(ref) for ref in refs]


def new_algorithm(backend: Backend) -> str:
    """What new snapshots are fingerprinted with: v2, or on DuckDB its native hash."""
    with connected(backend) as adapter:
        return adapter.default_algorithm()


def kinds(backend: Backend, *roles: str) -> list[str]:
    return [TYPES[role][backend.kind] for role in roles]


def all_different(values: Sequence[Checksum]) -> bool:
    return len({v.digest for v in values}) == len(values)


# -- the collision suite ---------------------------------------------------------------------
def test_a_separator_moved_between_columns_is_a_change(db: Backend) -> None:
    found = fingerprints(
        db,
        kinds(db, "text", "text"),
        [("x#y", "z")],
        [("x", "y#z")],
        [("x,y", "z")],
        [("x", "y,z")],
        [("x'", "y")],
        [("x", "'y")],
    )
    assert all(f.algorithm == new_algorithm(db) and f.rows == 1 for f in found)
    assert all_different(found)


def test_null_empty_and_the_word_null_are_three_values(db: Backend) -> None:
    found = fingerprints(
        db,
        kinds(db, "text", "text"),
        [(None, "a")],
        [("", "a")],
        [("NULL", "a")],
        [("N", "a")],
        [("'NULL'", "a")],
        [(None, None)],
        [("", "")],
        [(None, "")],
        [("", None)],
    )
    assert all_different(found)


def test_float_neighbours_differ(db: Backend) -> None:
    """A FLOAT prints 6 digits (1234567 and 1234568 both print 1.23457e6)."""
    found = fingerprints(
        db, kinds(db, "float"), [(1234567.0,)], [(1234568.0,)], [(16777215.0,)], [(16777214.0,)]
    )
    assert all_different(found)


def test_double_neighbours_differ(db: Backend) -> None:
    one = 1.0
    values = [
        one,
        math.nextafter(one, 2.0),
        math.nextafter(one, 0.0),
        0.1 + 0.2,
        0.3,
        1e300,
        math.nextafter(1e300, 0),
    ]
    found = fingerprints(db, kinds(db, "double"), *[[(v,)] for v in values])
    assert all_different(found)


def test_decimal_values_and_scale(db: Backend) -> None:
    """1.0 and 1.00 are different values only where the type keeps the scale per value
    (PostgreSQL's unconstrained NUMERIC); a DECIMAL(12,2) stores both as 1.00."""
    found = fingerprints(db, kinds(db, "decimal"), [("1.00",)], [("1.01",)], [("-1.00",)], [("10.00",)])
    assert all_different(found)
    if db.kind == "postgresql":
        scaled = fingerprints(db, ["NUMERIC"], [("1.0",)], [("1.00",)], [("1",)], prefix="n")
        assert all_different(scaled)


def test_negative_zero(db: Backend) -> None:
    """-0.0 and 0.0 are different stored values where the database keeps them apart
    (PostgreSQL, DuckDB), and the fingerprint follows: a restore must give back the same bits.
    MariaDB stores -0.0 as 0, so there is nothing to tell apart."""
    found = fingerprints(db, kinds(db, "double"), [(-0.0,)], [(0.0,)])
    stored = db.sql(f"SELECT c0 FROM {db.table(db.schema('fp'), 'v0')}")[0][0]
    if math.copysign(1.0, stored) < 0:
        assert all_different(found)
    else:
        assert db.kind == "mariadb" and found[0].digest == found[1].digest


def test_trailing_spaces_and_case_under_a_case_insensitive_collation(db: Backend) -> None:
    text = {
        "mariadb": "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
        "duckdb": "VARCHAR COLLATE NOCASE",
        "postgresql": 'VARCHAR(20) COLLATE "ci_fp"',
    }[db.kind]
    if db.kind == "postgresql":
        db.sql(
            "CREATE COLLATION IF NOT EXISTS \"ci_fp\" (provider = icu, locale = 'und-u-ks-level2', "
            "deterministic = false)"
        )
    found = fingerprints(db, [text], [("Abc",)], [("abc",)], [("ABC",)], [("abc ",)], [("abc  ",)])
    table = db.table(db.schema("fp"), "v0")
    assert db.sql(f"SELECT COUNT(*) FROM {table} WHERE c0 = 'ABC'") == [(1,)]  # the collation is blind
    assert all_different(found)


def test_timestamps_an_hour_apart_in_a_dst_fold(db: Backend) -> None:
    """02:30 local time in Berlin on 2025-10-26 happened twice: 00:30 and 01:30 UTC."""
    first, second = "2025-10-26 00:30:00", "2025-10-26 01:30:00"
    if db.kind == "mariadb":  # TIMESTAMP literals are read in the session's zone
        db.sql("SET SESSION time_zone = '+00:00'")
    else:
        first, second = first + "+00", second + "+00"
    found = fingerprints(db, kinds(db, "tstz"), [(first,)], [(second,)])
    assert all_different(found)


def test_duplicate_rows_count(db: Backend) -> None:
    found = fingerprints(
        db,
        kinds(db, "int", "text"),
        [(1, "a"), (1, "a")],
        [(1, "a"), (2, "b")],
        [(1, "a")],
        [(1, "a"), (1, "a"), (1, "a")],
        [(1, "a"), (2, "b"), (2, "b"), (1, "a")],
    )
    assert all_different(found)


def test_row_order_does_not_matter(db: Backend) -> None:
    rows = [(i, f"r{i}") for i in range(20)]
    found = fingerprints(db, kinds(db, "int", "text"), rows, list(reversed(rows)))
    assert found[0] == found[1]


def test_values_swapped_between_columns_or_rows(db: Backend) -> None:
    found = fingerprints(
        db,
        kinds(db, "int", "int", "text", "text"),
        [(1, 2, "a", "b")],
        [(2, 1, "a", "b")],
        [(1, 2, "b", "a")],
        [(1, 2, "ab", "")],
        [(1, 2, "", "ab")],
    )
    assert all_different(found)
    rows = fingerprints(db, kinds(db, "int", "text"), [(1, "a"), (2, "b")], [(1, "b"), (2, "a")], prefix="r")
    assert all_different(rows)


def test_bytes_are_compared_as_bytes(db: Backend) -> None:
    values = [b"\x00", b"", b"\x00\x00", b"\\x00", b"\xaa", b"\\xAA", b"#", b"'"]
    found = fingerprints(db, kinds(db, "blob"), *[[(v,)] for v in values], [(None,)])
    assert all_different(found)


def test_duckdb_nested_values_are_told_apart(duck: Backend) -> None:
    """LIST, STRUCT and MAP values: the fingerprint reads them as JSON, whose quoting does not
    depend on the DuckDB release (their VARCHAR form has changed between releases)."""
    found = fingerprints(
        duck,
        ["VARCHAR[]", "MAP(VARCHAR, VARCHAR)"],
        [(["a, b"], {"k": "v"})],
        [(["a", "b"], {"k": "v"})],
        [([], {"k=v": "x"})],
        [([], {"k": "v=x"})],
        [([None], {})],
        [(["NULL"], {})],
        [(None, None)],
    )
    assert all_different(found)


# -- one value changed in 10,000 rows, 1,000 times ----------------------------------------------
ROLES = ("int", "text", "double", "decimal", "ts", "text")


def _random_row(rng: random.Random, i: int) -> tuple[Any, ...]:
    return (
        i,
        rng.choice(["", None, "NULL", "a#b", "x y ", "Ünïcødé 😀"]) if i % 7 == 0 else f"name {i}",
        rng.uniform(-1e6, 1e6),
        f"{rng.randint(-(10**9), 10**9) / 100:.2f}",
        f"2026-03-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}",
        None if i % 11 == 0 else rng.choice(["a", "b", "c"]) * (1 + i % 3),
    )


def _mutation(rng: random.Random, role: str, value: Any) -> Any:
    """A different value, close to the old one where that is what fools weak checksums."""
    if role == "int":
        return value + rng.choice([1, -1, 1 << 20])
    if role == "double":
        return math.nextafter(value, math.inf if rng.random() < 0.5 else -math.inf)
    if role == "decimal":
        return str(Decimal(value) + Decimal(rng.choice(["0.01", "-0.01", "100.00"])))
    if role == "ts":
        return value[:-3] + f"{(int(value[-3:]) + 1) % 1000:03d}"
    options = ["", None, "NULL", value + " " if value else "x", (value or "x").upper() + "#", "a#b", "b#a"]
    return rng.choice([o for o in options if o != value])


def _halves(found: Checksum) -> tuple[int, int]:
    return int(found.digest[:16], 16), int(found.digest[16:], 16)


def _change(after: Checksum, before: Checksum) -> tuple[int, int]:
    """How much each 64-bit half of the digest moved (modulo 2^64)."""
    (a_high, a_low), (b_high, b_low) = _halves(after), _halves(before)
    return (a_high - b_high) % (1 << 64), (a_low - b_low) % (1 << 64)


def test_one_changed_value_in_ten_thousand_rows_is_always_found(db: Backend) -> None:
    """Each of 1,000 mutations is fingerprinted as the one row it changes (a one-row probe
    table, before and after): the table's digest is a sum of row hashes, so the table's
    fingerprint changes exactly when that row's does. The first 100 mutations also
    re-fingerprint the whole 10,000-row table, and its digest must move by exactly the probe's
    change; at the end the whole table must have moved by the sum of all 1,000."""
    rng = random.Random(9)
    schema = db.create_schema("fp")
    rows = [list(_random_row(rng, i)) for i in range(10_000)]
    columns = [f"{TYPES[role][db.kind]}" for role in ROLES]
    body = ", ".join(f"c{i} {kind}" for i, kind in enumerate(columns))
    big, probe = TableRef(schema, "big"), TableRef(schema, "probe")
    db.sql(f"CREATE TABLE {db.table(schema, 'big')} ({body}, PRIMARY KEY (c0))")
    db.sql(f"CREATE TABLE {db.table(schema, 'probe')} ({body})")
    with connected(db) as adapter:
        marks = ", ".join([adapter.paramstyle] * len(ROLES))
        for start in range(0, len(rows), 500):
            adapter.execute(
                f"INSERT INTO {adapter.qualify(big)} VALUES " + ", ".join([f"({marks})"] * 500),
                [v for row in rows[start : start + 500] for v in row],
            )
        adapter.execute(f"INSERT INTO {adapter.qualify(probe)} VALUES ({marks})", rows[0])
        sets = ", ".join(f"{adapter.quote(f'c{i}')} = {adapter.paramstyle}" for i in range(len(ROLES)))

        def row_fingerprint(row: Sequence[Any]) -> Checksum:
            adapter.execute(f"UPDATE {adapter.qualify(probe)} SET {sets}", list(row))
            return adapter.checksum(probe)

        first = before = adapter.checksum(big)
        assert first.rows == 10_000
        moved = (0, 0)
        for n in range(1000):
            i, col = rng.randrange(10_000), rng.randrange(1, len(ROLES))
            old = row_fingerprint(rows[i])
            rows[i][col] = _mutation(rng, ROLES[col], rows[i][col])
            new = row_fingerprint(rows[i])
            assert new.digest != old.digest, f"row {i} column {col} changed to {rows[i][col]!r} went unseen"
            change = _change(new, old)
            moved = ((moved[0] + change[0]) % (1 << 64), (moved[1] + change[1]) % (1 << 64))
            adapter.execute(
                f"UPDATE {adapter.qualify(big)} SET {adapter.quote(f'c{col}')} = {adapter.paramstyle} "
                f"WHERE {adapter.quote('c0')} = {adapter.paramstyle}",
                [rows[i][col], i],
            )
            if n < 100:
                after = adapter.checksum(big)
                assert after.digest != before.digest and _change(after, before) == change
                before = after
        assert _change(adapter.checksum(big), first) == moved


# -- forged snapshots ----------------------------------------------------------------------------
def _crc32_patch(message: bytes, position: int, target: int) -> bytes:
    """Four bytes to write at `position` so that crc32(message) becomes `target`: CRC32 is
    affine over GF(2), so the change each bit makes is known and 32 of them solve it."""
    zero = zlib.crc32(message)
    basis = []
    for bit in range(32):
        probe = bytearray(message)
        probe[position + bit // 8] ^= 1 << (bit % 8)
        basis.append((zlib.crc32(bytes(probe)) ^ zero, 1 << bit))
    want, pivots = zero ^ target, []
    for effect, flips in basis:  # Gaussian elimination on (effect -> which bits to flip)
        for p_effect, p_flips in pivots:
            if effect ^ p_effect < effect:
                effect, flips = effect ^ p_effect, flips ^ p_flips
        if effect:
            pivots.append((effect, flips))
            pivots.sort(reverse=True)
    solution = 0
    for p_effect, p_flips in pivots:
        if want ^ p_effect < want:
            want, solution = want ^ p_effect, solution ^ p_flips
    assert want == 0
    patch = bytearray(message[position : position + 4])
    for bit in range(32):
        if solution >> bit & 1:
            patch[bit // 8] ^= 1 << (bit % 8)
    return bytes(patch)


def _forge(db: Backend, snap_table: str) -> None:
    """Change one row's amount and compensate elsewhere in the row: on MariaDB, so that the
    v1 CRC32 stays the same (a real forgery); elsewhere, an equal and opposite change."""
    if db.kind != "mariadb":
        db.sql(f"UPDATE {snap_table} SET amount = amount + 900, credit = credit - 900 WHERE id = 2")
        return
    (amount, credit, memo) = db.sql(f"SELECT amount, credit, memo FROM {snap_table} WHERE id = 2")[0]
    old = b"#".join([b"2", str(amount).encode(), str(credit).encode(), memo, b"0", b"0", b"0", b"0"])
    forged_amount = str(amount + 700).encode()
    assert len(forged_amount) == len(str(amount))
    new = b"#".join([b"2", forged_amount, str(credit).encode(), memo, b"0", b"0", b"0", b"0"])
    at = new.index(memo, len(b"2#") + len(forged_amount)) + len(memo) - 4
    patched = new[:at] + _crc32_patch(new, at, zlib.crc32(old)) + new[at + 4 :]
    assert zlib.crc32(patched) == zlib.crc32(old)
    db.sql(
        f"UPDATE {snap_table} SET amount = %s, memo = %s WHERE id = 2",
        [forged_amount.decode(), patched[at - len(memo) + 4 : at + 4]],
    )


def test_a_forged_snapshot_is_refused_by_verify_and_restore(db: Backend) -> None:
    gold = db.create_schema("gold")
    t = db.table(gold, "ledger")
    memo = {"mariadb": "VARBINARY(32)", "duckdb": "BLOB", "postgresql": "BYTEA"}[db.kind]
    db.sql(
        f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), credit DECIMAL(12,2), memo {memo})"
    )
    m = mark_of(db)
    for i in range(1, 6):
        db.sql(
            f"INSERT INTO {t} VALUES ({m}, {m}, {m}, {m})", [i, f"{i}00.00", "1000.00", b"memo of row %d" % i]
        )
    guard = db.guard([f"{gold}.ledger"])
    [snap] = guard.snapshot()
    assert snap.fingerprint == new_algorithm(db)
    db.sql(f"UPDATE {t} SET amount = 0")  # the ETL's damage, which a restore would undo
    live = db.golden(gold, "ledger")
    snap_table = db.table(snap.snapshot.schema, snap.snapshot.name)
    with connected(db) as adapter:
        legacy_before = adapter.checksum(snap.snapshot, LEGACY_FINGERPRINT)
        _forge(db, snap_table)
        legacy_after = adapter.checksum(snap.snapshot, LEGACY_FINGERPRINT)
    if db.kind == "mariadb":  # the forgery fools the v1 checksum...
        assert legacy_after == legacy_before
    assert db.sql(f"SELECT amount FROM {snap_table} WHERE id = 2") != [(200,)]

    [result] = guard.verify()  # ...and not the fingerprint
    assert not result.ok and result.actual != f"{snap.row_count} rows/{snap.checksum}"
    with pytest.raises(ChecksumMismatch, match=f"snapshot {snap.id} of {gold}.ledger"):
        guard.restore([f"{gold}.ledger"], latest=True)
    assert db.golden(gold, "ledger") == live  # the live table was not touched


# -- snapshots taken with the v1 checksum stay verifiable -----------------------------------------
def _v1_checksum(db: Backend, table: str, columns: Sequence[str]) -> tuple[int, str]:
    """The v1 checksum as etlguard 0.x computed it (the test's own copy of that SQL)."""
    if db.kind == "mariadb":
        values = ", ".join(f"CAST({c} AS BINARY)" for c in columns)
        flags = ", ".join(f"ISNULL({c})" for c in columns)
        sql = f"SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('#', {values}, {flags}))), 0) FROM {table}"
    elif db.kind == "postgresql":
        values = ", ".join(f"{c}::text" for c in columns)
        flags = ", ".join(f"({c} IS NULL)::int::text" for c in columns)
        row = (
            f"('x' || lpad(substr(md5(concat_ws('#', {values}, {flags})), 1, 15), 16, '0'))::bit(64)::bigint"
        )
        sql = f"SELECT count(*), COALESCE(sum({row}), 0) FROM {table}"
    else:
        values = ", ".join(f"CAST({c} AS VARCHAR)" for c in columns)
        flags = ", ".join(f"CAST({c} IS NULL AS INTEGER)" for c in columns)
        sql = f"SELECT count(*), COALESCE(sum(md5_number_lower(concat_ws('#', {values}, {flags}))), 0) FROM {table}"
    rows, total = db.sql(sql)[0]
    return int(rows), str(int(total))


def _downgrade_catalog(db: Backend, snap_id: int, rows: int, checksum: str) -> None:
    """Make the catalog what etlguard 0.x wrote: schema version 1, no fingerprint column,
    and this snapshot's v1 checksum."""
    snapshots, meta = db.table(db.catalog_schema, "snapshots"), db.table(db.catalog_schema, "meta")
    m = mark_of(db)
    db.sql(f"ALTER TABLE {snapshots} DROP COLUMN fingerprint")
    db.sql(
        f"UPDATE {snapshots} SET row_count = {m}, checksum = {m} WHERE id = {m}", [rows, checksum, snap_id]
    )
    db.sql(f"UPDATE {meta} SET value = '1' WHERE {db.q('key')} = 'schema_version'")


def test_a_v1_snapshot_still_verifies_and_restores_after_the_upgrade(db: Backend) -> None:
    gold = db.create_schema("gold")
    t = db.table(gold, "facts")
    db.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2))")
    db.sql(f"INSERT INTO {t} VALUES (1, 'a#b', 1.50), (2, NULL, NULL), (3, '', 3.25)")
    before = db.golden(gold, "facts")
    guard = db.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    snap_table = db.table(snap.snapshot.schema, snap.snapshot.name)
    _downgrade_catalog(db, snap.id, *_v1_checksum(db, snap_table, ["id", "name", "amount"]))

    [old] = guard.snapshots()  # read without the lock: the catalog is not migrated by a listing
    assert old.fingerprint == LEGACY_FINGERPRINT
    assert [r.ok for r in guard.verify()] == [True]
    db.sql(f"UPDATE {t} SET name = 'changed'")
    result = guard.restore([f"{gold}.facts"], latest=True, keep_snapshot=True)  # migrates the catalog
    assert result.verified == [f"{gold}.facts"]
    assert db.golden(gold, "facts") == before
    by_id = {s.id: s for s in guard.snapshots()}
    assert by_id[snap.id].fingerprint == LEGACY_FINGERPRINT  # still checked the way it was taken
    displaced = by_id[result.steps[0].displaced_id or 0]
    # new records get the new algorithm: a displaced table the engine's cheap check where it has
    # one (MySQL's CHECKSUM TABLE, see restore.displaced_check), else the new fingerprint
    with connected(db) as adapter:
        assert displaced.fingerprint == (displaced_check(adapter) or new_algorithm(db))
    assert all(r.ok for r in guard.verify())
    meta = db.sql(
        f"SELECT value FROM {db.table(db.catalog_schema, 'meta')} WHERE {db.q('key')} = 'schema_version'"
    )
    assert meta == [(str(SCHEMA_VERSION),)]
    kept = by_id[snap.id].snapshot  # --keep-snapshot copied it aside before the swap
    db.sql(f"UPDATE {db.table(kept.schema, kept.name)} SET amount = 9")
    assert not all(r.ok for r in guard.verify())  # the old algorithm still sees a change


# -- session settings never make a good snapshot fail ---------------------------------------------
def _zoned_table(db: Backend, schema: str) -> str:
    t = db.table(schema, "events")
    tstz, ts, dbl, flt = (TYPES[r][db.kind] for r in ("tstz", "ts", "double", "float"))
    extra = ", span INTERVAL" if db.kind != "mariadb" else ""
    db.sql(
        f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, at_utc {tstz}, local_at {ts}, x {dbl}, f {flt}, "
        f"code CHAR(8){extra})"
    )
    if db.kind == "mariadb":
        db.sql("SET SESSION time_zone = '+00:00'")
    m = mark_of(db)
    for i, at in enumerate(["2025-10-26 00:30:00", "2025-10-26 01:30:00", "2026-03-29 01:30:00"]):
        values = [i, at + ("" if db.kind == "mariadb" else "+00"), at, 0.1 * (i + 1), 1234567.0 + i, "ab"]
        marks = [m] * 6
        if extra:
            values.append(f"{i} days 03:04:05.5")
            marks.append(f"CAST({m} AS INTERVAL)")
        db.sql(f"INSERT INTO {t} VALUES ({', '.join(marks)})", values)
    return t


def test_postgres_session_settings_do_not_change_the_fingerprint(
    pg: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = pg.create_schema("gold")
    _zoned_table(pg, gold)
    guard = pg.guard([f"{gold}.events"])
    [snap] = guard.snapshot()
    monkeypatch.setenv("PGTZ", "Asia/Kathmandu")
    monkeypatch.setenv("PGDATESTYLE", "SQL, DMY")
    monkeypatch.setenv(
        "PGOPTIONS",
        "-c TimeZone=America/St_Johns -c DateStyle=German -c IntervalStyle=sql_standard "
        "-c extra_float_digits=-3 -c bytea_output=escape",
    )
    assert [r.ok for r in guard.verify()] == [True]
    role = f"fp_{pg.tag}"
    pg.sql(f"CREATE ROLE {role} LOGIN SUPERUSER")
    try:
        pg.sql(f"ALTER ROLE {role} SET TimeZone = 'Pacific/Chatham'")
        pg.sql(f"ALTER ROLE {role} SET IntervalStyle = 'iso_8601'")
        url = pg.url.replace("postgres@", f"{role}@")
        as_role = pg.guard([f"{gold}.events"], target=url)
        with connected(pg, target=url) as adapter:
            assert adapter.query("SELECT current_user") == [(role,)]
            assert adapter.checksum(snap.snapshot) == adapter.checksum(TableRef(gold, "events"))
        assert [r.ok for r in as_role.verify()] == [True]
        pg.sql(f"UPDATE {pg.table(gold, 'events')} SET x = -1")
        result = as_role.restore([f"{gold}.events"], latest=True)
        assert result.verified == [f"{gold}.events"]
    finally:
        pg.sql(f"REASSIGN OWNED BY {role} TO postgres")
        pg.sql(f"DROP OWNED BY {role}")
        pg.sql(f"DROP ROLE {role}")


def test_mariadb_server_time_zone_changes_between_snapshot_and_restore(
    mariadb_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throwaway server whose system time zone is Europe/Berlin (the DST folds are real
    there), then moved to +05:30 globally, with sql_mode padding CHAR values and quoting DDL
    with double quotes: the snapshot still verifies and restores."""
    from servers import make_server

    monkeypatch.setenv("TZ", "Europe/Berlin")
    server = make_server(mariadb_template, tmp_path / "mariadb")
    try:
        db = MariaDBBackend(tmp_path, port=server.port, url=server.url)
        assert db.sql("SELECT @@system_time_zone") in ([("CET",)], [("CEST",)])
        gold = db.create_schema("gold")
        t = _zoned_table(db, gold)
        db.conn.close()
        db.conn = db._connect()  # a fresh session in the server's own zone
        assert db.sql(f"SELECT COUNT(DISTINCT CAST(at_utc AS CHAR)) FROM {t} WHERE id < 2") == [(1,)]
        guard = db.guard([f"{gold}.events"])
        [snap] = guard.snapshot()
        assert snap.verified and snap.fingerprint == FINGERPRINT
        server.sql("SET GLOBAL time_zone = '+05:30'")
        server.sql(
            "SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',PAD_CHAR_TO_FULL_LENGTH,ANSI_QUOTES,NO_TABLE_OPTIONS')"
        )
        assert [r.ok for r in guard.verify()] == [True]
        db.sql(f"UPDATE {t} SET x = -1")
        result = guard.restore([f"{gold}.events"], latest=True)
        assert result.verified == [f"{gold}.events"]
        with connected(db) as adapter:
            pinned = adapter.query(f"SELECT COUNT(DISTINCT CAST(at_utc AS CHAR)) FROM {t} WHERE id < 2")
            assert pinned == [(2,)]  # etlguard reads the two fold instants as two values
            assert adapter.checksum(TableRef(gold, "events")).rows == 3
        db.cleanup()
    finally:
        server.stop()


def test_duckdb_tz_changes_between_snapshot_and_verify(duck: Backend, tmp_path: Path) -> None:
    """TZ is read once per process, so each step is its own `etlguard` process."""
    gold = duck.create_schema("gold")
    _zoned_table(duck, gold)
    config = tmp_path / "etlguard.yml"
    duck.write_config(config, protect=[f"{gold}.events"])

    def etlguard(tz: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TZ": tz}
        command = [sys.executable, "-m", "etlguard", *args, "--config", str(config)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    taken = etlguard("America/New_York", "snapshot")
    assert taken.returncode == 0, taken.stderr
    checked = etlguard("Asia/Tokyo", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    duck.sql(f"UPDATE {duck.table(gold, 'events')} SET x = -1")
    restored = etlguard("Australia/Lord_Howe", "restore", f"{gold}.events", "--latest")
    assert restored.returncode == 0, restored.stderr
    assert duck.sql(f"SELECT count(*) FROM {duck.table(gold, 'events')} WHERE x = -1") == [(0,)]
    assert tables_in(duck, duck.snapshot_schema)

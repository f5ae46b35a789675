"""Names chosen to break SQL built by pasting: each table is snapshotted and restored exactly, or
refused with an EtlguardError before anything is written; a canary elsewhere never changes."""

from __future__ import annotations

import pytest

from etlguard import EtlguardError, TableNotFound, TableRef
from etlguard.errors import IdentifierError

from conftest import Backend, in_every_schema
from support import catalog_rows, cli, nothing_written, tables_in

HOSTILE_COLUMN = "we`ird \"col\" 'x';--"
LONG_PREFIX = "p" * 60

HOSTILE = {
    "backtick": "back`tick",
    "double-quote": 'dq"uote',
    "single-quote": "sq'uote",
    "semicolon": "semi;colon",
    "comment": "dash--dash",
    "spaces": "two  words ",
    "leading-space": " lead",
    "injection": 'x`; DROP TABLE canary; -- "; DROP TABLE canary; --',
    "unicode": "Ünïcødé 表 ñ",
    "emoji": "emoji😀",
    "select": "select",
    "order": "order",
    "dot": "dot.ted",
    "paren": "paren(",
    "only-quotes": '`"`',
    "64-chars": "n" * 64,
    "glob-star": "glob*",
    "glob-bracket": "a[1]",
    "glob-question": "q?",
}
# Tables whose names a careless glob of the hostile name would also match.
DECOYS = {"glob*": "globber", "a[1]": "a1", "q?": "qx"}


def cannot_create(backend: Backend, name: str) -> bool:
    """Names the database itself refuses (MariaDB: no 4-byte characters, no trailing space)."""
    return backend.kind == "mariadb" and (name.endswith(" ") or any(ord(c) > 0xFFFF for c in name))


def make_table(backend: Backend, schema: str, name: str) -> str:
    t = backend.table(schema, name)
    col, sel = backend.q(HOSTILE_COLUMN), backend.q("select")
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, {col} VARCHAR(40), {sel} DECIMAL(8,2))")
    backend.sql(f"CREATE INDEX {backend.q('ix `' + name[-20:])} ON {t} ({col})")
    backend.sql(f"INSERT INTO {t} VALUES (1, 'a;b', 1.5), (2, NULL, NULL), (3, 'quote''s 😀', -2.25)")
    return t


def make_canary(backend: Backend) -> tuple[str, tuple[int, str]]:
    canary = backend.create_schema("canary")
    t = backend.table(canary, "canary")
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v VARCHAR(10))")
    backend.sql(f"INSERT INTO {t} VALUES (1, 'alive'), (2, 'well')")
    return canary, backend.golden(canary, "canary")


@in_every_schema(defaults=["duckdb"])
@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_table_name_round_trips_or_is_refused(backend: Backend, name: str) -> None:
    canary, canary_before = make_canary(backend)
    gold = backend.data_schema("gold")
    ref = TableRef(gold, name)
    guard = backend.guard()
    if cannot_create(backend, name):
        with pytest.raises(EtlguardError):
            guard.snapshot([str(ref)])
        nothing_written(backend)
        assert backend.golden(canary, "canary") == canary_before
        return
    t = make_table(backend, gold, name)
    decoy = DECOYS.get(name)
    if decoy:
        make_table(backend, gold, decoy)
    before = backend.golden(gold, name)
    shape = backend.show_create(gold, name)

    [snap] = guard.snapshot([str(ref)])  # written as a person would: quoted where needed

    assert snap.table == ref and snap.verified and snap.row_count == 3
    assert [(r["table_schema"], r["table_name"]) for r in catalog_rows(backend)] == [(gold, name)]
    backend.sql(f"DELETE FROM {t} WHERE id = 1")
    backend.sql(f"UPDATE {t} SET {backend.q(HOSTILE_COLUMN)} = 'changed' WHERE id = 3")
    assert backend.golden(gold, name) != before

    result = guard.restore([str(ref)], latest=True)

    assert result.verified == [str(ref)]
    assert backend.golden(gold, name) == before
    assert backend.show_create(gold, name) == shape
    assert backend.golden(canary, "canary") == canary_before
    # DuckDB renames only within a schema: the replaced table is kept beside the live one
    [displaced] = [
        (r["snapshot_schema"], r["snapshot_table"]) for r in catalog_rows(backend) if r["kind"] == "displaced"
    ]
    beside = [displaced[1]] if displaced[0] == gold else []
    assert sorted(tables_in(backend, gold)) == sorted([name, *beside, *([decoy] if decoy else [])])


def test_hostile_names_through_the_cli(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    canary, canary_before = make_canary(backend)
    gold = backend.create_schema('go`ld "sch\'ema"; --')
    names = ["order", "semi;colon `x`", "dq\"uote 'sq'"]
    for name in names:
        make_table(backend, gold, name)
    before = {n: backend.golden(gold, n) for n in names}
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [str(TableRef(gold, n)) for n in names])

    assert cli(capsys, "snapshot", "-c", str(config)).code == 0
    for name in names:
        backend.sql(f"DELETE FROM {backend.table(gold, name)}")
    restored = cli(capsys, "restore", *(str(TableRef(gold, n)) for n in names), "--latest", "-c", str(config))

    assert (restored.code, restored.err) == (0, "")
    assert {n: backend.golden(gold, n) for n in names} == before
    assert backend.golden(canary, "canary") == canary_before


@in_every_schema(defaults=["duckdb"])
def test_hostile_catalog_and_snapshot_schema_names(backend: Backend) -> None:
    canary, canary_before = make_canary(backend)
    gold = backend.data_schema("gold")
    make_table(backend, gold, "facts")
    catalog = backend.schema("cat`a\"l'og; --")
    snaps = backend.schema("sn aps`; DROP TABLE canary")
    guard = backend.guard([f"{gold}.facts"], catalog_schema=catalog, snapshot_schema=snaps)
    before = backend.golden(gold, "facts")

    [snap] = guard.snapshot()
    backend.sql(f"DELETE FROM {backend.table(gold, 'facts')}")
    guard.restore([f"{gold}.facts"], latest=True)

    assert snap.snapshot.schema == snaps
    assert [r["table_name"] for r in catalog_rows(backend, catalog=catalog)] == ["facts", "facts"]
    assert backend.golden(gold, "facts") == before
    assert backend.golden(canary, "canary") == canary_before


@in_every_schema(defaults=["duckdb"])
def test_names_differing_only_in_case(backend: Backend) -> None:
    canary, canary_before = make_canary(backend)
    gold = backend.data_schema("gold")
    upper = make_table(backend, gold, "Mixed")
    guard = backend.guard()
    if backend.kind == "duckdb":  # DuckDB matches names case-insensitively: one table only
        with pytest.raises(TableNotFound):
            guard.snapshot([f"{gold}.mixed"])
        nothing_written(backend)
        return
    lower = make_table(backend, gold, "mixed")
    backend.sql(f"UPDATE {lower} SET {backend.q('select')} = 99")
    before = {n: backend.golden(gold, n) for n in ("Mixed", "mixed")}
    snaps = guard.snapshot([f"{gold}.Mixed", f"{gold}.mixed"])
    backend.sql(f"DELETE FROM {upper} WHERE id = 1")
    backend.sql(f"DELETE FROM {lower} WHERE id = 2")
    damaged_upper = backend.golden(gold, "Mixed")

    guard.restore([f"{gold}.mixed"], latest=True)

    assert backend.golden(gold, "mixed") == before["mixed"]
    assert backend.golden(gold, "Mixed") == damaged_upper
    assert [s.id for s in guard.snapshots(f"{gold}.Mixed")] == [snaps[0].id]
    guard.restore([f"{gold}.Mixed"], latest=True)
    assert {n: backend.golden(gold, n) for n in ("Mixed", "mixed")} == before
    assert backend.golden(canary, "canary") == canary_before


@in_every_schema(defaults=["duckdb"])
def test_two_long_names_sharing_a_prefix(backend: Backend) -> None:
    gold = backend.data_schema("gold")
    names = [LONG_PREFIX + "_one", LONG_PREFIX + "_two"]
    assert all(len(n) == 64 for n in names)
    for i, name in enumerate(names):
        t = make_table(backend, gold, name)
        backend.sql(f"DELETE FROM {t} WHERE id = {i + 1}")
    before = {n: backend.golden(gold, n) for n in names}
    guard = backend.guard([f"{gold}.{LONG_PREFIX}*"])

    snaps = guard.snapshot()
    for name in names:
        backend.sql(f"DELETE FROM {backend.table(gold, name)}")
    guard.restore([f"{gold}.{n}" for n in names], latest=True)

    assert sorted(s.table.name for s in snaps) == names
    assert {n: backend.golden(gold, n) for n in names} == before


@pytest.mark.parametrize("where", ["table", "schema"])
def test_a_65_character_name_is_refused_with_an_identifier_error(
    maria: Backend, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    canary, canary_before = make_canary(maria)
    gold = maria.create_schema("gold")
    name = "n" * 65
    ref = TableRef(gold, name) if where == "table" else TableRef(name, "facts")
    message = f"name {name[:20]!r}... is 65 characters; mariadb allows at most 64"
    config = maria.write_config(maria.tmp_path / "etlguard.yml", [str(ref)])

    with pytest.raises(IdentifierError) as caught:
        maria.guard().snapshot([str(ref)])
    result = cli(capsys, "snapshot", "-c", str(config))

    assert str(caught.value) == message
    assert (result.code, result.err_lines) == (IdentifierError.exit_code, [f"etlguard: error: {message}"])
    assert result.code == 2
    nothing_written(maria)
    assert maria.golden(canary, "canary") == canary_before

"""verify catches a snapshot changed behind etlguard's back, restore refuses to use it, and diff
shows what changed since a snapshot, row by row."""

from __future__ import annotations

import json

import pytest

from etlguard import ChecksumMismatch

from conftest import Backend
from support import catalog_rows, cli, tables_in

TAMPERING = {
    "update": "UPDATE {t} SET name = 'forged' WHERE id = 2",
    "delete": "DELETE FROM {t} WHERE id = 3",
    "insert": "INSERT INTO {t} VALUES (99, 'extra', 1.00)",
    "null": "UPDATE {t} SET amount = NULL WHERE id = 1",
    "swap-values": "UPDATE {t} SET name = CASE id WHEN 1 THEN 'n2' WHEN 2 THEN 'n1' END WHERE id IN (1, 2)",
}


def make_facts(backend: Backend, schema: str) -> str:
    t = backend.table(schema, "facts")
    backend.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2))")
    backend.sql(f"INSERT INTO {t} VALUES (1, 'n1', 1.50), (2, 'n2', NULL), (3, NULL, 3.25), (4, 'n4', 4.00)")
    return t


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_verify_detects_a_tampered_snapshot_and_restore_refuses_it(
    backend: Backend, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.create_schema("gold")
    t = make_facts(backend, gold)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    assert cli(capsys, "verify", "-c", str(config)).out.endswith("1 of 1 snapshot verified\n")
    backend.sql(f"UPDATE {t} SET name = 'live change' WHERE id = 4")
    live = backend.golden(gold, "facts")
    live_shape = backend.show_create(gold, "facts")
    [row] = catalog_rows(backend)
    backend.sql(tamper.format(t=backend.table(row["snapshot_schema"], row["snapshot_table"])))
    snapshot_tables = tables_in(backend, backend.snapshot_schema)

    verified = cli(capsys, "verify", "-c", str(config))
    as_json = cli(capsys, "verify", "--json", "-c", str(config))

    assert verified.code == 1
    assert (
        f"snapshot {snap.id} of {gold}.facts: MISMATCH: catalog 4 rows/{snap.checksum}, now " in verified.out
    )
    assert "0 of 1 snapshot verified" in verified.out
    assert verified.err_lines == [f"etlguard: error: 1 snapshot no longer match the catalog: {snap.id}"]
    assert as_json.code == 1
    assert [(r["id"], r["ok"]) for r in json.loads(as_json.out)] == [(snap.id, False)]

    with pytest.raises(ChecksumMismatch) as caught:
        guard.restore([f"{gold}.facts"], latest=True)
    assert caught.value.snapshot_id == snap.id
    refused = cli(capsys, "restore", f"{gold}.facts", "--latest", "-c", str(config))
    assert refused.code == 1
    assert len(refused.err_lines) == 1
    assert refused.err.startswith(
        f"etlguard: error: checksum mismatch for snapshot {snap.id} of {gold}.facts"
    )

    assert backend.golden(gold, "facts") == live
    assert backend.show_create(gold, "facts") == live_shape
    assert tables_in(backend, gold) == ["facts"]
    assert tables_in(backend, backend.snapshot_schema) == snapshot_tables  # no staging left behind
    assert [r["id"] for r in catalog_rows(backend)] == [snap.id]  # nothing displaced


def test_verify_reports_a_missing_snapshot_table(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.create_schema("gold")
    make_facts(backend, gold)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    backend.guard([f"{gold}.facts"]).snapshot()
    [row] = catalog_rows(backend)
    backend.sql(f"DROP TABLE {backend.table(row['snapshot_schema'], row['snapshot_table'])}")

    result = cli(capsys, "verify", "-c", str(config))

    assert result.code == 1
    assert "snapshot table is missing" in result.out
    assert result.err_lines == [f"etlguard: error: 1 snapshot no longer match the catalog: {row['id']}"]


def test_diff_reports_added_and_removed_rows_by_primary_key(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.create_schema("gold")
    t = make_facts(backend, gold)
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.facts"])
    guard = backend.guard([f"{gold}.facts"])
    [snap] = guard.snapshot()
    assert guard.diff(f"{gold}.facts").identical

    backend.sql(f"DELETE FROM {t} WHERE id = 2")
    backend.sql(f"UPDATE {t} SET name = 'N3' WHERE id = 3")
    backend.sql(f"INSERT INTO {t} VALUES (10, 'ten', 10.00), (0, NULL, NULL)")
    diff = guard.diff(f"{gold}.facts")

    assert not diff.identical and diff.same_structure
    assert (diff.snapshot.id, diff.snapshot.row_count, diff.live_rows) == (snap.id, 4, 5)
    assert diff.key == ["id"]
    assert diff.columns == ["id", "name", "amount"]
    assert [(side, row[0], row[1]) for side, row in diff.rows] == [
        ("+", 0, None),
        ("-", 2, "n2"),
        ("+", 3, "N3"),
        ("-", 3, None),
        ("+", 10, "ten"),
    ]

    as_json = cli(capsys, "diff", f"{gold}.facts", "--json", "-c", str(config))
    assert (as_json.code, as_json.err) == (0, "")
    report = json.loads(as_json.out)
    assert (report["snapshot_id"], report["snapshot_rows"], report["live_rows"]) == (snap.id, 4, 5)
    assert report["identical"] is False and report["key"] == ["id"]
    assert [(r["side"], r["row"][:2]) for r in report["rows"]] == [
        ("+", ["0", None]),
        ("-", ["2", "n2"]),
        ("+", ["3", "N3"]),
        ("-", ["3", None]),
        ("+", ["10", "ten"]),
    ]

    limited = cli(
        capsys,
        "diff",
        f"{gold}.facts",
        "--snapshot",
        str(snap.id),
        "--limit",
        "2",
        "--json",
        "-c",
        str(config),
    )
    assert len(json.loads(limited.out)["rows"]) == 2

    text = cli(capsys, "diff", f"{gold}.facts", "-c", str(config))
    assert text.code == 0
    assert "rows:      4 -> 5" in text.out and "checksum:  different" in text.out
    assert "- only in the snapshot, + only in the live table" in text.out

    guard.restore([f"{gold}.facts"], latest=True, keep_snapshot=True)  # MySQL consumes it otherwise
    after = cli(capsys, "diff", f"{gold}.facts", "-c", str(config))
    assert "identical" in after.out


def test_diff_of_a_snapshot_of_another_table_is_refused(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = backend.create_schema("gold")
    make_facts(backend, gold)
    backend.sql(f"CREATE TABLE {backend.table(gold, 'other')} (id INTEGER PRIMARY KEY)")
    config = backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.*"])
    snaps = backend.guard([f"{gold}.*"]).snapshot()
    other = next(s for s in snaps if s.table.name == "other")

    result = cli(capsys, "diff", f"{gold}.facts", "--snapshot", str(other.id), "-c", str(config))

    assert result.code == 1
    assert result.err_lines == [
        f"etlguard: error: no snapshot found: snapshot {other.id} of {gold}.facts; "
        "list them with `etlguard snapshots`"
    ]

"""Progress of a snapshot's copy, as a cron or Airflow log sees it (piped) and as a library
user's logging sees it: rows copied so far against the server's estimate, then the final count."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from conftest import Backend
from support import cli

ROWS = {"mariadb": 200_000, "duckdb": 1_000_000}  # each copy lasts several 0.05 s polls
LINE = re.compile(r"^etlguard: snapshot (\S+): ([\d,]+) of ~([\d,]+) rows \(~.+ of ~.+\), \d+ s$")
BETWEEN = re.compile(r"^etlguard: snapshot (\S+): ~([\d,]+) rows \(~.+\), \d+ s$")  # no statement ran
DONE = re.compile(r"^etlguard: snapshot (\S+): ([\d,]+) rows copied, \d+ s$")


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETLGUARD_PROGRESS_SECONDS", "0.05")


def big_table(backend: Backend) -> str:
    schema = backend.data_schema()
    rows = ROWS[backend.kind]
    table = backend.table(schema, "history")
    if backend.kind == "mariadb":
        backend.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(40))")
        backend.sql(f"INSERT INTO {table} SELECT seq, md5(seq) FROM {backend.q(schema)}.seq_1_to_{rows}")
        backend.sql(f"ANALYZE TABLE {table}")  # the estimate progress is measured against
    else:
        backend.sql(
            f"CREATE TABLE {table} AS SELECT range AS id, md5(range::VARCHAR) AS v FROM range({rows})"
        )
    return f"{schema}.history"


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_piped_snapshot_prints_rising_row_counts_then_the_total(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = big_table(backend)
    config = backend.write_config(tmp_path / "etlguard.yml", [name])

    result = cli(capsys, "snapshot", "-c", config)

    assert result.code == 0, result.err
    lines = [line for line in result.err_lines if "snapshot " + name in line]
    running = [m for m in map(LINE.match, lines) if m]
    done = [m for m in map(DONE.match, lines) if m]
    assert running, lines  # the copy lasts many polls: some were read while it ran
    counts = [number(m.group(2)) for m in running]
    assert counts == sorted(counts) and counts[-1] > 0
    assert all(number(m.group(3)) > 0 for m in running)  # the server's estimate
    assert DONE.match(lines[-1]) and len(done) == 1
    assert number(done[0].group(2)) == ROWS[backend.kind] >= counts[-1]
    assert all(LINE.match(x) or BETWEEN.match(x) or DONE.match(x) or "verifying" in x for x in lines), lines


def test_quiet_prints_no_progress(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = big_table(backend)
    config = backend.write_config(tmp_path / "etlguard.yml", [name])

    result = cli(capsys, "-q", "snapshot", "-c", config)

    assert result.code == 0, result.err
    assert result.err == ""
    assert f"{ROWS[backend.kind]:,}" in result.out  # the snapshot itself was taken


def test_json_log_format_gives_one_object_per_progress_line(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = big_table(backend)
    config = backend.write_config(tmp_path / "etlguard.yml", [name])

    result = cli(capsys, "--log-format", "json", "snapshot", "-c", config)

    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.err_lines]
    messages = [r["message"] for r in records]
    assert len(records) >= 2 and all(r["level"] == "info" for r in records)
    assert messages[-1].startswith(f"snapshot {name}: {ROWS[backend.kind]:,} rows copied, ")
    assert any(re.match(rf"snapshot {re.escape(name)}: [\d,]+ of ~", m) for m in messages)


def test_library_users_get_info_records(
    backend: Backend, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("etlguard"), "propagate", True)  # a CLI test may have cut it
    name = big_table(backend)
    guard = backend.guard([name])

    with caplog.at_level(logging.INFO, logger="etlguard.progress"):
        snaps = guard.snapshot()

    records = [r for r in caplog.records if r.name == "etlguard.progress"]
    assert [s.row_count for s in snaps] == [ROWS[backend.kind]]
    assert records and all(r.levelno == logging.INFO for r in records)
    assert records[-1].getMessage().startswith(f"snapshot {name}: {ROWS[backend.kind]:,} rows copied, ")
    assert len(records) >= 2  # readings while the copy ran, not only the final line


def test_a_plain_progress_callback_still_gets_one_call_per_table(backend: Backend) -> None:
    """No reporter and no INFO logging: the copy is not watched, the callback sees each table."""
    name = big_table(backend)
    logging.getLogger("etlguard.progress").setLevel(logging.WARNING)
    try:
        guard = backend.guard([name])
        seen: list[tuple[str, int]] = []
        guard.progress = lambda table, rows: seen.append((str(table), rows))
        guard.snapshot()
    finally:
        logging.getLogger("etlguard.progress").setLevel(logging.NOTSET)
    assert seen == [(name, ROWS[backend.kind])]

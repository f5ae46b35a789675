"""One etlguard at a time per target: a second one exits 3 (EXIT_BUSY) at once, names who holds
the target, and touches nothing. Real processes, as cron would start them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from etlguard.errors import EXIT_BUSY, EXIT_OK

from conftest import Backend
from support import catalog_rows, tables_in

ETLGUARD = [sys.executable, "-m", "etlguard"]
BIG = 200_000  # rows: the winner holds the lock while it copies them
HOLDER = """
import sys
from etlguard import Guard

with Guard.from_config(sys.argv[1]).session("snapshot"):
    print("locked", flush=True)
    sys.stdin.readline()
"""
DUCKDB_OPENER = """
import sys
import duckdb

conn = duckdb.connect(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()
"""


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ETLGUARD_URL"}
    return {**env, "COLUMNS": "200"}


def etlguard(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ETLGUARD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def hold(script: str, *argv: str) -> subprocess.Popen[str]:
    """Start a process that takes the target and keeps it until we write a line to it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() in ("locked", "open"), proc.stderr.read() if proc.stderr else ""
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0


def test_two_concurrent_snapshots_on_mariadb_one_wins_one_is_busy(maria: Backend) -> None:
    gold = maria.create_schema("gold")
    t = maria.table(gold, "big")
    maria.sql(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v VARCHAR(40), amount DECIMAL(12,2))")
    maria.sql(f"INSERT INTO {t} SELECT seq, MD5(seq), seq / 7 FROM {maria.q(gold)}.seq_1_to_{BIG}")
    # every round copies (a reused snapshot is over before the second process could overlap it)
    config = str(
        maria.write_config(maria.tmp_path / "etlguard.yml", [f"{gold}.big"], snapshot={"reuse": False})
    )
    before = maria.golden(gold, "big")

    rounds = 3
    for round_ in range(1, rounds + 1):
        procs = [etlguard("snapshot", "--json", "-c", config) for _ in range(2)]
        results = sorted((finish(p) for p in procs), key=lambda r: r[0])

        assert [code for code, _, _ in results] == [EXIT_OK, EXIT_BUSY], results
        (_, _, won_err), (_, lost, lost_err) = results
        assert won_err == "" and lost == ""
        assert len(lost_err.splitlines()) == 1, lost_err
        assert re.fullmatch(
            r"etlguard: error: the target is locked by another etlguard: connection \d+ "
            r"\(root@[^ ]+, connected for \d+s\)\n",
            lost_err,
        ), lost_err
        rows = catalog_rows(maria)
        assert [(r["status"], r["kind"]) for r in rows] == [("verified", "snapshot")] * round_
        assert len(tables_in(maria, maria.snapshot_schema)) == round_
        assert catalog_rows(maria, "journal")[-1]["state"] == "done"
    assert maria.golden(gold, "big") == before


def duck_config(duck: Backend) -> str:
    gold = duck.create_schema("gold")
    duck.sql(f"CREATE TABLE {duck.table(gold, 'facts')} AS SELECT range AS id FROM range(100)")
    return str(duck.write_config(duck.tmp_path / "etlguard.yml", [f"{gold}.facts"]))


def test_duckdb_second_process_while_an_etlguard_holds_the_target(duck: Backend) -> None:
    config = duck_config(duck)
    holder = hold(HOLDER, config)
    try:
        code, out, err = finish(etlguard("snapshot", "-c", config))
    finally:
        release(holder)

    assert (code, out) == (EXIT_BUSY, "")
    assert re.fullmatch(
        rf"etlguard: error: the target is locked by another etlguard: pid {holder.pid} on \S+: "
        r"etlguard snapshot since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n",
        err,
    ), err
    assert catalog_rows(duck) == []
    assert finish(etlguard("snapshot", "-c", config))[0] == EXIT_OK  # released: it goes ahead
    assert len(catalog_rows(duck)) == 1


def test_duckdb_file_held_open_by_another_program(duck: Backend) -> None:
    config = duck_config(duck)
    opener = hold(DUCKDB_OPENER, str(duck.path))  # type: ignore[attr-defined]
    try:
        proc = etlguard("snapshot", "-c", config)
        code, _, err = finish(proc)
    finally:
        release(opener)

    assert code == EXIT_BUSY
    assert len(err.splitlines()) == 1 and err.startswith("etlguard: error: ")
    assert f"process {opener.pid} has {duck.path} open" in err  # type: ignore[attr-defined]
    assert f"pid {proc.pid}" not in err  # not itself, though it wrote the lock file

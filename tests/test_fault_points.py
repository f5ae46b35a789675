"""RELIABILITY scenarios 1-4, 10, 18, 19: etlguard is SIGKILLed at every named fault point (the
points are enumerated from etlguard.faults.POINTS, which a test keeps in step with the code);
`etlguard recover` then leaves every protected table wholly in its old or wholly in its new
state, removes only what etlguard made, and a second recover has nothing to do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etlguard.faults import POINTS
from test_capture import KILL_POINTS as CAPTURE_KILL_POINTS
from test_physical_copy import KILL_POINTS as PHYSICAL_KILL_POINTS
from test_standby import KILL_POINTS as STANDBY_KILL_POINTS
from test_zero_copy import KILLED_AT

from conftest import Backend, Figures, make_backend
from faultlib import Probe, Rig

SRC = Path(__file__).resolve().parent.parent / "src" / "etlguard"

# How to reach each point, and which end states are acceptable after recover:
#   pre  = the state before the operation, post = the operation's intended result.
SCENARIOS: dict[str, list[tuple[str, str]]] = {
    "snapshot.after_intent": [("snapshot", "pre")],
    "copy.after_create": [("snapshot", "pre"), ("run-fail", "pre"), ("restore-keep", "pre|post")],
    "copy.one_table_copied": [("snapshot", "pre"), ("run-fail", "pre"), ("restore-keep", "pre|post")],
    "copy.after_rows": [("snapshot", "pre"), ("run-fail", "pre"), ("restore-keep", "pre|post")],
    "snapshot.after_copy": [("snapshot", "pre")],
    "snapshot.before_finish": [("snapshot", "pre")],
    "snapshot.after_reuse": [("snapshot-again", "pre"), ("run-fail-again", "pre")],
    "restore.after_intent": [("restore", "pre|post"), ("run-fail", "pre")],
    "restore.after_staging": [("restore", "pre|post"), ("restore-keep", "pre|post"), ("run-fail", "pre")],
    "restore.before_swap": [
        ("restore", "pre|post"),
        ("restore-keep", "pre|post"),
        ("run-fail", "pre"),
        ("restore-from", "pre|post"),
    ],
    "restore.after_swap": [
        ("restore", "post"),
        ("restore-keep", "post"),
        ("run-fail", "pre"),
        ("restore-from", "post"),
    ],
    "restore.before_verify": [
        ("restore", "post"),
        ("restore-keep", "post"),
        ("run-fail", "pre"),
        ("restore-from", "post"),
    ],
    "restore.before_finish": [("restore", "post"), ("run-fail", "pre")],
    "run.after_snapshot": [("run-ok", "pre")],
    "run.during_etl": [("run-slow", "pre")],
    "run.after_etl": [("run-ok", "pre"), ("run-fail", "pre"), ("run-fail-again", "pre")],
    "run.before_commit": [("run-ok", "post")],
    "run.before_close": [("run-ok", "post"), ("run-fail", "pre")],
    "prune.after_intent": [("prune", "pre")],
    "prune.after_drop": [("prune", "pre")],
    "recover.after_step": [("recover", "pre")],
    "import.after_intent": [("restore-from", "pre")],
    "import.after_copy": [("restore-from", "pre")],
}
# points only MariaDB/MySQL reach: their copies run on several sessions at once
SESSION_COPY_POINTS = {"copy.one_table_copied"}
ZERO_COPY_POINTS = {point for point, _ in KILLED_AT if point.startswith("zerocopy.")}
CAPTURE_POINTS = {point for point, _ in CAPTURE_KILL_POINTS if point.startswith("capture.")}
CASES = [(point, op, ok) for point, cases in SCENARIOS.items() for op, ok in cases]


def test_every_fault_point_in_the_code_is_declared_and_covered() -> None:
    called = set()
    for path in SRC.rglob("*.py"):
        called |= set(re.findall(r'\bfault\("([a-z_.]+)"\)', path.read_text(encoding="utf-8")))
    assert called == set(POINTS)
    # the Iceberg adapter's own point is covered by test_iceberg.py's kill-at-every-point test,
    # the zero-copy points (a guarded dbt run) by test_zero_copy.py's, and the preflight point
    # (where a server restart must be ridden out) by test_server_faults.py's, and the changed-rows
    # capture points by test_capture.py's kill-at-every-point test (a run with capture on)
    # and the standby points by test_standby.py's (a run with capture and standby on), and the
    # physical copy's point by test_physical_copy.py's (a run with snapshot.physical on)
    elsewhere = {"iceberg.before_pointer_swap", "run.in_preflight", *ZERO_COPY_POINTS, *CAPTURE_POINTS}
    elsewhere |= set(STANDBY_KILL_POINTS) | set(PHYSICAL_KILL_POINTS)
    assert set(SCENARIOS) == set(POINTS) - elsewhere


def _prepare(rig: Rig, op: str) -> tuple[object, object]:
    """Bring the rig to the operation's starting point; return (pre, post) states."""
    pre = rig.state()
    if op in ("restore", "restore-keep"):
        assert rig.etlguard("snapshot").returncode == 0
        rig.run_etl_directly("ok")  # the 'damage' that the restore undoes
        post, pre = pre, rig.state()
        return pre, post
    if op == "restore-from":  # a pristine copy in another schema stands in for the other server
        rig.copy_to_source()
        post = pre
        rig.run_etl_directly("ok")
        return rig.state(), post
    if op in ("snapshot-again", "run-fail-again"):  # a snapshot to reuse: the tables do not change
        assert rig.etlguard("snapshot").returncode == 0
        return pre, pre
    if op == "prune":  # three snapshots that are each a copy (an unchanged table would be reused)
        for n in range(3):
            for name in ("orders", "order_lines"):
                rig.b.sql(f"UPDATE {rig.b.table(rig.schema, name)} SET note = 'night {n}' WHERE id = 1")
            assert rig.etlguard("snapshot").returncode == 0
        pre = rig.state()
        return pre, pre
    if op in ("run-ok", "run-slow"):
        return pre, None
    return pre, pre


def _operate(rig: Rig, op: str, fault: str) -> None:
    args = {
        "snapshot": ["snapshot"],
        "snapshot-again": ["snapshot"],
        "restore": ["restore", f"{rig.schema}.orders", f"{rig.schema}.order_lines", "--latest"],
        "restore-keep": [
            "restore",
            f"{rig.schema}.orders",
            f"{rig.schema}.order_lines",
            "--latest",
            "--keep-snapshot",
        ],
        "prune": ["prune"],
        "restore-from": [
            "restore",
            f"{rig.schema}.orders",
            f"{rig.schema}.order_lines",
            "--from",
            rig.b.url,
            "--schema-map",
            f"{rig.schema}={rig.source_schema}",
        ],
        "run-ok": ["run", "--", *rig.etl_command("ok")],
        "run-fail": ["run", "--", *rig.etl_command("fail")],
        "run-fail-again": ["run", "--", *rig.etl_command("fail")],
        "run-slow": ["run", "--", *rig.etl_command("slow")],
    }[op]
    proc = rig.etlguard(*args, fault=fault)
    assert proc.returncode == -9, f"fault {fault} was not reached: rc={proc.returncode} {proc.stderr}"


def _etl_result(backend: Backend, pre: object) -> object:
    """The state the ETL script produces from `pre`, computed by running it on a fresh copy."""
    folder = backend.tmp_path / "twin"
    folder.mkdir(exist_ok=True)
    twin = make_backend(backend.kind, folder)
    try:
        rig = Rig(twin)
        assert rig.state() == pre
        rig.run_etl_directly("ok")
        return rig.state()
    finally:
        twin.cleanup()


def kill_and_recover(
    backend: Backend, figures: Figures, point: str, op: str, acceptable: str, beside: bool = False
) -> None:
    """Kill etlguard at `point` during `op`, recover, and check the invariant (also used for
    PostgreSQL by tests/test_postgres.py). `beside`: with `snapshot.beside_live` (DuckDB)."""
    rig = Rig(backend)
    if beside:
        rig.config = backend.write_config(
            rig.config,
            protect=[f"{rig.schema}.*"],
            retention={"days": None, "keep_last": 1},
            snapshot={"beside_live": True},
        )
    probe = Probe(rig) if backend.kind == "mariadb" else None
    before_rows = rig.rows()
    if op == "recover":
        pre = rig.state()
        _operate(rig, "run-slow", "run.during_etl:kill")
        killed = rig.etlguard("recover", fault=f"{point}:kill")
        assert killed.returncode == -9
        post = None
    else:
        pre, post = _prepare(rig, op)
        if probe:
            with probe:
                _operate(rig, op, f"{point}:kill")
        else:
            _operate(rig, op, f"{point}:kill")
    figures.add(f"faults_injected.{backend.kind}")
    figures.member("fault_points_covered", point)
    blocked = rig.etlguard("snapshot")
    if blocked.returncode != 0:  # every other command refuses while the journal is open
        assert blocked.returncode == 4 and "etlguard recover" in blocked.stderr, blocked.stderr
    if probe:
        assert probe.missing == 0 and probe.other == []
        figures.add("probe_reads", probe.reads)
        figures.add("missing_table_errors", probe.missing)
        probe = Probe(rig)
        with probe:
            recovered = rig.etlguard("recover")
        figures.add("probe_reads", probe.reads)
        figures.add("missing_table_errors", probe.missing)
        assert probe.missing == 0 and probe.other == []
    else:
        recovered = rig.etlguard("recover")
    assert recovered.returncode == 0, recovered.stderr
    state = rig.state()
    if op == "run-ok" and acceptable == "post":
        post = _etl_result(backend, pre)
    allowed = {"pre": [pre], "post": [post], "pre|post": [pre, post]}[acceptable]
    assert state in allowed, f"{point}/{op}: tables are in neither acceptable state"
    rig.assert_clean()
    if op in ("restore", "restore-keep"):
        _assert_consumed_honestly(rig, op, state == post, renamed=backend.kind == "mariadb" or beside)
    if state == pre and op not in ("restore", "restore-keep", "restore-from"):
        figures.add("rows_lost", len(before_rows - rig.rows()))
    figures.add(f"invariant_held.{backend.kind}")
    if op == "prune":
        again = rig.etlguard("prune")
        assert again.returncode == 0 and "0 deleted" in again.stdout, again.stdout


@pytest.mark.parametrize(("point", "op", "acceptable"), CASES, ids=[f"{p}-{o}" for p, o, _ in CASES])
def test_kill_at_fault_point_then_recover(
    backend: Backend, figures: Figures, point: str, op: str, acceptable: str
) -> None:
    if point in SESSION_COPY_POINTS and backend.kind != "mariadb":
        pytest.skip(f"{backend.kind} copies in one transaction on one session: no such point")
    kill_and_recover(backend, figures, point, op, acceptable)


# DuckDB with `snapshot.beside_live`: snapshots made beside the live tables, rolled back and
# restored by renaming them into place (consumed); the points where that path differs.
BESIDE = [
    ("copy.after_rows", "snapshot", "pre"),
    ("snapshot.before_finish", "snapshot", "pre"),
    ("restore.before_swap", "restore", "pre|post"),
    ("restore.after_swap", "restore", "post"),
    ("restore.after_staging", "restore-keep", "pre|post"),
    ("restore.after_swap", "run-fail", "pre"),
    ("restore.before_verify", "run-fail", "pre"),
    ("run.after_etl", "run-fail", "pre"),
]


@pytest.mark.parametrize(("point", "op", "acceptable"), BESIDE, ids=[f"{p}-{o}" for p, o, _ in BESIDE])
def test_kill_with_snapshots_beside_the_tables_then_recover(
    tmp_path: Path, figures: Figures, point: str, op: str, acceptable: str
) -> None:
    backend = make_backend("duckdb", tmp_path)
    try:
        kill_and_recover(backend, figures, point, op, acceptable, beside=True)
    finally:
        backend.cleanup()


def _assert_consumed_honestly(rig: Rig, op: str, restored: bool, renamed: bool) -> None:
    """A restore that reached the swap consumed its snapshots (status `restored`) unless
    --keep-snapshot copied them aside first, in which case they are still verified. MySQL, and
    DuckDB with snapshots beside their tables, rename the snapshot itself into place; elsewhere
    a restore copies and keeps it."""
    t = rig.b.table(rig.b.catalog_schema, "snapshots")
    statuses = sorted(s for (s,) in rig.b.sql(f"SELECT status FROM {t} WHERE kind = 'snapshot'"))
    if not restored or op == "restore-keep" or not renamed:
        assert statuses == ["verified", "verified"], statuses
    else:
        assert statuses == ["restored", "restored"], statuses

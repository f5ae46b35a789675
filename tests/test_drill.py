"""`etlguard drill`: the Testing Plan against the user's own setup, leaving data as a normal
night would."""

from __future__ import annotations

import json

from conftest import Backend, make_backend
from faultlib import Rig


def _etl_result(backend: Backend) -> object:
    folder = backend.tmp_path / "twin"
    folder.mkdir(exist_ok=True)
    twin = make_backend(backend.kind, folder)
    try:
        rig = Rig(twin)
        rig.run_etl_directly("ok")
        return rig.state()
    finally:
        twin.cleanup()


def test_drill_without_a_command_changes_nothing(backend: Backend) -> None:
    rig = Rig(backend)
    pre = rig.state()
    proc = rig.etlguard("drill", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and [c["name"] for c in report["checks"]] == [
        "recovery from a snapshot (Testing Plan test 3)"
    ]
    assert rig.state() == pre
    rig.assert_clean()


def test_drill_with_the_etl_rolls_back_then_forward(backend: Backend) -> None:
    rig = Rig(backend)
    expected = _etl_result(backend)
    proc = rig.etlguard("drill", "--", *rig.etl_command("ok"))
    assert proc.returncode == 0, proc.stderr
    assert "verified at their pre-run state" in proc.stderr
    assert rig.state() == expected  # as a normal night would leave it
    runs = json.loads(rig.etlguard("runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["drill"]
    assert runs[0]["details"]["rollback_verified"]
    rig.assert_clean()


def test_drill_with_a_failing_etl_reports_failure_and_rolls_back(backend: Backend) -> None:
    rig = Rig(backend)
    pre = rig.state()
    proc = rig.etlguard("drill", "--", *rig.etl_command("fail"))
    assert proc.returncode == 1
    assert "FAIL a failed run is rolled back" in proc.stderr and "etl_failed" in proc.stderr
    assert rig.state() == pre

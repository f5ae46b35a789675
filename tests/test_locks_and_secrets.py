"""RELIABILITY scenarios 10 (stale lock after a crash), the lock's own failure modes, and 16
(a password given in the URL never shows up anywhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from etlguard.errors import EXIT_BUSY, EXIT_OK, EXIT_UNFINISHED

from conftest import Backend, Figures
from faultlib import Rig


def test_stale_lock_after_a_crash_needs_no_manual_cleanup(backend: Backend) -> None:
    rig = Rig(backend)
    pre = rig.state()
    killed = rig.etlguard("run", "--", *rig.etl_command("slow"), fault="run.during_etl:kill")
    assert killed.returncode == -9
    # the lock died with the process: read commands work, and writers are told what to do
    assert rig.etlguard("snapshots").returncode == 0
    refused = rig.etlguard("run", "--", *rig.etl_command("ok"))
    assert refused.returncode == EXIT_UNFINISHED and "etlguard recover" in refused.stderr
    assert rig.state() == pre
    unattended = rig.etlguard("run", "--auto-recover", "--", *rig.etl_command("ok"))
    assert unattended.returncode == EXIT_OK, unattended.stderr
    assert "recovered first" in unattended.stderr
    assert rig.state() != pre and rig.state()[0][0] == pre[0][0] + 1  # rolled back once, then applied once
    rig.assert_clean()


def test_a_paused_holder_keeps_its_lock(backend: Backend) -> None:
    rig = Rig(backend)
    env = {**os.environ, "ETLGUARD_FAULT": "run.after_snapshot:pause"}
    first = subprocess.Popen(
        [sys.executable, "-m", "etlguard", "run", "-c", str(rig.config), "--", *rig.etl_command("ok")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{first.pid}/stat").read_text().split()[2] != "T":
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
        second = rig.etlguard("run", "--", *rig.etl_command("ok"))
        assert second.returncode == EXIT_BUSY, second.stderr
        assert "locked by another etlguard" in second.stderr
        recover = rig.etlguard("recover")  # not even recover may steal it
        assert recover.returncode == EXIT_BUSY
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == EXIT_OK, err
    rig.assert_clean()


@pytest.mark.mariadb
def test_password_in_the_url_appears_nowhere(maria: Backend, tmp_path: Path, figures: Figures) -> None:
    password = f"Pw-{uuid.uuid4().hex[:12]}"
    user = f"eg_{maria.tag}"
    maria.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        maria.sql(f"GRANT ALL ON `t{maria.tag}\\_%`.* TO '{user}'@'%'")
        rig = Rig(maria)
        settings = yaml.safe_load(rig.config.read_text())
        settings["target"] = f"mariadb+pymysql://{user}:{password}@127.0.0.1:{maria.port}"
        rig.config.write_text(yaml.safe_dump(settings))
        report = tmp_path / "report.json"
        outputs = []
        for args in (
            ["snapshot", "--json"],
            ["run", "--json-report", str(report), "--", *rig.etl_command("fail")],
            ["run", "--", *rig.etl_command("ok")],
            ["restore", f"{rig.schema}.orders", "--latest", "--keep-snapshot"],  # diff below needs it
            ["verify"],
            ["snapshots", "--json"],
            ["runs", "--json"],
            ["show", "1", "--json"],
            ["diff", f"{rig.schema}.orders"],
        ):
            proc = rig.etlguard(*args)
            outputs += [proc.stdout, proc.stderr]
            assert proc.returncode in (0, 10), (args, proc.stderr)
        # while a run is in flight, its visible arguments carry no password either
        env = {**os.environ, "ETLGUARD_FAULT": "run.after_snapshot:pause"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "etlguard", "run", "-c", str(rig.config), "--", "true"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while Path(f"/proc/{proc.pid}/stat").read_text().split()[2] != "T":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        os.kill(proc.pid, signal.SIGCONT)
        outputs += list(proc.communicate(timeout=60))
        wrong = dict(settings, target=f"mariadb+pymysql://{user}:{password}x@127.0.0.1:{maria.port}")
        rig.config.write_text(yaml.safe_dump(wrong))
        denied = rig.etlguard("snapshot")
        assert denied.returncode == 2 and "refused the login" in denied.stderr
        outputs += [denied.stdout, denied.stderr]
        catalog = json.dumps(
            [
                maria.sql(f"SELECT * FROM {maria.table(maria.catalog_schema, t)}")
                for t in ("snapshots", "runs", "journal", "meta")
            ],
            default=str,
        )
        haystacks = {
            "output": "\n".join(outputs),
            "report": report.read_text(),
            "catalog": catalog,
            "cmdline": cmdline,
            "ps": ps,
        }
        leaks = [name for name, text in haystacks.items() if password in text]
        figures.add("secret_places_checked", len(haystacks))
        figures.add("secrets_found", len(leaks))
        assert leaks == [], f"the password leaked into {leaks}"
        assert "***" in haystacks["report"]  # the target is shown, redacted
    finally:
        maria.sql(f"DROP USER IF EXISTS '{user}'@'%'")


def test_wrong_password_message_has_no_password(maria: Backend) -> None:
    url = f"mariadb+pymysql://root:NotThePassword42@127.0.0.1:{maria.port}"
    guard = maria.guard()
    from etlguard import Config, Guard, TargetError

    bad = Guard(Config.from_dict({**maria.settings(), "target": url}))
    with pytest.raises(TargetError) as info:
        bad.snapshot(["x.y"])
    assert "NotThePassword42" not in str(info.value)
    assert guard is not None

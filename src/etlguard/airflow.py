"""`EtlguardOperator`: a guarded ETL as one Airflow task (`pip install 'etlguard[airflow]'`).

    from etlguard.airflow import EtlguardOperator

    EtlguardOperator(task_id="dbt_run", config="/opt/etl/etlguard.yml",
                     command=["dbt", "run", "--target", "prod"])

A command runs as `etlguard run --json-report ... -- COMMAND` in a child process, not in the
worker's own process: etlguard stops the ETL's process group and rolls back on SIGTERM, and it
must stay alive to finish the rollback when Airflow kills the task. The child therefore runs in
its own session (Airflow's kill of the task's process group does not reach it), and `on_kill`
sends it SIGTERM and waits for the rollback to end. Its signal handlers never fight Airflow's.
A Python callable runs in-process under `Guard.protect()`: Airflow's SIGTERM raises inside the
callable, and protect() rolls back before the exception leaves the task.

Outcomes: a committed run is a successful task whose return value (XCom `return_value`) is the run
summary; every other outcome raises, after pushing the same summary under the XCom key `etlguard`.
Exit codes a retry cannot fix (2 bad configuration, 4 recover first, 11 an audit failed, 20 and
21 a person must act) raise AirflowFailException, so the task fails without its retries; the
others (1, 3 target busy, 5 unreachable, 10 the ETL failed and was rolled back, 12 the snapshot
failed, 130 interrupted) raise AirflowException, and the task's `retries` apply.

Airflow is imported here only: `import etlguard` never needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:  # Airflow 3 moved the authoring API to airflow.sdk
    from airflow.sdk import BaseOperator
except ImportError:  # Airflow 2.x
    from airflow.models import BaseOperator
from airflow.exceptions import AirflowException, AirflowFailException

from .errors import (
    EXIT_AUDIT_FAILED,
    EXIT_BUSY,
    EXIT_ETL_FAILED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCK_LOST,
    EXIT_OK,
    EXIT_ROLLBACK_FAILED,
    EXIT_SNAPSHOT_FAILED,
    EXIT_UNFINISHED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EtlguardError,
)
from .guard import Guard

XCOM_KEY = "etlguard"

# exit code -> (outcome, may a retry help?)
OUTCOMES: dict[int, tuple[str, bool]] = {
    EXIT_OK: ("committed", False),
    EXIT_FAILED: ("failed", True),
    EXIT_USAGE: ("not_started", False),
    EXIT_BUSY: ("not_started", True),
    EXIT_UNFINISHED: ("not_started", False),
    EXIT_UNREACHABLE: ("not_started", True),
    EXIT_ETL_FAILED: ("rolled_back", True),
    EXIT_AUDIT_FAILED: ("rolled_back", False),
    EXIT_SNAPSHOT_FAILED: ("not_started", True),
    EXIT_ROLLBACK_FAILED: ("needs_attention", False),
    EXIT_LOCK_LOST: ("needs_attention", False),
    EXIT_INTERRUPTED: ("not_started", True),
}


def summary(report: Mapping[str, Any] | None, exit_code: int, message: str = "") -> dict[str, Any]:
    """The XCom value: what a downstream task or a person needs from the run's JSON report."""
    report = report or {}
    outcome, _ = OUTCOMES.get(exit_code, ("failed", True))
    return {
        "run_id": report.get("run_id"),
        "outcome": outcome,
        "status": report.get("status"),
        "exit_code": exit_code,
        "message": report.get("message") or message,
        "target": report.get("target"),
        "tables": list(report.get("protected", [])),
        "snapshot_ids": list(report.get("snapshot_ids", [])),
        "rolled_back": list(report.get("rolled_back", [])),
        "recovery_command": report.get("recovery_command"),
        "audits": [{"name": a.get("name"), "ok": a.get("ok")} for a in report.get("audits", [])],
        "timings": {
            key: report.get(f"{key}_seconds")
            for key in ("snapshot", "audit", "rollback", "total")
            if report.get(f"{key}_seconds") is not None
        },
    }


def raise_for(result: Mapping[str, Any]) -> None:
    """Raise the Airflow exception for a run summary that did not commit; nothing when it did."""
    code = int(result["exit_code"])
    if code == EXIT_OK:
        return
    _, retryable = OUTCOMES.get(code, ("failed", True))
    text = f"etlguard exit {code} ({result['outcome']}): {result['message']}"
    if result.get("recovery_command"):
        text += f"; run `{result['recovery_command']}`"
    raise (AirflowException if retryable else AirflowFailException)(text)


class EtlguardOperator(BaseOperator):
    """Run `command` (argv list or shell string) or `python_callable` under etlguard.

    config: the etlguard.yml path (default: $ETLGUARD_CONFIG, then ./etlguard.yml in `cwd`).
    timeout: stop the ETL's process group after this many seconds, then roll back.
    pass_env: variables the target URL reads that the ETL still needs (`--pass-env`).
    auto_recover: first settle what an interrupted earlier run left (`--auto-recover`).
    kill_grace_seconds: how long `on_kill` waits for etlguard to roll back before giving up.
    """

    template_fields: Sequence[str] = ("command", "config", "env", "cwd")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        command: Sequence[str] | str | None = None,
        python_callable: Callable[..., Any] | None = None,
        op_args: Sequence[Any] = (),
        op_kwargs: Mapping[str, Any] | None = None,
        config: str | None = None,
        timeout: float | None = None,
        pass_env: Sequence[str] = (),
        auto_recover: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        kill_grace_seconds: float = 900,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (command is None) == (python_callable is None):
            raise ValueError("EtlguardOperator needs exactly one of command= or python_callable=")
        self.command = command
        self.python_callable = python_callable
        self.op_args = list(op_args)
        self.op_kwargs = dict(op_kwargs or {})
        self.config = config
        self.run_timeout = timeout
        self.pass_env = list(pass_env)
        self.auto_recover = auto_recover
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.kill_grace_seconds = kill_grace_seconds
        self._process: subprocess.Popen[str] | None = None

    # -- Airflow's entry points ---------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        if self.python_callable is not None:
            result = self._run_callable()
        else:
            result = self._run_command()
        context["ti"].xcom_push(key=XCOM_KEY, value=result)
        raise_for(result)
        return result

    def on_kill(self) -> None:
        """Airflow stops the task: etlguard stops the ETL and rolls back; wait until it has."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self.log.warning("task killed: asking etlguard to stop the ETL and roll back")
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.kill_grace_seconds)
        except subprocess.TimeoutExpired:
            self.log.error(
                "etlguard did not finish its rollback within %ss; it keeps running (pid %s); "
                "check with `etlguard runs` and `etlguard recover`",
                self.kill_grace_seconds,
                process.pid,
            )

    # -- a command, through the CLI -------------------------------------------------------------
    def argv(self, report: Path) -> list[str]:
        etlguard = shutil.which("etlguard", path=str(Path(sys.executable).parent))
        argv = [etlguard] if etlguard else [sys.executable, "-m", "etlguard"]
        argv += ["run", "--json-report", str(report)]
        if self.config:
            argv += ["--config", str(self.config)]
        if self.run_timeout is not None:
            argv += ["--timeout", str(self.run_timeout)]
        if self.auto_recover:
            argv.append("--auto-recover")
        for name in self.pass_env:
            argv += ["--pass-env", name]
        command = self.command
        body = ["sh", "-c", command] if isinstance(command, str) else list(command or [])
        return [*argv, "--", *body]

    def _run_command(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="etlguard-airflow-") as tmp:
            report = Path(tmp) / "run.json"
            env = {**os.environ, **(self.env or {})}
            self.log.info("running %s", " ".join(self.argv(report)))
            self._process = subprocess.Popen(
                self.argv(report),
                cwd=self.cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # Airflow's kill of the task's group must not reach it
            )
            assert self._process.stdout is not None
            last = ""
            for line in self._process.stdout:
                line = line.rstrip("\n")
                if line:
                    last = line
                    self.log.info("%s", line)
            code = self._process.wait()
            loaded = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
        return summary(loaded, code, last)

    # -- a Python callable, in this process -----------------------------------------------------
    def _run_callable(self) -> dict[str, Any]:
        assert self.python_callable is not None
        run = None
        try:
            guard = Guard.from_config(self.config)
            with guard.protect(echo=lambda m: self.log.info("etlguard: %s", m)) as run:
                self.python_callable(*self.op_args, **self.op_kwargs)
        except EtlguardError as exc:  # etlguard's own: config, lock, snapshot, audit, rollback
            carried = getattr(exc, "result", None)
            return summary(carried.as_dict() if carried is not None else None, exc.exit_code, str(exc))
        except (
            Exception,
            SystemExit,
        ) as exc:  # the callable raised: protect() rolled back, then re-raised it
            if run is None:
                raise
            return summary(run.as_dict(), run.exit_code or EXIT_ETL_FAILED, f"{type(exc).__name__}: {exc}")
        return summary(run.as_dict(), run.exit_code)


__all__ = ["OUTCOMES", "XCOM_KEY", "EtlguardOperator", "raise_for", "summary"]

"""Running the ETL command as a child process: stream its output, forward SIGINT/SIGTERM,
enforce a timeout, and make sure the child dies with us (a child that outlives a killed
etlguard would keep writing while recovery rolls its tables back)."""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .errors import ConfigError
from .faults import fault

_PR_SET_PDEATHSIG = 1
_KILL_GRACE_SECONDS = 30.0


@dataclass
class EtlOutcome:
    exit_code: int
    seconds: float
    timed_out: bool = False
    interrupted_by: str | None = None
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.interrupted_by is None

    def describe(self) -> str:
        if self.timed_out:
            return f"the ETL timed out after {self.seconds:.0f} s and was stopped"
        if self.interrupted_by:
            return f"the ETL was stopped by {self.interrupted_by}"
        if self.exit_code < 0:
            return f"the ETL was killed by signal {signal.Signals(-self.exit_code).name}"
        return f"the ETL exited with status {self.exit_code}"


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL us if etlguard dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def run_command(
    command: Sequence[str],
    timeout: float | None = None,
    tail_lines: int = 40,
    on_start: Callable[[int], None] | None = None,
) -> EtlOutcome:
    if not command:
        raise ConfigError("no command to run; write it after --, as in: etlguard run -- dbt run")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # we forward signals ourselves, exactly once
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    except OSError as exc:
        return EtlOutcome(127, 0.0, tail=[f"cannot start {command[0]}: {exc.strerror}"])
    if on_start is not None:  # e.g. the write watch, to tell the ETL's sessions from others'
        on_start(proc.pid)
    outcome = EtlOutcome(0, 0.0)
    previous = _forward_signals(proc, outcome)
    timer = _start_timer(proc, outcome, timeout) if timeout else None
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    fault("run.during_etl")
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outcome.exit_code = proc.returncode
    outcome.seconds = time.monotonic() - started
    outcome.tail = list(tail)
    return outcome


def _forward_signals(proc: subprocess.Popen[bytes], outcome: EtlOutcome) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def forward(signum: int, _frame: FrameType | None) -> None:
        outcome.interrupted_by = signal.Signals(signum).name
        if proc.poll() is None:
            os.killpg(proc.pid, signum)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, forward)
    return previous


def _start_timer(proc: subprocess.Popen[bytes], outcome: EtlOutcome, timeout: float) -> threading.Timer:
    def expire() -> None:
        if proc.poll() is not None:
            return
        outcome.timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _KILL_GRACE_SECONDS
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer

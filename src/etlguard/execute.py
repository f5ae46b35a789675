"""Running the ETL command as a child process, supervised as a whole process tree.

The ETL runs in its own session (so its own process group); etlguard is its child subreaper,
so grandchildren that lose their parent come back to us rather than to init. A small watchdog
(`_watchdog.py`), started before the ETL, SIGKILLs the group if etlguard dies by any means,
`kill -9` included: PR_SET_PDEATHSIG alone reaches only the direct child, and a wrapper
(`sh -c`, `make`, a Python script) leaves its grandchildren writing. On timeout, Ctrl-C,
SIGTERM or SIGHUP the whole group is stopped (then the caller rolls back and alerts). The
child gets a scrubbed environment: etlguard's own URL and password variables are not its own.
"""

from __future__ import annotations

import collections
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import ConfigError
from .faults import fault

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_KILL_GRACE_SECONDS = 30.0
_SWEEP_DELAY_SECONDS = 1.0  # what the ETL leaves running in the background gets this long
_WATCHDOG = Path(__file__).with_name("_watchdog.py")
# Variables the ETL never needs from etlguard: the target URL (it holds the password).
_SCRUBBED = ("ETLGUARD_URL",)

try:
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - not glibc
    _LIBC = None


@dataclass
class EtlOutcome:
    exit_code: int
    seconds: float
    timed_out: bool = False
    interrupted_by: str | None = None
    tail: list[str] = field(default_factory=list)
    stragglers: int = 0  # processes of the ETL's tree still running after it exited, then killed

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


@dataclass(frozen=True)
class EtlProcess:
    """Who the ETL is, as recorded in the journal so that `recover` can tell whether it lives."""

    pgid: int
    host: str
    boot_id: str
    start_ticks: int | None  # the group leader's start time (/proc/PID/stat field 22)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pgid": self.pgid,
            "host": self.host,
            "boot_id": self.boot_id,
            "start_ticks": self.start_ticks,
        }


def check_command(command: Sequence[str]) -> None:
    """Refuse, before anything is snapshotted, a command that cannot be started."""
    if not command:
        raise ConfigError("no command to run; write it after --, as in: etlguard run -- dbt run")
    program = command[0]
    found = (
        shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
    )
    if found is None:
        raise ConfigError(
            f"cannot run {program!r}: no such executable file on PATH; check the command after --"
        )


def etl_environment(hidden: Sequence[str] = (), passed: Sequence[str] = ()) -> dict[str, str]:
    """The environment without etlguard's own URL and the variables its target URL reads
    (`${DB_PASSWORD}`), unless the user passes them on with --pass-env."""
    drop = (set(_SCRUBBED) | set(hidden)) - set(passed)
    return {k: v for k, v in os.environ.items() if k not in drop}


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot: a pid plus this names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def group_alive(etl: Mapping[str, Any], wait: float = 0.0) -> bool | None:
    """Is the recorded ETL group still running? None when it ran on another machine (or boot).
    `wait`: give a group that is being killed (by the watchdog) this long to go."""
    if etl.get("host") != socket.gethostname() or etl.get("boot_id") != boot_id():
        return None
    pgid = int(etl["pgid"])
    leader = start_ticks(pgid)  # a live leader with another start time is a reused id
    if leader is not None and etl.get("start_ticks") is not None and leader != etl["start_ticks"]:
        return False
    deadline = time.monotonic() + wait
    while _group_members(pgid):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
    return False


class Supervisor:
    """Start the ETL under a watchdog, stream it, stop its whole group, reap what it left."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.outcome = EtlOutcome(0, 0.0)
        self.started_ticks: int | None = None
        self._done = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_after_exit, daemon=True)

    def start(self) -> EtlProcess:
        _become_subreaper()
        self.watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_WATCHDOG)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the terminal's group: a hang-up must not stop it
        )
        assert self.watchdog.stdin is not None
        # reaped beside us once released (it then only exits), by a thread started now, so that
        # a rollback neither waits for its exit nor for a new thread to be scheduled
        threading.Thread(target=self.watchdog.wait, name="etlguard-watchdog-reaper", daemon=True).start()
        report_fd = self.watchdog.stdin.fileno()
        parent = os.getpid()

        def in_child() -> None:  # after fork and setsid, before exec: no locks, no imports
            if _LIBC is not None:
                _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # etlguard already died: do not start the ETL at all
                os._exit(137)
            os.write(report_fd, b"%d\n" % os.getpid())  # the watchdog knows us before exec

        try:
            self.proc = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=in_child,
                env=self.env,
            )
        except OSError as exc:
            self.release()
            raise ConfigError(f"cannot start {self.command[0]}: {exc.strerror}") from None
        self.started_ticks = start_ticks(self.proc.pid)
        return EtlProcess(self.proc.pid, socket.gethostname(), boot_id(), self.started_ticks)

    def stop(self, sig: int = signal.SIGTERM, grace: float = _KILL_GRACE_SECONDS) -> None:
        """Signal the whole group; SIGKILL it if it has not exited after `grace` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc.pid, sig)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)

    def stream(self, tail_lines: int = 40) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self._sweeper.start()
        tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        echo = True
        for raw in iter(self.proc.stdout.readline, b""):
            if echo:
                try:
                    sys.stdout.buffer.write(raw)
                    sys.stdout.flush()
                except OSError:  # the terminal hung up: keep reading, so the ETL never blocks
                    echo = False
            tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
        self.proc.wait()
        self.outcome.tail = list(tail)

    def _sweep_after_exit(self) -> None:
        """When the ETL's first process exits, what it left running in the background (and
        which may hold its output open) gets a moment, then is killed: an ETL that has
        finished must not keep writing while it is audited and committed or rolled back."""
        assert self.proc is not None
        self.proc.wait()
        if self._done.wait(_SWEEP_DELAY_SECONDS):
            return  # finish() does it: only while this ETL is supervised
        self._sweep()

    def _sweep(self) -> None:
        assert self.proc is not None
        members, orphans = _scan(self.proc.pid, self.started_ticks)  # one pass in the usual case
        if members:  # killed first: what they leave behind is reparented to us, then found
            self.outcome.stragglers += _kill_group_remains(self.proc.pid)
            orphans = _scan(self.proc.pid, self.started_ticks)[1]
        self.outcome.stragglers += _kill_orphans(orphans)

    def finish(self) -> None:
        """Make sure nothing of the ETL's tree still runs: kill its group and any orphan that
        left the group but came back to us as subreaper; then let the watchdog go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._done.set()
        if self._sweeper.is_alive():
            self._sweeper.join()
        self._sweep()
        self.outcome.exit_code = self.proc.returncode
        self.release()

    def release(self) -> None:
        if self.watchdog is None or self.watchdog.stdin is None:
            return
        try:
            self.watchdog.stdin.write(b"release\n")
            self.watchdog.stdin.close()
        except OSError:
            pass


def run_command(
    command: Sequence[str],
    timeout: float | None = None,
    tail_lines: int = 40,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[EtlProcess], None] | None = None,
) -> EtlOutcome:
    check_command(command)
    started = time.monotonic()
    sup = Supervisor(command, env)
    etl = sup.start()
    if on_start is not None:
        on_start(etl)
    previous = _stop_on_signals(sup)
    timer = None
    try:  # whatever happens, the ETL's group is stopped and our signal handlers are put back
        timer = _start_timer(sup, timeout) if timeout else None
        fault("run.during_etl")
        sup.stream(tail_lines)
    finally:
        if timer:
            timer.cancel()
        sup.finish()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sup.outcome.seconds = time.monotonic() - started
    return sup.outcome


def _stop_on_signals(sup: Supervisor) -> dict[int, Any]:
    """Ctrl-C, SIGTERM and SIGHUP stop the ETL's whole group (a second one: SIGKILL at once);
    etlguard itself carries on to roll back and alert."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, _frame: FrameType | None) -> None:
        first = sup.outcome.interrupted_by is None and not sup.outcome.timed_out
        if first:
            sup.outcome.interrupted_by = signal.Signals(signum).name
        # a dropped terminal (SIGHUP) means nobody is there to see a graceful stop
        sig = signal.SIGTERM if signum == signal.SIGHUP else signum
        threading.Thread(
            target=sup.stop, args=(sig if first else signal.SIGKILL, _KILL_GRACE_SECONDS), daemon=True
        ).start()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handle)
    return previous


def _start_timer(sup: Supervisor, timeout: float) -> threading.Timer:
    def expire() -> None:
        if sup.proc is None or sup.proc.poll() is not None:
            return
        sup.outcome.timed_out = True
        sup.stop(signal.SIGTERM, _KILL_GRACE_SECONDS)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer


_subreaper = False  # every orphan of the ETL's tree comes back to this process (see _scan)


def _become_subreaper() -> None:
    global _subreaper
    if _LIBC is not None and _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0:
        _subreaper = True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group_remains(pgid: int) -> int:
    """SIGKILL what is left of the group after its leader exited, and reap those that were
    reparented to us. Returns how many processes were still there."""
    members = _group_members(pgid)  # one scan of /proc when nothing is left (the usual case)
    found = len(members)
    deadline = time.monotonic() + 10
    while members and time.monotonic() < deadline:
        _signal_group(pgid, signal.SIGKILL)
        _reap(pgid)
        time.sleep(0.02)
        members = _group_members(pgid)
    _reap(pgid)
    return found


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in the group, read from /proc."""
    return _scan(pgid, None, orphans=False)[0]


def _scan(pgid: int, since: int | None, orphans: bool = True) -> tuple[list[int], list[int]]:
    """One pass over /proc: the live (not zombie) processes of the group `pgid`, and (with
    `orphans`) the processes of the ETL's session (`pgid` is also its session id) that left
    its group (setpgid) and, their parent gone, were adopted by us as subreaper, started at
    or after `since`. Never any other child of ours: a host process (a Glue job) may have
    children of its own. A process that calls setsid leaves the session too, and is out of
    reach here."""
    members, adopted, me = [], [], os.getpid()
    names = _descendants(me) if _subreaper else None
    if names is None:
        try:
            names = os.listdir("/proc")
        except OSError:
            names = []
    for name in names:  # raw reads of the bytes: a rollback waits for this pass
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb", buffering=0) as stat:
                fields = stat.read(4096).rpartition(b")")[2].split()
        except OSError:
            continue
        state, ppid, group, session = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
        if state == b"Z":
            continue
        if group == pgid:
            members.append(int(name))
        elif orphans and ppid == me and session == pgid and (since is None or int(fields[19]) >= since):
            adopted.append(int(name))
    return members, adopted


def _descendants(root: int) -> list[str] | None:
    """The pids of every descendant of `root`, from the kernel's children lists, or None where
    it keeps none (CONFIG_PROC_CHILDREN). As subreaper this process is the ancestor of every
    process of the ETL's session, orphans included, so `_scan` reads just these, not all of
    /proc (a rollback waits for the scan). A child forked while it is read may be missed; the
    sweep reads again after it kills."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return None
    found: list[str] = []
    todo = [str(root)]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children", "rb", buffering=0) as kids:
                    children = [k.decode() for k in kids.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _kill_orphans(pids: Sequence[int]) -> int:
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            killed += 1
        except (ProcessLookupError, ChildProcessError):
            pass
    return killed


def _reap(pgid: int) -> None:
    while True:
        try:
            info = os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return
        if info is None:
            return

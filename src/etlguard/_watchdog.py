"""The ETL's watchdog: a tiny process that outlives a `kill -9` of etlguard.

etlguard starts it before the ETL, holding the only write end of the pipe on its stdin. The
ETL's first process writes its process-group id into that pipe before it execs the command.
When the pipe closes without the word `release` (etlguard died, however), the watchdog SIGKILLs
the whole group, so no grandchild of a wrapper (`sh -c`, `make`, a Python script) keeps
writing while `etlguard recover` rolls its tables back. It imports nothing from etlguard and
runs with `python -I -S`, so it starts in a few milliseconds. It ignores the terminal's
signals: a dropped ssh session is etlguard's to handle, not the watchdog's.
"""

import os
import signal
import sys
import time


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    """SIGKILL the group until it is empty (a member may be forking as the first signal lands)."""
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def watch() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    groups: list[int] = []
    released = False
    for line in sys.stdin:
        word = line.strip()
        if word == "release":
            released = True
        elif word.isdigit():
            groups.append(int(word))
    if not released:
        for pgid in groups:
            _kill_group(pgid)


if __name__ == "__main__":
    watch()

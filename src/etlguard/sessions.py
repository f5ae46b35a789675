"""Before a rollback, the ETL's statements must be finished.

A killed client's statement keeps running on the server and keeps its locks: the rollback would
wait on it, fail, and the runaway UPDATE would commit afterwards. So before every rollback we
look for other sessions working on the protected tables, give them a grace period, then stop
their statement (KILL QUERY, pg_cancel_backend) and, if that is not enough, end the session
(KILL, pg_terminate_backend). Every kill is reported: which session, what it ran, and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence

from .adapters.base import Adapter, Session
from .tables import TableRef

log = logging.getLogger(__name__)
_STEP_SECONDS = 5.0  # how long a cancelled statement gets to go before its session is ended


def settle_sessions(
    db: Adapter,
    tables: Sequence[TableRef],
    grace: float,
    echo: Callable[[str], None] | None = None,
    ours: Collection[int] = (),
) -> list[str]:
    """Wait up to `grace` seconds for other sessions on `tables` to finish, then stop them.
    Returns one line per session that had to be stopped. `ours`: etlguard's own other
    sessions (a run's side session names the tables in its catalog lookups), never waited
    for nor stopped."""
    found = _sessions_on(db, tables, ours)
    if not found:
        return []
    echo = echo or log.info
    echo(f"waiting up to {grace:g} s for {len(found)} database sessions still on the protected tables")
    found = _still_working(db, tables, grace, ours)
    notes = []
    for s in found:
        db.cancel_session(s.id)
    still = {s.id for s in _still_working(db, tables, _STEP_SECONDS, ours)}
    for s in found:
        if s.id in still:
            db.terminate_session(s.id)
            notes.append(f"ended {s}: still working on a protected table after its statement was cancelled")
        else:
            notes.append(f"cancelled the statement of {s}: it was still working on a protected table")
    if still:
        _still_working(db, tables, _STEP_SECONDS, ours)
    for note in notes:
        echo(note)
    return notes


def _still_working(
    db: Adapter, tables: Sequence[TableRef], seconds: float, ours: Collection[int]
) -> list[Session]:
    deadline = time.monotonic() + seconds
    found = _sessions_on(db, tables, ours)
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = _sessions_on(db, tables, ours)
    return found


def _sessions_on(db: Adapter, tables: Sequence[TableRef], ours: Collection[int]) -> list[Session]:
    return [s for s in db.sessions_on(tables) if s.id not in ours]

"""`etlguard drill`: the design note's Testing Plan, run for real against the user's own setup.

The note's plan (break a model, break a post-hook, restore from a backup) was meant to be done by
hand, once, in staging. The drill does its equivalent on the real protected set, with the real
grants and server, and leaves the data as a normal night would:

1. recovery from a snapshot (Test 3): snapshot the protected set, restore every table from that
   snapshot in one swap, and prove by checksum that nothing changed;
2. a failed run is rolled back (Tests 1 and 2), when a command is given: run the ETL under guard,
   roll the good result back on purpose, prove every table is at its pre-run state, then roll
   forward to the ETL's result and prove that too;
3. the alert channels, when configured, each get a test message.

Run it when nothing but the ETL writes to the protected tables, as the ETL itself requires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .alerts import send_test
from .errors import EtlguardError
from .tables import plural

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .catalog import Snapshot
    from .guard import Guard


@dataclass
class DrillCheck:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 3)}


@dataclass
class DrillReport:
    checks: list[DrillCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def run_drill(
    guard: Guard, command: Sequence[str] = (), echo: Callable[[str], None] | None = None
) -> DrillReport:
    say = echo or log.info
    report = DrillReport()
    for step in (_restore_drill, _rollback_drill, _alert_drill):
        check = step(guard, command, say)
        if check is not None:
            report.checks.append(check)
            say(f"{'PASS' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    return report


def _restore_drill(guard: Guard, _command: Sequence[str], say: Callable[[str], None]) -> DrillCheck:
    name = "recovery from a snapshot (Testing Plan test 3)"
    began = time.monotonic()
    try:
        snaps = guard.snapshot()
        say(f"snapshotted {plural(len(snaps), 'table')}; restoring each from its snapshot in one swap")
        result = guard.restore(snapshot_ids=[s.id for s in snaps])
    except EtlguardError as exc:
        return DrillCheck(name, False, str(exc), time.monotonic() - began)
    by_id = {s.table: s for s in snaps}
    changed = []
    for step in result.steps:
        displaced = next((s for s in guard.snapshots(step.table) if s.id == step.displaced_id), None)
        if displaced is None or not _same_rows(displaced, by_id[step.table]):
            changed.append(step)
    if changed:  # something wrote between the snapshot and the swap: put its writes back
        guard.restore(snapshot_ids=[s.displaced_id for s in changed if s.displaced_id])
        tables = ", ".join(str(s.table) for s in changed)
        return DrillCheck(
            name,
            False,
            f"{tables} changed during the drill (put back); rerun when quiet",
            time.monotonic() - began,
        )
    unverified = len(result.steps) - len(result.verified)
    detail = (
        f"{plural(len(result.steps), 'table')} restored and verified; back in {result.back_seconds:.2f} s, "
        f"swap {result.swap_seconds * 1000:.1f} ms"
    )
    return DrillCheck(name, unverified == 0, detail, time.monotonic() - began)


def _same_rows(displaced: Snapshot, snap: Snapshot) -> bool:
    """Whether the table the restore displaced held the snapshot's rows: the same check by the
    same algorithm. A displaced table may be recorded by the cheap copy check (MySQL/MariaDB's
    CHECKSUM TABLE) where the snapshot has a fingerprint; a copy records that check too."""
    mine = (displaced.fingerprint, displaced.row_count, displaced.checksum)
    if mine == (snap.fingerprint, snap.row_count, snap.checksum):
        return True
    recorded = (snap.change_check or "").rpartition(" ")[0]
    return bool(recorded) and recorded == " ".join(str(v) for v in mine)


def _rollback_drill(guard: Guard, command: Sequence[str], say: Callable[[str], None]) -> DrillCheck | None:
    if not command:
        return None
    name = "a failed run is rolled back (Testing Plan tests 1 and 2)"
    began = time.monotonic()
    try:
        result = guard.run(command, echo=say, drill=True)
    except EtlguardError as exc:
        return DrillCheck(name, False, f"the run could not start: {exc}", time.monotonic() - began)
    if result.status != "drill":
        return DrillCheck(name, False, f"{result.status}: {result.message}", time.monotonic() - began)
    say(
        f"rolled back {plural(len(result.rolled_back), 'table')} and verified them; rolling forward to the ETL's result"
    )
    try:
        forward = guard.restore(snapshot_ids=result.displaced_ids)
    except EtlguardError as exc:
        return DrillCheck(
            name, False, f"rolled back, but the roll-forward failed: {exc}", time.monotonic() - began
        )
    ok = len(forward.verified) == len(result.rolled_back) == len(result.rollback_verified)
    detail = (
        f"run {result.run_id}: the ETL succeeded; rolled back {plural(len(result.rollback_verified), 'table')} in "
        f"{result.rollback_seconds:.2f} s, verified at their pre-run state, then rolled forward to the ETL's "
        f"result ({len(forward.verified)} verified)"
    )
    return DrillCheck(name, ok, detail, time.monotonic() - began)


def _alert_drill(guard: Guard, _command: Sequence[str], _say: Callable[[str], None]) -> DrillCheck | None:
    if not guard.config.alerts.channels:
        return None
    began = time.monotonic()
    deliveries = send_test(guard.config)
    failed = [d for d in deliveries if not d.ok]
    detail = f"{len(deliveries) - len(failed)} of {len(deliveries)} channels delivered a test alert"
    if failed:
        detail += "; failed: " + ", ".join(f"{d.channel} ({d.error})" for d in failed)
    return DrillCheck("alert channels", not failed, detail, time.monotonic() - began)

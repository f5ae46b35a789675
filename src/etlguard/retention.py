"""Retention: which snapshots prune deletes. A pure function of the catalog and the clock.

"Newest" is by snapshot id, which only grows, never by date: a clock set back cannot make an
old snapshot look new, and the newest verified snapshot of every table is never deleted.

References are counted: records that share one snapshot table (a run that found its table
unchanged reused the snapshot) keep it as long as any of them is kept, so a kept record never
points at a dropped table.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .adapters.base import Adapter
from .catalog import Catalog, Snapshot
from .config import Retention
from .faults import fault
from .standby import SUPERSEDED
from .tables import TableRef


@dataclass(frozen=True)
class PruneDecision:
    snapshot: Snapshot
    delete: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.snapshot.id,
            "table": str(self.snapshot.table),
            "delete": self.delete,
            "reason": self.reason,
        }


def plan_prune(snapshots: Sequence[Snapshot], policy: Retention, now: dt.datetime) -> list[PruneDecision]:
    by_table: dict[TableRef, list[Snapshot]] = defaultdict(list)
    for s in snapshots:
        if s.status != "deleted":
            by_table[s.table].append(s)
    decisions = []
    for table in sorted(by_table):
        decisions += _plan_table(sorted(by_table[table], key=lambda s: -s.id), policy, now)
    return _keep_shared(decisions)


def _keep_shared(decisions: list[PruneDecision]) -> list[PruneDecision]:
    """A record whose table another kept record shares is kept with it: the table is dropped
    only with the last record that references it."""
    kept_by: dict[TableRef, int] = {}
    for d in decisions:
        if not d.delete and d.snapshot.verified:
            kept_by.setdefault(d.snapshot.snapshot, d.snapshot.id)
    return [
        PruneDecision(
            d.snapshot,
            False,
            f"its table is shared with snapshot {kept_by[d.snapshot.snapshot]}, which is kept",
        )
        if d.delete and d.snapshot.snapshot in kept_by
        else d
        for d in decisions
    ]


def _plan_table(newest_first: list[Snapshot], policy: Retention, now: dt.datetime) -> list[PruneDecision]:
    displaced = [s for s in newest_first if s.verified and s.kind == "displaced"]
    # a superseded snapshot (standby.py) is a restore point too: rebuilt from its standby
    verified = [s for s in newest_first if (s.verified and s.kind != "displaced") or s.status == SUPERSEDED]
    # the one `restore --latest` picks: a newer 'displaced' copy left by a restore must not
    # push it out, or the table would keep only the state it was restored away from
    taken = [s for s in verified if s.kind == "snapshot"] or verified
    newest_verified = taken[0].id if taken else None
    cutoff = now - dt.timedelta(days=policy.days) if policy.days is not None else None
    age_from = _ages(newest_first)
    out = _plan_displaced(displaced, policy, now, age_from)
    for rank, s in enumerate(verified):
        if s.id == newest_verified:
            out.append(PruneDecision(s, False, "newest verified snapshot of the table"))
        elif policy.keep_last is not None and rank < policy.keep_last:
            out.append(PruneDecision(s, False, f"among the {policy.keep_last} newest"))
        elif cutoff is None and policy.keep_last is not None:
            out.append(PruneDecision(s, True, f"beyond the {policy.keep_last} newest"))
        elif cutoff is not None and age_from[s.id] >= cutoff:
            out.append(PruneDecision(s, False, f"younger than {policy.days:g} days"))
        elif cutoff is not None:
            out.append(PruneDecision(s, True, f"older than {policy.days:g} days"))
        else:
            out.append(PruneDecision(s, False, "retention keeps everything"))
    captures = [s for s in newest_first if s.kind == "changes" and s.status in ("captured", "restored")]
    # the changes that rebuild a kept superseded snapshot: its run's and every later run's
    kept_runs = [
        d.snapshot.run_id
        for d in out
        if not d.delete and d.snapshot.status == SUPERSEDED and d.snapshot.run_id is not None
    ]
    needed_from = min(kept_runs, default=None)
    next_log = max((c.id for c in captures if c.status == "captured"), default=None)
    for d in _plan_displaced(captures, policy, now, age_from):
        run = d.snapshot.run_id
        if d.delete and needed_from is not None and run is not None and run >= needed_from:
            d = PruneDecision(
                d.snapshot, False, "changed-rows capture that rebuilds a kept superseded snapshot"
            )
        elif d.delete and d.snapshot.id == next_log:  # standby.py: the next run rolls forward by it
            d = PruneDecision(d.snapshot, False, "the newest changed-rows capture of the table")
        out.append(PruneDecision(d.snapshot, d.delete, d.reason.replace("displaced", "changed-rows capture")))
    for s in newest_first:
        evidence = s.kind == "changes" and s.status == "damaged"  # the only pre-run images left
        if not s.verified and s.status in ("failed", "damaged") and not evidence:
            out.append(PruneDecision(s, True, f"{s.status} snapshot"))
    return out


def _ages(newest_first: Sequence[Snapshot]) -> dict[int, dt.datetime]:
    """Ids only grow, so a snapshot is at least as old as every later one: a clock that ran
    ahead and was set back cannot keep an old snapshot "young" by dating it in the future."""
    age_from, earliest = {}, dt.datetime.max
    for s in newest_first:
        earliest = min(earliest, s.taken_at)
        age_from[s.id] = earliest
    return age_from


def _plan_displaced(
    displaced: Sequence[Snapshot], policy: Retention, now: dt.datetime, age_from: dict[int, dt.datetime]
) -> list[PruneDecision]:
    """Displaced tables (what a rollback or restore moved out of the way: the failed run's
    result, rows other clients wrote, tables the run created) are kept for their own number of
    days, whatever `keep_last` says: they are evidence to diff against, not restore points, and
    a night of failed runs must neither push good snapshots out nor pile up forever."""
    if policy.displaced_days is None:
        return [PruneDecision(s, False, "displaced tables are kept forever") for s in displaced]
    cutoff = now - dt.timedelta(days=policy.displaced_days)
    days = f"{policy.displaced_days:g} days"
    return [
        PruneDecision(s, False, f"displaced, younger than {days}")
        if age_from[s.id] >= cutoff
        else PruneDecision(s, True, f"displaced, older than {days}")
        for s in displaced
    ]


def prune(
    db: Adapter, catalog: Catalog, policy: Retention, now: dt.datetime, dry_run: bool = False
) -> list[PruneDecision]:
    """Plan, then drop each doomed snapshot table and mark it deleted, journaled so that an
    interrupted prune is finished by the next one (DROP IF EXISTS makes a re-run harmless)."""
    decisions = plan_prune(catalog.snapshots(), policy, now)
    doomed = [d.snapshot for d in decisions if d.delete]
    if dry_run or not doomed:
        return decisions
    entry = catalog.begin(
        "prune", {"snapshots": [[s.id, s.snapshot.schema, s.snapshot.name] for s in doomed]}
    )
    fault("prune.after_intent")
    for s in doomed:
        db.drop_table(s.snapshot)
        fault("prune.after_drop")
        catalog.update_snapshot(s.id, status="deleted")
    catalog.finish(entry)
    return decisions

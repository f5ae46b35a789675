"""What protection costs, measured from the catalog: storage held by snapshots, time added to
each night, and a monthly figure projected from configurable prices.

This replaces the design note's hand estimate. Every number comes from what the catalog
recorded (snapshot sizes, when retention dropped them, each run's duration split); only the
prices and the I/O model are assumptions, and both are stated wherever the figures are shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalog import Snapshot
from .config.report import Prices

GIB = 1024**3
READ_PAGE = 16 * 1024  # Aurora MySQL reads 16 KiB pages
WRITE_UNIT = 4 * 1024  # and bills writes in 4 KiB units


@dataclass
class NightCost:
    """One run's share: the seconds it added and the bytes it snapshotted."""

    run_id: int
    started_at: dt.datetime
    status: str
    seconds_added: (
        float  # snapshot + audit (+ rollback when it rolled back): time the ETL alone would not take
    )
    snapshot_bytes: int
    io_requests: int


@dataclass
class Cost:
    prices: Prices
    held_bytes: int  # in snapshot tables now
    held_snapshots: int
    trend: list[tuple[dt.datetime, int]] = field(default_factory=list)  # (when, bytes held)
    nights: list[NightCost] = field(default_factory=list)

    @property
    def seconds_added_per_night(self) -> float:
        return _mean([n.seconds_added for n in self.nights])

    @property
    def io_requests_per_night(self) -> float:
        return _mean([n.io_requests for n in self.nights])

    @property
    def storage_month_usd(self) -> float:
        return self.held_bytes / GIB * self.prices.storage_gb_month

    @property
    def io_month_usd(self) -> float:
        return self.io_requests_per_night * self.prices.runs_per_month * self.prices.io_per_million / 1e6

    @property
    def month_usd(self) -> float:
        return self.storage_month_usd + self.io_month_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "held_bytes": self.held_bytes,
            "held_snapshots": self.held_snapshots,
            "seconds_added_per_night": round(self.seconds_added_per_night, 3),
            "io_requests_per_night": round(self.io_requests_per_night),
            "storage_month_usd": round(self.storage_month_usd, 2),
            "io_month_usd": round(self.io_month_usd, 2),
            "month_usd": round(self.month_usd, 2),
            "prices": {
                "storage_gb_month": self.prices.storage_gb_month,
                "io_per_million": self.prices.io_per_million,
                "runs_per_month": self.prices.runs_per_month,
            },
            "trend": [{"at": when.isoformat() + "Z", "held_bytes": held} for when, held in self.trend],
            "nights": [
                {
                    "run_id": n.run_id,
                    "started_at": n.started_at.isoformat() + "Z",
                    "status": n.status,
                    "seconds_added": round(n.seconds_added, 3),
                    "snapshot_bytes": n.snapshot_bytes,
                    "io_requests": n.io_requests,
                }
                for n in self.nights
            ],
        }


def measure(
    runs: Sequence[Mapping[str, Any]],
    snapshots: Sequence[Snapshot],
    deleted_at: Mapping[int, dt.datetime],
    prices: Prices,
) -> Cost:
    """`snapshots` includes deleted ones; `deleted_at` says when retention dropped each."""
    held = [s for s in snapshots if s.status != "deleted"]
    return Cost(
        prices=prices,
        held_bytes=sum(s.size_bytes or 0 for s in held),
        held_snapshots=len(held),
        trend=held_over_time(snapshots, deleted_at),
        nights=[night_cost(r) for r in runs if r.get("finished_at") is not None],
    )


def held_over_time(
    snapshots: Sequence[Snapshot], deleted_at: Mapping[int, dt.datetime]
) -> list[tuple[dt.datetime, int]]:
    """Bytes held after every event (a snapshot taken, one dropped), oldest first."""
    events: list[tuple[dt.datetime, int]] = []
    for s in snapshots:
        events.append((s.taken_at, s.size_bytes or 0))
        if s.status == "deleted" and s.id in deleted_at:
            events.append((deleted_at[s.id], -(s.size_bytes or 0)))
    held, out = 0, []
    for when, delta in sorted(events, key=lambda e: e[0]):
        held += delta
        out.append((when, held))
    return out


def night_cost(run: Mapping[str, Any]) -> NightCost:
    d = run.get("details") or {}
    added = sum(float(d.get(k) or 0) for k in ("snapshot_seconds", "audit_seconds", "rollback_seconds"))
    size = int(d.get("snapshot_bytes") or 0)
    return NightCost(
        run_id=int(run["id"]),
        started_at=run["started_at"],
        status=str(run["status"]),
        seconds_added=added,
        snapshot_bytes=size,
        io_requests=io_requests(size),
    )


def io_requests(copied_bytes: int) -> int:
    """A snapshot reads every page of the source and writes every byte of the copy."""
    return -(-copied_bytes // READ_PAGE) + -(-copied_bytes // WRITE_UNIT)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


__all__ = ["Cost", "NightCost", "Prices", "held_over_time", "io_requests", "measure"]

"""The `report:` settings: where the published report lives, and the prices the cost uses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prices:
    """USD. Defaults: Aurora Standard storage and I/O in us-east-1, as published in 2025."""

    storage_gb_month: float = 0.10
    io_per_million: float = 0.20
    runs_per_month: float = 30.0

    def describe(self) -> str:
        return (
            f"storage ${self.storage_gb_month:g} per GB-month, I/O ${self.io_per_million:g} per million "
            f"requests, {self.runs_per_month:g} runs a month"
        )


@dataclass(frozen=True)
class ReportSettings:
    url: str | None = None  # where the published report can be read; alerts link to it
    prices: Prices = field(default_factory=Prices)

"""Validations of a guarded transaction: what each one checks, its value once evaluated, and
the one-line reason it failed, which is what the person who wrote the UPDATE needs to read.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .statements import short_sql

if TYPE_CHECKING:
    from .adapters.base import Adapter


@dataclass
class Check:
    """One validation and, once evaluated, its value. Build with the class methods."""

    kind: str  # no_rows | true | count | row_change
    sql: str  # the query; for row_change, the COUNT(*) query etlguard builds
    min: float | None = None
    max: float | None = None
    table: str = ""  # row_change: the table as given
    baseline: int | None = None  # row_change: the count at declaration
    value: Any = None
    passed: bool | None = None

    @classmethod
    def no_rows(cls, sql: str) -> Check:
        return cls("no_rows", sql)

    @classmethod
    def true(cls, sql: str) -> Check:
        return cls("true", sql)

    @classmethod
    def count(cls, sql: str, min: float | None = None, max: float | None = None) -> Check:
        if min is None and max is None:
            raise ConfigError(f"count validation {short_sql(sql, 40)!r} needs a minimum, a maximum or both")
        if min is not None and max is not None and min > max:
            raise ConfigError(
                f"count validation {short_sql(sql, 40)!r}: minimum {min} is above maximum {max}"
            )
        return cls("count", sql, min, max)

    @classmethod
    def row_change(cls, table: str, max_pct: float) -> Check:
        if max_pct < 0:
            raise ConfigError(f"row-count change limit for {table} must be 0 or more, not {max_pct}")
        return cls("row_change", "", None, max_pct, table=table)

    def evaluate(self, db: Adapter) -> bool:
        if self.kind == "no_rows":
            rows = db.query(self.sql)
            self.value = {"rows": len(rows), "first": [_plain(v) for v in rows[0]] if rows else None}
            self.passed = not rows
        elif self.kind == "true":
            self.value = first_value(db, self.sql)
            self.passed = _truthy(self.value)
        elif self.kind == "count":
            self.value = first_value(db, self.sql)
            self.passed = isinstance(self.value, int | float) and _within(self.value, self.min, self.max)
        else:
            after = int(first_value(db, self.sql) or 0)
            change = _change_pct(self.baseline or 0, after)
            self.value = {"before": self.baseline, "after": after, "change_pct": change}
            self.passed = change is not None and abs(change) <= (self.max or 0)
        return self.passed

    def __str__(self) -> str:
        v = self.value
        if self.kind == "no_rows":
            got = "" if self.passed is None else f", got {v['rows']} (first: {v['first']})"
            return f"expected no rows from `{short_sql(self.sql)}`{got}"
        if self.kind == "true":
            return f"expected a true value from `{short_sql(self.sql)}`, got {v!r}"
        if self.kind == "count":
            return f"`{short_sql(self.sql)}` returned {v!r}, expected {_bounds(self.min, self.max)}"
        pct = "" if v is None or v["change_pct"] is None else f" by {v['change_pct']:+.1f}%"
        rows = "" if v is None else f" ({v['before']} -> {v['after']} rows)"
        return f"row count of {self.table} changed{pct}{rows}, limit {self.max:g}%"

    def as_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "sql": self.sql, "passed": self.passed, "value": self.value}
        if self.kind == "count":
            out.update(min=self.min, max=self.max)
        if self.kind == "row_change":
            out.update(table=self.table, max_pct=self.max)
        return out


def first_value(db: Adapter, sql: str) -> Any:
    """The first column of the first row, as a plain Python value (None for no rows)."""
    rows = db.query(sql)
    return _plain(rows[0][0]) if rows and rows[0] else None


def _plain(value: Any) -> Any:
    """MySQL's DECIMAL results (SUM, some COUNT expressions) as int or float."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _truthy(value: Any) -> bool:
    """SQL's idea of true: a non-zero number or TRUE. NULL, 0, FALSE, no row and text fail."""
    return isinstance(value, bool | int | float) and bool(value)


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and low == high:
        return f"exactly {low:g}"
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def _change_pct(before: int, after: int) -> float | None:
    """The change in percent of `before`; None when it is undefined (from 0 rows to some)."""
    if before == 0:
        return 0.0 if after == 0 else None
    return (after - before) * 100.0 / before

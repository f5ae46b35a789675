"""Audits: checks after the ETL that decide between commit and rollback.

Configured under `audits:` in etlguard.yml. Each failed audit is reported with the table, the
check and the numbers, because "audit failed" alone tells the person at 03:00 nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .adapters.base import Adapter
from .errors import ConfigError, EtlguardError
from .tables import TableRef, parse_table

_KEYS = {"name", "table", "min_rows", "max_change_percent", "unique", "sql", "expect"}
_EXPECT = ("no_rows", "true")


@dataclass(frozen=True)
class AuditSpec:
    name: str
    table: TableRef | None = None
    min_rows: int | None = None
    max_change_percent: float | None = None
    unique: tuple[str, ...] = ()
    sql: str | None = None
    expect: str = "no_rows"


@dataclass
class AuditResult:
    name: str
    check: str
    ok: bool
    detail: str
    table: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"{self.table}: " if self.table else f"{self.name!r}: "
        return f"{where}{self.check} {'passed' if self.ok else 'FAILED'} ({self.detail})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
            "table": self.table,
            "values": self.values,
        }


def parse_audits(raw: Any) -> tuple[AuditSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("config key 'audits' must be a list of checks")
    return tuple(_parse_one(item, i) for i, item in enumerate(raw))


def _parse_one(item: Any, i: int) -> AuditSpec:
    where = f"audits[{i}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where} must be a mapping such as {{table: gold.t, min_rows: 1}}")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key '{where}.{unknown[0]}'; use one of: {', '.join(sorted(_KEYS))}")
    table = parse_table(_str(item, "table", where)) if "table" in item else None
    spec = AuditSpec(
        name=str(item.get("name") or f"audit {i + 1}"),
        table=table,
        min_rows=_int(item, "min_rows", where),
        max_change_percent=_num(item, "max_change_percent", where),
        unique=_columns(item.get("unique"), where),
        sql=_str(item, "sql", where) if "sql" in item else None,
        expect=_str(item, "expect", where) if "expect" in item else "no_rows",
    )
    table_checks = spec.min_rows is not None or spec.max_change_percent is not None or spec.unique
    if table_checks and table is None:
        raise ConfigError(f"{where} checks a table but names none; add table: schema.table")
    if not table_checks and spec.sql is None:
        raise ConfigError(f"{where} checks nothing; give min_rows, max_change_percent, unique or sql")
    if spec.expect not in _EXPECT:
        raise ConfigError(f"{where}.expect must be one of {', '.join(_EXPECT)}, not {spec.expect!r}")
    return spec


def _str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"'{where}.{key}' must be a non-empty string")
    return value


def _non_negative(item: Mapping[str, Any], key: str, where: str, whole: bool) -> Any:
    value = item.get(key)
    if value is None:
        return None
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        what = "a whole number" if whole else "a number"
        raise ConfigError(f"'{where}.{key}' must be {what} of at least 0, not {value!r}")
    return value if whole else float(value)


def _int(item: Mapping[str, Any], key: str, where: str) -> int | None:
    return _non_negative(item, key, where, whole=True)


def _num(item: Mapping[str, Any], key: str, where: str) -> float | None:
    return _non_negative(item, key, where, whole=False)


def _columns(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        raise ConfigError(f"'{where}.unique' must be a column name or a list of column names")
    return tuple(value)


def preflight(db: Adapter, specs: Sequence[AuditSpec], new: Sequence[TableRef] = ()) -> None:
    """Before the ETL runs: every audited table exists (or is one the run will create) and
    every named column exists."""
    for spec in specs:
        if spec.table is None or spec.table in new:
            continue
        if not db.table_exists(spec.table):
            raise ConfigError(f"audit {spec.name!r} names table {spec.table}, which does not exist")
        columns = {c.name for c in db.columns(spec.table)}
        missing = [c for c in spec.unique if c not in columns]
        if missing:
            raise ConfigError(f"audit {spec.name!r}: table {spec.table} has no column {missing[0]!r}")


def counts_before(
    db: Adapter, specs: Sequence[AuditSpec], protected: Sequence[TableRef]
) -> dict[TableRef, int]:
    """Row counts, taken before the ETL, of the tables a `max_change_percent` audit checks and
    the run does not snapshot: without them an emptied unprotected table had nothing to be
    compared with and passed. A table that does not exist yet has no count (a first build)."""
    wanted = {s.table for s in specs if s.max_change_percent is not None and s.table is not None}
    return {t: db.count_rows(t) for t in sorted(wanted - set(protected)) if db.table_exists(t)}


def run_audits(db: Adapter, specs: Sequence[AuditSpec], before: Mapping[TableRef, int]) -> list[AuditResult]:
    """Run every audit; an audit that errors counts as failed (with the error as its detail)."""
    results: list[AuditResult] = []
    for spec in specs:
        try:
            results += _run_one(db, spec, before)
        except EtlguardError as exc:
            results.append(AuditResult(spec.name, "error", False, str(exc), _t(spec)))
    return results


def _t(spec: AuditSpec) -> str | None:
    return str(spec.table) if spec.table else None


def _run_one(db: Adapter, spec: AuditSpec, before: Mapping[TableRef, int]) -> list[AuditResult]:
    out = []
    table = spec.table
    if table is not None and not db.table_exists(table):
        return [AuditResult(spec.name, "exists", False, "table is missing after the ETL", str(table))]
    if table is not None and (spec.min_rows is not None or spec.max_change_percent is not None):
        rows = db.count_rows(table)
        if spec.min_rows is not None:
            ok = rows >= spec.min_rows
            out.append(
                AuditResult(
                    spec.name,
                    "min_rows",
                    ok,
                    f"{rows:,} rows, minimum {spec.min_rows:,}",
                    str(table),
                    {"rows": rows, "min_rows": spec.min_rows},
                )
            )
        if spec.max_change_percent is not None:
            out.append(_change(spec, table, rows, before.get(table)))
    if table is not None and spec.unique:
        dups = db.duplicate_keys(table, spec.unique)
        detail = (
            f"{len(dups)}+ duplicated values of ({', '.join(spec.unique)}), e.g. {dups[0][:-1]} x{dups[0][-1]}"
            if dups
            else f"({', '.join(spec.unique)}) is unique"
        )
        out.append(
            AuditResult(
                spec.name,
                "unique",
                not dups,
                detail,
                str(table),
                {"duplicates": [list(map(str, d)) for d in dups]},
            )
        )
    if spec.sql is not None:
        out.append(_sql(db, spec))
    return out


def _change(spec: AuditSpec, table: TableRef, rows: int, before: int | None) -> AuditResult:
    limit = spec.max_change_percent or 0.0
    if before is None:  # counts_before found no table: the run created it
        return AuditResult(
            spec.name, "max_change_percent", True, "the table did not exist before the run", str(table)
        )
    change = 0.0 if before == rows else (abs(rows - before) / before * 100 if before else float("inf"))
    return AuditResult(
        spec.name,
        "max_change_percent",
        change <= limit,
        f"{before:,} -> {rows:,} rows, {change:.1f}% change, limit {limit:g}%",
        str(table),
        {"before": before, "after": rows, "change_percent": round(change, 3), "limit": limit},
    )


def _sql(db: Adapter, spec: AuditSpec) -> AuditResult:
    assert spec.sql is not None
    rows = db.query(spec.sql)
    if spec.expect == "no_rows":
        sample = ", ".join(str(tuple(r)) for r in rows[:3])
        detail = f"{len(rows)} rows returned, expected none: {sample}" if rows else "no rows returned"
        return AuditResult(spec.name, "sql no_rows", not rows, detail, _t(spec), {"rows": len(rows)})
    value = rows[0][0] if rows and rows[0] else None
    return AuditResult(
        spec.name, "sql true", is_true(value), f"returned {value!r}", _t(spec), {"value": str(value)}
    )


_TRUE_TEXT = {"1", "t", "true"}


def is_true(value: Any) -> bool:
    """Strict truth for `expect: true`: a boolean true, a non-zero number, or the text a database
    prints for true ('1', 't', 'true'). Anything else fails, so 'False', 'no', '0.0' or NULL
    can never let a bad run commit."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0 and value == value  # NaN is not true
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return isinstance(value, str) and value.strip().lower() in _TRUE_TEXT

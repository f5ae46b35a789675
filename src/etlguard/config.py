"""`etlguard.yml`: loading, `${ENV}` interpolation, and strict validation.

Every problem is reported as one line naming the key and what to write instead, because the
person reading it is often looking at a failed 03:00 job log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .alerts import AlertSettings, parse_alerts, parse_job_name
from .audits import AuditSpec, parse_audits
from .dbt import DbtSettings, parse_selector
from .errors import ConfigError
from .metrics import MetricSettings, parse_metrics
from .tables import TableRef, parse_table
from .target import Target, parse_target

DEFAULT_FILE = "etlguard.yml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Retention:
    days: float | None = 7
    keep_last: int | None = 3


@dataclass(frozen=True)
class Config:
    target: Target
    protect: tuple[TableRef, ...] = ()
    protect_dbt: tuple[str, ...] = ()  # dbt selectors, resolved from manifest.json at run time
    snapshot_schema: str = "etlguard_snapshots"
    catalog_schema: str = "etlguard"
    retention: Retention = field(default_factory=Retention)
    lock_wait_seconds: float = 60.0
    audits: tuple[AuditSpec, ...] = ()
    dbt: DbtSettings = field(default_factory=DbtSettings)
    timeout_seconds: float | None = None
    job_name: str = "etlguard"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
        """Read `path` (default: ./etlguard.yml). `ETLGUARD_URL` overrides the target."""
        file = Path(path) if path else Path(DEFAULT_FILE)
        if not file.exists():
            if path is None and os.environ.get("ETLGUARD_URL"):
                return cls.from_dict({}, **overrides)
            raise ConfigError(
                f"config file {file} not found; create one with `etlguard init` or pass --config"
            )
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{file} is not valid YAML{where}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{file} must be a mapping of keys such as target: and protect:")
        return cls.from_dict(raw, path=file, **overrides)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None, **overrides: Any) -> Config:
        data = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}; known keys are: {', '.join(_TOP_KEYS)}")
        url = os.environ.get("ETLGUARD_URL") or _interpolate(_need(data, "target", str), "target")
        tables, selectors = _protect(data.get("protect", []))
        timeout = data.get("timeout_seconds")
        return cls(
            target=parse_target(url),
            protect=tables,
            protect_dbt=selectors,
            audits=parse_audits(data.get("audits")),
            dbt=_dbt(data.get("dbt", {})),
            timeout_seconds=None if timeout is None else _number(data, "timeout_seconds", 0, minimum=1),
            snapshot_schema=_name(data, "snapshot_schema", "etlguard_snapshots"),
            catalog_schema=_name(data, "catalog_schema", "etlguard"),
            retention=_retention(data.get("retention", {})),
            lock_wait_seconds=_number(data, "lock_wait_seconds", 60.0, minimum=1),
            job_name=parse_job_name(data.get("job_name")),
            alerts=parse_alerts(data.get("alerts")),
            metrics=parse_metrics(data.get("metrics")),
            path=path,
        )


_TOP_KEYS = (
    "target",
    "protect",
    "snapshot_schema",
    "catalog_schema",
    "retention",
    "lock_wait_seconds",
    "audits",
    "dbt",
    "timeout_seconds",
    "job_name",
    "alerts",
    "metrics",
)


def _interpolate(value: str, key: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) in os.environ:
            return os.environ[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(f"{key} refers to ${{{m.group(1)}}}, which is not set in the environment")

    return _ENV_REF.sub(sub, value)


def _need(data: dict[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise ConfigError(f"config key {key!r} is missing; set it or the ETLGUARD_URL variable")
    return _typed(data[key], key, kind)


def _typed(value: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"config key {key!r} must be a {want}, not {type(value).__name__}")
    return value


def _name(data: dict[str, Any], key: str, default: str) -> str:
    value = _typed(data.get(key, default), key, str)
    if not value or len(value) > 64:
        raise ConfigError(f"config key {key!r} must be a schema name of 1 to 64 characters")
    return str(value)


def _number(data: dict[str, Any], key: str, default: float, minimum: float = 0) -> float:
    value = _typed(data.get(key, default), key, (int, float))
    if value < minimum:
        raise ConfigError(f"config key {key!r} must be at least {minimum}, not {value}")
    return float(value)


def _protect(value: Any) -> tuple[tuple[TableRef, ...], tuple[str, ...]]:
    """Tables and globs as strings; `{dbt: "materialized:incremental"}` picks models from the
    dbt manifest, so "all incremental models + the gold layer" is two lines of config."""
    if isinstance(value, str):
        value = [value]
    _typed(value, "protect", list)
    refs, selectors = [], []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            if set(item) != {"dbt"}:
                raise ConfigError(f"protect[{i}] must be a table name or {{dbt: selector}}")
            parse_selector(_typed(item["dbt"], f"protect[{i}].dbt", str))
            selectors.append(item["dbt"])
        else:
            refs.append(parse_table(_typed(item, f"protect[{i}]", str)))
    return tuple(refs), tuple(selectors)


def _dbt(value: Any) -> DbtSettings:
    _typed(value, "dbt", dict)
    known = ("fail_fast", "project_dir", "target_path", "check_results")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key 'dbt.{unknown[0]}'; known keys are: {', '.join(known)}")
    for key in ("fail_fast", "check_results"):
        if key in value:
            _typed(value[key], f"dbt.{key}", bool)
    for key in ("project_dir", "target_path"):
        if value.get(key) is not None:
            _typed(value[key], f"dbt.{key}", str)
    return DbtSettings(**value)


def _retention(value: Any) -> Retention:
    _typed(value, "retention", dict)
    unknown = sorted(set(value) - {"days", "keep_last"})
    if unknown:
        raise ConfigError(f"unknown config key 'retention.{unknown[0]}'; use days and keep_last")
    days = value.get("days", Retention.days)
    keep = value.get("keep_last", Retention.keep_last)
    if days is not None and (_typed(days, "retention.days", (int, float)) <= 0):
        raise ConfigError(
            "config key 'retention.days' must be more than 0; to keep snapshots forever, write days: null"
        )
    if keep is not None and _typed(keep, "retention.keep_last", int) < 1:
        raise ConfigError(
            "config key 'retention.keep_last' must be at least 1; to rely on days alone, "
            "write keep_last: null"
        )
    return Retention(days=days, keep_last=keep)


STARTER = """\
# etlguard configuration. Docs: docs/configuration.md
#
# The target database, as a SQLAlchemy-style URL. Keep passwords out of this file:
# ${VAR} is read from the environment, and ETLGUARD_URL overrides this key entirely.
#   mysql+pymysql://etl:${DB_PASSWORD}@aurora-cluster.example:3306
#   mariadb+pymysql://etl:${DB_PASSWORD}@127.0.0.1:3306
#   duckdb:///warehouse.duckdb
target: {target}

# The protected set: tables and globs, as schema.table.
protect:
{protect}

# Where snapshot tables live (created if missing). Never put your own tables here.
snapshot_schema: etlguard_snapshots

# etlguard's catalog of snapshots, runs and its journal.
catalog_schema: etlguard

# Which snapshots prune keeps. The newest verified snapshot of each table is always kept.
retention:
  days: 3        # keep snapshots taken in the last 3 days (null: no age limit)
  keep_last: 3   # and always the 3 newest of each table (null: no count floor)
"""

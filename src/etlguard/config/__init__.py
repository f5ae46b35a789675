"""`etlguard.yml`: loading, `${ENV}` interpolation, and strict validation.

Loading is two steps. The file is validated against its schema (`config.schema`, pydantic
models that also give the published JSON Schema); then the settings are built, which
interpolates `${VAR}` and interprets values (the target URL, table names, dbt selectors,
alert channels). Every problem is reported as one line naming the key and what to write
instead, because the person reading it is often looking at a failed 03:00 job log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from .. import credentials, profiles
from ..audits import AuditSpec, parse_audits
from ..dbt import DbtSettings, parse_selector
from ..errors import ConfigError
from ..tables import TableRef, parse_table
from ..target import Target, parse_target
from . import schema
from .env import MIN_SECRET, interpolate, referenced_variables
from .notify import AlertSettings, MetricSettings, Secrets, build_alerts, build_metrics
from .problems import one_line
from .report import Prices, ReportSettings

DEFAULT_FILE = "etlguard.yml"


@dataclass(frozen=True)
class Retention:
    days: float | None = 7
    keep_last: int | None = 3
    displaced_days: float | None = 14  # what rollbacks and restores moved aside


@dataclass(frozen=True)
class SnapshotSettings:
    consistency: str = "set"  # "set": one point in time for the protected set; "table": per table
    kept_by_etl: tuple[TableRef, ...] = ()  # rebuilt and swapped in by the ETL, which keeps the old one
    capture: bool = False  # MySQL/MariaDB: record the rows a run changes instead of copying (capture.py)
    beside_live: bool = False  # DuckDB: snapshots beside their live tables, restored by a rename
    # with capture: a full snapshot rolled forward by the last run's capture (standby.py)
    standby: bool = False
    capture_min_bytes: int = 0  # with capture: smaller tables are copied (their copy costs less)
    physical_datadir: str | None = None  # MySQL/MariaDB: copy by tablespace files (mysql_physical.py)


@dataclass(frozen=True)
class Config:
    target: Target
    protect: tuple[TableRef, ...] = ()
    protect_dbt: tuple[str, ...] = ()  # dbt selectors, resolved from manifest.json at run time
    snapshot_schema: str = "etlguard_snapshots"
    catalog_schema: str = "etlguard"
    snapshot_reuse: bool = True  # an unchanged table shares its newest snapshot instead of a copy
    retention: Retention = field(default_factory=Retention)
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    lock_wait_seconds: float = 60.0
    audits: tuple[AuditSpec, ...] = ()
    dbt: DbtSettings = field(default_factory=DbtSettings)
    timeout_seconds: float | None = None
    statement_grace_seconds: float = 10.0  # before a rollback, other sessions' statements get this long
    target_env: tuple[str, ...] = ()  # variables the target URL reads: not passed on to the ETL
    job_name: str = "etlguard"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    path: Path | None = None

    @property
    def secrets(self) -> Secrets:
        """Everything no message may carry: the target's password, channel and gateway secrets."""
        password = self.target.password
        target = Secrets((password,) if len(password) >= MIN_SECRET else ())
        return target + self.alerts.secrets + self.metrics.secrets

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, command: Sequence[str] = (), **overrides: Any
    ) -> Config:
        """Read `path` (default: ./etlguard.yml). `ETLGUARD_URL` overrides the target. `command`
        is the ETL command to be run: with `target: dbt`, its --profiles-dir, --profile,
        --target and --project-dir say which connection of profiles.yml it uses."""
        file = Path(path) if path else Path(os.environ.get("ETLGUARD_CONFIG") or DEFAULT_FILE)
        if file.is_dir():
            raise ConfigError(f"config path {file} is a directory; give the etlguard.yml file inside it")
        if not file.exists():
            if path is None and not os.environ.get("ETLGUARD_CONFIG") and os.environ.get("ETLGUARD_URL"):
                return cls.from_dict({}, command=command, **overrides)
            raise ConfigError(
                f"config file {file} not found; create one with `etlguard init` or pass --config"
            )
        return cls.from_dict(read_file(file), path=file, command=command, **overrides)

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], path: Path | None = None, *, command: Sequence[str] = (), **overrides: Any
    ) -> Config:
        data = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            parsed = schema.ConfigFile.model_validate(data)
        except ValidationError as exc:
            raise one_line(exc) from None
        return build(parsed, path, command)


class _Loader(yaml.SafeLoader):
    """YAML with 1.2's booleans: only true/false. PyYAML follows YAML 1.1, where `on`, `off`,
    `yes` and `no` are booleans too, so `alerts: {on: [rolled_back]}` would read as a key True;
    editors (yaml-language-server) and the JSON Schema read YAML 1.2."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse configuration text the way etlguard reads etlguard.yml (YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds no Python objects


def yaml_scalar(text: str) -> str:
    """`text` as one YAML scalar on one line, quoted when `#`, `: ` or the like need it."""
    return yaml.safe_dump(text, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


def read_file(file: Path) -> dict[str, Any]:
    """The YAML mapping in `file`, or a one-line error saying where it stops being one."""
    try:
        raw = load_yaml(file.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{file} is not UTF-8 text (line {line}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must be a mapping of keys such as target: and protect:")
    return raw


def build(parsed: schema.ConfigFile, path: Path | None = None, command: Sequence[str] = ()) -> Config:
    """The settings a validated file describes, with `${VAR}` interpolated and values interpreted."""
    tables, selectors = _protect(parsed.protect)
    dbt = DbtSettings(**parsed.dbt.model_dump(exclude={"profiles_dir", "profile", "target"}))
    target, target_env = _build_target(parsed, dbt, command)
    return Config(
        target=target,
        protect=tables,
        protect_dbt=selectors,
        audits=parse_audits(parsed.audits),
        dbt=dbt,
        timeout_seconds=parsed.timeout_seconds,
        snapshot_schema=parsed.snapshot_schema,
        catalog_schema=parsed.catalog_schema,
        snapshot_reuse=parsed.snapshot.reuse,
        retention=Retention(
            days=parsed.retention.days,
            keep_last=parsed.retention.keep_last,
            displaced_days=parsed.retention.displaced_days,
        ),
        snapshot=SnapshotSettings(
            consistency=parsed.snapshot.consistency,
            kept_by_etl=tuple(parse_table(t) for t in parsed.snapshot.kept_by_etl),
            capture=parsed.snapshot.capture,
            beside_live=parsed.snapshot.beside_live,
            standby=parsed.snapshot.standby,
            capture_min_bytes=parsed.snapshot.capture_min_bytes,
            physical_datadir=parsed.snapshot.physical.datadir if parsed.snapshot.physical else None,
        ),
        lock_wait_seconds=float(parsed.lock_wait_seconds),
        statement_grace_seconds=float(parsed.statement_grace_seconds),
        target_env=target_env,
        job_name=parsed.job_name or "etlguard",
        alerts=build_alerts(parsed.alerts),
        metrics=build_metrics(parsed.metrics),
        report=ReportSettings(parsed.report.url, Prices(**parsed.report.prices.model_dump())),
        path=path,
    )


def _build_target(
    parsed: schema.ConfigFile, dbt: DbtSettings, command: Sequence[str]
) -> tuple[Target, tuple[str, ...]]:
    """The target and the variables it reads (kept from the ETL child). From ETLGUARD_URL, the
    URL in `target:`, or with `target: dbt` the dbt profile (whose variables dbt needs too);
    then the `credentials:` block supplies the password."""
    env: tuple[str, ...] = ()
    if not os.environ.get("ETLGUARD_URL") and profiles.is_dbt_target(parsed.target):
        choice = profiles.ProfileChoice(parsed.dbt.profiles_dir, parsed.dbt.profile, parsed.dbt.target)
        target, url_has_host = profiles.dbt_target(dbt, choice, command), True
    else:
        url = _target_url(parsed.target)
        target, env = parse_target(url), referenced_variables(parsed.target or "")
        url_has_host = "://" in url and bool(_url_host(url))
    if parsed.credentials is None:
        return target, env
    c = parsed.credentials
    creds = credentials.Credentials(
        password_env=c.password_env,
        password=interpolate(c.password, "credentials.password") if c.password is not None else None,
        secret_arn=interpolate(c.secret_arn, "credentials.secret_arn") if c.secret_arn else None,
        iam_auth=c.iam_auth,
        region=interpolate(c.region, "credentials.region") if c.region else None,
        ssl_ca=interpolate(c.ssl_ca, "credentials.ssl_ca") if c.ssl_ca else None,
    )
    kept = (*env, c.password_env) if c.password_env else env
    return credentials.apply(target, creds, url_has_host), kept


def _url_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _target_url(written: str | None) -> str:
    url = os.environ.get("ETLGUARD_URL")
    if url:
        return url
    if written is None:
        raise ConfigError("config key 'target' is missing; set it or the ETLGUARD_URL variable")
    return interpolate(written, "target", encode=_in_userinfo(written))


def _in_userinfo(written: str) -> Callable[[re.Match[str]], bool]:
    """Whether a `${VAR}` sits in the URL's user:password part, where its value is
    percent-encoded: a password with `#@/?%&:` then reaches the server exactly as set."""
    start = written.find("://") + 3
    end = written.rfind("@", start) if "@" in written else -1
    return lambda m: start <= m.start() and m.end() <= end


def _protect(items: list[str | schema.DbtPick]) -> tuple[tuple[TableRef, ...], tuple[str, ...]]:
    """Tables and globs as strings; `{dbt: "materialized:incremental"}` picks models from the
    dbt manifest, so "all incremental models + the gold layer" is two lines of config."""
    refs, selectors = [], []
    for item in items:
        if isinstance(item, schema.DbtPick):
            parse_selector(item.dbt)
            selectors.append(item.dbt)
        else:
            refs.append(parse_table(item))
    return tuple(refs), tuple(selectors)


STARTER = """\
# etlguard configuration. Docs: docs/configuration.md
#
# The target database, as a SQLAlchemy-style URL. Keep passwords out of this file:
# ${{VAR}} is read from the environment, and ETLGUARD_URL overrides this key entirely.
#   mysql+pymysql://etl:${{DB_PASSWORD}}@aurora-cluster.example:3306
#   mariadb+pymysql://etl:${{DB_PASSWORD}}@127.0.0.1:3306
#   duckdb:///warehouse.duckdb
#   dbt      (the connection in the dbt project's profiles.yml: no URL here)
# Passwords can also come from a credentials: block (password_env, secret_arn, iam_auth).
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

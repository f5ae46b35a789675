"""The shape of `etlguard.yml`, as pydantic models: what the file may contain, before `${VAR}`
interpolation and before any value is interpreted (URLs, table names, selectors).

The models are strict (no "3" for 3, no `true` for 1) and reject unknown keys, and they are the
source of the published JSON Schema (`etlguard schema`), so an editor checks and completes the
same rules the loader enforces. Checks that need interpolated values (topic ARNs, http URLs,
apprise URLs, table names) happen when the settings are built, in `config.build`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

# What an alert channel can be notified of; a run's status maps to one or more (alerts.py).
Outcome = Literal[
    "succeeded", "rolled_back", "etl_failed", "audit_failed", "snapshot_failed", "rollback_failed"
]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
CHANNEL_KINDS = ("sns", "apprise", "webhook")


def _listed(value: Any) -> Any:
    """A single string where a list is expected is a list of one (`on: rolled_back`)."""
    return [value] if isinstance(value, str) else value


class Section(BaseModel):
    """A mapping in the file: strict types, and an unknown key names the keys that are known."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in set(data) - set(cls.model_fields))
            if unknown:
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key {unknown}",
                    {"unknown": unknown[0], "known": ", ".join(cls.model_fields)},
                )
        return data


Outcomes = Annotated[list[Outcome], BeforeValidator(_listed, json_schema_input_type=list[Outcome] | Outcome)]
SchemaName = Annotated[str, Field(min_length=1, max_length=64)]


class Retention(Section):
    """Which snapshots `prune` keeps; the newest verified snapshot of a table is always kept."""

    days: float | None = Field(7, gt=0, description="Keep snapshots younger than this; null: no age limit.")
    keep_last: int | None = Field(3, ge=1, description="Keep this many newest per table; null: no floor.")
    displaced_days: float | None = Field(
        14,
        gt=0,
        description="Keep displaced tables (what rollbacks and restores moved aside) this long, "
        "apart from keep_last; null: forever.",
    )


class PhysicalOptions(Section):
    """Physical snapshots (transportable tablespaces), MySQL/MariaDB on the database host."""

    datadir: str = Field(
        min_length=1,
        description="The server's data directory as etlguard sees it (SELECT @@datadir); etlguard "
        "must run on the database host, read it, and write to the snapshot schema's directory.",
    )


class SnapshotOptions(Section):
    """How snapshots are taken."""

    consistency: Literal["set", "table"] = Field(
        "set",
        description="set: one point in time for the whole protected set (MySQL/MariaDB: writers "
        "to the protected tables wait for the copy); table: each table from its own consistent "
        "read, never blocking writers, with no common point in time across tables. "
        "PostgreSQL and DuckDB always give one point in time without blocking writers.",
    )
    reuse: bool = Field(
        True,
        description="A table unchanged since its newest verified snapshot (same rows, structure "
        "and AUTO_INCREMENT, proven by the database's checksum) shares that snapshot instead of "
        "being copied again; false: copy every table every time.",
    )
    kept_by_etl: list[str] = Field(
        [],
        description="Protected tables the ETL itself rebuilds into a new table and swaps into "
        "place (not dbt: a script). Each is not copied before the run: the ETL reads the name to "
        "keep the old table under from ETLGUARD_ZERO_COPY and swaps in one statement (MySQL/"
        "MariaDB: RENAME TABLE t TO kept, new TO t). See docs/configuration.md.",
    )
    capture: bool = Field(
        False,
        description="MySQL/MariaDB, opt-in: instead of copying a protected table before the run, "
        "record the rows the run changes (triggers installed for the run write each touched row's "
        "pre-run image into the snapshot schema); a rollback puts those rows back. A table "
        "qualifies with a primary key (or a unique key over NOT NULL columns), InnoDB, no user "
        "triggers and no foreign keys; others are copied. A DDL on a captured table during the "
        "run waits until etlguard has made a full pre-run copy of that table, which the rollback "
        "then uses. See docs/configuration.md.",
    )
    capture_min_bytes: int = Field(
        0,
        ge=0,
        description="With capture: a table smaller than this (data and indexes, bytes) is copied "
        "instead of captured: its copy (or reuse) costs less than triggers on every write and a "
        "change log. 0 (the default): every table that qualifies is captured.",
    )
    standby: bool = Field(
        False,
        description="MySQL/MariaDB, opt-in, with capture: true. Each captured table also keeps "
        "one full standby snapshot, rolled forward before each guarded run by the rows the last "
        "committed run changed (its capture) and proven equal to the live table by checksum; a "
        "rollback renames it into place in milliseconds instead of replaying the changes. The "
        "first run (and a run after the table changed outside a guarded run) copies the table in "
        "full. Older nights are kept as changes records, not as full snapshots. See "
        "docs/configuration.md.",
    )
    physical: PhysicalOptions | None = Field(
        None,
        description="MySQL/MariaDB, opt-in, where etlguard runs on the database host: copy each "
        "InnoDB table by its tablespace file (FLUSH TABLES ... FOR EXPORT, copy the .ibd and .cfg "
        "files, ALTER TABLE ... IMPORT TABLESPACE) instead of by its rows, verified by CHECKSUM "
        "TABLE like any copy. A table the server cannot move this way (not InnoDB, partitioned, a "
        "FULLTEXT index, encrypted) is copied by rows, and the run says why. Writers to a table "
        "wait while its file is copied, also with consistency: table. See docs/configuration.md.",
    )
    beside_live: bool = Field(
        False,
        description="DuckDB only (ignored elsewhere): take each snapshot into its table's own "
        "schema under a hidden _etlguard_k name, so that a rollback or restore renames it into "
        "place instead of copying it back. Off by default: an ETL that drops and recreates its "
        "schema would take these snapshots with it; see docs/architecture.md.",
    )

    @model_validator(mode="after")
    def _standby_needs_capture(self) -> SnapshotOptions:
        if self.standby and not self.capture:
            raise PydanticCustomError(
                "standby_without_capture",
                "standby: true needs capture: true (the standby is rolled forward by the rows the "
                "capture records); set capture: true or remove standby",
            )
        return self


class Dbt(Section):
    fail_fast: bool = True
    project_dir: str | None = None
    profiles_dir: str | None = Field(
        None, description="Where profiles.yml is (target: dbt); default: as dbt looks for it."
    )
    profile: str | None = Field(None, description="The profile (target: dbt); default: dbt_project.yml's.")
    target: str | None = Field(None, description="The profile's target (target: dbt); default: its own.")
    target_path: str | None = None
    check_results: bool = Field(True, description="A failed, errored or skipped dbt node fails the run.")
    wrapper: bool = Field(
        False,
        description="The command is a script that runs dbt: its run_results.json is audited and "
        "required. (`dbt`, `python -m dbt` and `uv run dbt` are recognised without it.)",
    )
    zero_copy: bool = Field(
        False,
        description="Protected dbt table models (and incremental models on --full-refresh) are not "
        "copied before the run: the dbt project's table (and incremental) materialization "
        "(etlguard_dbt.zero_copy_table, zero_copy_incremental) keeps the table it replaces as the "
        "snapshot. MySQL/MariaDB, PostgreSQL and DuckDB; see docs/dbt.md.",
    )


class Credentials(Section):
    """Where the target's password comes from, instead of the URL. At most one source."""

    password_env: str | None = Field(
        None, min_length=1, description="The environment variable holding the password (any characters)."
    )
    password: str | None = Field(
        None, min_length=1, description="The password itself. Discouraged: prefer password_env or secret_arn."
    )
    secret_arn: str | None = Field(
        None,
        min_length=1,
        description="AWS Secrets Manager secret: JSON with username/password (and host, port, dbname) "
        "as RDS writes it, or the bare password.",
    )
    iam_auth: bool = Field(False, description="Log in with an RDS IAM authentication token; needs ssl_ca.")
    region: str | None = Field(None, min_length=1, description="AWS region of the secret or cluster.")
    ssl_ca: str | None = Field(
        None,
        min_length=1,
        description="CA bundle file for TLS (the RDS global-bundle.pem); TLS is then required.",
    )


class DbtPick(Section):
    """Protect the models a dbt selector picks from manifest.json (`materialized:incremental`)."""

    dbt: str


ProtectItem = Annotated[
    Annotated[str, Tag("<table>")] | Annotated[DbtPick, Tag("<selector>")],
    Discriminator(lambda v: "<selector>" if isinstance(v, dict) else "<table>"),
]


class AuditCheck(Section):
    """One audit. Validated in detail by `audits.parse_audits`; described here for editors."""

    name: str | None = None
    table: str | None = None
    min_rows: int | None = Field(None, ge=0)
    max_change_percent: float | None = Field(None, ge=0)
    unique: str | list[str] | None = None
    sql: str | None = None
    expect: Literal["no_rows", "true"] = "no_rows"


def _audits_schema() -> dict[str, Any]:
    return {"anyOf": [{"type": "array", "items": AuditCheck.model_json_schema()}, {"type": "null"}]}


class Sns(Section):
    sns: str = Field(description="Topic ARN, such as arn:aws:sns:ap-northeast-1:123456789012:etl-alerts.")
    region: str | None = None
    on: Outcomes | None = None
    name: str | None = None
    timeout_seconds: float = Field(10.0, gt=0)


class Apprise(Section):
    apprise: str = Field(description="An apprise URL: mailtos://, slack://, msteams:// and others.")
    on: Outcomes | None = None
    name: str | None = None


class Webhook(Section):
    webhook: str = Field(description="An http:// or https:// URL that receives a POST per run.")
    format: Literal["json", "text"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    on: Outcomes | None = None
    name: str | None = None
    timeout_seconds: float = Field(10.0, gt=0)


def _channel_kind(value: Any) -> str | None:
    kinds = [k for k in CHANNEL_KINDS if isinstance(value, dict) and k in value]
    return f"<{kinds[0]}>" if len(kinds) == 1 else None


ChannelItem = Annotated[
    Annotated[Sns, Tag("<sns>")]
    | Annotated[Apprise, Tag("<apprise>")]
    | Annotated[Webhook, Tag("<webhook>")],
    Discriminator(
        _channel_kind,
        custom_error_type="channel_kind",
        custom_error_message=f"must have exactly one of: {', '.join(CHANNEL_KINDS)}",
    ),
]


class Alerts(Section):
    on: Outcomes | None = None
    channels: list[ChannelItem] = Field(default_factory=list)


def _not_aws(value: str) -> str:
    """CloudWatch reserves the AWS/ namespaces for AWS's own services."""
    if value.startswith("AWS/"):
        raise PydanticCustomError("aws_namespace", "starts with AWS/")
    return value


class CloudWatch(Section):
    namespace: Annotated[str, AfterValidator(_not_aws)] = Field(
        "etlguard", min_length=1, max_length=255, json_schema_extra={"not": {"pattern": "^AWS/"}}
    )
    region: str | None = None


class Metrics(Section):
    cloudwatch: CloudWatch | None = None
    prometheus_file: str | None = None
    pushgateway: str | None = None
    timeout_seconds: float = Field(10.0, gt=0)


class Prices(Section):
    """USD, for the monthly cost `etlguard cost` projects. Defaults: Aurora Standard."""

    storage_gb_month: float = Field(0.10, ge=0, description="Storage, per GB-month.")
    io_per_million: float = Field(0.20, ge=0, description="I/O, per million requests.")
    runs_per_month: float = Field(30.0, ge=0)


class Report(Section):
    url: str | None = Field(
        None, min_length=1, description="Where the report is published; alerts link to it."
    )
    prices: Prices = Prices()


class ConfigFile(Section):
    """etlguard.yml. `target` may be left out when ETLGUARD_URL gives it."""

    model_config = ConfigDict(
        title="etlguard configuration (etlguard.yml)",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    target: str | None = Field(
        None,
        description="SQLAlchemy-style URL; ${VAR} is read from the environment. "
        "`dbt`: the connection of the dbt project's profiles.yml.",
    )
    protect: Annotated[
        list[ProtectItem], BeforeValidator(_listed, json_schema_input_type=list[ProtectItem] | str)
    ] = Field(default_factory=list, description="Tables, globs (gold.*) and {dbt: selector} picks.")
    snapshot_schema: SchemaName = "etlguard_snapshots"
    catalog_schema: SchemaName = "etlguard"
    retention: Retention = Retention()
    snapshot: SnapshotOptions = SnapshotOptions()
    lock_wait_seconds: float = Field(60.0, ge=1)
    statement_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="Before a rollback, other sessions' statements on the protected tables get this long.",
    )
    # validated item by item by audits.parse_audits, whose messages name the audit; described here
    audits: Annotated[list[Any] | None, WithJsonSchema(_audits_schema())] = None
    credentials: Credentials | None = None
    dbt: Dbt = Dbt()
    timeout_seconds: float | None = Field(None, ge=1)
    job_name: str | None = Field(None, min_length=1, max_length=255, pattern=r"\S")
    alerts: Alerts | None = None
    metrics: Metrics | None = None
    report: Report = Report()


# One-line errors for the constraints whose bare wording would not say what to write instead.
RULES = {
    "snapshot_schema": "must be a schema name of 1 to 64 characters",
    "catalog_schema": "must be a schema name of 1 to 64 characters",
    "job_name": "must be a name of 1 to 255 characters",
    "retention.days": "must be more than 0; to keep snapshots forever, write days: null",
    "retention.keep_last": "must be at least 1; to rely on days alone, write keep_last: null",
    "metrics.cloudwatch.namespace": "must be 1 to 255 characters, not AWS/...",
}
# ... and for wrong types where "must be a list" would not say a list of what.
SHAPES = {
    "alerts.channels": "must be a list of channels such as {sns: ARN}",
    "audits": "must be a list of checks",
    "job_name": "must be a name of 1 to 255 characters",
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of etlguard.yml, for editors (yaml-language-server) and CI checks."""
    return ConfigFile.model_json_schema(mode="validation")


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"

"""The target's password from where Aurora users keep it: its own setting, an environment
variable, AWS Secrets Manager, or an RDS IAM authentication token made at each connect.

A password never travels inside a URL string here: it is handed to the database driver as its
own argument, so no error text built from the URL can carry it. Messages name the setting,
the variable or the secret's ARN, never the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError, TargetError
from .target import Target

# A secret's keys that describe the connection, as RDS writes them when it creates a secret.
_SECRET_FIELDS = ("username", "password", "host", "port", "dbname")


@dataclass(frozen=True)
class Credentials:
    """The `credentials:` block of etlguard.yml, with `${VAR}` already interpolated."""

    password_env: str | None = None
    password: str | None = None
    secret_arn: str | None = None
    iam_auth: bool = False
    region: str | None = None
    ssl_ca: str | None = None

    @property
    def sources(self) -> list[str]:
        given = {
            "password_env": self.password_env,
            "password": self.password,
            "secret_arn": self.secret_arn,
            "iam_auth": self.iam_auth or None,
        }
        return [name for name, value in given.items() if value is not None]


def apply(target: Target, creds: Credentials, url_has_host: bool) -> Target:
    """`target` with the password (or token source) and TLS settings `creds` describe."""
    if target.dialect not in ("mysql", "mariadb", "postgresql"):
        raise ConfigError(
            f"credentials apply to MySQL, MariaDB and PostgreSQL targets, not {target.dialect}; "
            "remove the credentials block"
        )
    sources = creds.sources
    if len(sources) > 1:
        raise ConfigError(
            f"credentials has both {sources[0]} and {sources[1]}; keep one way to get the password"
        )
    if sources and target.password:
        raise ConfigError(
            f"the target URL has a password and credentials.{sources[0]} gives one too; "
            "remove the password from the URL"
        )
    options = dict(target.options)
    if creds.ssl_ca:
        options["ssl_ca"] = creds.ssl_ca
    if creds.password_env is not None:
        target = replace(target, password=_from_environment(creds.password_env))
    elif creds.password is not None:
        target = replace(target, password=creds.password)
    elif creds.secret_arn is not None:
        target = _from_secret(target, read_secret(creds.secret_arn, creds.region), url_has_host)
    elif creds.iam_auth:
        if not options.get("ssl_ca"):
            raise ConfigError(
                "credentials.iam_auth needs TLS: set credentials.ssl_ca to the RDS CA bundle "
                "(global-bundle.pem from https://truststore.pdx.amazonaws.com)"
            )
        if not target.user:
            raise ConfigError("credentials.iam_auth needs the database user in the target URL")
        target = replace(target, token=iam_token_source(target, creds.region))
    return replace(target, options=tuple(options.items()))


def _from_environment(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(
            f"credentials.password_env names {name}, which is not set in the environment; "
            "export it before running etlguard"
        )
    return value


def read_secret(arn: str, region: str | None) -> dict[str, Any]:
    """The secret's fields: its JSON object, or {"password": text} for a plain-string secret."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise ConfigError("credentials.secret_arn needs boto3: pip install 'etlguard[aws]'") from None
    region = region or _region_of(arn)
    try:
        client = boto3.client("secretsmanager", region_name=region)
        text = client.get_secret_value(SecretId=arn).get("SecretString")
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(
            f"cannot read secret {arn} ({code}); check credentials.secret_arn, the region and "
            "the secretsmanager:GetSecretValue permission"
        ) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigError(f"cannot read secret {arn}: {type(exc).__name__}; check AWS access") from None
    if not text:
        raise ConfigError(f"secret {arn} has no string value; store the password as text or JSON")
    if not text.lstrip().startswith("{"):
        return {"password": text}
    try:
        fields = json.loads(text)
    except ValueError:
        # never quote the text: it is the secret
        raise ConfigError(
            f"secret {arn} starts like JSON but is not valid JSON; store "
            '{"username": ..., "password": ...} or the bare password'
        ) from None
    if not isinstance(fields, dict) or not isinstance(fields.get("password"), str):
        raise ConfigError(f'secret {arn} has no "password" text; store {{"username": ..., "password": ...}}')
    return {k: fields[k] for k in _SECRET_FIELDS if k in fields}


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager":
        raise ConfigError(
            f"credentials.secret_arn {arn!r} is not a Secrets Manager ARN "
            "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
        )
    return parts[3] or None


def _from_secret(target: Target, fields: dict[str, Any], url_has_host: bool) -> Target:
    """The secret's password always; its user name when the URL gives none; its host, port and
    database when the URL gives no host (`mysql+pymysql://` with the secret saying where)."""
    changes: dict[str, Any] = {"password": fields["password"]}
    if not target.user and isinstance(fields.get("username"), str):
        changes["user"] = fields["username"]
    if not url_has_host:
        if isinstance(fields.get("host"), str):
            changes["host"] = fields["host"]
        if isinstance(fields.get("port"), int | str) and str(fields["port"]).isdigit():
            changes["port"] = int(fields["port"])
        if not target.database and isinstance(fields.get("dbname"), str):
            changes["database"] = fields["dbname"]
    return replace(target, **changes)


def iam_token_source(target: Target, region: str | None) -> Callable[[], str]:
    """A function making a fresh RDS IAM token (valid 15 minutes) for each connection."""
    try:
        import boto3
    except ImportError:
        raise ConfigError("credentials.iam_auth needs boto3: pip install 'etlguard[aws]'") from None
    import botocore.exceptions

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(
            "credentials.iam_auth needs credentials.region (or AWS_REGION), the cluster's region"
        )
    host, port, user = target.host, target.port or 3306, target.user

    def token() -> str:
        try:
            client = boto3.client("rds", region_name=region)
            made = client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetError(
                f"cannot make an RDS IAM token for {target.redacted}: {type(exc).__name__}; "
                "check the AWS credentials of this job"
            ) from None
        return str(made)

    return token

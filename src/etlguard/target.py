"""Target URLs in SQLAlchemy form, parsed without SQLAlchemy (it would be a heavy dependency
for a Glue job), and always printable without the password."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError

_DIALECTS = {
    "mysql": "mysql",
    "mariadb": "mariadb",
    "duckdb": "duckdb",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "iceberg": "iceberg",
}
_DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "iceberg": 5432}
# iceberg+<catalog>: where the table pointers live (sql = a SQLite file, as a bare iceberg:///)
_ICEBERG_CATALOGS = {
    "": "sql",
    "sql": "sql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "glue": "glue",
}


@dataclass(frozen=True)
class Target:
    dialect: str  # mysql | mariadb | postgresql | duckdb | iceberg
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""  # for duckdb: the file path, or ":memory:"
    options: tuple[tuple[str, str], ...] = ()
    # makes the password at each connect (an RDS IAM token lives 15 minutes); see credentials.py
    token: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    catalog: str = ""  # for iceberg: sql (SQLite file) | postgresql | glue

    def __str__(self) -> str:
        return self.redacted

    @property
    def redacted(self) -> str:
        """The URL with the password replaced: the only form that is ever printed or stored."""
        if self.dialect == "iceberg" and self.catalog in ("sql", "glue"):
            return f"iceberg+{self.catalog}:///{self.database}"
        if self.dialect == "duckdb":
            return f"{self.dialect}:///{self.database}"
        auth = self.user + (":***" if self.password or self.token else "")
        port = f":{self.port}" if self.port else ""
        db = f"/{self.database}" if self.database else ""
        scheme = f"iceberg+{self.catalog}" if self.dialect == "iceberg" else self.dialect
        return f"{scheme}://{auth}@{self.host}{port}{db}"

    def login_password(self) -> str:
        """The password to send now: a fresh token when the target has a token source."""
        return self.token() if self.token else self.password

    def option(self, name: str, default: str = "") -> str:
        return dict(self.options).get(name, default)


def parse_target(url: str) -> Target:
    if not url or "://" not in url:
        raise ConfigError(
            "target URL is missing or malformed; give one such as "
            "mysql+pymysql://user:${DB_PASSWORD}@host:3306 or duckdb:///warehouse.duckdb"
        )
    scheme, rest = url.split("://", 1)
    dialect = _DIALECTS.get(scheme.split("+", 1)[0].lower())
    if dialect is None:
        raise ConfigError(
            f"unsupported target type {scheme!r}; use mysql+pymysql://, mariadb+pymysql://, postgresql+psycopg:// or duckdb:///"
        )
    catalog = ""
    if dialect == "iceberg":
        catalog = _ICEBERG_CATALOGS.get(scheme.partition("+")[2].lower(), "")
        if not catalog:
            raise ConfigError(
                f"unsupported Iceberg catalog {scheme!r}; use iceberg+sql:///catalog.db, "
                "iceberg+postgresql://user@host/db or iceberg+glue:///etlguard.db?warehouse=s3://bucket/path"
            )
    if dialect == "duckdb" or catalog in ("sql", "glue"):  # the path of a local file
        path, _, query = rest.partition("?")
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ConfigError(f"{dialect} target needs a file path: {scheme}:///warehouse.db")
        return Target(dialect, database=unquote(path), options=tuple(parse_qsl(query)), catalog=catalog)
    parts = urlsplit(f"{scheme}://{rest}")
    try:
        port = parts.port
    except ValueError:
        # never echo the URL text: a password with ':' or '@' in it ends up here
        raise ConfigError(
            "target URL has a bad port or an unencoded password; percent-encode the "
            "password's special characters (@ -> %40, : -> %3A, / -> %2F, # -> %23, ? -> %3F, "
            "% -> %25), or put it in ${VAR}, which etlguard encodes for you"
        ) from None
    return Target(
        dialect,
        host=parts.hostname or "127.0.0.1",
        port=port or _DEFAULT_PORTS[dialect],
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")),
        options=tuple(parse_qsl(parts.query)),
        catalog=catalog,
    )

"""Settings of the notify layer (alerts, metrics), built from the validated file.

They live with the configuration so that alerts and metrics read their settings without the
configuration importing them. Building a channel interpolates `${VAR}`, checks what only an
interpolated value can show (an ARN, an http URL, a URL apprise understands), and collects the
credentials found anywhere (passwords in URLs, header values, `${VAR}` values) into `Secrets`,
which every outgoing message is scrubbed with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from ..errors import ConfigError
from . import schema
from .env import MIN_SECRET, interpolate_secret

DEFAULT_ON = frozenset({"rolled_back", "snapshot_failed", "rollback_failed"})
_APPRISE_KIND = {
    "mailto": "email",
    "mailtos": "email",
    "slack": "slack",
    "msteams": "teams",
    "workflow": "teams",
    "workflows": "teams",
}
_SECRET_PARAM = re.compile(r"pass|secret|token|key|auth|sig", re.I)
_TOKENISH = re.compile(r"^(?=.*\d)[A-Za-z0-9+/=_-]{16,}$")
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")


@dataclass(frozen=True)
class Secrets:
    """Strings that must never leave in a message: passwords, tokens, `${VAR}` values."""

    values: tuple[str, ...] = ()

    def __repr__(self) -> str:  # a config printed in a log must not print what it protects
        return f"Secrets({len(self.values)} values)"

    def __add__(self, other: Secrets) -> Secrets:
        return Secrets(tuple(dict.fromkeys(self.values + other.values)))

    def scrub(self, text: str) -> str:
        text = _URL_USERINFO.sub(r"\1***@", text)
        for secret in sorted(self.values, key=len, reverse=True):
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, "***")
        return text

    def scrub_data(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, Mapping):
            return {self.scrub(str(k)): self.scrub_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.scrub_data(v) for v in data]
        return data


def url_secrets(url: str) -> Secrets:
    """The parts of a URL that are credentials: userinfo password, token-like path segments,
    and query values whose names say pass/secret/token/key."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return Secrets()
    found = [password or ""]
    host = parts.netloc.rpartition("@")[2].partition(":")[0]  # as written: hostname lowercases
    found += [seg for seg in [host, *parts.path.split("/")] if _TOKENISH.match(seg)]
    found += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k)]
    return Secrets(tuple(s for s in found if len(s) >= MIN_SECRET))


def safe_url(url: str) -> str:
    """scheme://host[:port] only: enough to tell channels apart, with no credentials or tokens."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


# -- alerts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    kind: str  # sns | apprise | webhook
    address: str = field(repr=False)  # topic ARN or URL; may hold credentials, so never printed
    label: str = ""  # printable: no credentials
    region: str | None = None
    format: str = "json"  # webhook body: json | text
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    on: frozenset[str] | None = None  # None: the alerts.on default
    timeout_seconds: float = 10.0

    def wants(self, outcomes: set[str], default_on: frozenset[str]) -> bool:
        wanted = default_on if self.on is None else self.on  # on: [] is "only failed rollbacks"
        return "rollback_failed" in outcomes or bool(outcomes & wanted)


@dataclass(frozen=True)
class AlertSettings:
    on: frozenset[str] = DEFAULT_ON
    channels: tuple[Channel, ...] = ()
    secrets: Secrets = field(default=Secrets(), repr=False)


class _Text:
    """Interpolates values of one section and gathers the secrets it read on the way."""

    def __init__(self) -> None:
        self.secrets = Secrets()

    def __call__(self, value: str | None, key: str) -> str | None:
        if value is None:
            return None
        text, found = interpolate_secret(value, key)
        self.secrets += Secrets(found)
        return text


def build_alerts(section: schema.Alerts | None) -> AlertSettings:
    if section is None:
        return AlertSettings()
    text = _Text()
    channels = tuple(_channel(c, f"alerts.channels[{i}]", text) for i, c in enumerate(section.channels))
    on = DEFAULT_ON if section.on is None else frozenset(section.on)
    return AlertSettings(on=on, channels=channels, secrets=text.secrets)


def _channel(item: schema.Sns | schema.Apprise | schema.Webhook, key: str, text: _Text) -> Channel:
    on = None if item.on is None else frozenset(item.on)
    name = text(item.name, f"{key}.name")
    if isinstance(item, schema.Sns):
        arn = str(text(item.sns, f"{key}.sns"))
        channel = _sns(arn, key, name, text(item.region, f"{key}.region"))
        return replace(channel, on=on, timeout_seconds=item.timeout_seconds)
    if isinstance(item, schema.Apprise):
        url = str(text(item.apprise, f"{key}.apprise"))
        text.secrets += url_secrets(url)
        return Channel("apprise", url, name or _apprise_label(url, key), on=on)
    url = str(text(item.webhook, f"{key}.webhook"))
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"config key '{key}.webhook' must be an http:// or https:// URL")
    text.secrets += url_secrets(url)
    headers = tuple((n, str(text(v, f"{key}.headers.{n}"))) for n, v in item.headers.items())
    # a header value is usually a credential (Authorization, X-Api-Key): never send it on
    text.secrets += Secrets(tuple(v.split()[-1] for _, v in headers if v.split()))
    label = name or f"webhook {safe_url(url)}"
    return Channel("webhook", url, label, None, item.format, headers, on, item.timeout_seconds)


def _sns(address: str, key: str, name: str | None, region: str | None) -> Channel:
    parts = address.split(":")
    if len(parts) != 6 or parts[0] != "arn" or not parts[1].startswith("aws") or parts[2] != "sns":
        raise ConfigError(
            f"config key '{key}.sns' must be a topic ARN such as arn:aws:sns:ap-northeast-1:123456789012:etl-alerts"
        )
    return Channel("sns", address, name or f"sns {address}", region=region or parts[3])


def _apprise_label(address: str, key: str) -> str:
    import apprise  # loaded only when a configuration uses it: it is slow to import

    if apprise.Apprise.instantiate(address) is None:
        raise ConfigError(
            f"config key '{key}.apprise' is not a URL apprise can use (such as "
            "mailtos://user:${SMTP_PASSWORD}@smtp.example.com?to=oncall@example.com)"
        )
    scheme = urlsplit(address).scheme.lower()
    return f"{_APPRISE_KIND.get(scheme, scheme)} {safe_url(address)}"


# -- metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudWatchSettings:
    namespace: str = "etlguard"
    region: str | None = None


@dataclass(frozen=True)
class MetricSettings:
    cloudwatch: CloudWatchSettings | None = None
    prometheus_file: Path | None = None
    pushgateway: str | None = field(default=None, repr=False)  # may hold user:password
    timeout_seconds: float = 10.0

    @property
    def secrets(self) -> Secrets:
        return url_secrets(self.pushgateway) if self.pushgateway else Secrets()

    @property
    def enabled(self) -> bool:
        return bool(self.cloudwatch or self.prometheus_file or self.pushgateway)


def build_metrics(section: schema.Metrics | None) -> MetricSettings:
    if section is None:
        return MetricSettings()
    text = _Text()
    cw = section.cloudwatch
    cloudwatch = CloudWatchSettings(cw.namespace, cw.region) if cw else None
    textfile = text(section.prometheus_file, "metrics.prometheus_file")
    gateway = text(section.pushgateway, "metrics.pushgateway")
    if gateway is not None:
        gateway = gateway.rstrip("/")
        if urlsplit(gateway).scheme not in ("http", "https"):
            raise ConfigError("config key 'metrics.pushgateway' must be an http:// or https:// URL")
    return MetricSettings(cloudwatch, Path(textfile) if textfile else None, gateway, section.timeout_seconds)

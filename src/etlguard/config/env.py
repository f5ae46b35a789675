"""`${VAR}` and `${VAR:-default}` in configuration values, read from the environment.

Values taken from the environment are usually credentials, so `interpolate_secret` also
returns them: alerts and metrics scrub them from every message they send.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from urllib.parse import quote

from ..errors import ConfigError

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MIN_SECRET = 3  # shorter "secrets" would blank out ordinary words when scrubbed


def interpolate(value: str, key: str, encode: Callable[[re.Match[str]], bool] = lambda m: False) -> str:
    """`value` with every `${VAR}` replaced; an unset variable without a default names `key`.
    Where `encode(match)` holds, the value is percent-encoded (a password inside a URL)."""

    def sub(m: re.Match[str]) -> str:
        found = _value(m, key)
        return quote(found, safe="") if encode(m) else found

    return ENV_REF.sub(sub, value)


def _value(m: re.Match[str], key: str) -> str:
    if m.group(1) in os.environ:
        return os.environ[m.group(1)]
    if m.group(2) is not None:
        return m.group(2)
    raise ConfigError(f"{key} refers to ${{{m.group(1)}}}, which is not set in the environment")


def referenced_variables(value: str) -> tuple[str, ...]:
    """The variables `value` reads: for the target URL, etlguard's credentials, which the ETL
    child does not inherit unless passed on by name (`run --pass-env`)."""
    return tuple(m.group(1) for m in ENV_REF.finditer(value))


def interpolate_secret(value: str, key: str) -> tuple[str, tuple[str, ...]]:
    """`interpolate`, plus the values it took from the environment (long enough to scrub)."""
    names = [m.group(1) for m in ENV_REF.finditer(value)]
    found = tuple(os.environ[n] for n in names if len(os.environ.get(n, "")) >= MIN_SECRET)
    return interpolate(value, key), found

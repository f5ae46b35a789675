"""`target: dbt`: the connection from the dbt project's `profiles.yml`, so a dbt user writes
it once. Found the way dbt finds it, for dbt-mysql (mysql, mysql5, mariadb), dbt-postgres and
dbt-duckdb.

profiles.yml is Jinja; etlguard renders only `{{ env_var('NAME') }}` and
`{{ env_var('NAME', 'default') }}` (with dbt's `as_number`/`as_text` filters, which change
nothing here), which is what profiles hold in practice. Anything else is named in a one-line
error rather than passed on as text. The password goes into the Target as its own field,
never through a URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .dbt import DbtSettings, flag, is_dbt, project_dir
from .errors import ConfigError
from .target import Target


@dataclass(frozen=True)
class ProfileChoice:
    """`dbt.profiles_dir`, `dbt.profile` and `dbt.target` of etlguard.yml (all optional)."""

    profiles_dir: str | None = None
    profile: str | None = None
    target: str | None = None


_ENV_VAR = re.compile(
    r"""\{\{\s*env_var\(\s*(['"])(?P<name>[^'"]+)\1\s*(?:,\s*(['"])(?P<default>[^'"]*)\3\s*)?\)"""
    r"""(?:\s*\|\s*(?:as_number|as_text|as_native|as_bool|int|string))*\s*\}\}"""
)
_MYSQL_TYPES = {"mysql": "mysql", "mysql5": "mysql", "mariadb": "mariadb"}


def dbt_target(
    settings: DbtSettings, choice: ProfileChoice, command: Sequence[str] = (), cwd: Path | None = None
) -> Target:
    """The Target the dbt command would connect to."""
    base = cwd or Path.cwd()
    project = project_dir(settings, command, base)
    command = command if is_dbt(command) else ()  # `-t` of another program is not dbt's target
    file = find_profiles(project, choice, command, base)
    profiles = _read_yaml(file)
    name = flag(command, "--profile") or choice.profile or _project_profile(project)
    profile = profiles.get(name)
    if not isinstance(profile, dict):
        known = ", ".join(sorted(str(k) for k in profiles if k != "config")) or "none"
        raise ConfigError(f"{file} has no profile {name!r} (profiles there: {known}); set dbt.profile")
    target_name = (
        flag(command, "--target")
        or flag(command, "-t")
        or choice.target
        or os.environ.get("DBT_TARGET")
        or render(profile.get("target"), f"{name}.target")
    )
    outputs = profile.get("outputs")
    if not target_name or not isinstance(outputs, dict):
        raise ConfigError(f"profile {name!r} in {file} has no target: and outputs:; set dbt.target")
    output = outputs.get(target_name)
    if not isinstance(output, dict):
        known = ", ".join(sorted(str(k) for k in outputs)) or "none"
        raise ConfigError(
            f"profile {name!r} in {file} has no target {target_name!r} (targets: {known}); set dbt.target"
        )
    where = f"{name}.outputs.{target_name}"
    fields = {str(k): render(v, f"{where}.{k}") for k, v in output.items()}
    return _profile_target(fields, where, file, base)


def find_profiles(project: Path, choice: ProfileChoice, command: Sequence[str], cwd: Path) -> Path:
    """profiles.yml where dbt looks: --profiles-dir, dbt.profiles_dir, DBT_PROFILES_DIR, the
    project directory, the working directory, then ~/.dbt."""
    given = flag(command, "--profiles-dir") or choice.profiles_dir or os.environ.get("DBT_PROFILES_DIR")
    if given:
        file = cwd / Path(given).expanduser() / "profiles.yml"
        if not file.is_file():
            raise ConfigError(
                f"no profiles.yml in {file.parent}; fix --profiles-dir, dbt.profiles_dir or DBT_PROFILES_DIR"
            )
        return file
    places = [project, cwd, Path.home() / ".dbt"]
    for place in places:
        if (place / "profiles.yml").is_file():
            return place / "profiles.yml"
    looked = ", ".join(dict.fromkeys(str(p) for p in places))
    raise ConfigError(f"target: dbt found no profiles.yml (looked in {looked}); set dbt.profiles_dir")


def render(value: Any, key: str) -> Any:
    """`value` with `{{ env_var(...) }}` replaced; any other Jinja is an error naming `key`."""
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"profiles.yml {key} reads env_var('{name}'), which is not set; export it")

    rest = _ENV_VAR.sub("", value)
    if "{{" in rest or "{%" in rest:
        raise ConfigError(
            f"profiles.yml {key} uses Jinja other than env_var(); etlguard renders only "
            "{{ env_var('NAME') }} and {{ env_var('NAME', 'default') }}"
        )
    return _ENV_VAR.sub(sub, value)


def _project_profile(project: Path) -> str:
    file = project / "dbt_project.yml"
    if not file.is_file():
        raise ConfigError(f"no dbt_project.yml in {project}; set dbt.project_dir or dbt.profile")
    profile = render(_read_yaml(file).get("profile"), "dbt_project.yml profile")
    if not isinstance(profile, str) or not profile:
        raise ConfigError(f"{file} names no profile:; set dbt.profile")
    return profile


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {file}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file} is not a mapping of profiles")
    return data


def _profile_target(fields: dict[str, Any], where: str, file: Path, cwd: Path) -> Target:
    kind = str(fields.get("type", ""))
    if kind in _MYSQL_TYPES:
        return Target(
            _MYSQL_TYPES[kind],
            host=_as_text(fields.get("server") or fields.get("host") or "127.0.0.1"),
            port=_port(fields.get("port"), 3306, where),
            user=_as_text(fields.get("username") or fields.get("user") or ""),
            password=_as_text(fields.get("password") or ""),
        )
    if kind in ("postgres", "postgresql"):
        options = [(k, _as_text(fields[k])) for k in ("sslmode", "connect_timeout") if fields.get(k)]
        if fields.get("sslrootcert"):
            options.append(("ssl_ca", _as_text(fields["sslrootcert"])))
        return Target(
            "postgresql",
            host=_as_text(fields.get("host") or "127.0.0.1"),
            port=_port(fields.get("port"), 5432, where),
            user=_as_text(fields.get("user") or ""),
            password=_as_text(fields.get("password") or fields.get("pass") or ""),
            database=_as_text(fields.get("dbname") or fields.get("database") or ""),
            options=tuple(options),
        )
    if kind == "duckdb":
        path = _as_text(fields.get("path") or "")
        if not path or path == ":memory:":
            raise ConfigError(f"{where} in {file} is an in-memory DuckDB; give it a path: to guard")
        return Target("duckdb", database=str(cwd / path) if not Path(path).is_absolute() else path)
    raise ConfigError(
        f"{where} in {file} is a {kind or 'typeless'} target; target: dbt supports mysql, "
        "mariadb, postgres and duckdb profiles (give a target URL instead)"
    )


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def _port(value: Any, default: int, where: str) -> int:
    if value in (None, ""):
        return default
    text = str(value).strip()
    if not text.isdigit():
        raise ConfigError(f"profiles.yml {where}.port is not a port number")
    return int(text)


def is_dbt_target(written: str | None) -> bool:
    return written is not None and written.strip() == "dbt"


__all__ = ["ProfileChoice", "dbt_target", "find_profiles", "is_dbt_target", "render"]

"""dbt awareness. etlguard calls dbt as a subprocess (any version: dbt-mysql 1.7 pins dbt-core
1.7) and reads only its artifacts, `manifest.json` and `run_results.json`, whose fields used here
are stable across dbt 1.x."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .tables import TableRef

_SUBCOMMANDS_WITH_FAIL_FAST = {"run", "build", "seed", "snapshot", "test"}
_FAILED = {"error", "fail", "skipped", "runtime error"}
_SELECTOR_KEYS = {"materialized", "schema", "tag", "name", "package", "path", "resource_type"}


@dataclass(frozen=True)
class DbtSettings:
    fail_fast: bool = True
    project_dir: str | None = None  # default: --project-dir, DBT_PROJECT_DIR or the working directory
    target_path: str | None = None  # default: --target-path, DBT_TARGET_PATH or <project>/target
    check_results: bool = True  # a failed, errored or skipped node fails the run
    wrapper: bool = False  # the command is a script that runs dbt: its run_results.json is required
    zero_copy: bool = False  # table models keep their replaced table as the snapshot (zerocopy.py)


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status.lower() in _FAILED

    def as_dict(self) -> dict[str, str]:
        return {"unique_id": self.unique_id, "status": self.status, "message": self.message}


_DBT_NAMES = ("dbt", "dbt.exe")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$")
_RUNNERS = {"uv": "run", "poetry": "run", "pipx": "run", "pdm": "run", "hatch": "run", "uvx": ""}


def dbt_at(command: Sequence[str]) -> int | None:
    """Where dbt's own argv starts: `dbt run` (0), `python -m dbt run` (2), `uv run dbt run`,
    `uv run --frozen dbt run`, `poetry run dbt run`, `uvx dbt run`. None for anything else
    (a wrapper script: set `dbt: {wrapper: true}` for those)."""
    if not command:
        return None
    first = Path(command[0]).name
    if first in _DBT_NAMES:
        return 0
    if _PYTHON.match(first):
        return 2 if list(command[1:3]) == ["-m", "dbt"] else None
    verb = _RUNNERS.get(first)
    if verb is None:
        return None
    rest = 1
    if verb:
        if len(command) < 2 or command[1] != verb:
            return None
        rest = 2
    for i in range(rest, len(command)):
        if command[i] in _DBT_NAMES:
            return i
        if not command[i].startswith("-"):
            return None
    return None


def is_dbt(command: Sequence[str]) -> bool:
    return dbt_at(command) is not None


def subcommand(command: Sequence[str]) -> str | None:
    start = dbt_at(command)
    for arg in command[(0 if start is None else start) + 1 :]:
        if not arg.startswith("-"):
            return arg
    return None


def with_fail_fast(command: Sequence[str]) -> list[str]:
    """Add --fail-fast to `dbt run|build|...` unless it (or -x, or --no-fail-fast) is there."""
    cmd = list(command)
    if not is_dbt(cmd) or subcommand(cmd) not in _SUBCOMMANDS_WITH_FAIL_FAST:
        return cmd
    if any(a in ("--fail-fast", "-x", "--no-fail-fast") for a in cmd):
        return cmd
    return [*cmd, "--fail-fast"]


def flag(command: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == name and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def project_dir(settings: DbtSettings, command: Sequence[str] = (), cwd: Path | None = None) -> Path:
    base = cwd or Path.cwd()
    chosen = flag(command, "--project-dir") or settings.project_dir or os.environ.get("DBT_PROJECT_DIR")
    return (base / chosen) if chosen else base


def target_dir(settings: DbtSettings, command: Sequence[str] = (), cwd: Path | None = None) -> Path:
    project = project_dir(settings, command, cwd)
    chosen = flag(command, "--target-path") or settings.target_path or os.environ.get("DBT_TARGET_PATH")
    if not chosen:
        return project / "target"
    path = Path(chosen)
    return path if path.is_absolute() else project / path


# -- the protected set from the manifest ---------------------------------------------------------


def parse_selector(text: str) -> dict[str, str]:
    """`materialized:incremental`, `schema:gold`, `tag:critical,materialized:table` (all must match)."""
    criteria = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition(":")
        if not sep or key not in _SELECTOR_KEYS or not value:
            raise ConfigError(
                f"dbt selector {text!r} is not understood; use method:value pairs joined by commas, "
                f"methods: {', '.join(sorted(_SELECTOR_KEYS))} (e.g. materialized:incremental)"
            )
        criteria[key] = value
    return criteria


def load_manifest(target: Path) -> dict[str, Any]:
    path = target / "manifest.json"
    if not path.exists():
        raise ConfigError(
            f"dbt manifest {path} not found; run `dbt parse` once so etlguard can choose the protected "
            "set, or set dbt.project_dir / dbt.target_path"
        )
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dbt manifest {path} cannot be read: {exc}") from None


def select_relations(manifest: dict[str, Any], selectors: Sequence[str]) -> list[TableRef]:
    """Tables of the models (and seeds, snapshots) that match any selector; views and
    ephemeral models are not tables and are never selected."""
    out: list[TableRef] = []
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") not in ("model", "seed", "snapshot"):
            continue
        materialized = node.get("config", {}).get("materialized", "")
        if materialized in ("view", "ephemeral", "test", "materialized_view"):
            continue
        if any(_matches(node, parse_selector(s)) for s in selectors):
            ref = TableRef(node["schema"], node.get("alias") or node["name"])
            if ref not in out:
                out.append(ref)
    return sorted(out)


def rebuilt_without_history(manifest: dict[str, Any]) -> list[TableRef]:
    """Tables dbt drops and creates again, leaving no snapshot to go back to: dbt-athena's
    Iceberg `table` materialization (Athena's DROP TABLE purges the data and the history)."""
    if manifest.get("metadata", {}).get("adapter_type") != "athena":
        return []
    out = []
    for node in manifest.get("nodes", {}).values():
        config = node.get("config", {})
        if (
            node.get("resource_type") == "model"
            and config.get("materialized") == "table"
            and str(config.get("table_type", "")).lower() == "iceberg"
        ):
            out.append(TableRef(node["schema"], node.get("alias") or node["name"]))
    return sorted(out)


def _matches(node: dict[str, Any], criteria: dict[str, str]) -> bool:
    config = node.get("config", {})
    values = {
        "materialized": [config.get("materialized", "")],
        "schema": [node.get("schema", "")],
        "tag": list(node.get("tags", [])),
        "name": [node.get("name", "")],
        "package": [node.get("package_name", "")],
        "path": [node.get("original_file_path", "")],
        "resource_type": [node.get("resource_type", "")],
    }
    return all(any(fnmatch.fnmatchcase(v, pattern) for v in values[k]) for k, pattern in criteria.items())


def table_models(manifest: dict[str, Any]) -> set[TableRef]:
    """Tables of the SQL models materialized as `table`: dbt rebuilds them whole and renames the
    new table into place, so the replaced table can be kept instead of copied beforehand."""
    return _models(manifest, lambda config: config.get("materialized") == "table")


def full_refresh_models(manifest: dict[str, Any], command: Sequence[str]) -> set[TableRef]:
    """Tables of the SQL incremental models this command rebuilds whole, as dbt's
    `should_full_refresh()` decides: the model's `full_refresh` config if set, else the
    command's --full-refresh (-f). Only a dbt command's flags are known; a wrapper's are not."""
    flagged = full_refresh(command)
    return _models(
        manifest,
        lambda config: (
            config.get("materialized") == "incremental"
            and (flagged if config.get("full_refresh") is None else bool(config.get("full_refresh")))
        ),
    )


def full_refresh(command: Sequence[str]) -> bool:
    start = dbt_at(command)
    return start is not None and any(a in ("--full-refresh", "-f") for a in command[start + 1 :])


def _models(manifest: dict[str, Any], wanted: Callable[[dict[str, Any]], bool]) -> set[TableRef]:
    return {
        TableRef(node["schema"], node.get("alias") or node["name"])
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model"
        and wanted(node.get("config", {}))
        and node.get("language", "sql") == "sql"
    }


def zero_copy_installed(manifest: dict[str, Any], materialization: str = "table") -> bool:
    """Whether the project's own `table` (or `incremental`) materialization for its adapter is
    etlguard_dbt's (a package's materialization alone does not override dbt's since dbt 1.8)."""
    metadata = manifest.get("metadata", {})
    adapter, project = metadata.get("adapter_type"), metadata.get("project_name")
    body = f"etlguard_dbt.zero_copy_{materialization}()"
    for macro in manifest.get("macros", {}).values():
        if (
            macro.get("name") == f"materialization_{materialization}_{adapter}"
            and (project is None or macro.get("package_name") == project)
            and body in macro.get("macro_sql", "")
        ):
            return True
    return False


# -- results ----------------------------------------------------------------------------------------


def read_results(target: Path, newer_than: float) -> list[NodeResult] | None:
    """The nodes of this run's run_results.json, or None if the run wrote none (a stale file
    from an earlier run does not count)."""
    path = target / "run_results.json"
    try:
        if path.stat().st_mtime < newer_than:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [
        NodeResult(r.get("unique_id", "?"), str(r.get("status", "")), str(r.get("message") or "")[:500])
        for r in data.get("results", [])
    ]

"""The published JSON Schema of etlguard.yml (`etlguard schema`, docs/etlguard.schema.json):
it is the one the loader uses, it accepts every example configuration in the repository, and an
editor-style check with it rejects what the loader rejects."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from etlguard import Config
from etlguard.config import STARTER, load_yaml

from support import cli

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "etlguard.schema.json"
CONFIG_KEYS = {"target", "protect", "alerts", "metrics", "audits", "retention", "job_name"}


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def example_configs() -> dict[str, dict[str, Any]]:
    """Every etlguard.yml in examples/, every YAML block of the docs that is an etlguard config
    (a mapping with etlguard's keys), and the starter file `etlguard init` writes."""
    found = {
        str(p.relative_to(ROOT)): load_yaml(p.read_text()) for p in ROOT.glob("examples/**/etlguard.yml")
    }
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            data = load_yaml(block)
            if isinstance(data, dict) and CONFIG_KEYS & set(data):
                found[f"{doc.relative_to(ROOT)} block {i + 1}"] = data
    found["etlguard init"] = load_yaml(STARTER.format(target="duckdb:///w.duckdb", protect='  - "gold.*"'))
    return found


EXAMPLES = example_configs()


def test_the_published_schema_is_the_one_the_loader_uses(capsys: pytest.CaptureFixture[str]) -> None:
    printed = cli(capsys, "schema")
    assert (printed.code, printed.err) == (0, "")
    assert printed.out == SCHEMA_FILE.read_text(encoding="utf-8"), (
        "docs/etlguard.schema.json is stale: etlguard schema > docs/etlguard.schema.json"
    )


def test_examples_are_found_in_examples_and_docs() -> None:
    assert any(name.startswith("examples/") for name in EXAMPLES)
    assert any(name.startswith("docs/configuration.md") for name in EXAMPLES)
    assert any(name.startswith("docs/alerts.md") for name in EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_config_is_valid_for_the_schema_and_the_loader(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = EXAMPLES[name]
    errors = [e.message for e in validator().iter_errors(data)]
    assert errors == [], (name, errors)
    for var in ("DB_PASSWORD", "SMTP_PASSWORD", "HOOK_TOKEN", "TEAMS_WORKFLOW_ID", "TEAMS_WORKFLOW_SIG"):
        monkeypatch.setenv(var, "example-value-1")
    monkeypatch.setenv("TEAMS_WORKFLOW_HOST", "prod-00.westus.logic.azure.com:443")
    for var in ("SLACK_TOKEN_A", "SLACK_TOKEN_B", "SLACK_TOKEN_C"):
        monkeypatch.setenv(var, "T00000000")
    Config.from_dict({"target": "duckdb:///w.duckdb", **data})  # and the loader agrees (docs show fragments)


BAD = {
    "unknown top-level key": {"target": "duckdb:///w.duckdb", "targett": "x"},
    "unknown nested key": {"target": "duckdb:///w.duckdb", "retention": {"dayz": 3}},
    "unknown channel key": {"alerts": {"channels": [{"webhook": "http://x", "fromat": "json"}]}},
    "two channel kinds": {"alerts": {"channels": [{"webhook": "http://x", "sns": "arn:aws:sns:r:1:t"}]}},
    "wrong type": {"lock_wait_seconds": "soon"},
    "below the minimum": {"retention": {"days": 0}},
    "not an outcome": {"alerts": {"on": ["rolledback"]}},
    "reserved namespace": {"metrics": {"cloudwatch": {"namespace": "AWS/Glue"}}},
    "unknown audit key": {"audits": [{"tabel": "gold.t", "min_rows": 1}]},
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_an_editor_check_rejects_what_the_loader_rejects(name: str) -> None:
    data = {"target": "duckdb:///w.duckdb", **BAD[name]}
    assert list(validator().iter_errors(data)), f"the schema accepts {name}"
    with pytest.raises(Exception, match=r"config key|unknown key|must have exactly one"):
        Config.from_dict(data)


def test_on_in_a_config_file_is_a_key_not_a_boolean(tmp_path: Path) -> None:
    file = tmp_path / "etlguard.yml"
    file.write_text("target: duckdb:///w.duckdb\nalerts:\n  on: [succeeded]\n  channels: []\n")
    assert Config.load(file).alerts.on == {"succeeded"}  # YAML 1.1 would read `on` as True


def test_init_writes_a_starter_file_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "etlguard.yml"
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    made = cli(capsys, "init", "-c", str(file), "--target", url, "--protect", "gold.*")
    assert made.code == 0, made
    assert validator().is_valid(load_yaml(file.read_text(encoding="utf-8")))
    assert [(t.schema, t.name) for t in Config.load(file).protect] == [("gold", "*")]

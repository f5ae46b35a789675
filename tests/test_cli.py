"""The CLI surface: every command's help ends with examples, and the commands people script
against print what they promise (JSON that parses, exit 0, nothing on stderr)."""

from __future__ import annotations

import json

import pytest

from etlguard.cli import cli as cli_group
from etlguard.target import parse_target

from conftest import Backend
from support import catalog_rows, cli


@pytest.fixture(autouse=True)
def no_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETLGUARD_URL", raising=False)


def test_there_are_commands() -> None:
    assert {"snapshot", "snapshots", "restore", "verify", "diff", "prune", "init"} <= set(cli_group.commands)


@pytest.mark.parametrize("name", sorted(cli_group.commands))
def test_every_help_ends_with_examples(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, name, "--help")

    assert (result.code, result.err) == (0, "")
    lines = result.out.rstrip("\n").splitlines()
    assert lines[0].startswith(f"Usage: etlguard {name} ")
    assert "Examples:" in lines, result.out
    examples = lines[lines.index("Examples:") + 1 :]
    commands = [line.strip() for line in examples if line.strip().startswith("etlguard ")]
    assert commands, result.out
    assert all(c.startswith(f"etlguard {name}") for c in commands), commands
    # nothing after the examples but more examples or their notes: no option list, no usage
    assert not any(line.endswith(":") and not line.startswith(" ") for line in examples), examples


def test_short_help_flag_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "snapshot", "-h").out == cli(capsys, "snapshot", "--help").out
    version = cli(capsys, "--version")
    assert version.code == 0 and "version" in version.out


def test_json_outputs_parse(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    gold = backend.create_schema("gold")
    backend.sql(f"CREATE TABLE {backend.table(gold, 'facts')} (id INTEGER PRIMARY KEY, v VARCHAR(5))")
    backend.sql(f"INSERT INTO {backend.table(gold, 'facts')} VALUES (1, 'a'), (2, NULL)")
    config = str(backend.write_config(backend.tmp_path / "etlguard.yml", [f"{gold}.*"]))

    taken = cli(capsys, "snapshot", "--json", "-c", config)
    listed = cli(capsys, "snapshots", f"{gold}.facts", "--json", "-c", config)
    verified = cli(capsys, "verify", "--json", "-c", config)
    restored = cli(capsys, "restore", f"{gold}.facts", "--latest", "--json", "-c", config)
    listed_all = cli(capsys, "snapshots", "--all", "--json", "-c", config)

    for result in (taken, listed, verified, restored, listed_all):
        assert (result.code, result.err) == (0, ""), result
    [snap] = json.loads(taken.out)
    assert (snap["table"], snap["rows"], snap["status"], snap["kind"]) == (
        f"{gold}.facts",
        2,
        "verified",
        "snapshot",
    )
    assert snap["taken_at"].endswith("Z")
    assert json.loads(listed.out) == [snap]
    assert [(v["id"], v["ok"]) for v in json.loads(verified.out)] == [(snap["id"], True)]
    plan = json.loads(restored.out)
    assert plan["dry_run"] is False
    assert [(t["snapshot_id"], t["rows"]) for t in plan["tables"]] == [(snap["id"], 2)]
    displaced = plan["tables"][0]["displaced_snapshot_id"]
    assert [(s["id"], s["kind"]) for s in json.loads(listed_all.out)] == [
        (snap["id"], "snapshot"),
        (displaced, "displaced"),
    ]
    assert [r["id"] for r in catalog_rows(backend)] == [snap["id"], displaced]


def test_snapshots_without_a_catalog_says_how_to_start(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(backend.write_config(backend.tmp_path / "etlguard.yml", ["gold.*"]))

    result = cli(capsys, "snapshots", "-c", config)

    assert result.code == 2
    assert result.err_lines == [
        f"etlguard: error: no etlguard catalog in schema {backend.catalog_schema} on {parse_target(backend.url).redacted}; "
        "run `etlguard init` or take a snapshot first"
    ]

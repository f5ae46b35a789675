"""Commands about etlguard.yml itself: the JSON Schema editors use, and a test of the alert
channels it configures."""

from __future__ import annotations

from pathlib import Path

import click

from ..config.schema import json_schema_text
from ..errors import EXIT_FAILED, ConfigError
from . import logs
from .app import (
    Command,
    Group,
    cli,
    command,
    config_option,
    emit_json,
    guard_for,
    json_option,
    out,
)


@command(
    "schema",
    """
  etlguard schema > etlguard.schema.json
  # then, as the first line of etlguard.yml (VS Code, JetBrains, Neovim: yaml-language-server):
  # yaml-language-server: $schema=etlguard.schema.json
""",
)
def schema_cmd() -> None:
    """Print the JSON Schema of etlguard.yml, so editors complete and check the file and CI can
    validate it. The loader enforces the same rules; it also checks what only a value with
    ${VAR} filled in can show (URLs, topic ARNs, table names)."""
    click.echo(json_schema_text(), nl=False)


_ALERT_EXAMPLES = """
  etlguard alert test
  etlguard alert test -c /etc/etlguard.yml --json
"""


@cli.group("alert", cls=Group, epilog="Examples:\n" + _ALERT_EXAMPLES)
def alert_group() -> None:
    """Alert channels (SNS, email, Slack, Teams, webhooks) configured under alerts: in etlguard.yml."""


@alert_group.command("test", cls=Command, epilog="Examples:\n" + _ALERT_EXAMPLES)
@config_option
@json_option
def alert_test_cmd(config_path: Path | None, as_json: bool) -> None:
    """Send a test alert through every configured channel and report each one; exit 1 if any
    channel failed. Nothing is run and the target is not contacted."""
    from ..alerts import send_test

    config = guard_for(config_path).config
    if not config.alerts.channels:
        raise ConfigError("no alert channels configured; add them under alerts: channels: in the config")
    deliveries = send_test(config)
    if as_json:
        emit_json([d.as_dict() for d in deliveries])
    else:
        for d in deliveries:
            out.print(
                f"{'sent  ' if d.ok else 'FAILED'}  {d.channel}" + (f": {d.error}" if d.error else ""),
                markup=False,
            )
    failed = [d for d in deliveries if not d.ok]
    if failed:
        if not as_json:
            logs.say(f"{len(failed)} of {len(deliveries)} alert channels failed", "error")
        raise click.exceptions.Exit(EXIT_FAILED)

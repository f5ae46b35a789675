"""Write the CLI reference from the real commands: python scripts/cli_reference.py > docs/cli.md

tests/test_docs.py fails when docs/cli.md and the commands disagree, so the reference cannot rot.
"""

from __future__ import annotations

import click
from click.testing import CliRunner

from etlguard.cli import cli

HEADER = """# etlguard CLI reference

Generated from the commands themselves by `python scripts/cli_reference.py > docs/cli.md`;
a test fails when this file and the commands disagree.

## Exit codes

| code | meaning |
|---|---|
| 0 | ok |
| 1 | the operation failed and nothing was changed (a verify mismatch, a refused restore, a restore that did not verify every table, a failed validation) |
| 2 | bad configuration or arguments: nothing was touched, and `run` did not start the ETL |
| 3 | another etlguard holds the target's lock, or the lock of one of the protected tables (whatever its catalog): nothing was touched (the message names the holder) |
| 4 | an interrupted operation must be resolved first: run `etlguard recover` |
| 5 | the target could not be reached after bounded retries (a restart, an Aurora failover): nothing was touched; retrying later may succeed |
| 10 | `run`: the ETL failed; the protected set was rolled back in one swap and verified |
| 11 | `run`: the ETL exited 0 but an audit failed; rolled back and verified |
| 12 | `run`: the snapshot failed; the ETL never ran |
| 20 | `run`, `recover`: the rollback failed, or `restore`: a restored table does not match its snapshot (structure or data): a person must act; the exact command is printed and alerted (for a failed rollback `etlguard recover`, with `--config` when one was used, which works as printed once the cause is gone), and the replaced tables are kept as snapshots |
| 21 | `run`: the run's lock was lost while the ETL ran (its session ended): nothing was committed or rolled back; run `etlguard recover`, which checks that the ETL has ended and then rolls the run back |
| 130 | interrupted (Ctrl-C, SIGTERM, SIGHUP) before the ETL started: the partial snapshot was removed and nothing waits in the journal |
"""


def _help(*path: str) -> str:
    """The help exactly as `etlguard PATH --help` prints it, at a fixed width."""
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="etlguard", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output.rstrip("\n")


def render() -> str:
    parts = [HEADER, "## etlguard\n", "```text", _help(), "```\n"]
    for name in sorted(cli.commands):
        cmd = cli.commands[name]
        parts += [f"## etlguard {name}\n", "```text", _help(name), "```\n"]
        if isinstance(cmd, click.Group):
            for sub in sorted(cmd.commands):
                parts += [f"### etlguard {name} {sub}\n", "```text", _help(name, sub), "```\n"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")

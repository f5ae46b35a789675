"""The `etlguard` command, split by command group (app.py holds the group and what every
command shares). Importing a group's module registers its commands on `cli`."""

from . import report, runs, settings, snapshots, transactions  # noqa: F401  (registers the commands)
from .app import cli, main, run_main

__all__ = ["cli", "main", "run_main"]

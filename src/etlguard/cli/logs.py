"""How the library's stdlib `logging` reaches the person or the log collector: one line of
text per record on stderr, or one JSON object per line (`--log-format json`) for CloudWatch
Logs and other collectors that index fields. The library itself never prints."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

LEVELS = {-1: logging.WARNING, 0: logging.WARNING, 1: logging.INFO}  # -q drops the info lines of say()
log = logging.getLogger("etlguard.cli")
state: dict[str, object] = {"format": "text", "quiet": False}


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(data, ensure_ascii=False)


def configure(verbosity: int, log_format: str) -> None:
    """Route the `etlguard` logger to stderr at the level -q/-v ask for (-vv: debug)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter("etlguard: %(message)s"))
    root = logging.getLogger("etlguard")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(verbosity, logging.DEBUG))
    root.propagate = False
    state["format"] = log_format
    state["quiet"] = verbosity < 0


def json_errors() -> bool:
    """Whether the final error line goes out as JSON too, so stderr stays parseable."""
    return state["format"] == "json"


def say(message: str, level: str = "info") -> None:
    """A line for whoever watches stderr: what a command is doing, and how it ended. Text
    (`etlguard: ...`, `etlguard: error: ...`) or, under --log-format json, one JSON object, so
    that every line a command writes to stderr parses. --quiet keeps only warnings and errors."""
    if state["quiet"] and level == "info":
        return
    if json_errors():
        record = logging.LogRecord(
            "etlguard.cli", logging.getLevelName(level.upper()), "", 0, message, None, None
        )
        sys.stderr.write(JsonLines().format(record) + "\n")
        sys.stderr.flush()
    else:
        sys.stderr.write(f"etlguard: {'' if level == 'info' else level + ': '}{message}\n")
        sys.stderr.flush()

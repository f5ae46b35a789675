"""How the library's stdlib `logging` reaches the person or the log collector: one line of
text per record on stderr, or one JSON object per line (`--log-format json`) for CloudWatch
Logs and other collectors that index fields. The library itself never prints."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}
log = logging.getLogger("etlguard.cli")
state = {"format": "text"}


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


def json_errors() -> bool:
    """Whether the final error line goes out as JSON too, so stderr stays parseable."""
    return state["format"] == "json"

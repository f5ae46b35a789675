"""Table references as people write them: `gold.moveouts`, `` `odd.schema`.t ``, `"a b".c`.

A name is split on the first dot that is not inside backticks or double quotes; inside quotes a
doubled quote character stands for itself, as in SQL. Hand-written rather than taken from a SQL
parser: a name here may be a glob (`gold.*`, `silver.t_[ab]`) and may use either quote style
whatever the target, which no parser's identifier rules accept.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .errors import ConfigError

_QUOTES = '`"'


@dataclass(frozen=True, order=True)
class TableRef:
    schema: str
    name: str

    def __str__(self) -> str:
        return f"{_show(self.schema)}.{_show(self.name)}"

    def matches(self, pattern: TableRef) -> bool:
        """Glob match (`gold.*`, `silver.tenant_*`), case-sensitive like table names on Linux."""
        return fnmatch.fnmatchcase(self.schema, pattern.schema) and fnmatch.fnmatchcase(
            self.name, pattern.name
        )

    @property
    def is_pattern(self) -> bool:
        return any(c in self.schema + self.name for c in "*?[")


def _show(part: str) -> str:
    plain = part.replace("_", "a").isalnum() and part.isascii() and not part[:1].isdigit()
    return part if plain else "`" + part.replace("`", "``") + "`"


def parse_table(text: str, default_schema: str | None = None) -> TableRef:
    """Parse `schema.table` (either part may be quoted). Raise ConfigError on malformed text."""
    parts = _split(text.strip())
    if len(parts) == 1 and default_schema:
        parts = [default_schema, parts[0]]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"table name {text!r} is not of the form schema.table; "
            "quote a part that contains a dot with backticks, as in `my.schema`.table"
        )
    return TableRef(parts[0], parts[1])


def _split(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote and text[i + 1 : i + 2] == quote:
                current.append(ch)
                i += 1
            elif ch == quote:
                quote = ""
            else:
                current.append(ch)
        elif ch in _QUOTES and not current:
            quote = ch
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quote:
        raise ConfigError(f"table name {text!r} has an unclosed {quote} quote")
    parts.append("".join(current))
    return parts


def plural(count: int, noun: str) -> str:
    """`1 table`, `2 tables`: every count etlguard prints goes through here, since a log line
    reading "1 tables" makes a careful reader doubt the rest."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"

"""Turn pydantic's validation errors into etlguard's one-line configuration errors.

The person reading the error is often looking at a failed 03:00 job log, so the line names the
key as it is written in the file (`alerts.channels[0].webhook`) and what to write instead,
and only the first problem is reported.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .schema import RULES, SHAPES

_TYPE_NAMES = {
    "string_type": "str",
    "int_type": "int",
    "float_type": "int or float",
    "bool_type": "bool",
    "list_type": "list",
    "dict_type": "mapping",
    "model_type": "mapping",
    "model_attributes_type": "mapping",
}


def one_line(exc: ValidationError) -> ConfigError:
    """The first error of `exc`, as a ConfigError naming the key."""
    error = exc.errors(include_url=False)[0]
    return ConfigError(_describe(error, key_of(error["loc"])))


def key_of(loc: tuple[int | str, ...]) -> str:
    """('alerts', 'channels', 0, '<webhook>', 'on', 1) -> 'alerts.channels[0].on[1]'.
    Union tags (in angle brackets) are how the schema tells channel kinds apart, not keys."""
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not (part.startswith("<") or part == "[key]"):
            key += f".{part}" if key else part
    return key


def _describe(error: ErrorDetails, key: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "unknown_key":
        where = f"{key}.{ctx['unknown']}" if key else ctx["unknown"]
        return f"unknown config key {where!r}; known keys are: {ctx['known']}"
    if kind == "channel_kind":
        return f"{key} {error['msg']}"
    if kind == "missing":
        return f"config key {key!r} is missing"
    if kind in _TYPE_NAMES:
        shape = SHAPES.get(_generic(key))
        return f"config key {key!r} " + (shape or f"must be a {_TYPE_NAMES[kind]}, not {_type(value)}")
    rule = RULES.get(_generic(key))
    return f"config key {key!r} " + (rule or _constraint(kind, ctx, value, error["msg"]))


def _constraint(kind: str, ctx: dict[str, Any], value: Any, msg: str) -> str:
    if kind == "literal_error":
        allowed = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"must be one of: {allowed}, not {value!r}"
    if kind == "greater_than":
        return f"must be more than {_number(ctx['gt'])}"
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx['ge'])}, not {value}"
    if kind == "string_too_short":
        return f"must be at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    return "is not valid: " + " ".join(msg.split())


def _number(bound: Any) -> str:
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def _generic(key: str) -> str:
    return re.sub(r"\[\d+\]", "[]", key)


def _type(value: Any) -> str:
    return type(value).__name__

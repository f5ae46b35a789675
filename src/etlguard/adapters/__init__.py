"""One adapter class per database; all SQL text lives in this package.

Each adapter module defines a subclass of `base.Adapter`, which joins `Adapter.registry` under
its dialect name when the module is imported. `adapter_for` imports the adapter modules at the
call site, so the base module never imports the adapters built on it (no import cycle) and a
program that never connects never loads a database driver.
"""

from __future__ import annotations

from ..target import Target
from .base import Adapter


def adapter_for(target: Target, lock_wait_seconds: float = 60.0) -> Adapter:
    """The adapter for the target's dialect, not yet connected."""
    from . import duckdb, mysql, postgres  # noqa: F401  (importing a module registers its adapter)

    if target.dialect == "iceberg":
        from . import iceberg  # noqa: F401  (an optional extra: pyiceberg)

    return Adapter.registry[target.dialect](target, lock_wait_seconds)


__all__ = ["Adapter", "adapter_for"]

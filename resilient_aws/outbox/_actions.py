"""The business side of an outbox transaction: puts, updates, deletes and condition checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from resilient_aws._dataclass import lean_dataclass

__all__ = ["ConditionCheck", "Delete", "Put", "Update"]


@lean_dataclass(frozen=True)
class Put:
    """Put ``item`` (plain Python values) into ``table`` (default: the outbox's table)."""

    item: Mapping[str, Any]
    table: str | None = None
    condition: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)


@lean_dataclass(frozen=True)
class Update:
    """Update the item at ``key`` with an ``expression`` (``"SET #s = :s"``)."""

    key: Mapping[str, Any]
    expression: str
    table: str | None = None
    condition: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)


@lean_dataclass(frozen=True)
class Delete:
    """Delete the item at ``key``."""

    key: Mapping[str, Any]
    table: str | None = None
    condition: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)


@lean_dataclass(frozen=True)
class ConditionCheck:
    """Require ``condition`` to hold on the item at ``key`` for the transaction to apply."""

    key: Mapping[str, Any]
    condition: str
    table: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)

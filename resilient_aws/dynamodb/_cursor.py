"""Opaque, resumable positions of a scan or query: safe in a queue message or a state machine."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from resilient_aws.errors import InvalidCursorError

__all__ = ["decode_cursor", "encode_cursor"]

_VERSION = 1


def _json_key(key: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in key.items():
        ((kind, data),) = value.items()
        if kind == "B":
            data = base64.b64encode(bytes(getattr(data, "value", data))).decode("ascii")
        out[name] = {kind: data}
    return out


def _wire_key(key: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in key.items():
        ((kind, data),) = value.items()
        out[name] = {kind: base64.b64decode(data) if kind == "B" else data}
    return out


def encode_cursor(scope: Mapping[str, Any], last_key: Mapping[str, Any]) -> str:
    """A string that resumes a read of ``scope`` (table, index, segment) after ``last_key``."""
    body = {"v": _VERSION, **scope, "k": _json_key(last_key)}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, scope: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` of a cursor made for the same ``scope``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(body, dict) or body.get("v") != _VERSION:
            raise ValueError("unknown cursor version")
        key = body["k"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as error:
        raise InvalidCursorError(f"not a resilient_aws cursor: {error}") from None
    for name in sorted((set(scope) | set(body)) - {"v", "k"}):
        expected = scope.get(name)
        if body.get(name) != expected:
            raise InvalidCursorError(
                f"the cursor belongs to {name}={body.get(name)!r}, not {name}={expected!r}"
            )
    return _wire_key(key)

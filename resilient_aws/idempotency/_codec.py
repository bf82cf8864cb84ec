"""Results to and from the record's ``data`` attribute (a JSON string, as Powertools stores it).

A repeat must hand back what the first call returned: ``None`` and falsy values are stored
as such (``"null"``, ``"0"``, ``"[]"``), and dataclasses and pydantic models are rebuilt from the
function's return annotation, without importing pydantic (anything with ``model_validate``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from resilient_aws._json import dumps

__all__ = ["decode_result", "encode_result", "result_type_of"]


def encode_result(result: Any) -> str:
    """The JSON text stored for ``result``; TypeError/ValueError if it has no JSON form."""
    return dumps(result)


def result_type_of(fn: Callable[..., Any]) -> Any:
    """The return annotation of ``fn`` resolved to a type, or ``None`` if there is none."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that cannot be resolved only costs the rebuild
        return None
    return hints.get("return")


def decode_result(data: str | None, result_type: Any) -> Any:
    """The stored JSON back as a value, rebuilt as ``result_type`` where that is a model."""
    if data is None or data == "":
        return None
    return _rebuild(json.loads(data), result_type)


def _rebuild(value: Any, annotation: Any) -> Any:
    if value is None or annotation is None or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        for option in typing.get_args(annotation):
            if option is type(None):
                continue
            return _rebuild(value, option)
        return value
    if origin in (list, tuple, set, frozenset) and isinstance(value, list):
        args = typing.get_args(annotation)
        item_type = args[0] if args else None
        items = [_rebuild(item, item_type) for item in value]
        return items if origin is list else origin(items)
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(annotation)
        value_type = args[1] if len(args) == 2 else None
        return {k: _rebuild(v, value_type) for k, v in value.items()}
    if isinstance(annotation, type):
        validate = getattr(annotation, "model_validate", None)
        if callable(validate):
            return validate(value)
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            hints = typing.get_type_hints(annotation)
            fields = {f.name for f in dataclasses.fields(annotation) if f.init}
            return annotation(
                **{k: _rebuild(v, hints.get(k)) for k, v in value.items() if k in fields}
            )
        if issubclass(annotation, enum.Enum):
            return annotation(value)
    return value

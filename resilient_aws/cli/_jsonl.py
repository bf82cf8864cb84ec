"""Items as JSON lines, both ways, with numbers kept exact.

``plain``: one JSON object per item. Numbers are read as ``Decimal`` from their text (not
through a float), and written from DynamoDB's ``Decimal`` as the same text, so a number
survives export and load digit for digit (JSON's own float would cut it at 17 digits).
Sets become sorted lists and binary base64 text: readable, but they load back as lists and
strings. ``dynamodb``: DynamoDB's typed attribute values, one ``{"Item": {...}}`` per line as
DynamoDB's export to S3 writes them (binary in base64): lossless, sets and binary included.
Error messages say what is wrong with a line, never what it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Set
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import Binary

from resilient_aws.dynamodb import deserialize_item, serialize_item
from resilient_aws.dynamodb._serialize import raw_bytes

__all__ = ["Format", "dump_item", "parse_item"]

Format = Literal["plain", "dynamodb"]

_TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


def parse_item(raw: bytes, fmt: Format = "plain") -> dict[str, Any]:
    """The item on one line (bytes, newline optional); ``ValueError`` says what is wrong."""
    try:
        text = raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")  # a BOM is not JSON
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 (byte {error.start + 1})") from None
    try:
        value = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"not a JSON object but a JSON {_kind(value)}")
    if fmt == "plain":
        return value
    if set(value) == {"Item"} and isinstance(value["Item"], dict):
        value = value["Item"]
    wire = {name: _wire_value(attribute, name) for name, attribute in value.items()}
    return deserialize_item(wire)


def dump_item(item: Mapping[str, Any], fmt: Format = "plain") -> str:
    """One line (without the newline) for an item as ``scan`` returns it."""
    if fmt == "plain":
        return _plain(item)
    wire = serialize_item(item)
    return '{"Item":' + _plain({name: _typed(value) for name, value in wire.items()}) + "}"


# -- reading the dynamodb format ------------------------------------------------------------------


def _wire_value(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _TYPES:
        raise ValueError(
            f"attribute {path!r}: not a DynamoDB attribute value (one of "
            f"{', '.join(sorted(_TYPES))} as its only key)"
        )
    ((kind, data),) = value.items()
    if kind == "B":
        return {"B": _unbase64(data, path)}
    if kind == "BS":
        return {"BS": _distinct([_unbase64(v, path) for v in _list(data, path)], kind, path)}
    if kind == "M":
        if not isinstance(data, dict):
            raise ValueError(f"attribute {path!r}: M holds an object")
        return {"M": {k: _wire_value(v, f"{path}.{k}") for k, v in data.items()}}
    if kind == "L":
        return {"L": [_wire_value(v, f"{path}[{i}]") for i, v in enumerate(_list(data, path))]}
    if kind in ("S", "N") and not isinstance(data, str):
        raise ValueError(f"attribute {path!r}: {kind} holds a string")
    if kind in ("SS", "NS") and not all(isinstance(v, str) for v in _list(data, path)):
        raise ValueError(f"attribute {path!r}: {kind} holds a list of strings")
    if kind == "NS":
        # "1" and "1.0" are one number to DynamoDB, which refuses the set
        _distinct([_decimal(number, path).normalize() for number in data], kind, path)
    if kind == "SS":
        _distinct(data, kind, path)
    if kind == "N":
        _decimal(data, path)
    if kind in ("BOOL", "NULL") and not isinstance(data, bool):
        raise ValueError(f"attribute {path!r}: {kind} holds true or false")
    return {kind: data}


def _list(data: Any, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise ValueError(f"attribute {path!r}: expected a list")
    return data


def _decimal(text: str, path: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ValueError(f"attribute {path!r}: not a number") from None


def _distinct(values: list[Any], kind: str, path: str) -> list[Any]:
    """The values of a set; DynamoDB refuses a set written with a value twice (a ValidationException
    for the whole batch), so the line is refused here rather than loaded with one value less."""
    if len(set(values)) != len(values):
        raise ValueError(f"attribute {path!r}: {kind} holds the same value twice")
    return values


def _unbase64(data: Any, path: str) -> bytes:
    if not isinstance(data, str):
        raise ValueError(f"attribute {path!r}: binary is base64 text")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError(f"attribute {path!r}: binary is not valid base64") from None


# -- writing --------------------------------------------------------------------------------------


def _typed(value: Any) -> Any:
    """A wire value with binary as base64 text, ready for :func:`_plain`."""
    if isinstance(value, dict):
        return {kind: _typed_data(kind, data) for kind, data in value.items()}
    return value


def _typed_data(kind: str, data: Any) -> Any:
    if kind == "B":
        return _base64(data)
    if kind == "BS":
        return [_base64(v) for v in data]
    if kind == "M":
        return {k: _typed(v) for k, v in data.items()}
    if kind == "L":
        return [_typed(v) for v in data]
    return data


def _base64(value: Any) -> str:
    return base64.b64encode(raw_bytes(value)).decode("ascii")


def _plain(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} has no JSON form")
        return str(value)  # exact: Decimal's text is valid JSON number syntax
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_plain(v) for v in value) + "]"
    if isinstance(value, Set):
        return "[" + ",".join(_plain(v) for v in sorted(value, key=_sort_key)) + "]"
    if isinstance(value, (bytes, bytearray, Binary)):
        return json.dumps(_base64(value))
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _sort_key(value: Any) -> Any:
    return raw_bytes(value) if isinstance(value, Binary) else value


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"

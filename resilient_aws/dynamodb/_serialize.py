"""Plain Python values to DynamoDB's wire format and back, with boto3's own (de)serializers."""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Mapping, Set
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeDeserializer, TypeSerializer

from resilient_aws.errors import UnsupportedValueError

__all__ = [
    "Numbers",
    "deserialize_item",
    "item_size",
    "serialize_item",
    "to_python",
]

Numbers = Literal["decimal", "native"]
"""How numbers come back: ``"decimal"`` (exact, boto3's default) or ``"native"`` (int or float)."""

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_python(item: Any, entry_id: str = "item") -> dict[str, Any]:
    """A plain ``dict`` from a dict, a dataclass, a pydantic model or a named tuple."""
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    dump = getattr(item, "model_dump", None)  # pydantic v2, duck-typed: never imported here
    if callable(dump):
        return _converted(item, entry_id, lambda: dump(mode="python"), "model_dump")
    as_dict = getattr(item, "_asdict", None)
    if callable(as_dict):
        return _converted(item, entry_id, as_dict, "_asdict")
    raise UnsupportedValueError(
        entry_id, f"cannot store a {type(item).__name__}: pass a dict, dataclass or pydantic model"
    )


def _converted(item: Any, entry_id: str, convert: Any, name: str) -> dict[str, Any]:
    try:
        return dict(convert())
    except Exception as error:  # the caller's own code: a typed error that names the entry
        raise UnsupportedValueError(
            entry_id, f"its {type(item).__name__}.{name}() raised {type(error).__name__}"
        ) from error


def _dynamo_number(value: float | Decimal, entry_id: str, path: str) -> Decimal:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsupportedValueError(entry_id, f"{path}: {value!r} cannot be stored in DynamoDB")
        # repr is the shortest string that round-trips: 0.1 becomes Decimal("0.1"), not 0.1000000000000000055…
        value = Decimal(repr(value))
    if not value.is_finite():
        raise UnsupportedValueError(entry_id, f"{path}: {value!r} cannot be stored in DynamoDB")
    try:
        return DYNAMODB_CONTEXT.create_decimal(value)
    except (decimal.Inexact, decimal.Rounded, decimal.Overflow, decimal.Underflow):
        raise UnsupportedValueError(
            entry_id, f"{path}: {value} has more than 38 digits or is out of DynamoDB's range"
        ) from None


def _prepare(value: Any, entry_id: str, path: str) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (float, Decimal)):
        return _dynamo_number(value, entry_id, path)
    if isinstance(value, Mapping):
        return {str(k): _prepare(v, entry_id, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_prepare(v, entry_id, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Set):
        if not value:
            raise UnsupportedValueError(entry_id, f"{path}: DynamoDB does not store empty sets")
        return {_prepare(v, entry_id, f"{path}{{}}") for v in value}
    if isinstance(value, bytearray):
        return bytes(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _prepare(to_python(value, entry_id), entry_id, path)
    return value


def serialize_item(item: Any, entry_id: str = "item") -> dict[str, Any]:
    """An item in DynamoDB's wire format; floats become exact ``Decimal`` values.

    Raises :class:`~resilient_aws.errors.UnsupportedValueError` naming the entry and the
    attribute for what DynamoDB cannot store: NaN, infinity, numbers beyond 38 digits, empty
    sets, unknown types.
    """
    plain = to_python(item, entry_id)
    wire: dict[str, Any] = {}
    for name, value in plain.items():
        prepared = _prepare(value, entry_id, name)
        try:
            wire[name] = _serializer.serialize(prepared)
        except (TypeError, decimal.DecimalException) as error:
            raise UnsupportedValueError(entry_id, f"{name}: {error}") from None
    return wire


def serialize_sized(item: Any, entry_id: str = "item") -> tuple[dict[str, Any], int]:
    """``serialize_item(item)`` and ``item_size`` of it, in one pass over the common types.

    Strings, ints, floats, Decimals, bools, None, bytes and plain dicts, lists and tuples of
    them are written and measured at once; any other attribute (sets, dataclasses, mappings
    that are not dicts, numbers out of DynamoDB's range, NaN...) goes through
    :func:`serialize_item`'s own steps, so the result and every error are the same.
    """
    plain = to_python(item, entry_id)
    wire: dict[str, Any] = {}
    size = 0
    for name, value in plain.items():
        try:
            try:
                if type(name) is not str:
                    raise _UncommonValueError
                wire[name], value_size = _sized(value)
                size += (len(name) if name.isascii() else len(name.encode("utf-8"))) + value_size
            except _UncommonValueError:
                prepared = _prepare(value, entry_id, name)
                try:
                    wire[name] = _serializer.serialize(prepared)
                except (TypeError, decimal.DecimalException) as error:
                    raise UnsupportedValueError(entry_id, f"{name}: {error}") from None
                size += len(name.encode("utf-8")) + _value_size(wire[name])
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800") is a Python str but not Unicode text: DynamoDB
            # could never store it, and the request would fail whole at send time.
            raise UnsupportedValueError(
                entry_id, f"{name!r}: a string that is not valid UTF-8 (a lone surrogate)"
            ) from None
    return wire, size


class _UncommonValueError(Exception):
    """A value that :func:`_sized` leaves to the general path."""


_create_decimal = DYNAMODB_CONTEXT.create_decimal
_MAX_INT = 10**38  # ints below it in magnitude have at most 38 digits: exact in DynamoDB


def _sized(value: Any) -> tuple[dict[str, Any], int]:
    """The wire form of a common value and its size (as ``_value_size`` counts it)."""
    kind = type(value)
    if kind is str:
        if value.isascii():
            return {"S": value}, len(value)
        try:
            return {"S": value}, len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise _UncommonValueError from None
    if kind is int:
        if -_MAX_INT < value < _MAX_INT:
            text = str(value)
            return {"N": text}, _number_size(text)
        raise _UncommonValueError
    if kind is float or kind is Decimal:
        try:
            number = _create_decimal(Decimal(repr(value)) if kind is float else value)
        except (decimal.DecimalException, ValueError):
            raise _UncommonValueError from None
        if not number.is_finite():
            raise _UncommonValueError
        text = str(number)
        return {"N": text}, _number_size(text)
    if kind is dict:
        members: dict[str, Any] = {}
        size = 3
        for key, member in value.items():
            if type(key) is not str:
                raise _UncommonValueError
            members[key], member_size = _sized(member)
            size += (len(key) if key.isascii() else len(key.encode("utf-8"))) + 1 + member_size
        return {"M": members}, size
    if kind is list or kind is tuple:
        items = []
        size = 3
        for element in value:
            wire, element_size = _sized(element)
            items.append(wire)
            size += 1 + element_size
        return {"L": items}, size
    if kind is bool:
        return {"BOOL": value}, 1
    if value is None:
        return {"NULL": True}, 1
    if kind is bytes:
        return {"B": value}, len(value)
    raise _UncommonValueError


def deserialize_item(wire: Mapping[str, Any], numbers: Numbers = "decimal") -> dict[str, Any]:
    """A plain dict from DynamoDB's wire format; ``numbers="native"`` gives ints and floats."""
    item = {name: _deserializer.deserialize(value) for name, value in wire.items()}
    if numbers == "native":
        return {name: _native(value) for name, value in item.items()}
    return item


def _native(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {_native(v) for v in value}
    if isinstance(value, Binary):
        return raw_bytes(value)
    return value


def raw_bytes(value: Any) -> bytes:
    """The bytes of a ``Binary`` (as boto3 deserializes ``B``) or of any bytes-like value."""
    return bytes(value.value) if isinstance(value, Binary) else bytes(value)  # type: ignore[attr-defined]


def _number_size(text: str) -> int:
    # "Leading and trailing zeroes are trimmed", then 1 byte per two significant digits + 1
    # (AWS, "Item sizes and formats"); a negative number is counted one byte more, to be safe.
    mantissa = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "")
    digits = mantissa.strip("0") or "0"
    return (len(digits) + 1) // 2 + 1 + (1 if text.startswith("-") else 0)


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode("utf-8"))
    if kind == "N":
        return _number_size(data)
    if kind == "B":
        return len(raw_bytes(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(_number_size(n) for n in data)
    if kind == "BS":
        return sum(len(raw_bytes(b)) for b in data)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + 1 + _value_size(v) for k, v in data.items())
    return len(str(data))


def item_size(wire: Mapping[str, Any]) -> int:
    """DynamoDB's size of an item: attribute names plus values, as the service counts them."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in wire.items())

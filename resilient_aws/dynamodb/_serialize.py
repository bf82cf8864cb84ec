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
        return _converted(item, entry_id, lambda: _pydantic_dump(dump), "model_dump")
    as_dict = getattr(item, "_asdict", None)
    if callable(as_dict):
        return _converted(item, entry_id, as_dict, "_asdict")
    raise UnsupportedValueError(
        entry_id, f"cannot store a {type(item).__name__}: pass a dict, dataclass or pydantic model"
    )


def _pydantic_dump(dump: Any) -> dict[str, Any]:
    """A model's fields with DynamoDB's own types kept (``Decimal``, ``bytes``, sets, numbers)
    and every other value as pydantic writes it in JSON mode: a ``datetime`` becomes its ISO
    8601 text, a ``UUID`` or an ``Enum`` its value, exactly as ``model_dump_json`` shows them.
    """
    native = dump(mode="python")
    if all(_is_native(value) for value in native.values()):
        return dict(native)
    return dict(_keep_native(native, dump(mode="json")))


_NATIVE_LEAVES = (str, int, float, Decimal, bytes, bytearray, Binary, type(None))


def _is_native(value: Any) -> bool:
    if isinstance(value, _NATIVE_LEAVES):  # bool is an int
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_native(v) for k, v in value.items())
    if isinstance(value, (list, tuple, Set)):
        return all(_is_native(v) for v in value)
    return False


def _keep_native(python: Any, json: Any) -> Any:
    """``python`` where it is made of DynamoDB types, ``json`` (the same field) elsewhere."""
    if _is_native(python):
        return python
    if isinstance(python, Mapping) and isinstance(json, Mapping):
        return {k: _keep_native(v, json.get(str(k), v)) for k, v in python.items()}
    if isinstance(python, (list, tuple)) and isinstance(json, list) and len(json) == len(python):
        return [_keep_native(p, j) for p, j in zip(python, json, strict=True)]
    return json  # a set of non-native values, a datetime, a UUID...: pydantic's JSON form


def _converted(item: Any, entry_id: str, convert: Any, name: str) -> dict[str, Any]:
    try:
        return dict(convert())
    except Exception as error:  # the caller's own code: a typed error that names the entry
        raise UnsupportedValueError(
            entry_id, f"its {type(item).__name__}.{name}() raised {type(error).__name__}"
        ) from error


MAX_DEPTH = 32
"""DynamoDB's deepest nesting: a top-level attribute is at level 1, a value in a map or list at
level *n* is at level *n + 1*; a value at level 33 is refused ("Nesting Levels have exceeded
supported limits")."""

_MAX_INT = 10**38  # ints below it in magnitude have at most 38 digits: exact in DynamoDB


def _dynamo_number(value: int | float | Decimal, entry_id: str, path: str) -> Decimal:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsupportedValueError(entry_id, f"{path}: {value!r} {_NOT_FINITE}")
        # repr is the shortest string that round-trips: 0.1 becomes Decimal("0.1"), not 0.1000000000000000055…
        value = Decimal(repr(value))
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise UnsupportedValueError(entry_id, f"{path}: {_special(value)} {_NOT_FINITE}")
    try:
        return DYNAMODB_CONTEXT.create_decimal(value)
    except (decimal.Overflow, decimal.Underflow, decimal.Clamped):
        raise UnsupportedValueError(
            entry_id,
            f"{path}: a number out of DynamoDB's range (magnitudes from about 1E-130 to 1E+126)",
        ) from None
    except (decimal.Inexact, decimal.Rounded):
        # Never the value itself: it may be a card or account number.
        digits = len(value.as_tuple().digits)
        raise UnsupportedValueError(
            entry_id,
            f"{path}: a number of {digits} digits; DynamoDB numbers keep 38 digits of precision"
            " (store it as a string)",
        ) from None


_NOT_FINITE = "cannot be stored in DynamoDB"


def _special(value: Decimal) -> str:
    """A NaN or infinite Decimal, without the diagnostic digits a NaN may carry."""
    if value.is_infinite():
        return f"Decimal('{'-' if value.is_signed() else ''}Infinity')"
    return f"Decimal('{'sNaN' if value.is_snan() else 'NaN'}')"


def _set_kind(value: Any) -> str | None:
    """The DynamoDB set type an element belongs in (``"S"``, ``"N"``, ``"B"``), or None."""
    if isinstance(value, str):
        return "S"
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return "N"
    if isinstance(value, (bytes, bytearray, Binary)):
        return "B"
    return None


def _checked_set(value: Set[Any], entry_id: str, path: str) -> None:
    """Refuse a set DynamoDB cannot store, naming the element types (never the elements)."""
    if not value:
        raise UnsupportedValueError(entry_id, f"{path}: DynamoDB does not store empty sets")
    kinds = {_set_kind(element) for element in value}
    if len(kinds) == 1 and None not in kinds:
        return
    types = ", ".join(sorted({type(element).__name__ for element in value}))
    if any(isinstance(element, bool) for element in value):
        raise UnsupportedValueError(
            entry_id,
            f"{path}: a set of {types}: DynamoDB sets hold strings, numbers or binary values,"
            " and a boolean is none of them (store a list)",
        )
    raise UnsupportedValueError(
        entry_id,
        f"{path}: a set of {types}: a DynamoDB set holds strings only, numbers only or binary"
        " values only (store a list)",
    )


def _too_deep(entry_id: str, path: str) -> UnsupportedValueError:
    return UnsupportedValueError(
        entry_id, f"{path}: nested more than {MAX_DEPTH} levels deep, DynamoDB's limit"
    )


def _prepare(value: Any, entry_id: str, path: str, level: int = 1) -> Any:
    """``value`` as boto3's serializer takes it, or a typed error naming ``path``, the type and
    why (never the value: it may be personal data). ``level``: DynamoDB's nesting level."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        if not value.isascii():
            value.encode("utf-8")  # a lone surrogate: UnicodeEncodeError, typed by the caller
        return value
    if isinstance(value, (float, Decimal)):
        return _dynamo_number(value, entry_id, path)
    if isinstance(value, int):
        return value if -_MAX_INT < value < _MAX_INT else _dynamo_number(value, entry_id, path)
    if isinstance(value, Mapping):
        if level >= MAX_DEPTH and value:
            raise _too_deep(entry_id, path)
        prepared: dict[str, Any] = {}
        for key, member in value.items():
            if not isinstance(key, str):
                raise UnsupportedValueError(
                    entry_id,
                    f"{path}: a map key of type {type(key).__name__}; DynamoDB map keys are"
                    " strings (convert the keys yourself: str() could merge two of them)",
                )
            if not key.isascii():
                key.encode("utf-8")
            prepared[key] = _prepare(member, entry_id, f"{path}.{key}", level + 1)
        return prepared
    if isinstance(value, (list, tuple)):
        if level >= MAX_DEPTH and value:
            raise _too_deep(entry_id, path)
        return [_prepare(v, entry_id, f"{path}[{i}]", level + 1) for i, v in enumerate(value)]
    if isinstance(value, Set):
        _checked_set(value, entry_id, path)
        return {_prepare(v, entry_id, f"{path}{{}}", level + 1) for v in value}
    if isinstance(value, (bytes, Binary)):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _prepare(to_python(value, entry_id), entry_id, path, level)
    raise UnsupportedValueError(
        entry_id,
        f"{path}: DynamoDB cannot store a {type(value).__name__} (convert it to a str, number,"
        " bytes, bool, None, list, dict or set first)",
    )


def _attribute(name: Any, value: Any, entry_id: str) -> dict[str, Any]:
    """One attribute by the general path: checked by :func:`_prepare`, then boto3's serializer."""
    if not isinstance(name, str):
        raise UnsupportedValueError(
            entry_id,
            f"an attribute name of type {type(name).__name__}; attribute names are strings",
        )
    prepared = _prepare(value, entry_id, name)
    try:
        wire: dict[str, Any] = dict(_serializer.serialize(prepared))
    except (TypeError, decimal.DecimalException) as error:
        # _prepare refuses what boto3 cannot serialize; boto3's own message quotes the value
        raise UnsupportedValueError(
            entry_id, f"{name}: cannot be serialized ({type(error).__name__})"
        ) from None
    return wire


def _not_text(name: Any) -> str:
    return f"{name!r}: a string that is not valid UTF-8 (a lone surrogate)"


def serialize_item(item: Any, entry_id: str = "item") -> dict[str, Any]:
    """An item in DynamoDB's wire format; floats become exact ``Decimal`` values.

    Raises :class:`~resilient_aws.errors.UnsupportedValueError` naming the entry, the
    attribute path and the type — never the value — for what DynamoDB cannot store: NaN,
    infinity, numbers beyond 38 digits or DynamoDB's range, empty sets, sets of booleans or of
    mixed types, map keys or attribute names that are not strings, nesting deeper than 32
    levels, strings that are not valid UTF-8, unknown types.
    """
    plain = to_python(item, entry_id)
    wire: dict[str, Any] = {}
    for name, value in plain.items():
        try:
            wire[name] = _attribute(name, value, entry_id)
        except UnicodeEncodeError:
            raise UnsupportedValueError(entry_id, _not_text(name)) from None
    return wire


def serialize_sized(item: Any, entry_id: str = "item") -> tuple[dict[str, Any], int]:
    """``serialize_item(item)`` and ``item_size`` of it, in one pass over the common types.

    Strings, ints, floats, Decimals, bools, None, bytes and plain dicts, lists and tuples of
    them (string keys, up to 32 levels deep) are written and measured at once; any other
    attribute (sets, dataclasses, mappings that are not dicts, numbers out of DynamoDB's range,
    NaN...) goes through :func:`serialize_item`'s own steps, so the result and every error are
    the same.
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
                wire[name] = _attribute(name, value, entry_id)
                size += len(name.encode("utf-8")) + _value_size(wire[name])
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800") is a Python str but not Unicode text: DynamoDB
            # could never store it, and the request would fail whole at send time.
            raise UnsupportedValueError(entry_id, _not_text(name)) from None
    return wire, size


class _UncommonValueError(Exception):
    """A value that :func:`_sized` leaves to the general path."""


_create_decimal = DYNAMODB_CONTEXT.create_decimal


def _sized(value: Any, level: int = 1) -> tuple[dict[str, Any], int]:
    """The wire form of a common value and its size (as ``_value_size`` counts it).

    ``level`` is DynamoDB's nesting level of ``value``; a map or list at the deepest level
    that still holds something goes to the general path, which names the error.
    """
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
        if level >= MAX_DEPTH and value:
            raise _UncommonValueError
        level += 1
        members: dict[str, Any] = {}
        size = 3
        for key, member in value.items():
            if type(key) is not str:
                raise _UncommonValueError
            members[key], member_size = _sized(member, level)
            size += (len(key) if key.isascii() else len(key.encode("utf-8"))) + 1 + member_size
        return {"M": members}, size
    if kind is list or kind is tuple:
        if level >= MAX_DEPTH and value:
            raise _UncommonValueError
        level += 1
        items = []
        size = 3
        for element in value:
            wire, element_size = _sized(element, level)
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

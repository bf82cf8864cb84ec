"""JSON for handler responses: what DynamoDB reads hand out, without ``TypeError``.

Items read with the default ``numbers="decimal"`` hold ``Decimal`` numbers (and sets, and
``Binary``), which the standard ``json`` module refuses (``TypeError: Object of type Decimal is
not JSON serializable``)::

    from resilient_aws import json as rjson

    def handler(event, context):
        order = scan("orders", ...).first()
        return {"statusCode": 200, "body": rjson.dumps(order)}

or pass :func:`default` where a serializer is expected: ``json.dumps(order, default=default)``.

How values are written:

* ``Decimal``: an integer when it is whole (``Decimal("3")`` -> ``3``); otherwise a float
  when the float reads back as the same decimal (``Decimal("9.99")`` -> ``9.99``); otherwise —
  more significant digits than a float holds, which DynamoDB's 38 digits allow — its exact
  text as a JSON *string* (``"0.1234567890123456789"``), never a silently rounded number.
  Whole numbers are written exactly however large; a JavaScript client reads integers beyond
  2**53 rounded: store identifiers as strings.
* ``set`` / ``frozenset`` (DynamoDB's string, number and binary sets): a sorted list.
* ``bytes`` and boto3's ``Binary``: base64 text.

If a number must never change type, read with ``numbers="native"`` (int / float) or convert
before answering; :func:`decimal_to_json` is the rule applied to one value.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

__all__ = ["decimal_to_json", "default", "dumps"]


def decimal_to_json(value: Decimal) -> int | float | str:
    """``int`` if whole, else ``float`` if that loses nothing, else the exact text."""
    if not value.is_finite():
        raise ValueError(f"{value} has no JSON form")
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def default(o: Any) -> Any:
    """A ``default=`` for :func:`json.dumps`: Decimal, sets and binary values; TypeError else."""
    if isinstance(o, Decimal):
        return decimal_to_json(o)
    if isinstance(o, (set, frozenset)):
        try:
            return sorted(o)
        except TypeError:  # boto3's Binary values do not order
            return sorted(o, key=repr)
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(bytes(o)).decode("ascii")
    value = getattr(o, "value", None)  # boto3.dynamodb.types.Binary, duck-typed
    if isinstance(value, bytes) and type(o).__name__ == "Binary":
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` with :func:`default`: items read from DynamoDB as they are."""
    kwargs.setdefault("default", default)
    return json.dumps(obj, **kwargs)

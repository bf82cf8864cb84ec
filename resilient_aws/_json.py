"""JSON for values users hand the library (results, event payloads): one encoder, one policy.

Dataclasses and pydantic models (anything with ``model_dump``) become objects, ``Decimal`` (what
DynamoDB reads hand out) becomes a number, datetimes ISO 8601 text, enums their value, sets
sorted lists. NaN and infinity are refused: JSON has no such numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any

__all__ = ["dumps", "dumps_verbatim", "loads_verbatim"]


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            if not o.is_finite():
                raise ValueError(f"{o} has no JSON form")
            return int(o) if o == o.to_integral_value() else float(o)
        if callable(getattr(o, "model_dump", None)):
            return o.model_dump(mode="json")
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if isinstance(o, enum.Enum):
            return o.value
        if isinstance(o, (dt.datetime, dt.date, dt.time)):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o, key=repr)
        return super().default(o)


def dumps(value: Any) -> str:
    """Sorted-key JSON text of ``value``; TypeError or ValueError if it has no JSON form."""
    return json.dumps(value, cls=_Encoder, sort_keys=True, allow_nan=False)


def loads_verbatim(text: str) -> Any:
    """JSON text parsed with every fractional number kept as the ``Decimal`` it spells, so that
    :func:`dumps_verbatim` writes it back digit for digit (a float would round
    ``12345678901234567.89``)."""
    return json.loads(text, parse_float=decimal.Decimal)


def dumps_verbatim(value: Any) -> str:
    """Compact JSON text of a :func:`loads_verbatim` value: numbers as they were written."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k))}:{dumps_verbatim(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(dumps_verbatim(v) for v in value) + "]"
    return json.dumps(value)

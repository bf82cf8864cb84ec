from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from boto3.dynamodb.types import Binary

from resilient_aws.dynamodb import deserialize_item, item_size, serialize_item
from resilient_aws.dynamodb._cursor import decode_cursor, encode_cursor
from resilient_aws.errors import InvalidCursorError, UnsupportedValueError


def test_floats_become_exact_decimals() -> None:
    wire = serialize_item({"pk": "a", "price": 0.1, "nested": {"rate": 2.5, "list": [1.25, 3]}})
    assert wire["price"] == {"N": "0.1"}
    assert wire["nested"]["M"]["rate"] == {"N": "2.5"}
    assert wire["nested"]["M"]["list"]["L"][0] == {"N": "1.25"}


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, Decimal("NaN"), 1e200, Decimal("1" * 39)]
)
def test_unrepresentable_numbers_name_the_entry_and_attribute(bad: Any) -> None:
    with pytest.raises(UnsupportedValueError) as caught:
        serialize_item({"pk": "a", "deep": {"value": bad}}, "orders[pk=a]")
    assert caught.value.entry_id == "orders[pk=a]"
    assert "deep.value" in str(caught.value)


def test_empty_sets_are_refused() -> None:
    with pytest.raises(UnsupportedValueError, match="empty sets"):
        serialize_item({"pk": "a", "tags": set()}, "t[pk=a]")


def test_unknown_types_are_refused_with_a_clear_error() -> None:
    with pytest.raises(UnsupportedValueError, match="when"):
        serialize_item({"pk": "a", "when": object()}, "t[pk=a]")
    with pytest.raises(UnsupportedValueError, match="cannot store a int"):
        serialize_item(5, "t")


@dataclasses.dataclass
class Order:
    pk: str
    total: float
    lines: list[str]


class Point(NamedTuple):
    pk: str
    x: float


class PydanticLike:
    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"pk": "m", "score": 0.5}


def test_dataclasses_named_tuples_and_pydantic_models_are_duck_typed() -> None:
    assert serialize_item(Order("o1", 9.99, ["a"]))["total"] == {"N": "9.99"}
    assert serialize_item(Point("p", 1.5))["x"] == {"N": "1.5"}
    assert serialize_item(PydanticLike())["score"] == {"N": "0.5"}


def test_round_trip_and_native_numbers() -> None:
    wire = serialize_item({"pk": "a", "n": 3, "f": 1.5, "b": b"\x00", "s": {1, 2}, "l": [1, "x"]})
    back = deserialize_item(wire)
    assert back["n"] == Decimal(3)
    native = deserialize_item(wire, "native")
    assert native["n"] == 3 and isinstance(native["n"], int)
    assert native["f"] == 1.5 and isinstance(native["f"], float)
    assert native["b"] == b"\x00"
    assert native["s"] == {1, 2}


@pytest.mark.parametrize(
    ("item", "size"),
    [
        ({"name": {"S": "abc"}}, 4 + 3),
        ({"n": {"N": "12345"}}, 1 + 4),
        ({"n": {"N": "1000000"}}, 1 + 2),  # leading and trailing zeros are trimmed
        ({"n": {"N": "0.00150"}}, 1 + 2),
        ({"n": {"N": "1E+37"}}, 1 + 2),
        ({"n": {"N": "0"}}, 1 + 2),
        ({"n": {"N": "-12"}}, 1 + 3),  # a byte more for the sign, to be safe
        ({"b": {"B": b"12345678"}}, 1 + 8),
        ({"ok": {"BOOL": True}}, 2 + 1),
        ({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}, 1 + 3 + (1 + 2) + (1 + 2)),
        ({"m": {"M": {"k": {"S": "v"}}}}, 1 + 3 + (1 + 1 + 1)),
        ({"é": {"S": "é"}}, 2 + 2),
    ],
)
def test_item_size_follows_dynamodb_rules(item: dict[str, Any], size: int) -> None:
    assert item_size(item) == size


def test_cursor_round_trip_with_binary_keys() -> None:
    scope = {"op": "Scan", "t": "orders"}
    key = {"pk": {"B": b"\x00\xff"}, "sk": {"N": "5"}}
    cursor = encode_cursor(scope, key)
    assert decode_cursor(cursor, scope) == key
    assert decode_cursor(encode_cursor(scope, {"pk": {"B": Binary(b"\x01")}}), scope) == {
        "pk": {"B": b"\x01"}
    }


def test_a_cursor_for_another_table_or_segment_is_refused() -> None:
    cursor = encode_cursor({"op": "Scan", "t": "orders", "s": 1, "n": 4}, {"pk": {"S": "a"}})
    with pytest.raises(InvalidCursorError, match="t="):
        decode_cursor(cursor, {"op": "Scan", "t": "users", "s": 1, "n": 4})
    with pytest.raises(InvalidCursorError, match="s="):
        decode_cursor(cursor, {"op": "Scan", "t": "orders", "s": 2, "n": 4})


@pytest.mark.parametrize("garbage", ["", "not-a-cursor", "eyJ2IjoyfQ", "%%%"])
def test_garbage_cursors_are_refused(garbage: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(garbage, {"op": "Scan", "t": "orders"})

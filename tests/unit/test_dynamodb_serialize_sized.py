"""serialize_sized (BatchWriter's one-pass path) gives what serialize_item + item_size give."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_aws.dynamodb import item_size, serialize_item
from resilient_aws.dynamodb._serialize import serialize_sized
from resilient_aws.errors import UnsupportedValueError

scalars = st.one_of(
    st.text(max_size=12),  # non-ASCII too; never lone surrogates (tested on their own below)
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.booleans(),
    st.none(),
    st.binary(max_size=8),
    st.builds(bytearray, st.binary(max_size=4)),
    st.builds(Binary, st.binary(min_size=1, max_size=4)),
    st.sets(st.text(max_size=4), max_size=3),
    st.frozensets(st.integers(-5, 5), max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
        st.dictionaries(st.integers(0, 3), inner, max_size=2),  # keys made str by serialize_item
    ),
    max_leaves=12,
)
items = st.dictionaries(st.text(max_size=6), values, max_size=6)


def _general(item: Any, entry_id: str) -> tuple[Any, Any]:
    """(wire, size) or the error, by the general path."""
    try:
        wire = serialize_item(item, entry_id)
    except Exception as error:
        return "error", (type(error), str(error))
    try:
        return wire, item_size(wire)
    except Exception as error:
        return "error", (type(error), str(error))


def _sized(item: Any, entry_id: str) -> tuple[Any, Any]:
    try:
        return serialize_sized(item, entry_id)
    except Exception as error:
        return "error", (type(error), str(error))


@settings(max_examples=400, deadline=None)
@given(items)
def test_one_pass_equals_serialize_then_measure(item: dict[str, Any]) -> None:
    assert _sized(item, "t[pk=a]") == _general(item, "t[pk=a]")


@pytest.mark.parametrize(
    "value",
    [
        10**38 - 1,
        -(10**38) + 1,
        10**38,
        Decimal("1E+126"),
        Decimal("1E-130"),
        Decimal("0E-200"),
        Decimal("-0.00"),
        Decimal("sNaN"),
        -0.0,
        1e-300,
        math.nan,
        "h\u00e9\u20ac\U0001f600",
        {"k\u00e9": [1, "x", None, True, b"\x00"]},
    ],
)
def test_edge_values_are_written_and_refused_alike(value: Any) -> None:
    item = {"pk": "a", "v": value}
    assert _sized(item, "t[pk=a]") == _general(item, "t[pk=a]")


@pytest.mark.parametrize("value", ["\ud800", ["ok", "\udfff"], {"k": "\ud800"}])
def test_a_lone_surrogate_is_a_typed_error_naming_the_entry(value: Any) -> None:
    # Not Unicode text: DynamoDB could never store it, and the request would fail whole.
    with pytest.raises(UnsupportedValueError, match=r"orders\[pk=a\].*'v'.*lone surrogate"):
        serialize_sized({"pk": "a", "v": value}, "orders[pk=a]")


def test_errors_name_the_entry_and_the_attribute() -> None:
    with pytest.raises(UnsupportedValueError) as caught:
        serialize_sized({"pk": "a", "deep": {"list": [1, math.inf]}}, "orders[pk=a]")
    assert caught.value.entry_id == "orders[pk=a]"
    assert "deep.list[1]" in str(caught.value)

"""Keys hash exactly as Powertools hashes them; results round-trip through their JSON form."""

from __future__ import annotations

import dataclasses
import enum
import functools
import warnings
from decimal import Decimal
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_aws.errors import ConfigurationError, IdempotencyKeyError
from resilient_aws.idempotency._codec import decode_result, encode_result
from resilient_aws.idempotency._key import KeySpec

# Powertools' keys outside Lambda (prefix "test-func"), which warn here: that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:.*idempotency keys are prefixed with 'test-func'")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@functools.cache
def powertools_layer(expression: str, function_name: str) -> Any:
    layer = DynamoDBPersistenceLayer(
        table_name="t", boto3_client=boto3.client("dynamodb", region_name="us-east-1")
    )
    layer.configure(IdempotencyConfig(event_key_jmespath=expression), function_name=function_name)
    return layer


def powertools_key(expression: str, data: Any, function_name: str) -> str | None:
    layer = powertools_layer(expression, function_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return layer._get_hashed_idempotency_key(data)  # type: ignore[no-any-return]


def spec(key: Any, **options: Any) -> KeySpec:
    return KeySpec.build(
        key=key,
        validate=options.get("validate"),
        hash_function=options.get("hash_function", "md5"),
        key_prefix=options.get("key_prefix"),
        function_path="app.handlers.charge",
    )


@settings(max_examples=150, deadline=None)
@given(value=json_like)
def test_keys_equal_powertools_keys(value: Any) -> None:
    event = {"body": {"id": value}, "other": 1}
    ours = spec("body.id").idempotency_key(event)
    theirs = powertools_key("body.id", event, "app.handlers.charge")
    assert ours == theirs


@pytest.mark.parametrize(
    ("expression", "event"),
    [
        ("[a, b]", {"a": None, "b": None}),
        ("{x: a, y: b}", {"c": 1}),
        ("a", {"a": ""}),
        ("a", {"a": []}),
        ("a", {"a": 0}),
        ("a", {"a": False}),
        ("[a, b]", {"a": 1}),
        ("powertools_json(body).id", {"body": '{"id": "x"}'}),
        ("powertools_base64(data)", {"data": "aGVsbG8="}),
    ],
)
def test_missing_and_present_agree_with_powertools(expression: str, event: dict[str, Any]) -> None:
    assert spec(expression).idempotency_key(event) == powertools_key(
        expression, event, "app.handlers.charge"
    )


def test_prefix_follows_the_function_name_and_key_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders")
    assert spec("a").idempotency_key({"a": 1}) == (
        "orders.app.handlers.charge#c4ca4238a0b923820dcc509a6f75849b"
    )
    assert spec("a", key_prefix="stable").idempotency_key({"a": 1}).startswith("stable#")
    sha = spec("a", hash_function="sha256").idempotency_key({"a": 1})
    assert sha is not None and len(sha.split("#")[1]) == 64


def test_bad_specs() -> None:
    with pytest.raises(ConfigurationError, match="key"):
        spec("a[")
    with pytest.raises(ConfigurationError, match="validate"):
        spec("a", validate="")
    with pytest.raises(ConfigurationError, match="key_prefix"):
        spec("a", key_prefix="")
    with pytest.raises(IdempotencyKeyError):
        spec("a").idempotency_key({"a": {1, 2}})


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Inner:
    colour: Colour
    amount: float


@dataclasses.dataclass
class Outer:
    name: str
    inners: list[Inner]
    by_name: dict[str, Inner]
    maybe: Inner | None = None


def test_nested_dataclasses_round_trip() -> None:
    value = Outer("o", [Inner(Colour.RED, 1.5)], {"k": Inner(Colour.RED, 2.0)}, None)
    assert decode_result(encode_result(value), Outer) == value
    assert decode_result(encode_result([value]), list[Outer]) == [value]


@settings(max_examples=150, deadline=None)
@given(value=json_like)
def test_json_values_round_trip(value: Any) -> None:
    def plain(v: Any) -> Any:
        if isinstance(v, Decimal):
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    assert decode_result(encode_result(value), Any) == plain(value)


def test_unstorable_results() -> None:
    for bad in (object(), float("nan"), Decimal("Infinity"), {1: {2: lambda: 0}}):
        with pytest.raises((TypeError, ValueError)):
            encode_result(bad)

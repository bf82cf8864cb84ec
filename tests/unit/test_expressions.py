"""Expressions as users write them (issue 16, item 2): boto3's Key/Attr conditions and plain
Python values in ExpressionAttributeValues, with wire format still accepted."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key

from resilient_aws.dynamodb import parallel_scan, query, scan
from resilient_aws.dynamodb._expressions import is_wire_value, prepare_expressions
from resilient_aws.errors import ConfigurationError
from tests.dynamo_tables import create_table


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ({"S": "Milan"}, True),
        ({"N": "1"}, True),
        ({"NULL": True}, True),
        ({"M": {"a": {"S": "b"}}}, True),
        ("Milan", False),
        (1, False),
        ({"city": "Milan"}, False),
        ({"S": "a", "N": "1"}, False),  # two keys: a plain map
        ({}, False),
    ],
)
def test_a_wire_value_is_a_one_key_dict_with_a_type_tag(value: Any, wire: bool) -> None:
    assert is_wire_value(value) is wire


def test_plain_values_are_serialized_and_wire_values_kept() -> None:
    prepared = prepare_expressions(
        {
            "FilterExpression": "city = :c AND total > :t AND tags = :s AND city <> :w",
            "ExpressionAttributeValues": {
                ":c": "Milan",
                ":t": 9.99,
                ":s": {"a", "b"},
                ":w": {"S": "Rome"},
            },
        }
    )
    values = prepared["ExpressionAttributeValues"]
    assert values[":c"] == {"S": "Milan"}
    assert values[":t"] == {"N": "9.99"}
    assert sorted(values[":s"]["SS"]) == ["a", "b"]
    assert values[":w"] == {"S": "Rome"}


def test_a_map_that_looks_like_wire_is_forced_plain_by_writing_it_in_wire_format() -> None:
    prepared = prepare_expressions(
        {"ExpressionAttributeValues": {":m": {"M": {"S": {"S": "x"}}}, ":p": {"S": "x"}}}
    )
    assert prepared["ExpressionAttributeValues"][":m"] == {"M": {"S": {"S": "x"}}}
    assert prepared["ExpressionAttributeValues"][":p"] == {"S": "x"}  # read as wire


def test_conditions_are_built_with_one_builder_and_merged() -> None:
    prepared = prepare_expressions(
        {
            "KeyConditionExpression": Key("pk").eq("o-1") & Key("sk").begins_with("2024"),
            "FilterExpression": Attr("total").gt(Decimal("10")),
            "ExpressionAttributeNames": {"#mine": "x"},
        }
    )
    assert prepared["KeyConditionExpression"] == "(#n0 = :v0 AND begins_with(#n1, :v1))"
    assert prepared["FilterExpression"] == "#n2 > :v2"
    assert prepared["ExpressionAttributeNames"] == {
        "#mine": "x",
        "#n0": "pk",
        "#n1": "sk",
        "#n2": "total",
    }
    assert prepared["ExpressionAttributeValues"] == {
        ":v0": {"S": "o-1"},
        ":v1": {"S": "2024"},
        ":v2": {"N": "10"},
    }


def test_strings_without_values_pass_through_untouched() -> None:
    params = {"FilterExpression": "attribute_exists(city)", "IndexName": "by_city"}
    assert prepare_expressions(params) == params


def test_a_placeholder_clash_and_bad_conditions_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=":v0"):
        prepare_expressions(
            {"FilterExpression": Attr("a").eq(1), "ExpressionAttributeValues": {":v0": 2}}
        )
    with pytest.raises(ConfigurationError, match="KeyConditionExpression"):
        prepare_expressions({"KeyConditionExpression": Attr("a").eq(1)})
    with pytest.raises(ConfigurationError, match="FilterExpression"):
        prepare_expressions({"FilterExpression": 42})


@pytest.fixture
def orders(ddb: Any) -> str:
    create_table(ddb, "orders", range_key=("sk", "S"))
    for i in range(40):
        ddb.put_item(
            TableName="orders",
            Item={
                "pk": {"S": f"o-{i % 4}"},
                "sk": {"S": f"2024-{i:02}"},
                "city": {"S": "Milan" if i % 2 else "Rome"},
                "total": {"N": str(i)},
            },
        )
    return "orders"


def test_scan_query_count_and_parallel_scan_take_boto3_conditions(ddb: Any, orders: str) -> None:
    milan = [i for i in range(40) if i % 2]
    by_condition = scan(orders, client=ddb, FilterExpression=Attr("city").eq("Milan"))
    by_plain = scan(
        orders,
        client=ddb,
        FilterExpression="city = :c",
        ExpressionAttributeValues={":c": "Milan"},
    )
    by_wire = scan(
        orders,
        client=ddb,
        FilterExpression="city = :c",
        ExpressionAttributeValues={":c": {"S": "Milan"}},
    )
    for read in (by_condition, by_plain, by_wire):
        assert sorted(int(item["total"]) for item in read) == milan
    assert scan(orders, client=ddb, FilterExpression=Attr("city").eq("Milan")).count() == 20

    read = query(
        orders,
        client=ddb,
        KeyConditionExpression=Key("pk").eq("o-1") & Key("sk").begins_with("2024-1"),
        FilterExpression=Attr("total").gt(12.5),
        page_size=2,
    )
    assert [item["sk"] for item in read] == ["2024-13", "2024-17"]
    assert query(orders, client=ddb, KeyConditionExpression=Key("pk").eq("o-1")).count() == 10

    parallel = parallel_scan(
        orders, segments=3, client=ddb, FilterExpression=Attr("total").between(10, 19)
    )
    assert sorted(int(item["total"]) for item in parallel) == list(range(10, 20))

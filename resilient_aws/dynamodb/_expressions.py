"""Expressions as users write them: boto3's ``Key``/``Attr`` conditions and plain values.

Items come back as plain Python; conditions may now go in the same way::

    scan("orders", FilterExpression=Attr("city").eq("Milan"))
    query("orders", KeyConditionExpression=Key("pk").eq("o-1") & Key("sk").begins_with("2024"))
    scan("orders", FilterExpression="city = :c", ExpressionAttributeValues={":c": "Milan"})

A condition object is built with boto3's own ``ConditionExpressionBuilder`` (placeholders
``#n0``, ``:v0``...) and its names and values merged into ``ExpressionAttributeNames`` /
``ExpressionAttributeValues``. Each value of ``ExpressionAttributeValues`` is taken as wire
format if it is a ``dict`` with exactly one key among DynamoDB's type tags (``S``, ``N``,
``B``, ``SS``, ``NS``, ``BS``, ``M``, ``L``, ``NULL``, ``BOOL``), else serialized like an item's
attribute (floats become exact ``Decimal``s, sets, maps, lists...). The one ambiguity: a plain
map whose only key is a type tag (``{"S": "x"}``) is read as wire; write such a map in wire
format to say so (``{"M": {"S": {"S": "x"}}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resilient_aws.dynamodb._serialize import serialize_item
from resilient_aws.errors import ConfigurationError

__all__ = ["TYPE_TAGS", "is_wire_value", "prepare_expressions"]

TYPE_TAGS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})

EXPRESSIONS = ("KeyConditionExpression", "FilterExpression", "ConditionExpression")


def is_wire_value(value: Any) -> bool:
    """Whether ``value`` is already in DynamoDB's wire format (``{"S": "Milan"}``)."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in TYPE_TAGS


def _serialized(name: str, value: Any) -> Any:
    return serialize_item({name: value}, entry_id="ExpressionAttributeValues")[name]


def prepare_expressions(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with condition objects built and every attribute value in wire format.

    Parameters without a condition object nor a plain value are returned as they were.
    """
    prepared = dict(params)
    names = dict(prepared.get("ExpressionAttributeNames") or {})
    values = {
        name: value if is_wire_value(value) else _serialized(name, value)
        for name, value in (prepared.get("ExpressionAttributeValues") or {}).items()
    }
    builder: Any = None
    for parameter in EXPRESSIONS:
        condition = prepared.get(parameter)
        if condition is None or isinstance(condition, str):
            continue
        from boto3.dynamodb.conditions import ConditionBase, ConditionExpressionBuilder

        if not isinstance(condition, ConditionBase):
            raise ConfigurationError(
                parameter,
                "must be an expression string or a boto3 condition (Key(...)/Attr(...)),"
                f" got {type(condition).__name__}",
            )
        # One builder per request: its placeholders never repeat across the expressions.
        builder = builder or ConditionExpressionBuilder()
        try:
            built = builder.build_expression(
                condition, is_key_condition=parameter == "KeyConditionExpression"
            )
        except Exception as error:  # boto3's DynamoDBNeedsKeyConditionError and friends
            raise ConfigurationError(parameter, str(error)) from error
        for placeholder, name in built.attribute_name_placeholders.items():
            _merge(names, placeholder, name, "ExpressionAttributeNames")
        for placeholder, value in built.attribute_value_placeholders.items():
            _merge(
                values, placeholder, _serialized(placeholder, value), "ExpressionAttributeValues"
            )
        prepared[parameter] = built.condition_expression
    if names or "ExpressionAttributeNames" in prepared:
        prepared["ExpressionAttributeNames"] = names
    if values or "ExpressionAttributeValues" in prepared:
        prepared["ExpressionAttributeValues"] = values
    return prepared


def _merge(into: dict[str, Any], placeholder: str, value: Any, parameter: str) -> None:
    if placeholder in into and into[placeholder] != value:
        raise ConfigurationError(
            parameter,
            f"{placeholder} is used by a boto3 condition's placeholders: rename yours"
            " (the builder uses #n0, #n1... and :v0, :v1...)",
        )
    into[placeholder] = value

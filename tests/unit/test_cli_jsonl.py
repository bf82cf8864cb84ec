"""JSON lines for load and export: exact numbers, both formats, bad lines named not shown."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary

from resilient_aws.cli._jsonl import dump_item, parse_item

SECRET = "alice@example.com"

ITEM: dict[str, Any] = {
    "pk": "order-1",
    "total": Decimal("12345678901234567890.123456789012345678"),  # 38 digits: past a float
    "small": Decimal("1E-130"),
    "count": Decimal("3"),
    "tags": {"b", "a"},
    "scores": {Decimal("2.5"), Decimal("1")},
    "blob": Binary(b"\x00\xff"),
    "blobs": {Binary(b"\x01"), Binary(b"\x02")},
    "nested": {"list": [Decimal("1.10"), None, True, "x"], "empty": {}},
}


def test_plain_numbers_survive_digit_for_digit() -> None:
    line = dump_item(ITEM)
    assert '"total":12345678901234567890.123456789012345678' in line
    json.loads(line)  # valid JSON
    back = parse_item(line.encode())
    assert back["total"] == ITEM["total"]
    assert back["small"] == Decimal("1E-130")
    assert back["count"] == 3
    assert isinstance(back["count"], int)


def test_plain_writes_sets_sorted_and_binary_as_base64() -> None:
    back = parse_item(dump_item(ITEM).encode())
    assert back["tags"] == ["a", "b"]
    assert back["scores"] == [1, Decimal("2.5")]
    assert back["blob"] == "AP8="
    assert back["nested"] == {"list": [Decimal("1.10"), None, True, "x"], "empty": {}}


def test_dynamodb_format_is_lossless() -> None:
    line = dump_item(ITEM, "dynamodb")
    wire = json.loads(line)["Item"]
    assert wire["total"] == {"N": "12345678901234567890.123456789012345678"}
    assert wire["blob"] == {"B": "AP8="}
    assert sorted(wire["tags"]["SS"]) == ["a", "b"]
    assert parse_item(line.encode(), "dynamodb") == ITEM


def test_dynamodb_format_reads_bare_wire_items_too() -> None:
    line = b'{"pk": {"S": "a"}, "n": {"N": "1.5"}, "ok": {"BOOL": false}}'
    assert parse_item(line, "dynamodb") == {"pk": "a", "n": Decimal("1.5"), "ok": False}


def test_byte_order_mark_and_newlines_are_ignored() -> None:
    assert parse_item('\ufeff{"pk": "a"}\r\n'.encode()) == {"pk": "a"}


@pytest.mark.parametrize(
    ("raw", "fmt", "message"),
    [
        (b'{"pk": "' + SECRET.encode() + b'",', "plain", "not JSON: Expecting"),
        (b'["' + SECRET.encode() + b'"]', "plain", "not a JSON object but a JSON array"),
        (b'"' + SECRET.encode() + b'"', "plain", "not a JSON object but a JSON string"),
        (b"\xff" + SECRET.encode(), "plain", "not UTF-8 (byte 1)"),
        (b'{"pk": "' + SECRET.encode() + b'"}', "dynamodb", "attribute 'pk': not a DynamoDB"),
        (b'{"pk": {"S": 1}}', "dynamodb", "attribute 'pk': S holds a string"),
        (b'{"n": {"N": "' + SECRET.encode() + b'"}}', "dynamodb", "attribute 'n': not a number"),
        (b'{"b": {"B": "' + SECRET.encode() + b'"}}', "dynamodb", "'b': binary is not valid"),
        (b'{"m": {"M": {"x": {"Q": 1}}}}', "dynamodb", "attribute 'm.x': not a DynamoDB"),
        (b'{"l": {"L": [{"S": "a"}, 3]}}', "dynamodb", "attribute 'l[1]': not a DynamoDB"),
        (b'{"f": {"BOOL": "yes"}}', "dynamodb", "attribute 'f': BOOL holds true or false"),
    ],
)
def test_bad_lines_say_what_is_wrong_without_the_payload(
    raw: bytes, fmt: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        parse_item(raw, fmt)
    assert SECRET not in str(error.value)


def test_a_value_with_no_json_form_is_refused() -> None:
    with pytest.raises(ValueError, match="no JSON form"):
        dump_item({"pk": "a", "n": Decimal("NaN")})
    with pytest.raises(TypeError, match="cannot write a object"):
        dump_item({"pk": object()})

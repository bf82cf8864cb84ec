"""Input holes of the serializers and the batch senders (issue 13): values silently changed or
dropped, and bad entries that raised an untyped error or sank their whole request.

Each bad value is now a typed :class:`~resilient_aws.errors.EntryValidationError` that names
the entry and the attribute path and type (never the value), raised at ``put()`` before
anything is sent, or with ``on_invalid="report"`` recorded by id while the good entries of the
same batch are all sent.
"""

from __future__ import annotations

import datetime
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from resilient_aws.batch import (
    EventBridgePutter,
    FirehosePutter,
    KinesisPutter,
    SnsPublisher,
    SqsSender,
)
from resilient_aws.dynamodb import BatchWriter, serialize_item
from resilient_aws.dynamodb._serialize import serialize_sized
from resilient_aws.errors import BatchWriteError, EntryValidationError, UnsupportedValueError

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
TOPIC = "arn:aws:sns:us-east-1:123456789012:t"
SECRET = "4111111111111111"  # a card number: never in a message


class Accepting:
    """Every batch API, answering that every entry succeeded; keeps each request's entries."""

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def _took(self, entries: list[Any]) -> list[Any]:
        self.entries += entries
        return entries

    def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        ok = [{"Id": e["Id"], "MessageId": "m"} for e in self._took(Entries)]
        return {"Successful": ok, "Failed": []}

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]) -> Any:  # noqa: N803
        ok = [{"Id": e["Id"], "MessageId": "m"} for e in self._took(PublishBatchRequestEntries)]
        return {"Successful": ok, "Failed": []}

    def put_records(self, Records: list[Any], **stream: Any) -> Any:  # noqa: N803
        answers = [{"SequenceNumber": "1", "ShardId": "s"} for _ in self._took(Records)]
        return {"Records": answers, "FailedRecordCount": 0}

    def put_record_batch(self, DeliveryStreamName: str, Records: list[Any]) -> Any:  # noqa: N803
        answers = [{"RecordId": "r"} for _ in self._took(Records)]
        return {"RequestResponses": answers, "FailedPutCount": 0}

    def put_events(self, Entries: list[Any], **options: Any) -> Any:  # noqa: N803
        return {"Entries": [{"EventId": "e"} for _ in self._took(Entries)], "FailedEntryCount": 0}

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:  # noqa: N803
        for requests in RequestItems.values():
            self._took(requests)
        return {"UnprocessedItems": {}}


def _deep(levels: int, leaf: Any = 1) -> Any:
    """``leaf`` wrapped in ``levels`` single-key maps."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def _both(item: Any, entry_id: str = "t[pk=a]") -> list[BaseException]:
    """The errors serialize_item and serialize_sized (BatchWriter's one pass) raise for item."""
    errors: list[BaseException] = []
    for serialize in (serialize_item, serialize_sized):
        with pytest.raises(UnsupportedValueError) as caught:
            serialize(item, entry_id)
        assert caught.value.entry_id == entry_id
        errors.append(caught.value)
    assert str(errors[0]) == str(errors[1])
    return errors


# -- 1. map keys that are not strings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [({1: "one", "1": "uno"}, "int"), ({(1, 2): "x"}, "tuple"), ({"k": {2.5: "x"}}, "float")],
)
def test_a_map_key_that_is_not_a_string_is_refused_not_converted(value: Any, kind: str) -> None:
    # str() merged 1 and "1" (a value dropped, the entry counted as written); boto3 raises
    error, _ = _both({"pk": "a", "m": value})
    assert f"a map key of type {kind}" in str(error)
    assert "entry 't[pk=a]': m" in str(error)


def test_an_attribute_name_that_is_not_a_string_is_a_typed_error() -> None:
    error, _ = _both({"pk": "a", 7: "x"})  # was AttributeError: 'int' object has no 'encode'
    assert "an attribute name of type int" in str(error)


# -- 2. sets DynamoDB cannot hold ----------------------------------------------------------------


def test_a_set_of_booleans_is_refused_not_stored_as_numbers() -> None:
    error, _ = _both({"pk": "a", "flags": {True, False}})  # was stored as the number set {0, 1}
    assert "flags: a set of bool" in str(error)
    assert "boolean" in str(error)


def test_a_set_of_mixed_types_names_the_element_types() -> None:
    error, _ = _both({"pk": "a", "tags": {1, "one", b"1"}})
    assert "tags: a set of bytes, int, str" in str(error)
    assert "<class 'set'>" not in str(error)


# -- 13. nesting, numbers --------------------------------------------------------------------------


def test_nesting_deeper_than_dynamodb_allows_is_a_typed_error_with_the_path() -> None:
    # 5,000 levels raised RecursionError; DynamoDB stores 32 levels: 31 maps around a scalar
    assert serialize_sized({"pk": "a", "d": _deep(31)})[0]["d"]["M"]["a"]["M"]
    assert serialize_item({"pk": "a", "d": _deep(31)})
    for levels in (32, 5_000):
        error, _ = _both({"pk": "a", "d": _deep(levels)})
        assert f"d{'.a' * 31}: nested more than 32 levels deep" in str(error)
    error, _ = _both({"pk": "a", "d": [_deep(40, [1])]})
    assert "d[0].a.a" in str(error)


def test_a_cycle_is_refused_as_too_deep_not_a_recursion_error() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    _both({"pk": "a", "c": cycle})


@pytest.mark.parametrize("number", [int(SECRET + "0" * 23), -int(SECRET * 3), 10**38])
def test_a_number_over_38_digits_says_so_without_the_number(number: int) -> None:
    # was "[<class 'decimal.Rounded'>]", or the number itself
    error, _ = _both({"pk": "a", "n": number})
    digits = len(str(abs(number)))
    assert f"n: a number of {digits} digits; DynamoDB numbers keep 38 digits" in str(error)
    assert "Rounded" not in str(error)
    assert SECRET not in str(error)


def test_decimal_digits_beyond_38_are_named_by_count() -> None:
    error, _ = _both({"pk": "a", "n": Decimal("0." + SECRET * 3)})
    assert "n: a number of 48 digits" in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (datetime.datetime(2024, 1, 2), "datetime"),
        (uuid.UUID(int=int(SECRET)), "UUID"),
        (object(), "object"),
    ],
)
def test_unknown_types_are_named_by_type_never_by_value(value: Any, kind: str) -> None:
    error, _ = _both({"pk": "a", "deep": {"v": [value]}})
    assert f"deep.v[0]: DynamoDB cannot store a {kind}" in str(error)
    assert str(value) not in str(error)


def test_nan_names_itself_but_not_a_nan_payload() -> None:
    error, _ = _both({"pk": "a", "n": Decimal("NaN" + SECRET)})
    assert "n: Decimal('NaN') cannot be stored" in str(error)
    assert SECRET not in str(error)


def test_valid_values_are_written_as_before() -> None:
    item = {
        "pk": "a",
        "m": {"k": [1, "x", None, True, b"\x00", Decimal("1.50"), 0.1]},
        "ns": {1, 2.5, Decimal("3")},
        "ss": frozenset({"a"}),
        "bs": {b"x"},
        "big": 10**38 - 1,
    }
    wire = serialize_item(item)
    assert serialize_sized(item)[0] == wire
    assert wire["m"]["M"]["k"]["L"][5] == {"N": "1.50"}
    assert sorted(wire["ns"]["NS"]) == ["1", "2.5", "3"]
    assert wire["big"] == {"N": "9" * 38}


# -- 6. EventBridge details ----------------------------------------------------------------------


def _detail(detail: Any) -> Any:
    client = Accepting()
    with EventBridgePutter(client=client) as putter:
        putter.put(detail, source="shop", detail_type="Ordered", id="e1")
    (entry,) = client.entries
    return entry["Detail"]


def test_decimals_in_an_event_detail_are_numbers_with_exactly_their_digits() -> None:
    # default=str sent Decimal("1.5") as the string "1.5"
    text = _detail(
        {"price": Decimal("1.5"), "exact": Decimal("12345678901234567.89"), "q": [Decimal("1.50")]}
    )
    assert text == '{"price":1.5,"exact":12345678901234567.89,"q":[1.50]}'
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed["exact"] == Decimal("12345678901234567.89")


def test_a_detail_with_a_decimal_is_written_as_json_writes_the_rest() -> None:
    plain: dict[Any, Any] = {"s": 'é\u2028"x', "i": 2**70, "f": 0.1, "b": True, "n": None, 1: "k"}
    with_decimal = {**plain, "d": Decimal("2")}
    expected = json.dumps({**plain, "d": 2}, separators=(",", ":"))
    assert _detail(with_decimal) == expected
    assert _detail(plain) == json.dumps(plain, separators=(",", ":"))


@pytest.mark.parametrize(
    ("detail", "where"),
    [
        ({"tags": {1, 2}}, "detail.tags: JSON has no set"),
        ({"raw": b"\x00"}, "detail.raw: JSON has no bytes"),
        ({"when": datetime.datetime(2024, 1, 1)}, "detail.when: JSON has no datetime"),
        ({"x": {"y": [1, float("nan")]}}, "detail.x.y[1]: NaN and infinity are not JSON"),
        ({"x": math.inf}, "detail.x: NaN and infinity"),
        ({"x": Decimal("-Infinity")}, "detail.x: NaN and infinity"),
        ({"x": Decimal("NaN")}, "detail.x: NaN and infinity"),
        ({"x": {(1, 2): "a"}, "d": Decimal(1)}, "detail.x: a key of type tuple"),
        ({"x": {Decimal(1): "a"}}, "detail.x: a key of type Decimal"),
        ({"deep": _deep(5_000)}, "detail: nested too deeply"),
    ],
)
def test_what_json_cannot_hold_is_a_typed_bad_entry(detail: Any, where: str) -> None:
    putter = EventBridgePutter(client=Accepting())
    with pytest.raises(UnsupportedValueError) as caught:
        putter.put(detail, source="shop", detail_type="Ordered", id="e1")
    assert isinstance(caught.value, EntryValidationError)
    assert caught.value.entry_id == "e1"
    assert where in str(caught.value)
    assert putter.close().submitted == 0


def test_a_detail_that_refers_to_itself_is_a_typed_bad_entry() -> None:
    cycle: dict[str, Any] = {"d": Decimal(1)}
    cycle["again"] = cycle
    with pytest.raises(UnsupportedValueError, match=r"detail\.again: a circular reference"):
        EventBridgePutter(client=Accepting()).put(cycle, source="s", detail_type="t")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.put([1, 2], source="s", detail_type="t"), "JSON object"),
        (lambda p: p.put({}, source=1, detail_type="t"), "source and detail_type must be str"),
        (lambda p: p.put({}, source="s", detail_type="t", resources="arn:x"), "resources"),
        (lambda p: p.put({}, source="s", detail_type="t", resources=[1]), "resources"),
        (lambda p: p.put({}, source="s", detail_type="t", trace_header=1), "trace_header"),
        (lambda p: p.put({}, source="s\ud800", detail_type="t"), "Source: a string that is not"),
        (lambda p: p.put('{"a":"\ud800"}', source="s", detail_type="t"), "Detail: a string"),
    ],
)
def test_eventbridge_options_of_the_wrong_type_are_typed_errors(
    call: Callable[[EventBridgePutter], None], message: str
) -> None:
    putter = EventBridgePutter(client=Accepting())
    with pytest.raises(EntryValidationError, match=message):
        call(putter)


# -- 13. SQS system attributes, lone surrogates, wrong types ------------------------------------


@pytest.mark.parametrize(
    ("system_attributes", "message"),
    [
        ({"AWSTraceHeader": {"DataType": "String", "StringValue": 5}}, "StringValue must be"),
        ({"AWSTraceHeader": {"DataType": "Number", "StringValue": "1"}}, "must be {'DataType'"),
        ({"AWSTraceHeader": "Root=1-5759e988"}, "must be {'DataType'"),
        ({"Other": {"DataType": "String", "StringValue": "x"}}, "SQS takes only AWSTraceHeader"),
        ({1: {"DataType": "String", "StringValue": "x"}}, "system attribute of type int"),
        ("AWSTraceHeader", "system_attributes must map"),
    ],
)
def test_sqs_system_attributes_are_validated_like_message_attributes(
    system_attributes: Any, message: str
) -> None:
    # one wrong-typed value failed all 10 entries of its request (ParamValidationError)
    sender = SqsSender(QUEUE, client=Accepting())
    with pytest.raises(EntryValidationError, match=message) as caught:
        sender.send_message("x", id="bad", system_attributes=system_attributes)
    assert caught.value.entry_id == "bad"
    assert sender.close().submitted == 0


def test_a_valid_trace_header_is_sent() -> None:
    client = Accepting()
    header = {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3f"}}
    with SqsSender(QUEUE, client=client) as sender:
        sender.send_message("x", system_attributes=header)
    assert client.entries[0]["MessageSystemAttributes"] == header


BAD_TEXT = "ok \ud800"  # a lone surrogate: a Python str, not Unicode text

SURROGATES: list[tuple[str, Callable[[Any], Any], Callable[[Any], None], str]] = [
    ("sqs body", lambda c: SqsSender(QUEUE, client=c), lambda s: s.send_message(BAD_TEXT), "body"),
    (
        "sqs attribute",
        lambda c: SqsSender(QUEUE, client=c),
        lambda s: s.send_message(
            "x", attributes={"a": {"DataType": "String", "StringValue": BAD_TEXT}}
        ),
        "attribute 'a'",
    ),
    (
        "sqs group",
        lambda c: SqsSender(QUEUE + ".fifo", client=c),
        lambda s: s.send_message("x", group_id=BAD_TEXT),
        "group_id",
    ),
    ("sns message", lambda c: SnsPublisher(TOPIC, client=c), lambda s: s.publish(BAD_TEXT), "mes"),
    (
        "sns subject",
        lambda c: SnsPublisher(TOPIC, client=c),
        lambda s: s.publish("x", subject=BAD_TEXT),
        "subject",
    ),
    (
        "kinesis data",
        lambda c: KinesisPutter("s", client=c),
        lambda s: s.put(BAD_TEXT, "k"),
        "data",
    ),
    (
        "kinesis key",
        lambda c: KinesisPutter("s", client=c),
        lambda s: s.put(b"x", BAD_TEXT),
        "partition key",
    ),
    ("firehose", lambda c: FirehosePutter("d", client=c), lambda s: s.put(BAD_TEXT), "data"),
]


@pytest.mark.parametrize(
    ("make", "add", "where"), [case[1:] for case in SURROGATES], ids=[c[0] for c in SURROGATES]
)
def test_a_lone_surrogate_is_a_typed_error_not_a_unicode_encode_error(
    make: Callable[[Any], Any], add: Callable[[Any], None], where: str
) -> None:
    sender = make(Accepting())
    with pytest.raises(EntryValidationError, match=f"{where}.*lone surrogate"):
        add(sender)
    assert sender.close().submitted == 0


@pytest.mark.parametrize(
    ("make", "add", "message"),
    [
        (
            lambda c: SqsSender(QUEUE, client=c),
            lambda s: s.send_message("x", delay_seconds="5"),
            "delay_seconds must be an int",
        ),
        (
            lambda c: SqsSender(QUEUE + ".fifo", client=c),
            lambda s: s.send_message("x", group_id=5),
            "group_id must be a str",
        ),
        (
            lambda c: SnsPublisher(TOPIC, client=c),
            lambda s: s.publish("x", subject=5),
            "subject must be a str",
        ),
        (
            lambda c: KinesisPutter("s", client=c),
            lambda s: s.put(b"x", "k", explicit_hash_key=5),
            "explicit_hash_key",
        ),
        (lambda c: FirehosePutter("d", client=c), lambda s: s.put(5), "data must be bytes"),
    ],
)
def test_options_of_the_wrong_type_are_typed_errors(
    make: Callable[[Any], Any], add: Callable[[Any], None], message: str
) -> None:
    # each reached botocore, whose ParamValidationError failed every entry of the request
    sender = make(Accepting())
    with pytest.raises(EntryValidationError, match=message):
        add(sender)


# -- one bad entry among good ones, on_invalid="report" -----------------------------------------

TRACE = {"AWSTraceHeader": {"DataType": "String", "StringValue": 5}}
SENDERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, int], None], Callable[[Any], None]]]
SENDERS = {
    "sqs system attributes": (
        lambda c: SqsSender(QUEUE, client=c, on_invalid="report"),
        lambda s, i: s.send_message(f"m{i}", id=f"m{i}"),
        lambda s: s.send_message("bad", id="bad", system_attributes=TRACE),
    ),
    "sqs surrogate": (
        lambda c: SqsSender(QUEUE, client=c, on_invalid="report"),
        lambda s, i: s.send_message(f"m{i}", id=f"m{i}"),
        lambda s: s.send_message(BAD_TEXT, id="bad"),
    ),
    "sns surrogate": (
        lambda c: SnsPublisher(TOPIC, client=c, on_invalid="report"),
        lambda s, i: s.publish(f"m{i}", id=f"m{i}"),
        lambda s: s.publish(BAD_TEXT, id="bad"),
    ),
    "kinesis surrogate": (
        lambda c: KinesisPutter("s", client=c, on_invalid="report"),
        lambda s, i: s.put(f"m{i}", "k", id=f"m{i}"),
        lambda s: s.put(BAD_TEXT, "k", id="bad"),
    ),
    "firehose surrogate": (
        lambda c: FirehosePutter("d", client=c, on_invalid="report"),
        lambda s, i: s.put(f"m{i}", id=f"m{i}"),
        lambda s: s.put(BAD_TEXT, id="bad"),
    ),
    "eventbridge set": (
        lambda c: EventBridgePutter(client=c, on_invalid="report"),
        lambda s, i: s.put({"n": i}, source="s", detail_type="t", id=f"m{i}"),
        lambda s: s.put({"tags": {1}}, source="s", detail_type="t", id="bad"),
    ),
    "eventbridge nan": (
        lambda c: EventBridgePutter(client=c, on_invalid="report"),
        lambda s, i: s.put({"n": Decimal(i)}, source="s", detail_type="t", id=f"m{i}"),
        lambda s: s.put({"n": Decimal("NaN")}, source="s", detail_type="t", id="bad"),
    ),
}
ITEMS = {
    "map key": {1: "one", "1": "uno"},
    "bool set": {True, False},
    "deep": _deep(5_000),
    "39 digits": 10**38,
    "datetime": datetime.datetime(2024, 1, 1),
}
for _name, _value in ITEMS.items():
    SENDERS[f"dynamodb {_name}"] = (
        lambda c: BatchWriter("t", client=c, keys="pk", on_invalid="report"),
        lambda s, i: s.put({"pk": f"m{i}"}),
        lambda s, value=_value: s.put({"pk": "bad", "v": value}),
    )
SENDERS["dynamodb attribute name"] = (
    lambda c: BatchWriter("t", client=c, keys="pk", on_invalid="report"),
    lambda s, i: s.put({"pk": f"m{i}"}),
    lambda s: s.put({"pk": "bad", 5: "x"}),
)


@pytest.mark.parametrize(("make", "good", "bad"), SENDERS.values(), ids=SENDERS.keys())
def test_one_bad_entry_is_reported_by_id_and_every_good_one_is_sent(
    make: Callable[[Any], Any], good: Callable[[Any, int], None], bad: Callable[[Any], None]
) -> None:
    client = Accepting()
    sender = make(client)
    with pytest.raises(BatchWriteError), sender:  # leaving the block: the bad one failed
        for i in range(4):
            good(sender, i)
        bad(sender)  # reported, not raised: the loop goes on
        for i in range(4, 9):
            good(sender, i)
    result = sender.result
    assert (result.submitted, result.succeeded) == (10, 9)
    assert len(client.entries) == 9
    (failed,) = result.failed
    assert failed.entry_id in ("bad", "t[pk=bad]")
    assert failed.code in ("EntryValidationError", "UnsupportedValueError")

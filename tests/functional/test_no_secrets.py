"""Entries are named, never their payload: no error, log record or command output carries a
value from a payload.

Every bad input and failure below puts a card number in its payload; the test scans what the
caller can see — every exception (``str`` and ``repr``, with the causes a traceback prints), the
failed entries of the result, every log record at DEBUG, the command's output — for it.
botocore, urllib3 and moto log request parameters at DEBUG by design: their records are left
out (the command line sets them to WARNING).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import traceback
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from resilient_aws.batch import (
    EventBridgePutter,
    FirehosePutter,
    KinesisPutter,
    SnsPublisher,
    SqsSender,
)
from resilient_aws.cli import main
from resilient_aws.dynamodb import BatchWriter, serialize_item
from resilient_aws.errors import BatchWriteError
from tests.batch_targets import dlq_with_source, firehose_to_bucket, make_queue
from tests.dynamo_tables import create_table
from tests.redrive_support import make_moto_sqs_atomic

REGION = "us-east-1"
CARD = "4111111111111111"
SECRET = f"SECRET-{CARD}"
SECRET_UUID = uuid.UUID(f"{CARD}{CARD}")
SECRET_TIME = datetime.datetime(1987, 6, 5, 4, 3, 2, 123456)
# What must never be seen: the card number (in every secret below), and the texts of the
# values that do not spell it.
NEVER = (CARD, str(SECRET_UUID), SECRET_UUID.hex, str(SECRET_TIME))
THIRD_PARTY = ("botocore", "boto3", "urllib3", "moto", "s3transfer", "werkzeug", "aws_xray")


class Hidden:
    """A value of a type nobody can store, whose ``str`` and ``repr`` are the secret."""

    def __repr__(self) -> str:
        return SECRET

    __str__ = __repr__


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The exception and the causes a traceback would print."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = (
            current.__cause__
            if current.__cause__ is not None or current.__suppress_context__
            else current.__context__
        )


def _error_texts(error: BaseException) -> list[str]:
    texts = []
    for link in _chain(error):
        # as a traceback prints it (its source lines are this file's: not looked at)
        texts += [*traceback.format_exception_only(type(link), link), str(link), repr(link)]
        result = getattr(link, "result", None)
        if result is not None:
            texts += [str(result), repr(result)]
            texts += [repr(failed) for failed in result.failed]
    return texts


def _result_texts(sender: Any) -> list[str]:
    result = sender.result
    return [str(result), repr(result)] + [f"{f!r} {f.message}" for f in result.failed]


def _leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if any(secret in text for secret in NEVER)]


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """What the caller sees: tests add texts; every log record at DEBUG is added at the end."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    yield texts
    for record in caplog.records:
        if record.name.startswith(THIRD_PARTY):
            continue
        texts.append(record.getMessage())
        texts.append(str(getattr(record, "retry_event", "")))
        if record.exc_info and record.exc_info[1] is not None:
            texts += _error_texts(record.exc_info[1])
    assert texts, "nothing was looked at"
    assert _leaks(texts) == []


def _raised(call: Callable[[], Any]) -> list[str]:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - every kind of error is scanned
        call()
    return _error_texts(caught.value)


def _nested(levels: int, leaf: Any) -> Any:
    for level in range(levels):
        leaf = [leaf] if level % 2 else {"card": leaf}
    return leaf


# -- DynamoDB: values the serializer refuses -----------------------------------------------------

BAD_VALUES: dict[str, Any] = {
    "unknown type": Hidden(),
    "uuid": SECRET_UUID,
    "datetime": SECRET_TIME,
    "mixed set": {SECRET, 1},
    "bool set": {True, SECRET},
    "empty set in a list": [SECRET, set()],
    "39 digits": int(CARD + "0" * 23),
    "48 digits": Decimal(f"0.{CARD * 3}"),
    "NaN with a payload": Decimal(f"NaN{CARD}"),
    "int map key": {int(CARD): "x", CARD: "y"},
    "tuple map key": {(SECRET,): 1},
    "surrogate": f"{SECRET}\ud800",
    "surrogate map key": {f"{SECRET}\ud800": 1},
    "deep": _nested(40, [SECRET, {"card": SECRET}]),
}


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_serializer_errors_name_the_attribute_never_the_value(value: Any, seen: list[str]) -> None:
    seen += _raised(lambda: serialize_item({"pk": "a", "card": value}, "orders[pk=a]"))


def test_batch_writer_reports_bad_items_without_their_values(
    aws: None, ddb: Any, seen: list[str]
) -> None:
    table = create_table(ddb, "orders")
    with BatchWriter(table, client=ddb) as writer:
        for name, value in BAD_VALUES.items():
            seen += _raised(lambda value=value, name=name: writer.put({"pk": name, "v": value}))
        writer.put({"pk": "good", "card": SECRET})
    writer = BatchWriter(table, client=ddb, on_invalid="report")
    with pytest.raises(BatchWriteError) as caught, writer:
        for name, value in BAD_VALUES.items():
            writer.put({"pk": name, "v": value})
        writer.put({"pk": "good", "card": SECRET})
    assert writer.result.succeeded == 1
    assert len(writer.result.failed) == len(BAD_VALUES)
    seen += _error_texts(caught.value) + _result_texts(writer)


# -- the batch senders ---------------------------------------------------------------------------

DETAILS: dict[str, Any] = {
    "set": {"card": {SECRET}},
    "bytes": {"card": SECRET.encode()},
    "unknown type": {"card": [Hidden()]},
    "datetime": {"when": SECRET_TIME},
    "uuid": {"id": SECRET_UUID},
    "NaN": {"card": SECRET, "n": float("nan")},
    "infinity": {"card": SECRET, "n": Decimal("Infinity")},
    "NaN with a payload": {"n": Decimal(f"NaN{CARD}")},
    "tuple key": {"card": {(SECRET,): 1}},
    "Decimal key": {"card": {Decimal(CARD): 1}},
    "not an object": [SECRET],
    "not JSON": f"{{{SECRET}",
    "a JSON array": json.dumps([SECRET]),
    "surrogate": '{"card": "' + SECRET + '\ud800"}',
    "deep": _nested(5_000, SECRET),
}


@pytest.mark.parametrize("detail", DETAILS.values(), ids=DETAILS.keys())
def test_eventbridge_detail_errors_name_the_path_never_the_value(
    aws: None, detail: Any, seen: list[str]
) -> None:
    events = boto3.client("events", region_name=REGION)
    putter = EventBridgePutter(client=events)
    seen += _raised(lambda: putter.put(detail, source="shop", detail_type="Ordered", id="e1"))
    putter = EventBridgePutter(client=events, on_invalid="report")
    with pytest.raises(BatchWriteError) as caught, putter:
        putter.put(detail, source="shop", detail_type="Ordered", id="e1")
    seen += _error_texts(caught.value) + _result_texts(putter)


def test_eventbridge_options_refused_without_their_values(aws: None, seen: list[str]) -> None:
    putter = EventBridgePutter(client=boto3.client("events", region_name=REGION))
    for options in (
        {"source": f"{SECRET}\ud800"},
        {"source": int(CARD)},
        {"resources": [f"arn:{SECRET}\ud800"]},
        {"resources": SECRET},
        {"trace_header": int(CARD)},
    ):
        call = {"source": "shop", "detail_type": "Ordered", **options}
        seen += _raised(lambda call=call: putter.put({"card": SECRET}, **call))


def test_a_parameter_botocore_refuses_is_reported_without_its_value(
    aws: None, seen: list[str]
) -> None:
    # botocore's ParamValidationError quotes the value it refused ("value: SECRET-...")
    events = boto3.client("events", region_name=REGION)
    putter = EventBridgePutter(client=events, concurrency=1)
    with pytest.raises(BatchWriteError) as caught, putter:
        for i in range(3):
            putter.put({"card": SECRET}, source="shop", detail_type="Ordered", id=f"ok{i}")
        putter.put({}, source="shop", detail_type="Ordered", id="bad", time=Hidden())
    result = putter.result
    assert result.succeeded == 3  # the request refused whole was split: the rest went
    assert [(f.entry_id, f.code) for f in result.failed] == [("bad", "ParamValidationError")]
    assert "Entries[0].Time" in result.failed[0].message  # the parameter is named...
    assert CARD not in result.failed[0].message  # ...not its value
    seen += _error_texts(caught.value) + _result_texts(putter)


BAD_MESSAGES: dict[str, Callable[[SqsSender], None]] = {
    "surrogate body": lambda s: s.send_message(f"{SECRET}\ud800"),
    "too large": lambda s: s.send_message(SECRET * 70_000),
    "attribute shape": lambda s: s.send_message("x", attributes={"card": SECRET}),
    "attribute value type": lambda s: s.send_message(
        "x", attributes={"card": {"DataType": "String", "StringValue": int(CARD)}}
    ),
    "attribute surrogate": lambda s: s.send_message(
        "x", attributes={"card": {"DataType": "String", "StringValue": f"{SECRET}\ud800"}}
    ),
    "trace header type": lambda s: s.send_message(
        "x", system_attributes={"AWSTraceHeader": {"DataType": "String", "StringValue": 1}}
    ),
    "trace header shape": lambda s: s.send_message(
        "x", system_attributes={"AWSTraceHeader": SECRET}
    ),
    "trace header surrogate": lambda s: s.send_message(
        "x",
        system_attributes={
            "AWSTraceHeader": {"DataType": "String", "StringValue": f"{SECRET}\ud800"}
        },
    ),
    "delay type": lambda s: s.send_message("x", delay_seconds=SECRET),  # type: ignore[arg-type]
    "dedup on a standard queue": lambda s: s.send_message("x", deduplication_id=SECRET),
}


@pytest.mark.parametrize("send", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_sqs_bad_messages_are_named_never_shown(
    aws: None, send: Callable[[SqsSender], None], seen: list[str]
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url, _ = make_queue(sqs, "q")
    seen += _raised(lambda: send(SqsSender(url, client=sqs)))
    sender = SqsSender(url, client=sqs, on_invalid="report")
    with pytest.raises(BatchWriteError) as caught, sender:
        send(sender)
        sender.send_message(SECRET)
    assert sender.result.succeeded == 1
    seen += _error_texts(caught.value) + _result_texts(sender)


def test_sns_kinesis_and_firehose_bad_entries_are_named_never_shown(
    aws: None, seen: list[str]
) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="t")["TopicArn"]
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    firehose = boto3.client("firehose", region_name=REGION)
    firehose_to_bucket(firehose, boto3.client("s3", region_name=REGION), "delivery")
    bad: list[tuple[Callable[..., Any], Callable[[Any], None], Callable[[Any], None]]] = [
        (
            lambda **o: SnsPublisher(topic, client=sns, **o),
            lambda s: s.publish(SECRET),
            lambda s: s.publish(f"{SECRET}\ud800"),
        ),
        (
            lambda **o: SnsPublisher(topic, client=sns, **o),
            lambda s: s.publish(SECRET),
            lambda s: s.publish("x", subject=f"{SECRET}\ud800"),
        ),
        (
            lambda **o: SnsPublisher(topic, client=sns, **o),
            lambda s: s.publish(SECRET),
            lambda s: s.publish("x", subject=int(CARD)),
        ),
        (
            lambda **o: SnsPublisher(topic, client=sns, **o),
            lambda s: s.publish(SECRET),
            lambda s: s.publish("x", attributes={"c": {"DataType": "String", "BinaryValue": 1}}),
        ),
        (
            lambda **o: SnsPublisher(topic, client=sns, **o),
            lambda s: s.publish(SECRET),
            lambda s: s.publish(SECRET * 12_000),
        ),
        (
            lambda **o: KinesisPutter("s", client=kinesis, concurrency=1, **o),
            lambda s: s.put(SECRET, "k"),
            lambda s: s.put(f"{SECRET}\ud800", "k"),
        ),
        (
            lambda **o: KinesisPutter("s", client=kinesis, concurrency=1, **o),
            lambda s: s.put(SECRET, "k"),
            lambda s: s.put(b"x", f"{SECRET}\ud800"),
        ),
        (
            lambda **o: KinesisPutter("s", client=kinesis, concurrency=1, **o),
            lambda s: s.put(SECRET, "k"),
            lambda s: s.put(b"x", SECRET * 20),
        ),
        (
            lambda **o: KinesisPutter("s", client=kinesis, concurrency=1, **o),
            lambda s: s.put(SECRET, "k"),
            lambda s: s.put(b"x", "k", explicit_hash_key=SECRET),
        ),
        (
            lambda **o: KinesisPutter("s", client=kinesis, concurrency=1, **o),
            lambda s: s.put(SECRET, "k"),
            lambda s: s.put(int(CARD), "k"),
        ),
        (
            lambda **o: FirehosePutter("delivery", client=firehose, **o),
            lambda s: s.put(SECRET),
            lambda s: s.put(f"{SECRET}\ud800"),
        ),
        (
            lambda **o: FirehosePutter("delivery", client=firehose, **o),
            lambda s: s.put(SECRET),
            lambda s: s.put(Hidden()),
        ),
    ]
    for make, good, add in bad:
        seen += _raised(lambda make=make, add=add: add(make()))
        sender = make(on_invalid="report")
        with pytest.raises(BatchWriteError) as caught, sender:
            add(sender)
            good(sender)
        assert sender.result.succeeded == 1
        seen += _error_texts(caught.value) + _result_texts(sender)


# -- the command line ----------------------------------------------------------------------------


def test_redrive_filter_errors_do_not_quote_the_message(
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    seen: list[str],
) -> None:
    make_moto_sqs_atomic(monkeypatch)
    sqs = boto3.client("sqs", region_name=REGION)
    dlq, source = dlq_with_source(sqs, "orders")
    for card in (int(CARD), SECRET, {"number": SECRET}):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"card": card}))
    # sum() takes an array of numbers: JMESPath's error quotes whatever it was given
    argv = ["redrive", "sqs", "--from", dlq, "--to", source, "--wait-time", "0"]
    for output in ([], ["--json"]):
        assert main([*argv, "--filter", "sum(body.card) > `0`", *output]) == 1
        out, err = capsys.readouterr()
        assert "FilterError: JMESPathTypeError: In function sum()" in out
        assert "invalid type for value: <not shown>" in out
        seen += [out, err]
    report = json.loads(out)
    assert (report["received"], report["moved"], len(report["failed"])) == (3, 0, 3)


def test_redrive_filter_errors_keep_what_names_the_expression() -> None:
    from resilient_aws.cli._redrive import shown_reason

    arity = "FilterError: ArityError: Expected 1 arguments for function sum(), received 2"
    compare = "FilterError: TypeError: '>' not supported between instances of 'str' and 'int'"
    assert shown_reason(arity) == arity
    assert shown_reason(compare) == compare
    assert shown_reason("SenderFault: x") == "SenderFault: x"
    assert shown_reason(f"FilterError: KeyError: '{SECRET}'") == (
        "FilterError: KeyError: (its message is not shown: it may quote the message)"
    )


def _wrapped(message: str, *, chained: bool) -> Callable[[], None]:
    def fail() -> None:
        try:
            raise ValueError(message)
        except ValueError as cause:
            raise RuntimeError("wrapped") from (cause if chained else None)

    return fail


def test_the_scan_sees_a_secret_in_a_cause_a_traceback_prints() -> None:
    assert _leaks(_raised(_wrapped(SECRET, chained=False))) == []  # never printed
    assert _leaks(_raised(_wrapped(str(SECRET_TIME), chained=True))) != []
    assert _leaks([repr(Decimal(f"0.{CARD}")), str(math.pi)]) != []

"""The outbox's claim-check without AWS: the envelope, the record's shape, when an event is
offloaded, and which transaction failures leave an outcome unknown."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from resilient_aws._json import dumps
from resilient_aws.batch._sqs import message_attributes_size as sqs_attributes_size
from resilient_aws.dynamodb import deserialize_item
from resilient_aws.errors import EntryTooLargeError
from resilient_aws.outbox import Layout, OffloadedPayload, Outbox, OutboxEvent, envelope
from resilient_aws.outbox._event import envelope_text, message_attributes, message_attributes_size
from resilient_aws.outbox._outbox import MAX_TRANSACTION_BYTES, outcome_unknown
from resilient_aws.payloads import (
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    InvalidPointerError,
    PayloadConfig,
    PayloadPointer,
    PayloadStore,
)

POINTER = PayloadPointer("bucket", "outbox/key-1")


def event(payload: Any = None, **fields: Any) -> OutboxEvent:
    fields.setdefault("sequence", 7)
    return OutboxEvent("Placed", "order-1", payload, **fields)


def store(**config: Any) -> PayloadStore:
    # never called: planning a write makes no S3 call
    return PayloadStore(PayloadConfig(bucket="bucket", **config), client=object())


def outbox(payloads: PayloadStore | None) -> Outbox:
    return Outbox("orders", client=object(), payloads=payloads, clock=lambda: 1_000.0)


# -- the envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "e",
    [
        event({"n": 1, "nested": {"b": [1, 2.5, None], "a": "é"}}),
        event(None, sequence=None),
        event("text ✓", id="id-ü"),
        event([Decimal("1.50")], created_at=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)),
        OutboxEvent("Tÿpe", "agg \u2603", {"z": 1, "a": 2}, sequence=0),
    ],
)
def test_the_envelope_text_is_byte_for_byte_what_dumps_writes(e: OutboxEvent) -> None:
    expected = dumps(
        {
            "event_id": e.id,
            "type": e.type,
            "aggregate_id": e.aggregate_id,
            "sequence": e.sequence,
            "created_at": e.created_at.isoformat(),
            "payload": e.payload,
        }
    )
    assert envelope_text(e, dumps(e.payload)) == expected == envelope(e)
    assert expected.isascii()  # so its length is its size in bytes


def test_an_offloaded_event_has_no_envelope_of_its_own() -> None:
    e = event(OffloadedPayload(POINTER, 10))
    with pytest.raises(ValueError, match=r"s3://bucket/outbox/key-1") as raised:
        envelope(e)
    assert e.id in str(raised.value)


def test_the_attributes_size_is_what_sqs_counts() -> None:
    for e in (event(), OutboxEvent("Typ€", "a", id="ïd")):
        assert message_attributes_size(e) == sqs_attributes_size(message_attributes(e))


# -- the pointer and the record ----------------------------------------------------------------


def test_an_offloaded_payload_is_a_value_whatever_store_reads_it() -> None:
    a = OffloadedPayload(POINTER, 10, False, store())
    b = OffloadedPayload(POINTER, 10)
    assert a == b and hash(a) == hash(b)
    assert "store" not in repr(a) and "outbox/key-1" in repr(a)
    assert a.message_body() == json.dumps(
        [POINTER_CLASS, {"s3BucketName": "bucket", "s3Key": "outbox/key-1"}],
        separators=(",", ":"),
    )
    assert a.message_attributes() == {
        "ExtendedPayloadSize": {"DataType": "Number", "StringValue": "10"}
    }
    legacy = OffloadedPayload(POINTER, 10, True)
    assert legacy.message_body().startswith(f'["{LEGACY_POINTER_CLASS}"')
    assert set(legacy.message_attributes()) == {"SQSLargePayloadSize"}


@pytest.mark.parametrize("legacy", [False, True])
def test_the_record_holds_the_pointer_and_reads_back_as_one(legacy: bool) -> None:
    layout = Layout()
    e = event({"big": "x"})
    offloaded = OffloadedPayload(POINTER, 1234, legacy)
    wire = layout.record(e, written_at=1.0, offloaded=offloaded)
    assert wire["outbox_payload"] == {"S": offloaded.message_body()}
    assert wire["outbox_payload_size"] == {"N": "1234"}
    reader = store()
    stored = layout.stored(deserialize_item(wire), reader)
    assert stored.event.payload == offloaded and stored.pointer == POINTER
    assert stored.event.payload.store is reader
    assert stored.event.payload.legacy is legacy
    inline = layout.stored(deserialize_item(layout.record(e, written_at=1.0)))
    assert inline.event.payload == {"big": "x"} and inline.pointer is None


@pytest.mark.parametrize(
    "damage",
    [
        {"outbox_payload": {"S": '{"not": "a pointer"}'}},
        {"outbox_payload_size": {"S": "12"}},
        {"outbox_payload": {"N": "1"}},
    ],
)
def test_a_damaged_offloaded_record_is_named_by_its_event(damage: dict[str, Any]) -> None:
    layout = Layout()
    e = event()
    wire = {**layout.record(e, written_at=1.0, offloaded=OffloadedPayload(POINTER, 5)), **damage}
    with pytest.raises(InvalidPointerError) as raised:
        layout.stored(deserialize_item(wire))
    assert raised.value.message_id == e.id


# -- when a write offloads ---------------------------------------------------------------------


def _message_size(e: OutboxEvent) -> int:
    return len(envelope(e)) + message_attributes_size(e)


def test_the_threshold_is_the_messages_size_envelope_and_attributes() -> None:
    threshold = 10_000
    writer = outbox(store(threshold=threshold))
    e = event({"pad": ""})
    pad = threshold - _message_size(e)
    at = event({"pad": "x" * pad})
    over = event({"pad": "x" * (pad + 1)})
    assert _message_size(at) == threshold
    assert writer._event(at).offloaded is None
    plan = writer._event(over)
    assert plan.offloaded is not None and plan.envelope == envelope(over)
    assert plan.offloaded.size == threshold + 1 - message_attributes_size(over)
    assert plan.offloaded.pointer.bucket == "bucket"
    item = plan.action.request["Put"]["Item"]
    assert item["outbox_payload"]["S"] == plan.offloaded.message_body()


def test_without_a_store_a_record_over_400_kb_is_refused_as_before() -> None:
    with pytest.raises(EntryTooLargeError):
        outbox(None)._event(event({"pad": "x" * 410_000}))
    with_store = outbox(store(threshold=10_000_000))._event(event({"pad": "x" * 410_000}))
    assert with_store.offloaded is not None and with_store.action.size < 1_000


def test_a_record_still_too_large_with_its_pointer_is_refused() -> None:
    huge_type = OutboxEvent("T" * 410_000, "agg", {"n": 1}, sequence=1)
    with pytest.raises(EntryTooLargeError) as raised:
        outbox(store(always=True))._event(huge_type)
    assert huge_type.id in str(raised.value)


def test_a_payload_over_the_stores_max_bytes_is_refused_when_planned() -> None:
    big = event({"pad": "x" * 500_000})
    with pytest.raises(EntryTooLargeError) as raised:
        outbox(store(max_bytes=400_000))._event(big)
    assert big.id in str(raised.value)


def test_the_largest_inline_events_are_offloaded_until_the_transaction_fits() -> None:
    writer = outbox(store(threshold=10_000_000))
    # 16 records of 4.28 MB and 0.4 MB of business: one 390 KB record off is not enough
    sizes = [300_000, 390_000, 100, 380_000] * 4
    planned = [
        writer._event(event({"pad": "x" * size}, sequence=n)) for n, size in enumerate(sizes)
    ]
    business = [type(planned[0].action)("put", ("t", n), {}, 100_000) for n in range(4)]
    writer._offload_to_fit(business, planned, writer.payloads)  # type: ignore[arg-type]
    offloaded = [n for n, plan in enumerate(planned) if plan.offloaded is not None]
    assert offloaded == [1, 5]  # the two largest, no more
    total = sum(a.size for a in business) + sum(p.action.size for p in planned)
    assert total <= MAX_TRANSACTION_BYTES


# -- which failures leave the outcome unknown --------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "TransactWriteItems",
    )


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (_client_error("TransactionCanceledException", 400), False),
        (_client_error("ProvisionedThroughputExceededException", 400), False),
        (_client_error("ValidationException", 400), False),
        (_client_error("TransactionInProgressException", 400), True),  # the same token, running
        (_client_error("InternalServerError", 500), True),
        (_client_error("ServiceUnavailable", 503), True),
        (ClientError({"Error": {"Code": "X"}}, "TransactWriteItems"), True),  # no status known
        (ReadTimeoutError(endpoint_url="https://x"), True),
        (ConnectionClosedError(endpoint_url="https://x"), True),
        (EndpointConnectionError(endpoint_url="https://x"), False),  # never connected
        (NoCredentialsError(), False),
        (ParamValidationError(report="bad"), False),
        (KeyboardInterrupt(), True),
        (RuntimeError("a bug"), True),
    ],
)
def test_an_outcome_is_unknown_unless_the_request_was_refused_or_never_sent(
    error: BaseException, unknown: bool
) -> None:
    assert outcome_unknown(error) is unknown

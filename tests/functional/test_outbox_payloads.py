"""The outbox's claim-check on moto (DynamoDB + S3 + SQS, SNS, EventBridge, Kinesis).

An event too large for its record (or over the store's threshold) has its envelope written to
S3 before the transaction, its record holds the extended clients' pointer, and the relay and
the sweeper send the pointer message a ``BatchProcessor(payloads=store)`` resolves. Every test
counts the objects left in the bucket: none for a write that failed, exactly the committed
events' ones otherwise, and the relay never deletes one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from resilient_aws.consumer import BatchProcessor, SQSRecord
from resilient_aws.errors import (
    DuplicateEntryError,
    EntryTooLargeError,
    RetryError,
    TransactionConditionFailedError,
    UnsupportedValueError,
)
from resilient_aws.outbox import (
    CallableTarget,
    EventBridgeTarget,
    KinesisTarget,
    OffloadedPayload,
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    Put,
    SnsTarget,
    SqsTarget,
    deliver,
    events_from_stream,
    relay_handler,
)
from resilient_aws.payloads import (
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    InvalidPointerError,
    PayloadConfig,
    PayloadNotFoundError,
    PayloadPointer,
    PayloadStore,
    PayloadUploadError,
)
from resilient_aws.payloads.crypto import CallableEncryptor
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.batch_targets import make_queue, sns_to_queue, stream_records
from tests.idempotency_support import CallCounter
from tests.outbox_support import StreamReader, create_outbox_table, make_moto_dynamodb_atomic
from tests.sqs_events import lambda_event

REGION = "us-east-1"
BUCKET = "outbox-payloads"
STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"  # see StreamReader
MB = 1_000_000


@pytest.fixture(autouse=True)
def _atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    make_moto_dynamodb_atomic(monkeypatch)  # the relay marks from several threads


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=2_000_000_000.0)


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def store(s3: Any, clock: FakeClock) -> PayloadStore:
    return PayloadStore(
        PayloadConfig(bucket=BUCKET, prefix="outbox/"), client=s3, policy=clock.policy()
    )


def make_outbox(ddb: Any, clock: FakeClock, store: PayloadStore | None, **options: Any) -> Outbox:
    return Outbox(
        "orders",
        client=ddb,
        policy=clock.policy(),
        clock=clock.monotonic,
        payloads=store,
        **options,
    )


@pytest.fixture
def outbox(ddb: Any, clock: FakeClock, store: PayloadStore) -> Outbox:
    create_outbox_table(ddb)
    return make_outbox(ddb, clock, store, max_attempts=2)


@pytest.fixture
def stream(ddb: Any, outbox: Outbox) -> StreamReader:
    streams = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=STREAMS_ENDPOINT)
    return StreamReader(ddb, streams, "orders")


class S3Calls:
    """Counts the S3 operations a client sends."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1


def objects(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def read_object(s3: Any, key: str) -> str:
    return str(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def big(size: int, n: int = 0) -> dict[str, Any]:
    return {"n": n, "pad": "x" * size}


def record(ddb: Any, outbox: Outbox, event: OutboxEvent) -> dict[str, Any]:
    assert event.sequence is not None
    key = outbox.layout.event_key(event.aggregate_id, event.sequence)
    item: dict[str, Any] = ddb.get_item(TableName="orders", Key=key, ConsistentRead=True)["Item"]
    return item


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
        VisibilityTimeout=300,
    ).get("Messages", []):
        got.extend(batch)
    return got


def consume(sqs: Any, url: str, arn: str, store: PayloadStore) -> list[dict[str, Any]]:
    """What a Lambda consumer with ``BatchProcessor(payloads=store)`` gets: every body, parsed;
    a record that fails fails the test."""
    messages = receive_all(sqs, url)
    seen: list[dict[str, Any]] = []

    def record_function(record: SQSRecord) -> None:
        assert "ExtendedPayloadSize" not in record.message_attributes
        seen.append(json.loads(record.body))

    processor = BatchProcessor(payloads=store)
    for start in range(0, len(messages), 10):
        result = processor.process(lambda_event(messages[start : start + 10], arn), record_function)
        assert not result.failed, result.failed
    return seen


def relay_all(stream: StreamReader, handler: Any) -> list[dict[str, Any]]:
    responses = []
    while (event := stream.next_batch()) is not None:
        response = handler(event, FakeLambdaContext())
        responses.append(response)
        stream.retry_from(event, response)
        if response["batchItemFailures"]:
            break
    return responses


# -- the round trip ----------------------------------------------------------------------------


def test_a_1_mb_event_goes_through_the_relay_and_sqs_to_the_consumer_whole(
    outbox: Outbox, stream: StreamReader, ddb: Any, s3: Any, sqs: Any, store: PayloadStore
) -> None:
    url, arn = make_queue(sqs, "events")
    payload = big(MB)
    large, small = outbox.write(
        puts=[{"pk": "order#1", "sk": "order", "total": 30}],
        events=[
            OutboxEvent("ReportReady", "order#1", payload),
            OutboxEvent("OrderPlaced", "order#1", {"total": 30}),
        ],
    )
    assert large.payload == payload  # the caller's events come back as they were given
    (key,) = objects(s3)
    assert key.startswith("outbox/")
    stored_envelope = read_object(s3, key)
    assert json.loads(stored_envelope)["payload"] == payload
    assert json.loads(stored_envelope)["event_id"] == large.id
    # the record: the pointer where the payload was, its size beside it
    item = record(ddb, outbox, large)
    assert json.loads(item["outbox_payload"]["S"]) == [
        POINTER_CLASS,
        {"s3BucketName": BUCKET, "s3Key": key},
    ]
    assert item["outbox_payload_size"] == {"N": str(len(stored_envelope))}
    assert "outbox_payload_size" not in record(ddb, outbox, small)

    calls = S3Calls(s3)
    handler = relay_handler(outbox, SqsTarget(url, client=sqs))
    responses = relay_all(stream, handler)
    assert responses and all(r == {"batchItemFailures": []} for r in responses)
    assert calls.counts == {}  # the relay neither downloads, re-uploads nor deletes

    messages = receive_all(sqs, url)
    pointer_message = next(m for m in messages if "ExtendedPayloadSize" in m["MessageAttributes"])
    assert json.loads(pointer_message["Body"]) == [
        POINTER_CLASS,
        {"s3BucketName": BUCKET, "s3Key": key},
    ]
    assert pointer_message["MessageAttributes"]["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(len(stored_envelope)),
    }
    assert pointer_message["MessageAttributes"]["event_id"]["StringValue"] == large.id
    assert pointer_message["MessageAttributes"]["event_type"]["StringValue"] == "ReportReady"
    for message in messages:  # back in the queue for the consumer
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    received = consume(sqs, url, arn, store)
    by_id = {m["event_id"]: m for m in received}
    assert set(by_id) == {large.id, small.id}
    assert by_id[large.id]["payload"] == payload
    assert by_id[large.id]["type"] == "ReportReady"
    assert by_id[small.id]["payload"] == {"total": 30}
    assert outbox.pending() == []
    assert objects(s3) == [key]  # kept: a lifecycle rule (or delete_after) removes it


def test_the_sweeper_sends_the_pointer_too(
    outbox: Outbox, s3: Any, sqs: Any, store: PayloadStore, clock: FakeClock
) -> None:
    url, arn = make_queue(sqs, "swept")
    (event,) = outbox.write(events=[OutboxEvent("Big", "a", big(500_000))])
    clock.advance(61)
    report = OutboxSweeper(outbox, SqsTarget(url, client=sqs), grace_s=60).run()
    assert report.delivered == [event.id]
    (message,) = consume(sqs, url, arn, store)
    assert message["payload"] == big(500_000) and message["event_id"] == event.id
    assert len(objects(s3)) == 1


def test_a_fifo_queue_gets_the_pointer_with_group_and_deduplication_ids(
    outbox: Outbox, sqs: Any, store: PayloadStore
) -> None:
    url, _ = make_queue(sqs, "events.fifo", FifoQueue="true")
    events = outbox.write(events=[OutboxEvent("Big", "agg", big(450_000, n)) for n in range(3)])
    report = deliver(outbox, SqsTarget(url, client=sqs), [s.event for s in outbox.pending()])
    assert report.delivered == [e.id for e in events]
    messages = receive_all(sqs, url)
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == ["agg"] * 3
    assert [m["Attributes"]["MessageDeduplicationId"] for m in messages] == [e.id for e in events]
    assert all(m["Body"].startswith(f'["{POINTER_CLASS}"') for m in messages)


def test_sns_with_raw_delivery_hands_the_consumer_the_whole_event(
    outbox: Outbox, aws: None, sqs: Any, store: PayloadStore
) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic, url = sns_to_queue(sns, sqs, "events")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(700_000))])
    report = deliver(outbox, SnsTarget(topic, client=sns), [s.event for s in outbox.pending()])
    assert report.delivered == [event.id]
    (message,) = consume(sqs, url, arn, store)
    assert message["payload"] == big(700_000)


def test_legacy_pointers_are_written_and_resolved(
    ddb: Any, s3: Any, sqs: Any, clock: FakeClock
) -> None:
    create_outbox_table(ddb)
    legacy = PayloadStore(
        PayloadConfig(bucket=BUCKET, legacy=True), client=s3, policy=clock.policy()
    )
    outbox = make_outbox(ddb, clock, legacy)
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(420_000))])
    (stored,) = outbox.pending()
    assert isinstance(stored.event.payload, OffloadedPayload) and stored.event.payload.legacy
    url, arn = make_queue(sqs, "legacy")
    assert deliver(outbox, SqsTarget(url, client=sqs), [stored.event]).delivered == [event.id]
    (raw,) = receive_all(sqs, url)
    assert raw["Body"].startswith(f'["{LEGACY_POINTER_CLASS}"')
    assert set(raw["MessageAttributes"]) == {"event_id", "event_type", "SQSLargePayloadSize"}
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=0
    )
    (message,) = consume(sqs, url, arn, legacy)
    assert message["payload"] == big(420_000)


def test_sealed_envelopes_round_trip_and_the_relay_never_opens_them(
    ddb: Any, s3: Any, sqs: Any, clock: FakeClock
) -> None:
    def seal(data: bytes, context: str) -> bytes:
        return b"sealed:" + context.encode() + b":" + data[::-1]

    def unseal(blob: bytes, context: str) -> bytes:
        prefix = b"sealed:" + context.encode() + b":"
        assert blob.startswith(prefix)
        return blob[len(prefix) :][::-1]

    create_outbox_table(ddb)
    sealed = PayloadStore(
        PayloadConfig(bucket=BUCKET, prefix="sealed/"),
        client=s3,
        policy=clock.policy(),
        encryptor=CallableEncryptor(seal, unseal),
    )
    outbox = make_outbox(ddb, clock, sealed)
    (event,) = outbox.write(events=[OutboxEvent("Secret", "agg", big(450_000))])
    (key,) = objects(s3)
    assert b'"pad"' not in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()[:200]
    url, arn = make_queue(sqs, "sealed")
    assert deliver(outbox, SqsTarget(url, client=sqs), [event]).delivered == [event.id]
    (message,) = consume(sqs, url, arn, sealed)
    assert message["payload"] == big(450_000)


# -- when a payload is offloaded ---------------------------------------------------------------


def test_offloaded_when_the_record_or_the_message_is_too_large_or_always(
    ddb: Any, s3: Any, clock: FakeClock
) -> None:
    create_outbox_table(ddb)

    def offloaded(config: PayloadConfig, size: int) -> bool:
        outbox = make_outbox(ddb, clock, PayloadStore(config, client=s3, policy=clock.policy()))
        (event,) = outbox.write(events=[OutboxEvent("T", "agg", big(size))])
        (stored,) = [s for s in outbox.pending() if s.event.id == event.id]
        return stored.pointer is not None

    default = PayloadConfig(bucket=BUCKET)  # threshold 262,144 bytes: the message's size
    assert offloaded(default, 300_000)  # the record fits, SNS would refuse the message
    assert not offloaded(default, 262_144 - 400)
    high = PayloadConfig(bucket=BUCKET, threshold=2 * MB)
    assert not offloaded(high, 380_000)  # fits the record and the threshold: inline
    assert offloaded(high, 420_000)  # over the item limit whatever the threshold
    assert offloaded(PayloadConfig(bucket=BUCKET, always=True), 10)
    assert len(objects(s3)) == 3


def test_the_largest_events_go_to_s3_until_the_transaction_fits_4_mb(
    ddb: Any, s3: Any, clock: FakeClock
) -> None:
    create_outbox_table(ddb)
    store = PayloadStore(
        PayloadConfig(bucket=BUCKET, threshold=2 * MB), client=s3, policy=clock.policy()
    )
    outbox = make_outbox(ddb, clock, store)
    sizes = [390_000] * 10 + [395_000, 100]  # 3.9 MB + 0.4 MB: each record fits, the sum does not
    events = outbox.write(
        events=[OutboxEvent("T", f"agg-{n}", big(size, n)) for n, size in enumerate(sizes)]
    )
    stored = {s.event.id: s for s in outbox.pending()}
    offloaded = [e.id for e in events if stored[e.id].pointer is not None]
    assert offloaded == [events[10].id]  # the largest, and only as many as needed
    assert len(objects(s3)) == 1
    # without a store the same write is refused, as before
    from resilient_aws.errors import TransactionTooLargeError

    with pytest.raises(TransactionTooLargeError):
        make_outbox(ddb, clock, None).write(
            events=[OutboxEvent("T", f"b-{n}", big(size, n)) for n, size in enumerate(sizes)]
        )


# -- reading never downloads -------------------------------------------------------------------


def test_pending_blocked_and_undelivered_read_the_pointer_not_the_payload(
    outbox: Outbox, s3: Any, sqs: Any, clock: FakeClock
) -> None:
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(600_000))])
    calls = S3Calls(s3)
    (pending,) = outbox.pending()
    (undelivered,) = outbox.undelivered("agg")
    payload = pending.event.payload
    assert isinstance(payload, OffloadedPayload)
    assert pending.pointer == payload.pointer == undelivered.pointer
    assert payload.pointer.bucket == BUCKET and payload.size > 600_000
    assert "pad" not in repr(pending)  # the pointer shows, the payload does not
    # a failing target blocks it (max_attempts=2): blocked() reads it the same way
    failing = CallableTarget(lambda events: {e.id: "Down: try later" for e in events})
    deliver(outbox, failing, [pending.event])
    deliver(outbox, failing, [pending.event])
    (blocked,) = outbox.blocked()
    assert blocked.pointer == payload.pointer and blocked.attempts == 2
    assert calls.counts == {}
    # an operator (or a CallableTarget) reads the payload when asked: one GetObject each
    assert blocked.event.payload.load(message_id=event.id) == big(600_000)
    assert undelivered.event.payload.load() == big(600_000)
    assert calls.counts == {"GetObject": 2}


def test_an_outbox_without_a_store_reads_the_pointer_and_says_how_to_load_it(
    outbox: Outbox, ddb: Any, clock: FakeClock
) -> None:
    outbox.write(events=[OutboxEvent("Big", "agg", big(450_000))])
    (stored,) = make_outbox(ddb, clock, None).pending()
    assert stored.pointer is not None
    from resilient_aws.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="payloads="):
        stored.event.payload.load()


def test_a_record_marked_offloaded_without_a_pointer_is_named(outbox: Outbox, ddb: Any) -> None:
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(450_000))])
    ddb.update_item(
        TableName="orders",
        Key=outbox.layout.event_key("agg", event.sequence or 0),
        UpdateExpression="SET outbox_payload = :damaged",
        ExpressionAttributeValues={":damaged": {"S": '{"secret": 1}'}},
    )
    with pytest.raises(InvalidPointerError) as raised:
        outbox.pending()
    assert event.id in str(raised.value) and "secret" not in str(raised.value)


# -- no orphan ---------------------------------------------------------------------------------


def test_a_failed_condition_deletes_the_objects_it_wrote(outbox: Outbox, s3: Any, ddb: Any) -> None:
    outbox.write(puts=[{"pk": "order#1", "sk": "order"}])
    with pytest.raises(TransactionConditionFailedError) as raised:
        outbox.write(
            puts=[Put({"pk": "order#1", "sk": "order"}, condition="attribute_not_exists(pk)")],
            events=[OutboxEvent("Big", "order#1", big(500_000, n)) for n in range(2)],
        )
    assert raised.value.payloads_left == []  # type: ignore[attr-defined]
    assert objects(s3) == []
    assert outbox.pending() == []


def test_a_transaction_throttled_until_retries_run_out_deletes_its_objects(
    outbox: Outbox, s3: Any, ddb: Any
) -> None:
    with (
        chaos(ddb, throttle=1.0, operations=["TransactWriteItems"]) as faults,
        pytest.raises(RetryError) as raised,
    ):
        outbox.write(events=[OutboxEvent("Big", "agg", big(500_000))])
    assert faults.stats.throttled > 1  # retried, then given up: DynamoDB refused every attempt
    assert raised.value.payloads_left == []  # type: ignore[attr-defined]
    assert objects(s3) == []


def test_an_unknown_outcome_keeps_the_objects_and_names_them(
    outbox: Outbox,
    s3: Any,
    ddb: Any,
    sqs: Any,
    store: PayloadStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = OutboxEvent("Big", "agg", big(500_000))
    caplog.set_level(logging.WARNING, logger="resilient_aws.outbox")
    # the transaction is applied, its response lost: the write cannot know. (Its retry fails
    # the event's condition on moto, which ignores ClientRequestToken; AWS would answer success.)
    with (
        chaos(ddb, lost_response=1.0, operations=["TransactWriteItems"]),
        pytest.raises(TransactionConditionFailedError) as raised,
    ):
        outbox.write(events=[event])
    (key,) = objects(s3)
    left = raised.value.payloads_left  # type: ignore[attr-defined]
    assert left == [(event.id, PayloadPointer(BUCKET, key))]
    logged = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert logged and event.id in logged[0] and "outcome is unknown" in logged[0]
    assert "xxxx" not in caplog.text  # the payload is never logged
    # it was applied: the event is delivered, and its object was there for it
    url, arn = make_queue(sqs, "after-unknown")
    (pending,) = outbox.pending()
    assert deliver(outbox, SqsTarget(url, client=sqs), [pending.event]).delivered == [event.id]
    (message,) = consume(sqs, url, arn, store)
    assert message["payload"] == big(500_000)


def test_a_failed_upload_sends_nothing_and_deletes_what_it_wrote(
    outbox: Outbox, s3: Any, ddb: Any, clock: FakeClock
) -> None:
    puts = 0
    original = s3.put_object

    def second_put_fails(**params: Any) -> Any:
        nonlocal puts
        puts += 1
        if puts >= 2:
            raise ClientError(
                {
                    "Error": {"Code": "AccessDenied", "Message": "no"},
                    "ResponseMetadata": {"HTTPStatusCode": 403},
                },
                "PutObject",
            )
        return original(**params)

    s3.put_object = second_put_fails
    counter = CallCounter(ddb)
    events = [OutboxEvent("Big", "agg", big(450_000, n), sequence=n) for n in (1, 2)]
    with pytest.raises(PayloadUploadError) as raised:
        outbox.write(events=events)
    assert raised.value.entry_id == events[1].id and raised.value.code == "AccessDenied"
    assert raised.value.payloads_left == []  # type: ignore[attr-defined]
    assert "TransactWriteItems" not in counter.take()
    assert objects(s3) == []  # the first event's object was deleted again


def test_an_interrupted_upload_names_what_it_may_leave_without_calling_s3(
    outbox: Outbox, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    original = s3.put_object
    puts = 0

    def interrupted(**params: Any) -> Any:
        nonlocal puts
        puts += 1
        if puts == 2:
            raise KeyboardInterrupt
        return original(**params)

    s3.put_object = interrupted
    calls = S3Calls(s3)
    events = [OutboxEvent("Big", "agg", big(450_000, n), sequence=n) for n in (1, 2)]
    with pytest.raises(KeyboardInterrupt) as raised:
        outbox.write(events=events)
    left = raised.value.payloads_left  # type: ignore[attr-defined]
    assert [event_id for event_id, _ in left] == [e.id for e in events]
    assert calls.counts == {"PutObject": 1}  # no delete while the interrupt goes on
    assert {p.key for _, p in left} >= set(objects(s3))
    assert all(p.key in caplog.text for _, p in left)


def test_bad_input_is_refused_before_anything_is_uploaded(outbox: Outbox, s3: Any) -> None:
    calls = S3Calls(s3)
    large = OutboxEvent("Big", "agg", big(500_000), sequence=1)
    bad = OutboxEvent("Bad", "agg", {"when": object()}, sequence=2)
    with pytest.raises(UnsupportedValueError) as raised:
        outbox.write(events=[large, bad])
    assert bad.id in str(raised.value)
    assert raised.value.payloads_left == []  # type: ignore[attr-defined]
    with pytest.raises(EntryTooLargeError):  # a business item is never offloaded
        outbox.write(puts=[{"pk": "p", "sk": "s", "blob": "x" * 500_000}], events=[large])
    with pytest.raises(DuplicateEntryError):
        outbox.write(events=[large, OutboxEvent("Big", "agg", big(500_000), sequence=1)])
    tiny = PayloadStore(PayloadConfig(bucket=BUCKET, max_bytes=100_000), client=s3)
    with pytest.raises(EntryTooLargeError) as too_large:
        Outbox("orders", client=outbox.client, payloads=tiny).write(events=[large])
    assert large.id in str(too_large.value)
    assert calls.counts == {} and objects(s3) == []


def test_a_5xx_until_retries_run_out_keeps_the_objects(outbox: Outbox, s3: Any, ddb: Any) -> None:
    # DynamoDB may have applied a transaction it answered with a 500 (AWS says so): kept
    with (
        chaos(ddb, error5xx=1.0, operations=["TransactWriteItems"]),
        pytest.raises(RetryError) as raised,
    ):
        outbox.write(events=[OutboxEvent("Big", "agg", big(450_000))])
    (key,) = objects(s3)
    assert [p.key for _, p in raised.value.payloads_left] == [key]  # type: ignore[attr-defined]


def test_an_interrupted_transaction_keeps_the_objects_without_calling_s3(
    outbox: Outbox, s3: Any, ddb: Any
) -> None:
    def interrupted(**request: Any) -> Any:
        raise KeyboardInterrupt

    ddb.transact_write_items = interrupted
    (event,) = [OutboxEvent("Big", "agg", big(450_000))]
    calls = S3Calls(s3)
    with pytest.raises(KeyboardInterrupt) as raised:
        outbox.write(events=[event])
    (key,) = objects(s3)
    assert raised.value.payloads_left == [(event.id, PayloadPointer(BUCKET, key))]  # type: ignore[attr-defined]
    assert calls.counts == {"PutObject": 1, "ListObjectsV2": 1}  # no delete


def test_an_interrupt_while_retrying_the_transaction_keeps_the_objects(
    ddb: Any, s3: Any, clock: FakeClock, store: PayloadStore
) -> None:
    create_outbox_table(ddb)

    def interrupted_sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    # every attempt is refused (throttled: nothing applied), but the interrupt comes while
    # waiting to retry: no S3 call while it goes on, the object is named instead
    outbox = Outbox(
        "orders",
        client=ddb,
        policy=dataclasses.replace(clock.policy(), sleep=interrupted_sleep),
        payloads=store,
    )
    event = OutboxEvent("Big", "agg", big(450_000))
    calls = S3Calls(s3)
    with (
        chaos(ddb, throttle=1.0, operations=["TransactWriteItems"]),
        pytest.raises(KeyboardInterrupt) as raised,
    ):
        outbox.write(events=[event])
    (key,) = objects(s3)
    assert raised.value.payloads_left == [(event.id, PayloadPointer(BUCKET, key))]  # type: ignore[attr-defined]
    assert calls.counts == {"PutObject": 1, "ListObjectsV2": 1}


def test_events_read_from_the_stream_carry_the_pointer(
    outbox: Outbox, stream: StreamReader
) -> None:
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(450_000))])
    batch = stream.next_batch()
    assert batch is not None
    (from_stream,) = events_from_stream(outbox, batch).values()
    assert from_stream.id == event.id and isinstance(from_stream.payload, OffloadedPayload)
    assert from_stream.payload.load() == big(450_000)


def test_an_object_whose_delete_fails_is_named(
    outbox: Outbox, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    outbox.write(puts=[{"pk": "order#1", "sk": "order"}])

    def refused(**params: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": "AccessDenied", "Message": "no"},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            },
            "DeleteObject",
        )

    s3.delete_object = refused
    event = OutboxEvent("Big", "order#1", big(450_000))
    with pytest.raises(TransactionConditionFailedError) as raised:
        outbox.write(
            puts=[Put({"pk": "order#1", "sk": "order"}, condition="attribute_not_exists(pk)")],
            events=[event],
        )
    (key,) = objects(s3)
    assert raised.value.payloads_left == [(event.id, PayloadPointer(BUCKET, key))]  # type: ignore[attr-defined]
    assert "AccessDenied" in caplog.text and key in caplog.text


def test_payloads_must_be_a_store(ddb: Any) -> None:
    from resilient_aws.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="payloads"):
        Outbox("orders", client=ddb, payloads=BUCKET)  # type: ignore[arg-type]


# -- targets without a pointer convention ------------------------------------------------------


def test_eventbridge_and_kinesis_get_the_envelope_downloaded(
    outbox: Outbox, aws: None, sqs: Any, s3: Any, ddb: Any, clock: FakeClock
) -> None:
    events_client = boto3.client("events", region_name=REGION)
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="events", ShardCount=1)
    bus_queue, bus_arn = make_queue(sqs, "bus")
    events_client.put_rule(Name="all", EventPattern=json.dumps({"source": ["shop"]}))
    events_client.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": bus_arn}])
    always = PayloadStore(
        PayloadConfig(bucket=BUCKET, always=True), client=s3, policy=clock.policy()
    )
    small_outbox = make_outbox(ddb, clock, always)
    to_bus, to_stream = small_outbox.write(
        events=[OutboxEvent("T", "a", {"to": "bus"}), OutboxEvent("T", "b", {"to": "kinesis"})]
    )
    too_big = outbox.write(events=[OutboxEvent("T", "c", big(1_100_000))])[0]
    states, _ = outbox.states([to_bus, to_stream, too_big])
    bus_target = EventBridgeTarget("default", source="shop", client=events_client)
    failures = bus_target.publish([states[to_bus.id].event, states[too_big.id].event])
    # EventBridge takes 1 MB: the downloaded envelope is refused, by id, never sent
    assert list(failures) == [too_big.id] and failures[too_big.id].startswith("EntryTooLarge")
    (bus_message,) = receive_all(sqs, bus_queue)
    assert json.loads(bus_message["Body"])["detail"]["payload"] == {"to": "bus"}
    assert KinesisTarget("events", client=kinesis).publish([states[to_stream.id].event]) == {}
    ((partition_key, data),) = stream_records(kinesis, "events")
    assert partition_key == "b" and json.loads(data)["payload"] == {"to": "kinesis"}


def test_an_object_gone_before_delivery_is_reported_not_crashed(
    outbox: Outbox, aws: None, s3: Any, sqs: Any, store: PayloadStore
) -> None:
    events_client = boto3.client("events", region_name=REGION)
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(450_000))])
    (key,) = objects(s3)
    s3.delete_object(Bucket=BUCKET, Key=key)  # expired by a too-short lifecycle rule
    (stored,) = outbox.pending()
    failures = EventBridgeTarget("default", source="shop", client=events_client).publish(
        [stored.event]
    )
    assert failures[event.id].startswith("PayloadNotFoundError") and key in failures[event.id]
    # SQS gets the pointer (nothing is read), the consumer fails that record alone
    url, arn = make_queue(sqs, "dangling")
    assert deliver(outbox, SqsTarget(url, client=sqs), [stored.event]).delivered == [event.id]
    messages = receive_all(sqs, url)
    result = BatchProcessor(payloads=store).process(lambda_event(messages, arn), lambda r: None)
    (failed,) = result.failed
    assert isinstance(failed.error, PayloadNotFoundError)


def test_a_callable_target_gets_the_pointer_and_loads_it_when_it_wants(
    outbox: Outbox, s3: Any
) -> None:
    (event,) = outbox.write(events=[OutboxEvent("Big", "agg", big(450_000))])
    got: list[Any] = []

    def publish(events: Any) -> dict[str, str]:
        for e in events:
            got.append(e.payload)
        return {}

    (stored,) = outbox.pending()
    report = deliver(outbox, CallableTarget(publish), [stored.event])
    assert report.delivered == [event.id]
    (payload,) = got
    assert isinstance(payload, OffloadedPayload) and payload.load() == big(450_000)


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "outbox.md").read_text()
    section = page[page.index("## Large events: a claim-check on S3") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    exec(compile(match.group(1), "docs/outbox.md", "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out
    assert "record holds: PayloadPointer(bucket='order-payloads', key='outbox/" in printed
    assert "consumer got OrderReported with 10000 lines" in printed

"""The outbox against moto in process: transactions, the relay fed from moto's real stream,
ordering, poison events, the sweeper, every target."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

import boto3
import pytest

from resilient_aws.errors import (
    ConfigurationError,
    DuplicateEntryError,
    EntryTooLargeError,
    TransactionConditionFailedError,
    TransactionTooLargeError,
    UnsupportedValueError,
)
from resilient_aws.outbox import (
    BLOCKED,
    DELIVERED,
    PENDING,
    CallableTarget,
    ConditionCheck,
    Delete,
    EventBridgeTarget,
    KinesisTarget,
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    Put,
    Router,
    SnsTarget,
    SqsTarget,
    Update,
    relay_handler,
)
from resilient_aws.testing import FakeClock, FakeLambdaContext
from tests.batch_targets import drain, make_queue, sns_to_queue, stream_records
from tests.idempotency_support import CallCounter
from tests.outbox_support import StreamReader, create_outbox_table, make_moto_dynamodb_atomic

STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"  # see StreamReader


@pytest.fixture(autouse=True)
def _atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    make_moto_dynamodb_atomic(monkeypatch)  # the relay marks from several threads


@pytest.fixture
def clock() -> FakeClock:
    # Records carry epoch times (TTLs, the sweeper's grace): the clock starts at now, moves on demand.
    return FakeClock(start=float(int(time.time())))


@pytest.fixture
def outbox(ddb: Any, clock: FakeClock) -> Outbox:
    create_outbox_table(ddb)
    return Outbox(
        "orders", client=ddb, policy=clock.policy(), max_attempts=3, clock=clock.monotonic
    )


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def fifo(sqs: Any) -> str:
    return make_queue(sqs, "events.fifo", FifoQueue="true")[0]


@pytest.fixture
def stream(ddb: Any, outbox: Outbox) -> StreamReader:
    # botocore sends DynamoDB Streams calls to an account-based endpoint moto does not serve.
    streams = boto3.client(
        "dynamodbstreams", region_name="us-east-1", endpoint_url=STREAMS_ENDPOINT
    )
    return StreamReader(ddb, streams, "orders")


def order(n: int, aggregate: str = "order-1") -> dict[str, Any]:
    return {"pk": aggregate, "sk": f"v{n}", "total": n * 1.5}


def placed(n: int, aggregate: str = "order-1", **fields: Any) -> OutboxEvent:
    return OutboxEvent("OrderPlaced", aggregate, {"n": n}, sequence=n, **fields)


def relay_all(stream: StreamReader, handler: Any) -> list[dict[str, Any]]:
    responses = []
    while (event := stream.next_batch()) is not None:
        response = handler(event, FakeLambdaContext())
        responses.append(response)
        stream.retry_from(event, response)
        if response["batchItemFailures"]:
            break
    return responses


def bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    return [json.loads(b) for b in drain(sqs, url)]


# -- writing ------------------------------------------------------------------------------------


def test_change_and_event_in_one_transaction(outbox: Outbox, ddb: Any) -> None:
    counter = CallCounter(ddb)
    written = outbox.write(
        puts=[order(1)], events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})]
    )
    assert counter.take() == {"DescribeTable": 1, "TransactWriteItems": 1}  # schema read once
    outbox.write(puts=[order(2)])
    assert counter.take() == {"TransactWriteItems": 1}
    (event,) = written
    assert event.sequence is not None and event.sequence > 0
    items = ddb.scan(TableName="orders")["Items"]
    assert len(items) == 3
    record = next(i for i in items if "outbox_event_id" in i)
    assert record["outbox_event_id"]["S"] == event.id
    assert record["outbox_status"]["S"] == PENDING
    assert json.loads(record["outbox_payload"]["S"]) == {"n": 1}
    assert "expires_at" not in record  # TTL only once delivered: a pending event never expires


def test_events_of_one_write_get_increasing_sequences(outbox: Outbox) -> None:
    events = [OutboxEvent("A", "agg", {}) for _ in range(3)]
    written = outbox.write(events=events)
    sequences = [e.sequence for e in written]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    later = outbox.write(events=[OutboxEvent("A", "agg", {})])
    assert later[0].sequence > sequences[-1]  # type: ignore[operator]


def test_a_failed_condition_writes_nothing_and_names_the_action(outbox: Outbox, ddb: Any) -> None:
    with pytest.raises(TransactionConditionFailedError) as info:
        outbox.write(
            puts=[Put(order(1), condition="attribute_exists(pk)")],
            events=[placed(1)],
        )
    assert info.value.reasons[0][0].startswith("put orders[pk=order-1,sk=v1]")
    assert info.value.reasons[0][1] == "ConditionalCheckFailed"
    assert ddb.scan(TableName="orders")["Items"] == []


def test_a_sequence_is_used_once_per_aggregate(outbox: Outbox) -> None:
    outbox.write(events=[placed(1)])
    with pytest.raises(TransactionConditionFailedError, match="order-1 #1"):
        outbox.write(puts=[order(2)], events=[placed(1)])


def test_updates_deletes_and_condition_checks(outbox: Outbox, ddb: Any) -> None:
    outbox.write(puts=[{"pk": "stock", "sk": "sku-1", "count": 5}, order(9)])
    outbox.write(
        updates=[
            Update(
                {"pk": "stock", "sk": "sku-1"},
                "SET #c = #c - :one",
                condition="#c >= :one",
                names={"#c": "count"},
                values={":one": 1},
            )
        ],
        deletes=[{"pk": "order-1", "sk": "v9"}],
        conditions=[ConditionCheck({"pk": "stock", "sk": "sku-2"}, "attribute_not_exists(pk)")],
        events=[placed(2)],
    )
    stock = ddb.get_item(TableName="orders", Key={"pk": {"S": "stock"}, "sk": {"S": "sku-1"}})
    assert stock["Item"]["count"]["N"] == "4"
    gone = ddb.get_item(TableName="orders", Key={"pk": {"S": "order-1"}, "sk": {"S": "v9"}})
    assert "Item" not in gone
    outbox.write(deletes=[Delete({"pk": "stock", "sk": "sku-1"}, condition="attribute_exists(pk)")])


def test_outbox_records_in_another_table(ddb: Any, clock: FakeClock) -> None:
    create_outbox_table(ddb, "outbox")
    ddb.create_table(
        TableName="business",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    outbox = Outbox("business", outbox_table="outbox", client=ddb, policy=clock.policy())
    outbox.write(puts=[{"id": "o-1"}], events=[OutboxEvent("Created", "o-1", {})])
    assert len(ddb.scan(TableName="business")["Items"]) == 1
    assert len(ddb.scan(TableName="outbox")["Items"]) == 1


def test_bad_input_is_refused_before_anything_is_sent(outbox: Outbox, ddb: Any) -> None:
    counter = CallCounter(ddb)
    counter.take()
    with pytest.raises(TransactionTooLargeError, match="101 actions"):
        outbox.write(puts=[order(i) for i in range(101)])
    with pytest.raises(DuplicateEntryError, match="one action per item"):
        outbox.write(puts=[order(1)], deletes=[{"pk": "order-1", "sk": "v1"}])
    with pytest.raises(UnsupportedValueError) as info:
        outbox.write(events=[OutboxEvent("X", "a", payload={"socket": object()}, id="evt-7")])
    assert info.value.entry_id == "evt-7"
    with pytest.raises(EntryTooLargeError, match="409600"):
        outbox.write(puts=[{"pk": "big", "sk": "1", "blob": "x" * 410_000}])
    with pytest.raises(EntryTooLargeError, match="event evt-8"):
        outbox.write(events=[OutboxEvent("X", "a", payload="x" * 410_000, id="evt-8")])
    with pytest.raises(TransactionTooLargeError, match="bytes"):
        outbox.write(puts=[{"pk": "big", "sk": str(i), "blob": "x" * 390_000} for i in range(11)])
    with pytest.raises(UnsupportedValueError):
        outbox.write(puts=[{"pk": "nan", "sk": "1", "v": float("nan")}])
    with pytest.raises(ConfigurationError, match="nothing to write"):
        outbox.write()
    with pytest.raises(ValueError, match="aggregate_id"):
        OutboxEvent("X", "")
    assert counter.take().get("TransactWriteItems", 0) == 0


# -- relaying from the stream ---------------------------------------------------------------------


def test_relay_publishes_new_outbox_records_in_order(
    outbox: Outbox, stream: StreamReader, sqs: Any, fifo: str
) -> None:
    for n in range(1, 6):
        outbox.write(puts=[order(n, f"order-{n % 2}")], events=[placed(n, f"order-{n % 2}")])
    handler = relay_handler(outbox, SqsTarget(fifo, client=sqs))
    responses = relay_all(stream, handler)
    assert all(r == {"batchItemFailures": []} for r in responses)
    messages = bodies(sqs, fifo)
    assert sorted(m["sequence"] for m in messages) == [1, 2, 3, 4, 5]
    for aggregate in ("order-0", "order-1"):
        mine = [m["sequence"] for m in messages if m["aggregate_id"] == aggregate]
        assert mine == sorted(mine)
    assert {m["type"] for m in messages} == {"OrderPlaced"}
    assert all(m["payload"] == {"n": m["sequence"]} for m in messages)
    # the delivery marks (MODIFY) and business items come through the stream too: ignored
    assert relay_all(stream, handler) == []
    statuses = {s.status for s in outbox.undelivered("order-1")}
    assert statuses == set()


def test_a_failure_holds_back_only_its_aggregate(
    outbox: Outbox, stream: StreamReader, sqs: Any, fifo: str
) -> None:
    real = SqsTarget(fifo, client=sqs)
    flaky_once = {"a#1"}

    def publish(events: Sequence[OutboxEvent]) -> dict[str, str]:
        failing = {e.id: "Boom: injected" for e in events if e.id in flaky_once}
        flaky_once.clear()
        ok = [e for e in events if e.id not in failing]
        return {**failing, **real.publish(ok)}

    for n in (1, 2, 3):
        outbox.write(events=[placed(n, "a", id=f"a#{n}"), placed(n, "b", id=f"b#{n}")])
    handler = relay_handler(outbox, CallableTarget(publish))
    event = stream.next_batch()
    assert event is not None
    response = handler(event, FakeLambdaContext())
    sequence_of = {
        r["dynamodb"]["SequenceNumber"]: r["dynamodb"]["NewImage"]["outbox_event_id"]["S"]
        for r in event["Records"]
    }
    failed_ids = {sequence_of[f["itemIdentifier"]] for f in response["batchItemFailures"]}
    assert failed_ids == {"a#1", "a#2", "a#3"}
    assert [m["event_id"] for m in bodies(sqs, fifo)] == ["b#1", "b#2", "b#3"]

    stream.retry_from(event, response)  # Lambda resumes at the failed record
    retried = stream.next_batch()
    assert retried is not None
    assert handler(retried, FakeLambdaContext()) == {"batchItemFailures": []}
    assert [m["event_id"] for m in bodies(sqs, fifo)] == ["a#1", "a#2", "a#3"]


def test_a_poison_event_is_blocked_without_blocking_the_stream(
    outbox: Outbox, stream: StreamReader, sqs: Any, fifo: str, clock: FakeClock
) -> None:
    real = SqsTarget(fifo, client=sqs)
    poison = {"a#2"}

    def publish(events: Sequence[OutboxEvent]) -> dict[str, str]:
        failing = {e.id: "InvalidParameterValue: poison" for e in events if e.id in poison}
        return {**failing, **real.publish([e for e in events if e.id not in failing])}

    for n in (1, 2, 3):
        outbox.write(events=[placed(n, "a", id=f"a#{n}"), placed(n, "b", id=f"b#{n}")])
    handler = relay_handler(outbox, CallableTarget(publish))
    for _ in range(outbox.max_attempts):  # Lambda retries the failed record...
        event = stream.next_batch()
        assert event is not None
        response = handler(event, FakeLambdaContext())
        stream.retry_from(event, response)
    assert response == {"batchItemFailures": []}  # ...until it is blocked: the stream moves on
    assert [m["event_id"] for m in bodies(sqs, fifo)] == ["a#1", "b#1", "b#2", "b#3"]

    (blocked,) = outbox.blocked()
    assert blocked.event.id == "a#2"
    assert blocked.status == BLOCKED and blocked.attempts == outbox.max_attempts
    assert blocked.last_error is not None and "poison" in blocked.last_error
    assert [s.status for s in outbox.undelivered("a")] == [BLOCKED, PENDING]

    sweeper = OutboxSweeper(outbox, CallableTarget(publish), grace_s=0)
    clock.advance(5)
    report = sweeper.run()
    assert report.left_for_sweeper == ["a#2", "a#3"] and report.delivered == []

    poison.clear()  # the consumer was fixed
    assert outbox.unblock("a") == ["a#2"]
    report = sweeper.run()
    assert report.delivered == ["a#2", "a#3"]
    assert [m["event_id"] for m in bodies(sqs, fifo)] == ["a#2", "a#3"]
    assert outbox.undelivered("a") == [] and outbox.blocked() == []


def test_relay_skips_what_is_already_delivered(
    outbox: Outbox, stream: StreamReader, sqs: Any, fifo: str
) -> None:
    outbox.write(events=[placed(1)])
    handler = relay_handler(outbox, SqsTarget(fifo, client=sqs))
    event = stream.next_batch()
    assert event is not None
    handler(event, FakeLambdaContext())
    reports: list[Any] = []
    again = relay_handler(outbox, SqsTarget(fifo, client=sqs), on_report=reports.append)
    assert again(event, FakeLambdaContext()) == {"batchItemFailures": []}  # a redelivered batch
    assert reports[0].already_delivered == [event_id(event)]
    assert len(bodies(sqs, fifo)) == 1


def test_a_failing_report_hook_does_not_make_lambda_publish_the_batch_again(
    outbox: Outbox, stream: StreamReader, sqs: Any, fifo: str, caplog: pytest.LogCaptureFixture
) -> None:
    outbox.write(events=[placed(1)])

    def broken(report: Any) -> None:
        raise RuntimeError("metrics backend down")

    handler = relay_handler(outbox, SqsTarget(fifo, client=sqs), on_report=broken)
    event = stream.next_batch()
    assert event is not None
    # Raising would fail the invocation: Lambda would retry the batch and publish it again.
    assert handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(bodies(sqs, fifo)) == 1
    assert "on_report hook failed: RuntimeError" in caplog.text


def event_id(event: dict[str, Any]) -> str:
    return str(event["Records"][0]["dynamodb"]["NewImage"]["outbox_event_id"]["S"])


# -- sweeping -------------------------------------------------------------------------------------


def test_sweeper_delivers_what_the_stream_lost_after_the_grace_period(
    outbox: Outbox, sqs: Any, fifo: str, clock: FakeClock, ddb: Any
) -> None:
    for n in (1, 2):
        outbox.write(events=[placed(n, "a"), placed(n, "b")])
    sweeper = OutboxSweeper(outbox, SqsTarget(fifo, client=sqs), grace_s=60)
    assert sweeper.run().summary()["delivered"] == 0  # too recent: the relay may still come
    clock.advance(61)
    report = sweeper.run()
    assert len(report.delivered) == 4
    messages = bodies(sqs, fifo)
    assert [m["sequence"] for m in messages if m["aggregate_id"] == "a"] == [1, 2]
    assert outbox.pending() == []
    record = ddb.get_item(
        TableName="orders", Key=outbox.layout.event_key("a", 1), ConsistentRead=True
    )["Item"]
    assert record["outbox_status"]["S"] == DELIVERED
    assert int(record["expires_at"]["N"]) == int(clock.now) + outbox.delivered_ttl_s
    assert "outbox_pending_shard" not in record  # out of the sparse index


def test_pending_lists_what_was_just_written_and_filters_by_age(
    outbox: Outbox, clock: FakeClock
) -> None:
    outbox.write(events=[placed(1)])
    clock.advance(30)
    outbox.write(events=[placed(2)])
    assert [s.event.sequence for s in outbox.pending()] == [1, 2]  # the clock did not move
    assert [s.event.sequence for s in outbox.pending(older_than_s=30)] == [1]
    assert outbox.pending(older_than_s=31) == []


def test_a_stream_without_new_images_is_a_configuration_error(
    outbox: Outbox, stream: StreamReader, sqs: Any, fifo: str
) -> None:
    outbox.write(events=[placed(1)])
    batch = stream.next_batch()
    assert batch is not None
    for record in batch["Records"]:  # what a KEYS_ONLY stream would hand the relay
        record["dynamodb"].pop("NewImage", None)
        record["dynamodb"]["StreamViewType"] = "KEYS_ONLY"
    handler = relay_handler(outbox, SqsTarget(fifo, client=sqs))
    with pytest.raises(ConfigurationError, match="KEYS_ONLY"):
        handler(batch, FakeLambdaContext())  # not an all-success answer for unread records
    assert [s.event.sequence for s in outbox.pending()] == [1]


def test_a_table_without_the_pending_index_is_a_configuration_error(
    ddb: Any, sqs: Any, fifo: str
) -> None:
    ddb.create_table(
        TableName="no-index",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    outbox = Outbox("no-index", client=ddb)
    outbox.write(events=[placed(1)])  # the write needs no index...
    sweeper = OutboxSweeper(outbox, SqsTarget(fifo, client=sqs), grace_s=0)
    with pytest.raises(ConfigurationError, match="has no index 'outbox-pending'"):
        sweeper.run()  # ...the sweep does, and says which
    with pytest.raises(ConfigurationError, match="outbox-pending"):
        outbox.undelivered("order-1")


def test_the_grace_period_runs_from_the_write_not_from_the_events_created_at(
    outbox: Outbox, sqs: Any, fifo: str, clock: FakeClock
) -> None:
    # An event rebuilt from history keeps its old created_at; the relay still deserves its grace.
    last_year = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=365)
    outbox.write(events=[placed(1, created_at=last_year)])
    sweeper = OutboxSweeper(outbox, SqsTarget(fifo, client=sqs), grace_s=60)
    assert sweeper.run().summary()["delivered"] == 0
    clock.advance(61)
    assert sweeper.run().summary()["delivered"] == 1
    (message,) = bodies(sqs, fifo)
    assert message["created_at"] == last_year.isoformat()


def test_the_sweeper_leaves_events_younger_than_the_grace_period_to_the_relay(
    outbox: Outbox, sqs: Any, fifo: str, clock: FakeClock
) -> None:
    outbox.write(events=[placed(1)])
    clock.advance(61)
    outbox.write(events=[placed(2)])  # just written: the index may not even show it yet
    report = OutboxSweeper(outbox, SqsTarget(fifo, client=sqs), grace_s=60).run()
    assert len(report.delivered) == 1
    assert [m["sequence"] for m in bodies(sqs, fifo)] == [1]
    assert [s.event.sequence for s in outbox.pending()] == [2]


def test_sweeper_handler_stops_at_the_deadline(outbox: Outbox, sqs: Any, fifo: str) -> None:
    outbox.write(events=[placed(1)])
    sweeper = OutboxSweeper(outbox, SqsTarget(fifo, client=sqs), grace_s=-3600)
    summary = sweeper.handler({}, FakeLambdaContext(timeout_s=0.5))  # under the 1 s margin
    assert summary["unattempted"] == 1 and summary["delivered"] == 0


# -- targets ---------------------------------------------------------------------------------------


def test_every_target_carries_the_event_id(outbox: Outbox, aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    events_client = boto3.client("events", region_name="us-east-1")
    topic, topic_queue = sns_to_queue(sns, sqs, "topic", fifo=True)
    kinesis.create_stream(StreamName="events", ShardCount=1)
    bus_queue, bus_queue_arn = make_queue(sqs, "bus")
    events_client.put_rule(Name="all", EventPattern=json.dumps({"source": ["shop"]}))
    events_client.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": bus_queue_arn}])
    router = Router(
        {
            "sns": SnsTarget(topic, client=sns),
            "kinesis": KinesisTarget("events", client=kinesis),
            "bus": EventBridgeTarget("default", source="shop", client=events_client),
        }
    )
    events = [
        OutboxEvent("T", "agg", {"to": to}, sequence=i, destination=to, id=f"e-{to}")
        for i, to in enumerate(["sns", "kinesis", "bus", "nowhere"])
    ]
    failures = router.publish(events)
    assert list(failures) == ["e-nowhere"] and failures["e-nowhere"].startswith("NoRoute")
    (sns_body,) = drain(sqs, topic_queue)
    assert json.loads(sns_body)["event_id"] == "e-sns"
    ((key, data),) = stream_records(kinesis, "events")
    assert key == "agg" and json.loads(data)["event_id"] == "e-kinesis"
    (bus_body,) = drain(sqs, bus_queue)
    assert json.loads(bus_body)["detail"]["event_id"] == "e-bus"

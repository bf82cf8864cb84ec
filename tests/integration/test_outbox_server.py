"""The outbox against a moto server over HTTP: one transaction per business change and its
events, the relay fed from the server's real DynamoDB stream (read through the
``dynamodbstreams`` API on the server's endpoint), SQS FIFO, SNS and EventBridge targets, held
and blocked events, the sweeper. Every event written is counted at the far end.

The server is shared by the session: every test makes its own table and queues.

dynalite (4.0) implements neither ``TransactWriteItems`` nor DynamoDB Streams (its README lists
both as TODO; it answers ``UnknownOperationException``), so the outbox cannot be tested on it;
the last test pins that, so that the day it gains transactions the limits and condition failures
get a dynalite test too. DynamoDB's own validation of a transaction is covered by the checks
``Outbox.write`` makes before sending (tests/functional/test_outbox.py).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws.errors import TransactionConditionFailedError
from resilient_aws.outbox import (
    BLOCKED,
    DELIVERED,
    PENDING,
    CallableTarget,
    ConditionCheck,
    EventBridgeTarget,
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
from resilient_aws.testing import FakeClock, FakeLambdaContext, MotoServer
from resilient_aws.testing.emulators import NodeEmulator
from tests.batch_targets import drain, make_queue
from tests.idempotency_support import CallCounter
from tests.outbox_support import StreamReader, create_outbox_table, make_moto_dynamodb_atomic

_run = uuid.uuid4().hex[:8]
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{_run}-{next(_names)}"


@dataclass
class Setup:
    ddb: Any
    sqs: Any
    table: str
    outbox: Outbox
    stream: StreamReader
    queue: str  # a FIFO queue
    clock: FakeClock


@pytest.fixture(autouse=True)
def _atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    # the server runs in this process: its request threads share moto's thread-unsafe tables
    make_moto_dynamodb_atomic(monkeypatch)


@pytest.fixture
def setup(moto_server: MotoServer) -> Setup:
    ddb = moto_server.client("dynamodb")
    sqs = moto_server.client("sqs")
    table = create_outbox_table(ddb, unique("orders"))
    # Event times are epoch times: the outbox's clock starts at now and moves on demand.
    clock = FakeClock(start=float(int(time.time())))
    outbox = Outbox(table, client=ddb, policy=clock.policy(), max_attempts=2, clock=clock.monotonic)
    # On a server the streams client needs nothing special: the endpoint serves every service.
    stream = StreamReader(ddb, moto_server.client("dynamodbstreams"), table)
    queue, _ = make_queue(sqs, unique("events") + ".fifo", FifoQueue="true")
    return Setup(ddb, sqs, table, outbox, stream, queue, clock)


def business(aggregate: str, n: int) -> dict[str, Any]:
    """The write of one order change: the order's version item and its customer's counter."""
    return {
        "puts": [{"pk": aggregate, "sk": f"v{n}", "total": n * 2.5}],
        "updates": [
            Update(
                {"pk": f"customer-of-{aggregate}", "sk": "stats"},
                "ADD changes :one",
                values={":one": 1},
            )
        ],
    }


def event(aggregate: str, n: int, kind: str = "OrderChanged") -> OutboxEvent:
    return OutboxEvent(kind, aggregate, {"n": n}, sequence=n, id=f"{aggregate}#{n}")


def relay_all(stream: StreamReader, handler: Any) -> list[dict[str, Any]]:
    """Run ``handler`` over the stream the way Lambda does, until nothing new or a failure."""
    responses = []
    while (batch := stream.next_batch(25)) is not None:
        response = handler(batch, FakeLambdaContext())
        responses.append(response)
        stream.retry_from(batch, response)
        if response["batchItemFailures"]:
            break
    return responses


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message, in the order received, with its body parsed and its FIFO attributes."""
    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        AttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        for message in batch:
            received.append(
                {
                    "body": json.loads(message["Body"]),
                    "group": message["Attributes"].get("MessageGroupId"),
                    "dedup": message["Attributes"].get("MessageDeduplicationId"),
                    "event_id": message["MessageAttributes"]["event_id"]["StringValue"],
                }
            )
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return received


def sequences_by_aggregate(messages: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        found[message["aggregate_id"]].append(message["sequence"])
    return dict(found)


def items(ddb: Any, table: str) -> list[dict[str, Any]]:
    pages = ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def failing_target(real: SqsTarget, failing: set[str], code: str) -> CallableTarget:
    """``real``, except that the events in ``failing`` (by id) fail with ``code``."""

    def publish(events: Sequence[OutboxEvent]) -> dict[str, str]:
        failures = {e.id: f"{code}: injected" for e in events if e.id in failing}
        return {**failures, **real.publish([e for e in events if e.id not in failures])}

    return CallableTarget(publish)


# -- writing and relaying ---------------------------------------------------------------------


def test_changes_and_events_commit_together_and_arrive_once_in_order(setup: Setup) -> None:
    counter = CallCounter(setup.ddb)
    aggregates = [f"order-{i}" for i in range(4)]
    written: list[OutboxEvent] = []
    for n in range(1, 4):
        for aggregate in aggregates:
            written += setup.outbox.write(
                **business(aggregate, n),
                events=[event(aggregate, 2 * n - 1), event(aggregate, 2 * n, "OrderPriced")],
            )
    assert counter.take() == {"DescribeTable": 1, "TransactWriteItems": 12}

    stored = items(setup.ddb, setup.table)
    records = [i for i in stored if "outbox_event_id" in i]
    assert len(records) == 24
    assert {r["outbox_event_id"]["S"] for r in records} == {e.id for e in written}
    assert {r["outbox_status"]["S"] for r in records} == {PENDING}
    assert len([i for i in stored if i["sk"]["S"].startswith("v")]) == 12
    stats = [i for i in stored if i["sk"]["S"] == "stats"]
    assert sorted(int(i["changes"]["N"]) for i in stats) == [3, 3, 3, 3]

    relay = relay_handler(setup.outbox, SqsTarget(setup.queue, client=setup.sqs))
    seen: Counter[str] = Counter()

    def handler(batch: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(
            r["eventName"]
            for r in batch["Records"]
            if r["dynamodb"]["Keys"]["pk"]["S"].startswith("OUTBOX#")
        )
        return relay(batch, context)

    responses = relay_all(setup.stream, handler)
    assert responses and all(r == {"batchItemFailures": []} for r in responses)
    # every outbox record came through the stream once (INSERT), and so did its delivery mark
    # (MODIFY, ignored). Business items came through too and were ignored; they are not counted
    # because moto streams an item that a transaction's Update creates twice (two INSERTs).
    assert seen == {"INSERT": 24, "MODIFY": 24}
    received = receive_all(setup.sqs, setup.queue)
    assert Counter(m["event_id"] for m in received) == Counter(e.id for e in written)
    assert all(m["body"]["event_id"] == m["event_id"] == m["dedup"] for m in received)
    assert all(m["group"] == m["body"]["aggregate_id"] for m in received)
    assert sequences_by_aggregate([m["body"] for m in received]) == {
        aggregate: [1, 2, 3, 4, 5, 6] for aggregate in aggregates
    }
    assert relay_all(setup.stream, handler) == []
    assert receive_all(setup.sqs, setup.queue) == []
    after = [i for i in items(setup.ddb, setup.table) if "outbox_event_id" in i]
    assert {r["outbox_status"]["S"] for r in after} == {DELIVERED}
    assert all("outbox_pending_aggregate" not in r and "expires_at" in r for r in after)
    assert setup.outbox.pending() == []


def test_a_failed_condition_is_typed_and_writes_nothing(setup: Setup) -> None:
    setup.outbox.write(**business("order-1", 1), events=[event("order-1", 1)])
    handler = relay_handler(setup.outbox, SqsTarget(setup.queue, client=setup.sqs))
    relay_all(setup.stream, handler)
    assert [m["event_id"] for m in receive_all(setup.sqs, setup.queue)] == ["order-1#1"]
    before = items(setup.ddb, setup.table)
    counter = CallCounter(setup.ddb)

    with pytest.raises(TransactionConditionFailedError) as info:
        setup.outbox.write(
            puts=[Put({"pk": "order-1", "sk": "v2", "total": 5})],
            conditions=[
                ConditionCheck(
                    {"pk": "customer-of-order-1", "sk": "stats"},
                    "changes > :limit",
                    values={":limit": 10},
                )
            ],
            events=[event("order-1", 2)],
        )
    assert counter.take() == {"TransactWriteItems": 1}  # the caller's business: not retried
    # only the failed action is named: the others' reason is "None" on the wire
    assert [(name, code) for name, code, _ in info.value.reasons] == [
        (f"condition on {setup.table}[pk=customer-of-order-1,sk=stats]", "ConditionalCheckFailed")
    ]
    assert items(setup.ddb, setup.table) == before  # no order v2, no outbox record
    assert relay_all(setup.stream, handler) == []  # nothing reached the stream either
    assert receive_all(setup.sqs, setup.queue) == []

    # a reused sequence is refused the same way: the first writer's event stays as it was
    with pytest.raises(TransactionConditionFailedError, match="order-1#1"):
        setup.outbox.write(puts=[{"pk": "order-1", "sk": "v9"}], events=[event("order-1", 1)])
    assert items(setup.ddb, setup.table) == before


def test_a_failed_event_holds_back_its_aggregate_only(setup: Setup) -> None:
    failing = {"a#1"}
    target = failing_target(SqsTarget(setup.queue, client=setup.sqs), failing, "Boom")
    for n in (1, 2, 3):
        setup.outbox.write(events=[event("a", n), event("b", n)])
    reports: list[Any] = []
    handler = relay_handler(setup.outbox, target, on_report=reports.append)

    batch = setup.stream.next_batch()
    assert batch is not None
    response = handler(batch, FakeLambdaContext())
    (report,) = reports
    assert report.failed.keys() == {"a#1"} and sorted(report.held) == ["a#2", "a#3"]
    assert sorted(report.delivered) == ["b#1", "b#2", "b#3"]
    id_of = {
        r["dynamodb"]["SequenceNumber"]: r["dynamodb"]["NewImage"]["outbox_event_id"]["S"]
        for r in batch["Records"]
    }
    assert {id_of[f["itemIdentifier"]] for f in response["batchItemFailures"]} == {
        "a#1",
        "a#2",
        "a#3",
    }
    assert [m["event_id"] for m in receive_all(setup.sqs, setup.queue)] == ["b#1", "b#2", "b#3"]
    assert [s.status for s in setup.outbox.undelivered("a")] == [PENDING] * 3
    assert setup.outbox.undelivered("a")[0].attempts == 1

    failing.clear()
    setup.stream.retry_from(batch, response)  # Lambda resumes at the failed record
    assert all(r == {"batchItemFailures": []} for r in relay_all(setup.stream, handler))
    assert [m["event_id"] for m in receive_all(setup.sqs, setup.queue)] == ["a#1", "a#2", "a#3"]
    assert setup.outbox.pending() == [] and setup.outbox.blocked() == []


def test_a_poison_event_is_blocked_swept_around_and_unblocked(setup: Setup) -> None:
    poison = {"a#2"}
    target = failing_target(SqsTarget(setup.queue, client=setup.sqs), poison, "InvalidParameter")
    for n in (1, 2, 3):
        setup.outbox.write(events=[event("a", n), event("b", n)])
    handler = relay_handler(setup.outbox, target)
    for _ in range(setup.outbox.max_attempts):  # Lambda retries the failed record...
        batch = setup.stream.next_batch()
        assert batch is not None
        response = handler(batch, FakeLambdaContext())
        setup.stream.retry_from(batch, response)
    assert response == {"batchItemFailures": []}  # ...until it is blocked: the stream moves on
    received = [m["event_id"] for m in receive_all(setup.sqs, setup.queue)]
    assert sorted(received) == ["a#1", "b#1", "b#2", "b#3"]

    (blocked,) = setup.outbox.blocked()
    assert blocked.event.id == "a#2" and blocked.status == BLOCKED
    assert blocked.attempts == 2 and "InvalidParameter" in (blocked.last_error or "")
    assert [(s.event.id, s.status) for s in setup.outbox.undelivered("a")] == [
        ("a#2", BLOCKED),
        ("a#3", PENDING),
    ]

    sweeper = OutboxSweeper(setup.outbox, target, grace_s=60)
    setup.clock.advance(61)
    report = sweeper.run()
    assert report.left_for_sweeper == ["a#2", "a#3"] and report.delivered == []
    assert receive_all(setup.sqs, setup.queue) == []

    poison.clear()  # the consumer was fixed
    assert setup.outbox.unblock("a") == ["a#2"]
    report = sweeper.run()
    assert report.delivered == ["a#2", "a#3"]
    assert [m["event_id"] for m in receive_all(setup.sqs, setup.queue)] == ["a#2", "a#3"]
    assert setup.outbox.pending() == [] and setup.outbox.blocked() == []
    statuses = Counter(
        i["outbox_status"]["S"] for i in items(setup.ddb, setup.table) if "outbox_event_id" in i
    )
    assert statuses == {DELIVERED: 6}


def test_the_sweeper_delivers_what_the_stream_lost(setup: Setup) -> None:
    written: list[OutboxEvent] = []
    for n in (1, 2, 3):
        for aggregate in ("a", "b", "c"):
            written += setup.outbox.write(**business(aggregate, n), events=[event(aggregate, n)])
    # the relay saw the first transaction only: the rest of the stream is lost (or expired).
    # (Its records are cut at the first outbox record, not counted: see moto's double INSERT.)
    batch = setup.stream.next_batch(100)
    assert batch is not None
    records = batch["Records"]
    cut = next(i for i, r in enumerate(records) if "outbox_event_id" in r["dynamodb"]["NewImage"])
    first = {"Records": records[: cut + 1]}
    handler = relay_handler(setup.outbox, SqsTarget(setup.queue, client=setup.sqs))
    assert handler(first, FakeLambdaContext()) == {"batchItemFailures": []}
    assert [m["event_id"] for m in receive_all(setup.sqs, setup.queue)] == ["a#1"]

    sweeper = OutboxSweeper(setup.outbox, SqsTarget(setup.queue, client=setup.sqs), grace_s=300)
    assert sweeper.run().summary()["delivered"] == 0  # too recent: the relay may still come
    assert receive_all(setup.sqs, setup.queue) == []
    setup.clock.advance(301)
    report = sweeper.run()
    assert len(report.delivered) == 8
    received = receive_all(setup.sqs, setup.queue)
    assert Counter(m["event_id"] for m in received) == Counter(e.id for e in written[1:])
    assert sequences_by_aggregate([m["body"] for m in received]) == {
        "a": [2, 3],
        "b": [1, 2, 3],
        "c": [1, 2, 3],
    }
    assert setup.outbox.pending() == []
    assert sweeper.run().summary()["delivered"] == 0  # nothing twice


# -- other targets -----------------------------------------------------------------------------


def test_sns_and_eventbridge_targets_through_the_server(
    setup: Setup, moto_server: MotoServer
) -> None:
    sns = moto_server.client("sns")
    events_client = moto_server.client("events")
    topic = sns.create_topic(Name=unique("topic"))["TopicArn"]
    topic_queue, topic_queue_arn = make_queue(setup.sqs, unique("from-topic"))
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=topic_queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    bus = events_client.create_event_bus(Name=unique("bus"))["EventBusArn"].rpartition("/")[2]
    bus_queue, bus_queue_arn = make_queue(setup.sqs, unique("from-bus"))
    events_client.put_rule(
        Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["shop"]})
    )
    events_client.put_targets(
        Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": bus_queue_arn}]
    )
    router = Router(
        {
            "sns": SnsTarget(topic, client=sns),
            "bus": EventBridgeTarget(bus, source="shop", client=events_client),
        },
        default=SqsTarget(setup.queue, client=setup.sqs),
    )
    routes = (None, "sns", "bus")  # by n % 3
    written: list[OutboxEvent] = []
    for n in range(1, 7):
        written += setup.outbox.write(
            events=[
                OutboxEvent(
                    "OrderChanged",
                    "order-1",
                    {"n": n},
                    sequence=n,
                    destination=routes[n % 3],
                    id=f"order-1#{n}",
                )
            ]
        )
    assert all(
        r == {"batchItemFailures": []}
        for r in relay_all(setup.stream, relay_handler(setup.outbox, router))
    )

    via_sns = [json.loads(body) for body in drain(setup.sqs, topic_queue)]
    via_bus = [json.loads(body)["detail"] for body in drain(setup.sqs, bus_queue)]
    direct = [m["body"] for m in receive_all(setup.sqs, setup.queue)]
    assert [m["event_id"] for m in via_sns] == ["order-1#1", "order-1#4"]
    assert [m["event_id"] for m in via_bus] == ["order-1#2", "order-1#5"]
    assert [m["event_id"] for m in direct] == ["order-1#3", "order-1#6"]
    everything = Counter(m["event_id"] for m in via_sns + via_bus + direct)
    assert everything == Counter(e.id for e in written)
    assert setup.outbox.pending() == []


# -- dynalite ------------------------------------------------------------------------------------


@pytest.mark.emulator
def test_dynalite_has_no_transactions_and_the_outbox_says_so_at_once(
    dynalite_server: NodeEmulator,
) -> None:
    ddb = dynalite_server.client("dynamodb")
    table = unique("orders")
    ddb.create_table(
        TableName=table,
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
    counter = CallCounter(ddb)
    outbox = Outbox(table, client=ddb, policy=FakeClock().policy())
    with pytest.raises(ClientError, match="UnknownOperationException"):
        outbox.write(puts=[{"pk": "order-1", "sk": "v1"}], events=[event("order-1", 1)])
    assert counter.take() == {"DescribeTable": 1, "TransactWriteItems": 1}  # no retries
    assert ddb.scan(TableName=table)["Items"] == []

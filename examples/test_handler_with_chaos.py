"""Moto-backed tests of the example Lambda handlers under AWS-like faults, counting every entry.

Run them with pytest (``pip install 'resilient-aws[test,lambda]'``): the ``chaos`` and
``fake_clock`` fixtures come from resilient_aws's pytest plugin. Each handler module builds its
clients on first use (``app()``), so a test swaps in a policy on the fake clock — backoff sleeps
are instant and deterministic, and the Lambda deadline runs on the same clock — then installs
``chaos`` on the clients the handler really uses.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.retry import FailedEntry, RetryPolicy, classify_entry
from resilient_aws.testing import Chaos, FakeClock, FakeLambdaContext

sys.path.insert(0, str(Path(__file__).parent))
import idempotent_sqs_handler as consumer
import outbox_api_handler as api
import outbox_relay_handler as relay
import outbox_sweeper_handler as sweeper
import scheduled_redrive

# -- a hand-written sender, tested on its own -----------------------------------------------------


def publish_all(sqs: Any, queue_url: str, bodies: list[str], policy: RetryPolicy) -> list[str]:
    """The code under test: send every body, return the ids that finally failed."""
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]

    def send(batch: list[dict[str, str]]) -> list[FailedEntry[dict[str, str]]]:
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
        by_id = {e["Id"]: e for e in batch}
        return [
            FailedEntry(
                by_id[f["Id"]],
                f["Id"],
                f["Code"],
                retryable=classify_entry("sqs", f["Code"], sender_fault=f["SenderFault"]).retryable,
            )
            for f in response.get("Failed", [])
        ]

    failed: list[str] = []
    for start in range(0, len(entries), 10):
        outcome = policy.run_partial(
            send,
            entries[start : start + 10],
            entry_id=lambda e: e["Id"],
            operation="SendMessageBatch",
        )
        failed += [f.entry_id for f in outcome.failed]
    return failed


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_every_message_arrives_despite_faults(
    sqs: Any, chaos: Callable[..., Chaos], fake_clock: FakeClock
) -> None:
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    injected = chaos(sqs, partial=0.3, throttle=0.05, seed=1)

    failed = publish_all(sqs, url, [f"order-{i}" for i in range(50)], fake_clock.policy())

    assert failed == []
    assert injected.stats.withheld_entries > 0  # the faults really happened
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "50"


# -- the example handlers ------------------------------------------------------------------------


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch, fake_clock: FakeClock) -> Iterator[Any]:
    """moto, the orders and idempotency tables, the order-events queue (and its DLQ), and every
    example handler built afresh on the fake clock. Yields a context factory."""
    modules: list[ModuleType] = [consumer, api, relay, sweeper, scheduled_redrive]
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for module in modules:
        monkeypatch.setattr(module, "POLICY", fake_clock.policy(module.POLICY))
        module.app.cache_clear()
    monkeypatch.setattr(consumer, "charged", [])
    with mock_aws():
        api.create_orders_table(boto3.client("dynamodb"))
        consumer.create_idempotency_table(boto3.client("dynamodb"))
        queue, dlq = consumer.create_queue_with_dlq(
            boto3.client("sqs"), "order-events", max_receive_count=3
        )
        monkeypatch.setenv("EVENTS_QUEUE_URL", queue)
        monkeypatch.setenv("TARGET_QUEUE_URL", queue)
        monkeypatch.setenv("DLQ_URL", dlq)
        monkeypatch.setenv("SWEEP_GRACE_S", "0")
        yield lambda: FakeLambdaContext(timeout_s=60, clock=fake_clock.monotonic)
    for module in modules:
        module.app.cache_clear()


def place(order_id: str, context: Any) -> dict[str, Any]:
    body = {"order_id": order_id, "customer": "ada", "total": 12.5}
    return api.handler(api.http_event("POST /orders", body), context)


def queued(queue_url: str) -> list[dict[str, Any]]:
    """The JSON bodies of every message on a (small) queue, deleted as they are read."""
    return [json.loads(m["Body"]) for m in queued_raw(queue_url)]


def queued_raw(queue_url: str) -> list[dict[str, Any]]:
    """Every message on a (small) queue, deleted as it is read."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)
            ],
        )
    return messages


def test_the_api_writes_each_order_and_its_event_once_under_faults(
    handlers: Callable[[], Any], chaos: Callable[..., Chaos]
) -> None:
    # No lost responses here: moto ignores ClientRequestToken, so a retried transaction whose
    # first attempt was applied fails its condition, where DynamoDB would answer success.
    faults = chaos(api.app().client, throttle=0.15, error5xx=0.05, reset=0.05, seed=5)

    placed = [place(str(n), handlers()) for n in range(40)]
    again = [place(str(n), handlers()) for n in range(0, 40, 4)]  # a client retrying a POST
    bad = api.handler(api.http_event("POST /orders", {"order_id": "x", "total": "NaN"}), handlers())

    assert [r["statusCode"] for r in placed] == [201] * 40
    assert [r["statusCode"] for r in again] == [409] * 10
    assert bad["statusCode"] == 400
    assert faults.stats.faults > 0
    events = {json.loads(r["body"])["events"][0] for r in placed}
    pending = api.app().pending()
    assert {s.event.id for s in pending} == events  # one event per order, none for a 409
    assert len(pending) == 40
    orders = boto3.client("dynamodb").scan(TableName="orders", Select="COUNT")["Count"]
    assert orders == 40 + 40  # the orders and their outbox records, nothing else


def test_the_relay_publishes_every_event_under_faults(
    handlers: Callable[[], Any], chaos: Callable[..., Chaos]
) -> None:
    for n in range(30):
        place(str(n), handlers())
    for n in range(0, 30, 3):
        cancel = api.http_event("POST /orders/{order_id}/cancel", {"version": 1}, order_id=str(n))
        assert api.handler(cancel, handlers())["statusCode"] == 200
    written = {s.event.id for s in api.app().pending()}
    batch = relay.stream_event(boto3.client("dynamodb"), "orders")
    sqs_faults = chaos(relay.app().target.client, partial=0.5, throttle=0.1, seed=6)
    ddb_faults = chaos(relay.app().outbox.client, throttle=0.1, error5xx=0.05, seed=7)

    # Lambda re-invokes with the batch until the partial batch response names nothing.
    responses = [relay.handler(batch, handlers()) for _ in range(5)]

    assert responses[-1] == {"batchItemFailures": []}
    assert sqs_faults.stats.withheld_entries > 0
    assert ddb_faults.stats.faults > 0
    published = {body["event_id"] for body in queued(relay.app().target.queue_url)}
    assert published == written  # every committed event, and nothing else
    assert len(written) == 40
    assert relay.app().outbox.pending() == []


def test_the_sweeper_delivers_what_the_stream_lost_under_faults(
    handlers: Callable[[], Any], chaos: Callable[..., Chaos]
) -> None:
    for n in range(25):
        place(str(n), handlers())
    written = {s.event.id for s in api.app().pending()}
    chaos(sweeper.app().target.client, partial=0.3, throttle=0.05, seed=8)
    chaos(sweeper.app().outbox.client, throttle=0.1, seed=9)

    summaries = [sweeper.handler({}, handlers()) for _ in range(3)]

    assert sum(s["delivered"] for s in summaries) == 25
    assert summaries[-1]["failed"] == summaries[-1]["blocked"] == 0
    published = {body["event_id"] for body in queued(sweeper.app().target.queue_url)}
    assert published == written
    assert sweeper.app().outbox.pending() == []


def test_the_consumer_charges_every_order_once_under_faults(
    handlers: Callable[[], Any], chaos: Callable[..., Chaos]
) -> None:
    sqs = boto3.client("sqs")
    queue = consumer.create_queue_with_dlq(sqs, "charges", max_receive_count=5)
    bodies = [consumer.order_placed(f"e-{n}", str(n), n) for n in range(1, 31)]
    bodies += [consumer.order_placed(f"e-{n}", str(n), n) for n in range(1, 31, 2)]  # again
    bodies += ['{"type": "OrderPlaced", "payload": {}}', "not json"]  # poison
    for body in bodies:
        sqs.send_message(QueueUrl=queue[0], MessageBody=body)
    store = consumer.app().idempotency.store.client
    faults = chaos(store, throttle=0.2, error5xx=0.05, lost_response=0.05, seed=10)

    consumer.poll(sqs, queue[0], consumer.handler, handlers())

    assert Counter(consumer.charged) == {str(n): 1 for n in range(1, 31)}
    assert faults.stats.faults > 0
    # Every message accounted for: the poison ones in the DLQ, the 45 others deleted after
    # they were processed (the poller stops once the queue is empty).
    assert sorted(body for body in _bodies(sqs, queue[1])) == sorted(bodies[-2:])
    left = sqs.get_queue_attributes(QueueUrl=queue[0], AttributeNames=["All"])["Attributes"]
    assert (
        left["ApproximateNumberOfMessages"] == left["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def _bodies(sqs: Any, queue_url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def test_the_scheduled_redrive_moves_every_recent_event_once_under_faults(
    handlers: Callable[[], Any], chaos: Callable[..., Chaos]
) -> None:
    sqs = boto3.client("sqs")
    dlq, queue = os.environ["DLQ_URL"], os.environ["TARGET_QUEUE_URL"]
    old = "2020-01-01T00:00:00+00:00"
    recent = [consumer.order_placed(f"e-{n}", str(n), n) for n in range(20)]
    stale = [consumer.order_placed(f"e-old-{n}", f"old-{n}", n, created_at=old) for n in range(5)]
    for body in [*recent, *stale, *(f"not an event {n}" for n in range(5))]:
        sqs.send_message(QueueUrl=dlq, MessageBody=body)
    faults = chaos(scheduled_redrive.app(), partial=0.3, throttle=0.05, seed=11)

    report = scheduled_redrive.handler({}, handlers())

    assert faults.stats.faults > 0
    assert report["ok"]
    assert (report["received"], report["moved"], report["skipped"]) == (30, 20, 10)
    moved = {body["event_id"] for body in queued(queue)}
    assert moved == {f"e-{n}" for n in range(20)}  # each recent event, nothing else
    left = sorted(m["Body"] for m in queued_raw(dlq))  # the old events and the others
    assert left == sorted([*stale, *(f"not an event {n}" for n in range(5))])

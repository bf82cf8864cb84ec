"""redrive_sqs against moto in process: real queues, real redrive policies, chaos."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import boto3
import pytest

from resilient_aws.errors import (
    AmbiguousTargetError,
    QueueNotFoundError,
    TargetTypeMismatchError,
)
from resilient_aws.redrive import RedriveReport, redrive_sqs
from resilient_aws.testing import FakeClock, chaos
from tests.batch_targets import depth, dlq_with_source, make_queue, take_all
from tests.redrive_support import Killed, KillSwitch, ReceiptSpy, make_moto_sqs_atomic

REGION = "us-east-1"


@pytest.fixture
def sqs(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    make_moto_sqs_atomic(monkeypatch)
    return boto3.client("sqs", region_name=REGION)


def fill(sqs: Any, url: str, count: int, *, groups: int = 0) -> None:
    """``count`` messages with attributes (``n``, ``kind``), in order, round-robin over groups."""
    for start in range(0, count, 10):
        entries = []
        for i in range(start, min(start + 10, count)):
            entry: dict[str, Any] = {
                "Id": str(i - start),
                "MessageBody": json.dumps({"n": i}),
                "MessageAttributes": {
                    "n": {"DataType": "Number", "StringValue": str(i)},
                    "kind": {"DataType": "String", "StringValue": "even" if i % 2 == 0 else "odd"},
                },
            }
            if groups:
                entry["MessageGroupId"] = f"g{i % groups}"
                entry["MessageDeduplicationId"] = f"d{i}"
            entries.append(entry)
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def fail_into_dlq(sqs: Any, source: str, count: int, *, groups: int = 0) -> None:
    """Send ``count`` messages with attributes and let each fail once: moto moves them to the
    DLQ on the next receive, as SQS does after maxReceiveCount."""
    fill(sqs, source, count, groups=groups)
    for _ in range(count + 10):  # each receive past maxReceiveCount moves some to the DLQ
        sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10, VisibilityTimeout=0)
        if depth(sqs, source) == 0:
            break
    assert depth(sqs, source) == 0


def redrive(sqs: Any, dlq: str, clock: FakeClock | None = None, **options: Any) -> RedriveReport:
    clock = clock or FakeClock()
    options.setdefault("wait_time_s", 0)
    return redrive_sqs(dlq, client=sqs, policy=clock.policy(max_attempts=30), **options)


def test_messages_go_back_to_the_source_queue_with_their_attributes(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "orders")
    fail_into_dlq(sqs, source, 25)
    assert depth(sqs, dlq) == 25

    report = redrive(sqs, dlq)

    assert report.ok, report
    assert (report.received, report.moved, report.target) == (25, 25, source)
    assert depth(sqs, dlq) == 0
    back = take_all(sqs, source)
    assert sorted(json.loads(m["Body"])["n"] for m in back) == list(range(25))
    for m in back:
        n = json.loads(m["Body"])["n"]
        assert m["MessageAttributes"]["n"] == {"DataType": "Number", "StringValue": str(n)}
        assert m["MessageAttributes"]["kind"]["StringValue"] == ("even" if n % 2 == 0 else "odd")


def test_fifo_messages_keep_their_groups_and_their_order(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "ledger", fifo=True)
    # Straight into the DLQ, in order: moto dead-letters FIFO messages in no useful order.
    fill(sqs, dlq, 40, groups=4)

    report = redrive(sqs, dlq, concurrency=4)

    assert report.ok, report
    assert report.moved == 40
    by_group: dict[str, list[int]] = defaultdict(list)
    for m in take_all(sqs, source):
        n = json.loads(m["Body"])["n"]
        assert m["Attributes"]["MessageGroupId"] == f"g{n % 4}"
        by_group[m["Attributes"]["MessageGroupId"]].append(n)
    assert {g: sorted(ns) for g, ns in by_group.items()} == by_group  # in order within a group
    assert sum(len(ns) for ns in by_group.values()) == 40


def test_under_chaos_every_message_moves_once(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "chaotic")
    fail_into_dlq(sqs, source, 120)

    with chaos(sqs, partial=0.3, throttle=0.15, reset=0.01, seed=7) as injected:
        report = redrive(sqs, dlq, concurrency=4)

    assert report.ok, report
    assert report.moved == 120
    assert injected.stats.withheld_entries > 0 and injected.stats.throttled > 0
    bodies = Counter(m["Body"] for m in take_all(sqs, source))
    assert len(bodies) == 120 and set(bodies.values()) == {1}  # no duplicate: no lost responses
    assert depth(sqs, dlq) == 0


def test_filter_and_dry_run_leave_the_rest_visible(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "picky")
    fail_into_dlq(sqs, source, 10)

    preview = redrive(sqs, dlq, dry_run=True, filter="messageAttributes.kind == 'even'")
    assert (preview.moved, len(preview.would_move), preview.skipped) == (0, 5, 5)
    assert depth(sqs, dlq) == 10
    assert (
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "10"
    )  # released, not left invisible

    report = redrive(sqs, dlq, filter=lambda m: m.attribute("kind") == "even")
    assert (report.moved, report.skipped) == (5, 5)
    assert sorted(json.loads(m["Body"])["n"] % 2 for m in take_all(sqs, source)) == [0] * 5
    assert depth(sqs, dlq) == 5


def test_max_messages_moves_no_more(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "some")
    fail_into_dlq(sqs, source, 30)

    report = redrive(sqs, dlq, max_messages=12, concurrency=3)

    assert (report.received, report.moved) == (12, 12)
    assert depth(sqs, dlq) == 18


def test_a_restart_with_the_same_run_id_is_deduplicated_by_a_fifo_target(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "again", fifo=True)
    fail_into_dlq(sqs, source, 20, groups=2)
    spy = ReceiptSpy(sqs)
    kill = KillSwitch(sqs, "DeleteMessageBatch", after=0)  # dies after sending, before deleting
    with pytest.raises(Killed):
        redrive(sqs, dlq, run_id="nightly", concurrency=1)
    kill.remove()
    assert depth(sqs, dlq) == 20  # delivered, but nothing deleted
    assert spy.release(sqs, dlq) > 0  # their visibility timeout ends

    again = redrive(sqs, dlq, run_id="nightly")

    assert again.ok and depth(sqs, dlq) == 0
    bodies = Counter(m["Body"] for m in take_all(sqs, source))
    assert len(bodies) == 20 and set(bodies.values()) == {1}  # the re-sends were dropped by SQS


def test_wrong_queues_are_refused_before_anything_moves(sqs: Any) -> None:
    dlq, source = dlq_with_source(sqs, "typed")
    fail_into_dlq(sqs, source, 3)
    fifo, _ = make_queue(sqs, "other.fifo", FifoQueue="true")
    lonely, _ = make_queue(sqs, "lonely")

    with pytest.raises(TargetTypeMismatchError):
        redrive(sqs, dlq, target_queue_url=fifo)
    with pytest.raises(QueueNotFoundError):
        redrive(sqs, dlq, target_queue_url=source + "-missing")
    with pytest.raises(QueueNotFoundError):
        redrive(sqs, dlq + "-missing")
    with pytest.raises(AmbiguousTargetError):
        redrive(sqs, lonely)
    assert depth(sqs, dlq) == 3

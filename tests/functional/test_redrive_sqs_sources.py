"""redrive_sqs on a DLQ fed by several source queues, against moto in process: each message goes
back to the queue it was dead-lettered from.

SQS stamps a message it dead-letters with the system attribute ``DeadLetterQueueSourceArn``;
moto does not. The ``stamped`` fixture adds it the way SQS does: it notes, inside moto's
in-process backend, which queue each message was dead-lettered from, and a botocore handler on
the client's ``after-call.sqs.ReceiveMessage`` puts that queue's ARN in the message's
``Attributes`` when the message is received. A message put straight into the DLQ has none, as on
AWS, unless a test stamps it by hand.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import boto3
import pytest

from resilient_aws.redrive import RedriveReport, redrive_sqs
from resilient_aws.testing import FakeClock, chaos
from tests.batch_targets import depth, make_queue, take_all
from tests.redrive_support import make_moto_sqs_atomic

REGION = "us-east-1"
SOURCE_ARN = "DeadLetterQueueSourceArn"


@pytest.fixture
def stamps(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """message id -> ARN of the queue moto dead-lettered it from (filled as moto does it)."""
    from moto.sqs.models import SQSBackend

    make_moto_sqs_atomic(monkeypatch)
    noted: dict[str, str] = {}
    receive = SQSBackend.receive_message

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        dlq = queue.dead_letter_queue
        before = {m.id for m in dlq._messages} if dlq is not None else set()
        result = receive(self, queue_name, *args, **kwargs)
        if dlq is not None:
            for message in dlq._messages:
                if message.id not in before:
                    noted[message.id] = queue.queue_arn
        return result

    monkeypatch.setattr(SQSBackend, "receive_message", receive_message)
    return noted


@pytest.fixture
def sqs(stamps: dict[str, str]) -> Any:
    client = boto3.client("sqs", region_name=REGION)

    def add_source_arn(parsed: dict[str, Any], **_: Any) -> None:
        for message in parsed.get("Messages", []):
            arn = stamps.get(message["MessageId"])
            if arn is not None:
                message.setdefault("Attributes", {})[SOURCE_ARN] = arn

    client.meta.events.register("after-call.sqs.ReceiveMessage", add_source_arn)
    return client


def two_sources(sqs: Any, name: str) -> tuple[str, str, str]:
    """A DLQ and two queues whose RedrivePolicy sends to it: (dlq, a, b) URLs."""
    dlq, dlq_arn = make_queue(sqs, f"{name}-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    a, _ = make_queue(sqs, f"{name}-a", RedrivePolicy=policy)
    b, _ = make_queue(sqs, f"{name}-b", RedrivePolicy=policy)
    return dlq, a, b


def dead_letter(sqs: Any, source: str, tag: str, count: int) -> set[str]:
    """``count`` messages sent to ``source`` and failed once each: moto dead-letters them on the
    next receive. Returns their bodies."""
    bodies = [json.dumps({"from": tag, "n": i}) for i in range(count)]
    for start in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=source,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )
    for _ in range(count + 10):
        sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10, VisibilityTimeout=0)
        if depth(sqs, source) == 0:
            break
    assert depth(sqs, source) == 0
    return set(bodies)


def redrive(sqs: Any, dlq: str, **options: Any) -> RedriveReport:
    options.setdefault("wait_time_s", 0)
    return redrive_sqs(dlq, client=sqs, policy=FakeClock().policy(max_attempts=30), **options)


def test_each_message_goes_back_to_its_own_source(sqs: Any, stamps: dict[str, str]) -> None:
    dlq, a, b = two_sources(sqs, "orders")
    from_a = dead_letter(sqs, a, "a", 12)
    from_b = dead_letter(sqs, b, "b", 7)
    unstamped = sqs.send_message(QueueUrl=dlq, MessageBody="no source")["MessageId"]
    stranger, stranger_arn = make_queue(sqs, "stranger")  # no RedrivePolicy: not a source
    foreign = sqs.send_message(QueueUrl=dlq, MessageBody="foreign")["MessageId"]
    stamps[foreign] = stranger_arn
    assert depth(sqs, dlq) == 21

    preview = redrive(sqs, dlq, dry_run=True)

    assert preview.target is None and preview.moved == 0
    assert preview.targets == {a: 12, b: 7}
    assert len(preview.routes) == 19 and set(preview.routes) == set(preview.would_move)
    assert all(
        preview.routes[i] == (a if arn.endswith("-a") else b)
        for i, arn in stamps.items()
        if i in preview.routes
    )
    assert set(preview.failed) == {unstamped, foreign}
    assert depth(sqs, dlq) == 21

    report = redrive(sqs, dlq)

    assert (report.received, report.moved) == (21, 19)
    assert report.targets == {a: 12, b: 7}
    assert report.failed == {
        unstamped: "NoSourceQueue: the message has no DeadLetterQueueSourceArn attribute; pass "
        "a target queue to move it",
        foreign: f"NotASourceQueue: {stranger_arn} is not a source queue of this dead-letter queue",
    }
    assert not report.ok
    assert {m["Body"] for m in take_all(sqs, a)} == from_a
    assert {m["Body"] for m in take_all(sqs, b)} == from_b
    assert depth(sqs, stranger) == 0
    assert sorted(m["Body"] for m in take_all(sqs, dlq)) == ["foreign", "no source"]


def test_a_target_still_overrides_the_sources(sqs: Any) -> None:
    dlq, a, b = two_sources(sqs, "override")
    everything = dead_letter(sqs, a, "a", 3) | dead_letter(sqs, b, "b", 3)

    report = redrive(sqs, dlq, target_queue_url=b)

    assert report.ok and (report.moved, report.target, report.targets) == (6, b, {})
    assert {m["Body"] for m in take_all(sqs, b)} == everything


def test_under_chaos_every_message_ends_in_its_own_source(sqs: Any) -> None:
    dlq, a, b = two_sources(sqs, "chaotic")
    from_a = dead_letter(sqs, a, "a", 60)
    from_b = dead_letter(sqs, b, "b", 50)

    with chaos(sqs, partial=0.3, throttle=0.15, seed=11) as injected:
        report = redrive(sqs, dlq, concurrency=4)

    assert injected.stats.withheld_entries > 0 and injected.stats.throttled > 0
    assert report.ok, report
    assert (report.received, report.moved, report.targets) == (110, 110, {a: 60, b: 50})
    for queue, expected in ((a, from_a), (b, from_b)):
        bodies = Counter(m["Body"] for m in take_all(sqs, queue))
        assert set(bodies) == expected and set(bodies.values()) == {1}
        assert len(bodies) == report.targets[queue]
    assert depth(sqs, dlq) == 0

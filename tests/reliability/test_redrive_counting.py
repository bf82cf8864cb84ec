"""5,000 messages with attributes in 20 FIFO groups, redriven under chaos, killed, restarted.

Counted at the far end through moto's in-process backend: every message reaches the target at
least once with its attributes and group, in order within its group; the DLQ ends empty; the
duplicates are exactly the messages the killed run had delivered but not yet deleted.

Two things make moto fit for this (see ``resilient_aws.testing._moto_sqs``): its SQS costs
constant work per message instead of scanning the queue several times per call, and its clock
follows the test's ``FakeClock``. The second is what lets the restart happen as it would: the
killed run's messages stay invisible until their visibility timeout ends, and the test ends it
by advancing the clock, not by waiting or changing their visibility by hand.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import Message, sqs_backends

from resilient_aws.redrive import RedriveReport, redrive_sqs
from resilient_aws.testing import FakeClock, chaos
from resilient_aws.testing._moto_sqs import speed_up_moto_sqs
from tests.redrive_support import Killed, KillSwitch, make_moto_sqs_atomic

REGION = "us-east-1"
N = 5_000
GROUPS = 20
VISIBILITY = 60
FAULTS = {"partial": 0.3, "throttle": 0.05, "reset": 0.01}


def backend_queue(url: str) -> Any:
    return sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[url.rsplit("/", 1)[1]]


def seed_dlq(url: str) -> None:
    """5,000 messages straight into moto's DLQ, as SendMessageBatch would store them (without
    5,000 requests, each checking the growing queue for duplicates)."""
    queue = backend_queue(url)
    for n in range(N):
        message = Message(str(uuid.uuid4()), json.dumps({"n": n, "pad": "x" * 100}))
        message.message_attributes = {
            "n": {"DataType": "Number", "StringValue": str(n)},
            "kind": {"DataType": "String", "StringValue": "even" if n % 2 == 0 else "odd"},
            "blob": {"DataType": "Binary", "BinaryValue": n.to_bytes(2, "big")},
        }
        message.group_id = f"g{n % GROUPS}"
        message.deduplication_id = f"dedup-{n}"
        message.sequence_number = str(10**19 + n)
        message.mark_sent()
        queue._messages.append(message)


class Target:
    """Takes what arrives in the target queue out of moto as it arrives (a consumer would),
    so the queue stays small, and keeps (n, group, attributes) of each message in order."""

    def __init__(self, url: str) -> None:
        self.queue = backend_queue(url)
        self.arrived: list[tuple[int, str, dict[str, Any]]] = []

    def harvest(self, _: RedriveReport | None = None) -> None:
        with self.queue._messages_lock:
            taken, self.queue._messages = self.queue._messages, []
        for message in taken:
            n = json.loads(message.body)["n"]
            self.arrived.append((n, str(message.group_id), dict(message.message_attributes)))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, FakeClock]]:
    clock = FakeClock(start=0.0, seed=42)
    with mock_aws():
        make_moto_sqs_atomic(monkeypatch)
        undo = speed_up_moto_sqs(clock.monotonic)
        try:
            yield boto3.client("sqs", region_name=REGION), clock
        finally:
            undo()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_killed_and_restarted_fifo_redrive_under_chaos_loses_nothing(
    world: tuple[Any, FakeClock], seed: int
) -> None:
    sqs, clock = world
    dlq = sqs.create_queue(QueueName="ledger-dlq.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    source = sqs.create_queue(
        QueueName="ledger.fifo",
        Attributes={
            "FifoQueue": "true",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        },
    )["QueueUrl"]
    seed_dlq(dlq)
    target = Target(source)
    policy = clock.policy(max_attempts=40, max_delay=2.0)
    options: dict[str, Any] = {
        "client": sqs,
        "policy": policy,
        "wait_time_s": 0,
        "visibility_timeout": VISIBILITY,
        "concurrency": 4,
        "progress": target.harvest,
    }
    kill_after = random.Random(seed).randrange(60, 260)  # deletes before the process dies

    with chaos(sqs, seed=seed, **FAULTS) as injected:
        kill = KillSwitch(sqs, "DeleteMessageBatch", after=kill_after)
        with pytest.raises(Killed):
            redrive_sqs(dlq, run_id=f"first-{seed}", **options)
        kill.remove()
        target.harvest()
        first_run = Counter(n for n, _, _ in target.arrived)
        left = {json.loads(m.body)["n"] for m in backend_queue(dlq)._messages}
        in_flight = sum(1 for m in backend_queue(dlq)._messages if not m.visible)
        assert in_flight > 0, "the kill left nothing in flight: it tested no restart"
        assert left | set(first_run) == set(range(N))

        # The process restarts after the first run's visibility timeout has run out.
        clock.advance(VISIBILITY + 1)
        report = redrive_sqs(dlq, run_id=f"restart-{seed}", **options)
        target.harvest()

    assert report.ok, report
    assert report.received == report.moved == len(left)
    assert not backend_queue(dlq)._messages, "the DLQ is not empty"
    assert injected.stats.withheld_entries > 1000 and injected.stats.throttled > 0
    assert injected.stats.resets > 0

    counts = Counter(n for n, _, _ in target.arrived)
    assert set(counts) == set(range(N)), f"lost: {sorted(set(range(N)) - set(counts))[:10]}"
    duplicates = sum(counts.values()) - N
    delivered_not_deleted = set(first_run) & left
    # Duplicates come only from the kill: delivered by the first run, deleted by neither.
    assert duplicates == len(delivered_not_deleted), (duplicates, len(delivered_not_deleted))
    assert max(counts.values()) <= 2
    print(
        f"\nseed {seed}: killed after {kill_after} deletes with {in_flight} messages in flight; "
        f"restart moved {report.moved}; {duplicates} duplicates (delivered, not deleted, by the "
        f"killed run); chaos: {injected.stats.withheld_entries} entries withheld, "
        f"{injected.stats.throttled} throttles, {injected.stats.resets} resets"
    )

    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for n, group, attributes in target.arrived:
        assert group == f"g{n % GROUPS}"
        assert attributes == {
            "n": {"DataType": "Number", "StringValue": str(n)},
            "kind": {"DataType": "String", "StringValue": "even" if n % 2 == 0 else "odd"},
            "blob": {"DataType": "Binary", "BinaryValue": n.to_bytes(2, "big")},
        }
        if n not in seen:
            seen.add(n)
            first_seen[group].append(n)
    for group, ns in first_seen.items():
        assert ns == sorted(ns), f"group {group} out of order"

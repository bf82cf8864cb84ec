"""At concurrency > 1 a worker takes the next full chunk itself when its request settles, and the
caller goes on buffering up to one full request per worker: what it saves is a thread wake-up per
request. Nothing may be lost or sent twice on the way, and the buffer stays bounded."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest

from resilient_aws.batch import SqsSender
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
WAIT_S = 30  # only ever reached if the engine deadlocks


class Gated:
    """SendMessageBatch that holds every request until ``gate`` opens, counting who waits."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.waiting = 0
        self.all_busy = threading.Event()
        self.bodies: Counter[str] = Counter()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            self.waiting += 1
            if self.waiting == 4:
                self.all_busy.set()
        assert self.gate.wait(WAIT_S)
        with self.lock:
            self.bodies.update(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


def test_the_caller_buffers_while_every_worker_is_busy_then_waits_at_the_backlog() -> None:
    client = Gated()
    sender = SqsSender(QUEUE, client=client, concurrency=4)
    added = 0
    backlog_reached = threading.Event()

    def produce() -> None:
        nonlocal added
        for i in range(200):
            sender.send_message(f"m{i}")
            added += 1
            if added == 79:  # 4 requests in flight, 39 buffered: the caller has not waited
                backlog_reached.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert client.all_busy.wait(WAIT_S)
    assert backlog_reached.wait(WAIT_S)
    # At one full request buffered per worker the caller waits: the buffer is bounded.
    assert added == 79
    assert 39 <= len(sender._engine._pending) <= 40  # the 80th is buffered as the caller waits
    client.gate.set()
    producer.join(WAIT_S)
    sender.close()
    assert client.bodies == Counter(f"m{i}" for i in range(200))  # each exactly once
    result = sender.result
    assert (result.submitted, result.succeeded, result.failed) == (200, 200, [])
    assert result.requests == 20  # full requests: workers took full chunks only


class Flaky:
    """SendMessageBatch that withholds entries at random and sometimes takes a while."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.delivered: Counter[str] = Counter()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            withheld = {e["Id"] for e in Entries if self.rng.random() < 0.3}
            pause = self.rng.random() < 0.2
        if pause:
            threading.Event().wait(0.001)  # let another worker or the caller run meanwhile
        ok = [e for e in Entries if e["Id"] not in withheld]
        with self.lock:
            self.delivered.update(e["MessageBody"] for e in ok)
        return {
            "Successful": [{"Id": e["Id"], "MessageId": "m"} for e in ok],
            "Failed": [
                {"Id": i, "Code": "InternalError", "SenderFault": False} for i in sorted(withheld)
            ],
        }


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("concurrency", [2, 8])
def test_every_message_is_delivered_once_with_workers_taking_chunks(
    seed: int, concurrency: int
) -> None:
    client = Flaky(seed)
    policy = FakeClock().policy()
    with SqsSender(QUEUE, client=client, concurrency=concurrency, policy=policy) as sender:
        for i in range(3_000):
            sender.send_message(f"m{i}")
            if i % 700 == 0:
                sender.flush()  # flushes interleaved with workers that take chunks themselves
    assert client.delivered == Counter(f"m{i}" for i in range(3_000))
    result = sender.result
    assert (result.submitted, result.succeeded, result.failed) == (3_000, 3_000, [])

"""A request leaves the moment the buffer holds a full one, by count or by bytes, never one
entry later and never before (the boundaries of ``BatchEngine._send_full_chunks``), and a
paced one no later than the deadline (``BatchEngine._paced``)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from resilient_aws.batch import SqsSender
from resilient_aws.limits import SQS_BATCH
from resilient_aws.retry import Pacer, RetryPolicy
from resilient_aws.testing import FakeClock


class Recording:
    """An SQS client that accepts every message and records each request's bodies."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.requests.append([e["MessageBody"] for e in Entries])
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_full_request_by_count_leaves_with_its_last_message(concurrency: int) -> None:
    client = Recording()
    sender = SqsSender("q", client=client, concurrency=concurrency)
    for i in range(SQS_BATCH.max_entries - 1):
        sender.send_message(f"m{i}")
    assert client.requests == []  # one short of a request: buffered
    sender.send_message("last")
    assert [len(r) for r in client.requests] == [SQS_BATCH.max_entries]
    sender.close()
    assert sender.result.succeeded == SQS_BATCH.max_entries


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_full_request_by_bytes_leaves_with_its_last_message(concurrency: int) -> None:
    client = Recording()
    limits = dataclasses.replace(SQS_BATCH, max_request_bytes=100)
    sender = SqsSender("q", client=client, concurrency=concurrency, limits=limits)
    sender.send_message("a" * 50)
    sender.send_message("b" * 49)
    assert client.requests == []  # 99 bytes: one short
    sender.send_message("c")
    assert client.requests == [["a" * 50, "b" * 49, "c"]]  # exactly 100 bytes: full
    sender.close()
    assert sender.result.succeeded == 3


class SlowPacer(Pacer):
    """A pacer that holds every request back half a second."""

    def reserve(self, entries: int, policy: RetryPolicy) -> float:
        super().reserve(entries, policy)
        return 0.5


def test_a_paced_request_waits_no_longer_than_the_deadline_leaves() -> None:
    clock = FakeClock()
    policy = clock.policy().with_deadline(clock.deadline(0.2))
    client = Recording()
    sender = SqsSender("q", client=client, policy=policy, pacer=SlowPacer())
    sender.send_message("m")
    sender.close()
    # the pacer asked for 0.5 s; the invocation had 0.2 s left: the request goes out by then
    assert clock.slept == [pytest.approx(0.2)]
    assert client.requests == [["m"]]


class OneAtATime(Recording):
    """Requests that wait on the network (so the engine hands them to its workers), counting
    how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.01)  # waits, as a request over the network does: not CPU
        with self.lock:
            self.in_flight -= 1
        return super().send_message_batch(QueueUrl, Entries)


def test_full_requests_of_one_fifo_group_wait_for_each_other_at_any_concurrency() -> None:
    client = OneAtATime()
    sender = SqsSender("q.fifo", client=client, concurrency=4)
    bodies = [f"m{i}" for i in range(60)]
    for body in bodies:
        sender.send_message(body, group_id="one", deduplication_id=body)
    sender.close()
    assert client.most_in_flight == 1  # a group's next request waits for its last
    assert [b for request in client.requests for b in request] == bodies  # in order
    assert sender.result.succeeded == 60

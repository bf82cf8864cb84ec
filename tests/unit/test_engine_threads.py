"""Threads overlap only waiting. At concurrency > 1 the engine measures the share of each
request's time spent computing in the thread that made it: requests that wait on nothing
(botocore's Stubber, moto in the same process) are sent by the caller itself, since under the
GIL more threads would only contend; requests that wait on the network go to the workers.
Either way every entry is sent once and accounted for."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from resilient_aws._batching import BatchEngine
from resilient_aws.batch import SqsSender

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


class Answering:
    """SendMessageBatch that computes (``work_s`` of busy CPU) or waits (``wait_s``) per request,
    counting who sends and how many requests overlap."""

    def __init__(self, *, work_s: float = 0.0, wait_s: float = 0.0) -> None:
        self.work_s, self.wait_s = work_s, wait_s
        self.lock = threading.Lock()
        self.threads: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.bodies: Counter[str] = Counter()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.work_s:
            end = time.thread_time() + self.work_s
            while time.thread_time() < end:
                pass
        if self.wait_s:
            time.sleep(self.wait_s)
        with self.lock:
            self.in_flight -= 1
            self.bodies.update(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


def send(client: Answering, messages: int, concurrency: int = 4) -> SqsSender:
    with SqsSender(QUEUE, client=client, concurrency=concurrency) as sender:
        for i in range(messages):
            sender.send_message(f"m{i}")
    assert client.bodies == Counter(f"m{i}" for i in range(messages))  # each exactly once
    assert (sender.result.submitted, sender.result.succeeded) == (messages, messages)
    return sender


def test_requests_that_wait_on_nothing_are_sent_by_the_caller_without_a_pool() -> None:
    client = Answering(work_s=0.002)
    sender = send(client, 200)
    assert client.threads == {threading.current_thread().name}
    assert client.most_in_flight == 1
    assert sender._engine._pool is None  # no thread was ever started
    share = sender._engine._cpu_share
    assert share is not None and share > 0.5


def test_requests_that_wait_on_the_network_go_to_the_workers_after_the_first() -> None:
    client = Answering(wait_s=0.02)
    sender = send(client, 200)
    assert client.most_in_flight > 1  # overlapped
    assert any(name.startswith("resilient-aws-batch") for name in client.threads)
    share = sender._engine._cpu_share
    assert share is not None and share < 0.5


def test_concurrency_one_never_measures() -> None:
    client = Answering(wait_s=0.001)
    sender = send(client, 50, concurrency=1)
    assert sender._engine._cpu_share is None
    assert client.threads == {threading.current_thread().name}


def test_requests_that_start_waiting_move_to_the_workers() -> None:
    client = Answering(work_s=0.002)
    with SqsSender(QUEUE, client=client, concurrency=4) as sender:
        for i in range(100):
            sender.send_message(f"a{i}")
        sender.flush()
        assert sender._engine._pool is None
        client.work_s, client.wait_s = 0.0, 0.02  # the network got slow
        for i in range(300):
            sender.send_message(f"b{i}")
    assert client.most_in_flight > 1
    expected = Counter(f"a{i}" for i in range(100)) + Counter(f"b{i}" for i in range(300))
    assert client.bodies == expected
    assert sender.result.succeeded == 400


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([(1.0, 0.9)], 0.9),  # the first sample is taken as it is
        ([(1.0, 0.9), (1.0, 0.1)], 0.9 + (0.1 - 0.9) / 4),  # then a quarter of each new one
        ([(1.0, 2.0)], 1.0),  # a clock's rounding never makes a share over one
        ([(0.0, 0.5)], None),  # nothing measured in no time
    ],
)
def test_the_share_is_a_moving_average_of_cpu_over_wall_time(
    samples: list[tuple[float, float]], expected: float | None
) -> None:
    engine: BatchEngine[Any] = SqsSender(QUEUE, client=Answering())._engine
    for wall, cpu in samples:
        engine._measure(wall, cpu)
    assert engine._cpu_share == (pytest.approx(expected) if expected is not None else None)
    engine.close()

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


class Clocks:
    """The engine's clocks, per thread and exact: a request that computes ``work_s`` moves its
    thread's CPU and wall clocks by that much; one that waits ``wait_s`` moves the wall clock
    only. What the engine measures then does not depend on how busy the machine is."""

    def __init__(self) -> None:
        self.local = threading.local()

    def _of(self) -> Any:
        if not hasattr(self.local, "wall"):
            self.local.wall = self.local.cpu = 0.0
        return self.local

    def perf_counter(self) -> float:
        return float(self._of().wall)

    def thread_time(self) -> float:
        return float(self._of().cpu)

    def monotonic(self) -> float:
        return time.monotonic()

    def spend(self, work_s: float, wait_s: float) -> None:
        clock = self._of()
        clock.cpu += work_s
        clock.wall += work_s + wait_s


@pytest.fixture(autouse=True)
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    fake = Clocks()
    monkeypatch.setattr("resilient_aws._batching.time", fake)
    return fake


class Answering:
    """SendMessageBatch that computes (``work_s``) or waits (``wait_s``, for real too, so that
    requests on threads overlap) per request, counting who sends and how many overlap."""

    def __init__(self, clocks: Clocks, *, work_s: float = 0.0, wait_s: float = 0.0) -> None:
        self.clocks = clocks
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
        self.clocks.spend(self.work_s, self.wait_s)
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


def test_requests_that_wait_on_nothing_are_sent_by_the_caller_without_a_pool(
    clocks: Clocks,
) -> None:
    client = Answering(clocks, work_s=0.002)
    sender = send(client, 200)
    assert client.threads == {threading.current_thread().name}
    assert client.most_in_flight == 1
    assert sender._engine._pool is None  # no thread was ever started
    share = sender._engine._cpu_share
    assert share is not None and share > 0.5


def test_requests_that_wait_on_the_network_go_to_the_workers_after_the_first_two(
    clocks: Clocks,
) -> None:
    client = Answering(clocks, wait_s=0.02)
    sender = send(client, 200)
    assert client.most_in_flight > 1  # overlapped
    assert any(name.startswith("resilient-aws-batch") for name in client.threads)
    share = sender._engine._cpu_share
    assert share is not None and share < 0.5


def test_concurrency_one_never_measures(clocks: Clocks) -> None:
    client = Answering(clocks, wait_s=0.001)
    sender = send(client, 50, concurrency=1)
    assert sender._engine._cpu_share is None
    assert client.threads == {threading.current_thread().name}


def test_requests_that_start_waiting_move_to_the_workers(clocks: Clocks) -> None:
    client = Answering(clocks, work_s=0.002)
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
    clocks: Clocks, samples: list[tuple[float, float]], expected: float | None
) -> None:
    engine: BatchEngine[Any] = SqsSender(QUEUE, client=Answering(clocks))._engine
    engine._measure(1.0, 0.0)  # the first request pays the client's setup: not a sample
    assert engine._cpu_share is None
    for wall, cpu in samples:
        engine._measure(wall, cpu)
    assert engine._cpu_share == (pytest.approx(expected) if expected is not None else None)
    engine.close()


def test_a_first_request_slowed_by_the_clients_setup_starts_no_thread(clocks: Clocks) -> None:
    client = Answering(clocks, work_s=0.002)
    first = client.send_message_batch

    def slow_first(**request: Any) -> Any:
        client.send_message_batch = first  # type: ignore[method-assign]
        clocks.spend(0.002, 0.05)  # credentials, endpoint, the service model read from disk
        return first(**request)

    client.send_message_batch = slow_first  # type: ignore[method-assign]
    sender = send(client, 200)
    assert sender._engine._pool is None
    assert client.threads == {threading.current_thread().name}


@pytest.mark.parametrize(("share", "threads"), [(None, False), (0.49, True), (0.5, False)])
def test_threads_overlap_requests_that_wait_more_than_they_compute(
    clocks: Clocks, share: float | None, threads: bool
) -> None:
    engine: BatchEngine[Any] = SqsSender(QUEUE, client=Answering(clocks))._engine
    engine._cpu_share = share
    assert engine._overlaps() is threads
    engine.close()

"""At concurrency > 1 a worker takes the next full chunk itself when its request settles, and the
caller goes on buffering up to one full request per worker: what it saves is a thread wake-up per
request. Nothing may be lost or sent twice on the way, and the buffer stays bounded."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest

from resilient_aws._batching import BatchEngine
from resilient_aws.batch import SqsSender
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
WAIT_S = 30  # only ever reached if the engine deadlocks


@pytest.fixture(autouse=True)
def threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers from the first request: these fakes answer without waiting, which the engine
    would otherwise measure and send from the caller (test_engine_threads.py)."""
    monkeypatch.setattr(BatchEngine, "_cpu_share", 0.0)


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


# -- review: holes found by an adversarial pass, each reproduced first ----------------------------


class Slow:
    """SendMessageBatch that takes ``pause`` seconds per request, counting request sizes."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.lock = threading.Lock()
        self.sizes: Counter[int] = Counter()
        self.delivered: Counter[str] = Counter()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        threading.Event().wait(self.pause)
        with self.lock:
            self.sizes[len(Entries)] += 1
            self.delivered.update(e["MessageBody"][:8] for e in Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


@pytest.mark.parametrize("concurrency", [2, 4])
def test_requests_full_by_bytes_stay_full_when_the_caller_waits_for_the_workers(
    concurrency: int,
) -> None:
    # 200 KiB messages: five fill an SQS request (1 MiB) and a sixth makes the buffer a request's
    # worth of bytes, where the caller waits. It waited for a worker to end (only once the buffer
    # was no longer full) and then sent what was left: one message per request, every time.
    client = Slow(0.001)
    body = "x" * (200 * 1024)
    with SqsSender(QUEUE, client=client, concurrency=concurrency) as sender:
        for i in range(300):
            sender.send_message(f"{i:08d}{body}")
    assert client.delivered == Counter(f"{i:08d}" for i in range(300))
    assert client.sizes == Counter({5: 60})  # full requests only, as at concurrency 1
    assert sender.result.requests == 60


class TwoBugs:
    """SendMessageBatch whose first two requests, both in flight at once, raise a bug each."""

    def __init__(self) -> None:
        self.both_in = threading.Barrier(2, timeout=WAIT_S)
        self.lock = threading.Lock()
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            self.calls += 1
            call = self.calls
        if call <= 2:
            self.both_in.wait()
            raise RuntimeError(f"bug {call}")
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


def test_a_second_workers_error_that_close_cannot_raise_is_logged_not_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TwoBugs()
    sender = SqsSender(QUEUE, client=client, concurrency=2)
    for i in range(20):
        sender.send_message(f"m{i}")
    with pytest.raises(RuntimeError, match="bug") as raised:
        sender.close()
    other = "bug 2" if str(raised.value) == "bug 1" else "bug 1"
    logged = [r for r in caplog.records if r.exc_info and str(r.exc_info[1]) == other]
    assert len(logged) == 1, caplog.text  # the one close could not raise, once
    assert not sender._engine._futures
    result = sender.result
    assert {f.code for f in result.failed} == {"OutcomeUnknown"} and len(result.failed) == 20


class Interrupted(BaseException):
    """What a worker may raise that is no Exception (a KeyboardInterrupt, a gevent Timeout)."""


class FirstInterrupts:
    """SendMessageBatch whose first request raises ``Interrupted``; ``sent`` counts requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.sent = threading.Semaphore(0)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            self.calls += 1
            call = self.calls
        try:
            if call == 1:
                raise Interrupted("in a worker")
            return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}
        finally:
            self.sent.release()


def test_a_workers_base_exception_collected_by_the_interval_flusher_reaches_the_caller() -> None:
    # The flusher collects a finished worker's future when it waits for a slot: a BaseException
    # there killed the flusher thread (later messages then waited for close) and never reached
    # the caller.
    client = FirstInterrupts()
    sender = SqsSender(QUEUE, client=client, concurrency=2, flush_interval=0.01)
    for i in range(3):  # one request each, sent by the flusher; the third waits for a slot
        sender.send_message(f"m{i}")
        assert client.sent.acquire(timeout=WAIT_S)
    sender.send_message("m3")
    assert client.sent.acquire(timeout=WAIT_S)  # still sent on time: the flusher lives on
    with pytest.raises(Interrupted, match="in a worker"):
        sender.close()
    result = sender.result
    assert result.succeeded == 3
    assert [(f.entry_id, f.code) for f in result.failed] == [("#0", "OutcomeUnknown")]


def test_an_interrupt_while_the_pool_shuts_down_still_accounts_for_what_is_buffered() -> None:
    from resilient_aws._batching import Entry

    client = Gated()
    client.gate.set()
    sender = SqsSender(QUEUE, client=client, concurrency=4, raise_on_failure=False)
    for i in range(15):
        sender.send_message(f"m{i}")
    engine = sender._engine
    assert engine._pool is not None
    shutdown = engine._pool.shutdown

    def interrupted(wait: bool = True, **kwargs: Any) -> None:
        shutdown(wait=wait, **kwargs)
        with engine._lock:  # an entry still buffered when the interrupt lands
            late = Entry({"id": "late", "body": "late"}, "late", {"MessageBody": "late"}, 4)
            late.slot = "late"
            engine._pending["late"] = late
            engine.result.submitted += 1
        raise KeyboardInterrupt

    engine._pool.shutdown = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        sender.close()
    result = sender.result
    assert result.submitted == result.succeeded + len(result.failed) == 16
    assert [(f.entry_id, f.code) for f in result.failed] == [("late", "NotSent")]

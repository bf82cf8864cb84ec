"""Review of the engine's asyncio driver: each test reproduces a hole found in review (fake
async clients, no network): entries lost or counted twice at the edges of a task's life."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from resilient_aws.batch import AsyncSqsSender
from resilient_aws.dynamodb import AsyncBatchWriter
from resilient_aws.testing import FakeClock


class Sqs:
    """An async SQS client whose SendMessageBatch takes ``delay`` seconds and succeeds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: Counter[str] = Counter()

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.sent.update(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


def accounted(result: Any) -> int:
    return result.succeeded + len(result.failed) + result.deduplicated


def test_requests_left_at_loop_shutdown_are_reported_outcome_unknown() -> None:
    # asyncio.run() cancels the tasks left when its coroutine returns (a sender never closed):
    # the request task has started by then and accounts for its entries.
    client = Sqs()
    sender = AsyncSqsSender("http://q", client=client, raise_on_failure=False)

    async def main() -> None:
        for i in range(10):  # the tenth fills a request: a task is created
            await sender.send_message(f"m{i}", id=f"m{i}")

    asyncio.run(main())
    result = sender.result
    assert sum(client.sent.values()) == 0
    assert result.submitted == 10 == accounted(result)
    assert Counter(f.code for f in result.failed) == {"OutcomeUnknown": 10}
    assert sender._engine._requests_in_flight == 0


async def test_a_close_cancelled_while_a_producer_starts_a_request_loses_nothing() -> None:
    # A producer and a closer in one TaskGroup-like pair: the producer fills a request (its
    # task scheduled, not started) in the same loop iteration as the closer, already
    # cancelled, cancels the requests in flight.
    client = Sqs(delay=10)
    sender = AsyncSqsSender("http://q", client=client, concurrency=2, raise_on_failure=False)
    for i in range(5):
        await sender.send_message(f"a{i}", id=f"a{i}")
    loop = asyncio.get_running_loop()
    closer = loop.create_task(sender.close())
    await asyncio.sleep(0)  # the closer starts a request of the 5 and waits for it...
    await asyncio.sleep(0)  # ...which starts
    assert client.in_flight == 1

    async def producer() -> None:
        for i in range(10):
            await sender.send_message(f"b{i}", id=f"b{i}")

    producing = loop.create_task(producer())
    closer.cancel()  # its wake-up runs right after the producer's first step
    with pytest.raises(asyncio.CancelledError):
        await closer
    await producing
    result = sender.result
    assert result.submitted == 15 == accounted(result)
    assert Counter(f.code for f in result.failed) == {"OutcomeUnknown": 5, "NotSent": 10}
    assert sender._engine._requests_in_flight == 0


class Buggy(Sqs):
    """A client whose first request raises a bug (not a botocore error)."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.calls = 0

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.01)
            raise KeyError("a bug")
        return await super().send_message_batch(QueueUrl, Entries)


async def test_a_request_bug_surfaces_once_to_two_producers_waiting_for_it() -> None:
    client = Buggy()
    sender = AsyncSqsSender("http://q", client=client, concurrency=1, raise_on_failure=False)
    for i in range(10):
        await sender.send_message(f"a{i}", id=f"a{i}")  # the request task (the bug) starts

    async def produce(name: str) -> None:
        for i in range(10):  # the buffer fills: both wait for the one slot
            await sender.send_message(f"{name}{i}", id=f"{name}{i}")

    outcomes = await asyncio.gather(produce("b"), produce("c"), return_exceptions=True)
    raised = [o for o in outcomes if isinstance(o, BaseException)]
    assert [type(o) for o in raised] == [KeyError]  # once, not once per waiter
    result = await sender.close()
    assert result.submitted == accounted(result)
    assert Counter(f.code for f in result.failed) == {"OutcomeUnknown": 10}


async def test_concurrency_requests_are_in_flight_with_a_slow_server_and_memory_is_bounded() -> (
    None
):
    client = Sqs(delay=0.05)
    sender = AsyncSqsSender("http://q", client=client, concurrency=4, policy=FakeClock().policy())
    most_buffered = 0
    async with sender:
        for i in range(200):
            await sender.send_message(f"m{i}", id=f"m{i}")
            most_buffered = max(most_buffered, len(sender._engine._pending))
    assert client.most_in_flight == 4
    assert most_buffered <= 10  # one request's worth waits while 4 are in flight
    assert sender.result.succeeded == 200 and client.sent == Counter(f"m{i}" for i in range(200))


def test_an_unclosed_async_writer_says_so_when_collected() -> None:
    async def forget() -> None:
        writer = AsyncBatchWriter("t", client=object(), keys="pk")
        await writer.put({"pk": "a"})

    with pytest.warns(ResourceWarning, match="1 entries never sent"):
        asyncio.run(forget())  # the writer is freed as its coroutine ends


async def test_a_put_timed_out_waiting_for_a_slot_is_still_sent_once() -> None:
    client = Sqs(delay=0.2)
    sender = AsyncSqsSender("http://q", client=client, concurrency=1, policy=FakeClock().policy())
    async with sender:
        for i in range(10):
            await sender.send_message(f"a{i}", id=f"a{i}")  # a request in flight
        for i in range(9):
            await sender.send_message(f"b{i}", id=f"b{i}")
        with pytest.raises(asyncio.TimeoutError):  # buffered, then waits for the slot
            await asyncio.wait_for(sender.send_message("b9", id="b9"), 0.01)
    assert client.sent == Counter([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
    assert (sender.result.submitted, sender.result.succeeded) == (20, 20)

"""Cancellation of every async sender (the issue asks for a test per writer): a cancelled
producer and a close cancelled with requests in flight lose nothing and invent nothing, for
each of them, on a fake client whose requests take their time."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from resilient_aws.batch import (
    AsyncEventBridgePutter,
    AsyncFirehosePutter,
    AsyncKinesisPutter,
    AsyncSnsPublisher,
    AsyncSqsDeleter,
    AsyncSqsSender,
    AsyncSqsVisibilityChanger,
)

PER_REQUEST = 10


class Slow:
    """Answers every request of every sender after ``delay`` seconds, all entries accepted."""

    def __init__(self, delay: float, *, started: int) -> None:
        self.delay = delay
        self.started = 0
        self.enough = asyncio.Event()  # set once ``started`` requests have begun
        self.wanted = started
        self.finished: Counter[str] = Counter()

    async def _request(self, names: list[str]) -> None:
        self.started += 1
        if self.started >= self.wanted:
            self.enough.set()
        await asyncio.sleep(self.delay)
        self.finished.update(names)

    async def send_message_batch(self, Entries: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        await self._request([e["MessageBody"] for e in Entries])
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}

    async def delete_message_batch(self, Entries: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        await self._request([e["ReceiptHandle"] for e in Entries])
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    async def change_message_visibility_batch(
        self,
        Entries: list[dict[str, Any]],  # noqa: N803
        **_: Any,
    ) -> Any:
        await self._request([e["ReceiptHandle"] for e in Entries])
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    async def publish_batch(self, **request: Any) -> Any:
        entries = request["PublishBatchRequestEntries"]
        await self._request([e["Message"] for e in entries])
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in entries]}

    async def put_events(self, Entries: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        await self._request([json.loads(e["Detail"])["name"] for e in Entries])
        return {"Entries": [{"EventId": "e"} for _ in Entries], "FailedEntryCount": 0}

    async def put_records(self, Records: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        await self._request([bytes(r["Data"]).decode() for r in Records])
        return {
            "Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records],
            "FailedRecordCount": 0,
        }

    async def put_record_batch(self, Records: list[dict[str, Any]], **_: Any) -> Any:  # noqa: N803
        await self._request([bytes(r["Data"]).decode() for r in Records])
        return {"RequestResponses": [{"RecordId": "r"} for _ in Records], "FailedPutCount": 0}


Add = Callable[[Any, str], Awaitable[None]]


async def _sqs(sender: Any, name: str) -> None:
    await sender.send_message(name, id=name)


async def _delete(sender: Any, name: str) -> None:
    await sender.delete(name, id=name)


async def _change(sender: Any, name: str) -> None:
    await sender.change(name, 30, id=name)


async def _sns(sender: Any, name: str) -> None:
    await sender.publish(name, id=name)


async def _event(sender: Any, name: str) -> None:
    await sender.put({"name": name}, source="shop", detail_type="Placed", id=name)


async def _record(sender: Any, name: str) -> None:
    await sender.put(name, "key", id=name)


async def _line(sender: Any, name: str) -> None:
    await sender.put(name, id=name)


SENDERS: dict[str, tuple[Callable[..., Any], Add]] = {
    "sqs": (lambda **o: AsyncSqsSender("http://q", **o), _sqs),
    "sqs-delete": (lambda **o: AsyncSqsDeleter("http://q", **o), _delete),
    "sqs-visibility": (lambda **o: AsyncSqsVisibilityChanger("http://q", **o), _change),
    "sns": (lambda **o: AsyncSnsPublisher("arn:aws:sns:us-east-1:1:t", **o), _sns),
    "eventbridge": (lambda **o: AsyncEventBridgePutter(**o), _event),
    "kinesis": (lambda **o: AsyncKinesisPutter("stream", **o), _record),
    "firehose": (lambda **o: AsyncFirehosePutter("stream", **o), _line),
}


def make(kind: str, client: Slow) -> tuple[Any, Add]:
    build, add = SENDERS[kind]
    sender = build(client=client, concurrency=2, raise_on_failure=False)
    # requests of 10 for all, so that each test has the same requests in flight
    sender._engine.limits = dataclasses.replace(sender._engine.limits, max_entries=PER_REQUEST)
    return sender, add


@pytest.mark.parametrize("kind", sorted(SENDERS))
async def test_a_cancelled_producer_loses_nothing(kind: str) -> None:
    client = Slow(0.05, started=3)
    sender, add = make(kind, client)

    async def produce() -> None:
        async with sender:
            for i in range(100):
                await add(sender, f"m{i}")

    task = asyncio.get_running_loop().create_task(produce())
    await client.enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = sender.result
    assert 0 < result.submitted < 100  # cancelled midway
    assert result.submitted == result.succeeded + len(result.failed)
    assert result.succeeded == sum(client.finished.values())
    assert all(count == 1 for count in client.finished.values())
    assert {f.code for f in result.failed} <= {"NotSent", "OutcomeUnknown"}


@pytest.mark.parametrize("kind", sorted(SENDERS))
async def test_a_close_cancelled_in_flight_reports_outcome_unknown(kind: str) -> None:
    client = Slow(10, started=2)
    sender, add = make(kind, client)
    for i in range(25):
        await add(sender, f"m{i}")
    closing = asyncio.get_running_loop().create_task(sender.close())
    await client.enough.wait()
    closing.cancel()  # the close waits for the requests in flight...
    await asyncio.sleep(0.01)
    closing.cancel()  # ...cancelled again: the requests are cancelled, nothing is lost
    with pytest.raises(asyncio.CancelledError):
        await closing
    result = sender.result
    assert result.succeeded == 0 and client.finished == Counter()
    codes = Counter(f.code for f in result.failed)
    assert codes == {"OutcomeUnknown": 20, "NotSent": 5}  # two requests in flight, 5 buffered
    assert sorted(f.entry_id for f in result.failed) == sorted(f"m{i}" for i in range(25))

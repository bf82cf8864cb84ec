"""The async senders (aiobotocore) against a moto server, with chaos: every message sent once
or reported, as the sync senders' counting tests demand; cancellation loses nothing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session

from resilient_aws.batch import AsyncSnsPublisher, AsyncSqsDeleter, AsyncSqsSender
from resilient_aws.errors import BatchWriteError, ConfigurationError
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS


@pytest.fixture
async def aio_sqs(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "sqs",
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


def fast_policy() -> RetryPolicy:
    return FakeClock().policy()  # its async_sleep advances the clock, the loop runs on


def received(sync_sqs: Any, url: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    while True:
        messages = sync_sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return seen
        seen.update(m["Body"] for m in messages)
        sync_sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def new_queue(moto_server: MotoServer, name: str) -> tuple[Any, str]:
    sqs = moto_server.client("sqs")
    return sqs, sqs.create_queue(QueueName=name)["QueueUrl"]


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_every_message_arrives_once_under_chaos(
    moto_server: MotoServer, aio_sqs: Any, concurrency: int
) -> None:
    sqs, url = new_queue(moto_server, f"async-chaos-{concurrency}")
    bodies = [json.dumps({"n": i}) for i in range(300)]
    with Chaos(aio_sqs, partial=0.3, throttle=0.1, error5xx=0.05, seed=concurrency) as injected:
        async with AsyncSqsSender(
            url, client=aio_sqs, concurrency=concurrency, policy=fast_policy()
        ) as sender:
            for body in bodies:
                await sender.send_message(body)
    assert injected.stats.withheld_entries > 0  # the faults happened
    result = sender.result
    assert (result.submitted, result.succeeded, result.failed) == (300, 300, [])
    assert received(sqs, url) == Counter(bodies)  # each exactly once


async def test_the_sender_opens_and_closes_its_own_client(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs, url = new_queue(moto_server, "async-own-client")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name.upper() if name != "region_name" else "AWS_DEFAULT_REGION", value)
    async with AsyncSqsSender(url) as sender:
        await sender.send_many(f"m{i}" for i in range(25))
        assert sender.client is not None
    assert sender.client is not None and sender._client_context is None  # closed
    assert received(sqs, url) == Counter(f"m{i}" for i in range(25))


async def test_bad_input_is_refused_before_anything_is_sent(aio_sqs: Any) -> None:
    async with AsyncSqsSender(
        "http://unused/q", client=aio_sqs, on_invalid="report", raise_on_failure=False
    ) as sender:
        await sender.send_message("", id="empty")
    assert [(f.entry_id, f.code) for f in sender.result.failed] == [
        ("empty", "EntryValidationError")
    ]
    assert sender.result.requests == 0


async def test_permanent_failures_are_reported_and_raised(
    moto_server: MotoServer, aio_sqs: Any
) -> None:
    _, url = new_queue(moto_server, "async-deleter")
    with pytest.raises(BatchWriteError) as raised:
        async with AsyncSqsDeleter(url, client=aio_sqs, policy=fast_policy()) as deleter:
            for i in range(12):
                await deleter.delete(f"not-a-handle-{i}", id=f"d{i}")
    assert sorted(f.entry_id for f in raised.value.result.failed) == sorted(
        f"d{i}" for i in range(12)
    )


async def test_sns_publisher_publishes_every_message(moto_server: MotoServer) -> None:
    sns = moto_server.client("sns")
    topic = sns.create_topic(Name="async-topic")["TopicArn"]
    sqs, url = new_queue(moto_server, "async-topic-sub")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    async with (
        get_session().create_client(
            "sns", endpoint_url=moto_server.endpoint_url, **DUMMY_CREDENTIALS
        ) as client,
        AsyncSnsPublisher(topic, client=client) as publisher,
    ):
        for i in range(23):
            await publisher.publish(f"n{i}")
    assert publisher.result.succeeded == 23
    assert received(sqs, url) == Counter(f"n{i}" for i in range(23))


class Slow:
    """An async SQS client whose requests take ``delay`` seconds, then succeed."""

    def __init__(self, delay: float, *, started: int) -> None:
        self.delay = delay
        self.started = 0
        self.enough = asyncio.Event()  # set once ``started`` requests have begun
        self.wanted = started
        self.finished: Counter[str] = Counter()

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.started += 1
        if self.started >= self.wanted:
            self.enough.set()
        await asyncio.sleep(self.delay)
        self.finished.update(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}


async def test_a_cancelled_producer_loses_nothing() -> None:
    client = Slow(0.05, started=3)
    sender = AsyncSqsSender("http://q", client=client, concurrency=2, raise_on_failure=False)

    async def produce() -> None:
        async with sender:
            for i in range(100):
                await sender.send_message(f"m{i}", id=f"m{i}")

    task = asyncio.get_running_loop().create_task(produce())
    await client.enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = sender.result
    # Cancelled while waiting for a slot: what was buffered was still sent at the exit (the
    # exit is not cancelled), nothing was invented and each entry is accounted for once.
    accounted = result.succeeded + len(result.failed)
    assert result.submitted == accounted
    assert result.succeeded == sum(client.finished.values())
    assert all(count == 1 for count in client.finished.values())
    assert {f.code for f in result.failed} <= {"NotSent", "OutcomeUnknown"}


async def test_a_close_cancelled_in_flight_reports_outcome_unknown() -> None:
    client = Slow(10, started=2)
    sender = AsyncSqsSender("http://q", client=client, concurrency=2, raise_on_failure=False)
    for i in range(25):
        await sender.send_message(f"m{i}", id=f"m{i}")
    closing = asyncio.get_running_loop().create_task(sender.close())
    await client.enough.wait()
    closing.cancel()  # the close waits for the requests in flight...
    await asyncio.sleep(0.01)
    closing.cancel()  # ...cancelled again: the requests are cancelled, nothing is lost
    with pytest.raises(asyncio.CancelledError):
        await closing
    result = sender.result
    assert result.succeeded == 0
    codes = Counter(f.code for f in result.failed)
    assert codes == {"OutcomeUnknown": 20, "NotSent": 5}  # two requests in flight, 5 buffered
    assert sorted(f.entry_id for f in result.failed) == sorted(f"m{i}" for i in range(25))


async def test_sync_entry_points_are_refused_with_a_clear_error(aio_sqs: Any) -> None:
    sender = AsyncSqsSender("http://q", client=aio_sqs)
    with pytest.raises(ConfigurationError, match="async with"), sender:
        pass
    with pytest.raises(ConfigurationError, match="flush_interval"):
        AsyncSqsSender("http://q", client=aio_sqs, flush_interval=1.0)
    with pytest.raises(ConfigurationError, match="payloads"):
        AsyncSqsSender("http://q", client=aio_sqs, payloads=object())  # type: ignore[arg-type]
    await sender.close()


async def test_without_a_client_or_async_with_the_error_says_so() -> None:
    sender = AsyncSqsSender("http://q")
    with pytest.raises(ConfigurationError, match="async with"):
        await sender.send_message("m")
    result = await sender.close()
    assert (result.submitted, result.requests, result.failed) == (0, 0, [])


async def test_eventbridge_and_kinesis_putters_deliver_every_entry(moto_server: MotoServer) -> None:
    from resilient_aws.batch import AsyncEventBridgePutter, AsyncKinesisPutter
    from tests.batch_targets import eventbridge_to_queue, stream_records

    events, sqs = moto_server.client("events"), moto_server.client("sqs")
    url = eventbridge_to_queue(events, sqs, "async-rule")
    kinesis = moto_server.client("kinesis")
    kinesis.create_stream(StreamName="async-stream", ShardCount=1)
    options = {"endpoint_url": moto_server.endpoint_url, **DUMMY_CREDENTIALS}
    session = get_session()
    async with (
        session.create_client("events", **options) as aio_events,
        session.create_client("kinesis", **options) as aio_kinesis,
    ):
        async with AsyncEventBridgePutter(client=aio_events) as putter:
            for i in range(23):
                await putter.put({"n": i}, source="test", detail_type="T", id=f"e{i}")
        async with AsyncKinesisPutter("async-stream", client=aio_kinesis) as records:
            for i in range(31):
                await records.put(f"r{i}".encode(), f"k{i % 3}", id=f"r{i}")
    assert (putter.result.succeeded, records.result.succeeded) == (23, 31)
    details = Counter(json.loads(body)["detail"]["n"] for body in received(sqs, url).elements())
    assert details == Counter(range(23))
    assert sorted(data for _, data in stream_records(kinesis, "async-stream")) == sorted(
        f"r{i}".encode() for i in range(31)
    )

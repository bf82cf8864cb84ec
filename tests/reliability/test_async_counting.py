"""The async writers (aiobotocore, against a moto server) under chaos, counted at the far end:
nothing lost, nothing invented. Mirrors tests/reliability/test_batch_counting.py, with the
same faults (partial failures, throttles, 5xx, dropped connections, lost responses), several
seeds per API and requests in flight concurrently on one event loop.

The server runs in this process: SQS queues are emptied through moto's backend every few
hundred entries (moto scans the whole queue on every call), DynamoDB is scanned, Firehose
read from the S3 objects it wrote.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiobotocore.session import get_session
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from resilient_aws.batch import (
    AsyncFirehosePutter,
    AsyncSnsPublisher,
    AsyncSqsDeleter,
    AsyncSqsSender,
)
from resilient_aws.dynamodb import AsyncBatchWriter
from resilient_aws.limits import DYNAMODB_BATCH_WRITE, FIREHOSE_PUT_RECORD_BATCH, SQS_BATCH
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS
from tests.batch_targets import bucket_lines, firehose_to_bucket, make_queue, sns_to_queue

REGION = DUMMY_CREDENTIALS["region_name"]
N = 1_000
# Each run asserts that throttles were drawn. Requests in flight at once are cut by timing, so which
# ones a seed throttles differs from run to run: at 0.05 the ~60 requests of a run drew none once
# in ~25 runs (seen in CI); at 0.2 once in ~6e5.
FAULTS = {"partial": 0.3, "throttle": 0.2, "error5xx": 0.02, "reset": 0.02, "lost_response": 0.01}
HARVEST_EVERY = 200
# Firehose and DynamoDB: full requests (500, 25) would make too few for the faults to show
SMALL_REQUESTS = 25

_names = iter(range(1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


@asynccontextmanager
async def aio_client(moto_server: MotoServer, service: str) -> AsyncIterator[Any]:
    async with get_session().create_client(
        service,
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


def policy(seed: int) -> RetryPolicy:
    return FakeClock(seed=seed).policy(max_attempts=30)


def harvest(url: str) -> list[str]:
    """Take every message out of moto's queue (what a consumer would receive)."""
    queue = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[url.rsplit("/", 1)[1]]
    with queue._messages_lock:
        bodies = [m.body for m in queue._messages]
        queue._messages.clear()
    return bodies


async def send_and_harvest(add: Callable[[int], Any], sender: Any, url: str) -> list[str]:
    arrived: list[str] = []
    for i in range(N):
        await add(i)
        if i % HARVEST_EVERY == HARVEST_EVERY - 1:
            await sender.flush()
            arrived += harvest(url)
    await sender.flush()
    return arrived + harvest(url)


def check(arrived: list[Any], sent: list[Any], injected: Chaos, batch_size: int) -> None:
    """Every entry arrived; duplicates only from responses lost after the service applied them."""
    assert set(arrived) == set(sent), "lost or invented entries"
    duplicates = sum(n - 1 for n in Counter(arrived).values())
    assert duplicates <= injected.stats.lost_responses * batch_size
    assert injected.stats.withheld_entries > N * 0.2
    assert injected.stats.throttled > 0, injected.stats


def exactly_once(result: Any) -> None:
    assert (result.submitted, result.succeeded, result.failed) == (N, N, [])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sqs_sender(moto_server: MotoServer, seed: int) -> None:
    url, _ = make_queue(moto_server.client("sqs"), unique("async-count"))
    sent = [f"m{i}" for i in range(N)]
    async with aio_client(moto_server, "sqs") as client:
        with Chaos(client, seed=seed, **FAULTS) as injected:
            async with AsyncSqsSender(
                url, client=client, policy=policy(seed), concurrency=4
            ) as sender:
                arrived = await send_and_harvest(
                    lambda i: sender.send_message(sent[i]), sender, url
                )
    exactly_once(sender.result)
    check(arrived, sent, injected, 10)


@pytest.mark.parametrize("seed", [4, 5])
async def test_sns_publisher(moto_server: MotoServer, seed: int) -> None:
    topic, url = sns_to_queue(
        moto_server.client("sns"), moto_server.client("sqs"), unique("async-count")
    )
    sent = [f"n{i}" for i in range(N)]
    async with aio_client(moto_server, "sns") as client:
        with Chaos(client, seed=seed, **FAULTS) as injected:
            async with AsyncSnsPublisher(
                topic, client=client, policy=policy(seed), concurrency=4
            ) as publisher:
                arrived = await send_and_harvest(
                    lambda i: publisher.publish(sent[i]), publisher, url
                )
    exactly_once(publisher.result)
    check(arrived, sent, injected, 10)


@pytest.mark.parametrize("seed", [6, 7])
async def test_firehose_putter(moto_server: MotoServer, seed: int) -> None:
    s3 = moto_server.client("s3")
    name = unique("async-count")
    firehose_to_bucket(moto_server.client("firehose"), s3, name)
    sent = [f"line-{i}".encode() for i in range(N)]
    async with aio_client(moto_server, "firehose") as client:
        with Chaos(client, seed=seed, **FAULTS) as injected:
            async with AsyncFirehosePutter(
                name,
                client=client,
                policy=policy(seed),
                concurrency=4,
                limits=dataclasses.replace(FIREHOSE_PUT_RECORD_BATCH, max_entries=SMALL_REQUESTS),
            ) as putter:
                for line in sent:
                    await putter.put(line + b"\n")
    exactly_once(putter.result)
    check(bucket_lines(s3, name), sent, injected, SMALL_REQUESTS)


@pytest.mark.parametrize("seed", [8, 9])
async def test_sqs_deleter(moto_server: MotoServer, seed: int) -> None:
    # moto's ReceiveMessage scans the whole queue, deleted or in flight: fewer messages, in
    # requests of 3 so that there are as many requests for the faults to hit. One request at a
    # time: moto's DeleteMessage is not thread-safe (two at once can resurrect a message).
    count = 300
    sqs = moto_server.client("sqs")
    url, _ = make_queue(sqs, unique("async-count"), VisibilityTimeout="600")
    handles: list[str] = []
    for start in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"d{start + i}"} for i in range(10)],
        )
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        handles += [m["ReceiptHandle"] for m in batch]
    assert len(handles) == count
    async with aio_client(moto_server, "sqs") as client:
        with Chaos(client, seed=seed, **FAULTS) as injected:
            async with AsyncSqsDeleter(
                url,
                client=client,
                policy=policy(seed),
                concurrency=1,
                limits=dataclasses.replace(SQS_BATCH, max_entries=3),
            ) as deleter:
                for i, handle in enumerate(handles):
                    await deleter.delete(handle, id=f"d{i}")
    result = deleter.result
    assert (result.submitted, result.succeeded, result.failed) == (count, count, [])
    assert harvest(url) == []  # every message deleted, none left behind
    assert injected.stats.withheld_entries > count * 0.2


@pytest.mark.parametrize("seed", [10, 11, 12])
async def test_batch_writer(moto_server: MotoServer, seed: int) -> None:
    ddb = moto_server.client("dynamodb")
    table = unique("async-count")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    async with aio_client(moto_server, "dynamodb") as client:
        with Chaos(client, seed=seed, **FAULTS) as injected:
            async with AsyncBatchWriter(
                table,
                client=client,
                policy=policy(seed),
                concurrency=8,
                keys="pk",
                limits=dataclasses.replace(DYNAMODB_BATCH_WRITE, max_entries=5),
            ) as writer:
                for i in range(N):
                    await writer.put({"pk": f"k{i}", "v": i})
    exactly_once(writer.result)
    found = {
        item["pk"]["S"]: int(item["v"]["N"])
        for page in ddb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    }
    assert found == {f"k{i}": i for i in range(N)}
    assert injected.stats.withheld_entries > N * 0.2
    assert injected.stats.throttled > 0, injected.stats

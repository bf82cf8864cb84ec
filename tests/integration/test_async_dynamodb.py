"""AsyncBatchWriter and async scan/query (aiobotocore) against a moto server, with chaos:
every item written once or reported, every page read, cancellation loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session

from resilient_aws.dynamodb import AsyncBatchWriter, query, scan
from resilient_aws.errors import EntryValidationError, UnknownTableError
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

_tables = iter(range(1_000_000))


@pytest.fixture
async def aio_ddb(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


def new_table(moto_server: MotoServer) -> tuple[Any, str]:
    ddb = moto_server.client("dynamodb")
    name = f"async-{next(_tables)}"
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return ddb, name


def stored(ddb: Any, table: str) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            found[(item["pk"]["S"], int(item["sk"]["N"]))] = int(item["v"]["N"])
    return found


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_every_item_is_written_once_under_chaos(
    moto_server: MotoServer, aio_ddb: Any, concurrency: int
) -> None:
    ddb, table = new_table(moto_server)
    items = [{"pk": f"p{i % 7}", "sk": i, "v": i} for i in range(400)]
    with Chaos(aio_ddb, partial=0.3, throttle=0.1, error5xx=0.05, seed=concurrency) as injected:
        async with AsyncBatchWriter(
            table, client=aio_ddb, concurrency=concurrency, policy=FakeClock().policy()
        ) as writer:
            for item in items:
                await writer.put(item)
    assert injected.stats.withheld_entries > 0
    result = writer.result
    assert (result.submitted, result.succeeded, result.failed) == (400, 400, [])
    assert stored(ddb, table) == {(i["pk"], i["sk"]): i["v"] for i in items}


async def test_last_write_of_a_key_wins_and_deletes_apply(
    moto_server: MotoServer, aio_ddb: Any
) -> None:
    ddb, table = new_table(moto_server)

    async def items() -> AsyncIterator[dict[str, Any]]:
        for i in range(30):
            yield {"pk": "k", "sk": i % 10, "v": i}

    async with AsyncBatchWriter(table, client=aio_ddb, keys=("pk", "sk")) as writer:
        await writer.put_many(items())
        await writer.flush()
        await writer.delete({"pk": "k", "sk": 0})
    assert stored(ddb, table) == {("k", i): 20 + i for i in range(1, 10)}
    assert writer.result.deduplicated + writer.result.succeeded == 31


async def test_bad_items_are_refused_by_key_before_anything_is_sent(aio_ddb: Any) -> None:
    writer = AsyncBatchWriter("t", client=aio_ddb, keys=("pk", "sk"))
    with pytest.raises(EntryValidationError, match="pk=a"):
        await writer.put({"pk": "a", "sk": 1, "bad": {1, "x"}})
    result = await writer.close()
    assert (result.submitted, result.requests) == (0, 0)


async def test_an_unknown_table_is_a_typed_error(aio_ddb: Any) -> None:
    async with AsyncBatchWriter("no-such-table", client=aio_ddb) as writer:
        with pytest.raises(UnknownTableError):
            await writer.put({"pk": "a"})


async def test_the_writer_opens_its_own_client(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb, table = new_table(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    async with AsyncBatchWriter(table) as writer:
        for i in range(60):
            await writer.put({"pk": "own", "sk": i, "v": i})
    assert len(stored(ddb, table)) == 60
    assert writer._client_context is None


class Slow:
    """An async DynamoDB client whose BatchWriteItem takes ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started = asyncio.Event()
        self.written = 0

    async def batch_write_item(self, RequestItems: dict[str, Any]) -> Any:  # noqa: N803
        self.started.set()
        await asyncio.sleep(self.delay)
        self.written += sum(len(requests) for requests in RequestItems.values())
        return {"UnprocessedItems": {}}


async def test_a_cancelled_writer_reports_every_item() -> None:
    client = Slow(10)
    writer = AsyncBatchWriter("t", client=client, keys="pk", concurrency=2, raise_on_failure=False)

    async def produce() -> None:
        async with writer:
            for i in range(200):
                await writer.put({"pk": f"k{i}"})

    task = asyncio.get_running_loop().create_task(produce())
    await client.started.wait()
    task.cancel()  # cancelled while waiting for a slot...
    await asyncio.sleep(0.05)
    task.cancel()  # ...and again while the exit waits for the requests in flight
    with pytest.raises(asyncio.CancelledError):
        await task
    result = writer.result
    assert result.succeeded == client.written == 0
    assert result.submitted == len(result.failed)
    assert {f.code for f in result.failed} == {"OutcomeUnknown", "NotSent"}
    assert sum(f.code == "OutcomeUnknown" for f in result.failed) == 50  # two requests in flight


async def test_async_scan_and_query_read_every_page(moto_server: MotoServer, aio_ddb: Any) -> None:
    ddb, table = new_table(moto_server)
    for i in range(45):
        ddb.put_item(
            TableName=table, Item={"pk": {"S": f"p{i % 3}"}, "sk": {"N": str(i)}, "v": {"N": "1"}}
        )
    with Chaos(aio_ddb, throttle=0.3, seed=4) as injected:
        read = scan(table, client=aio_ddb, page_size=4, policy=FakeClock().policy())
        items = [item async for item in read]
    assert injected.stats.throttled > 0  # retried pages, not a restarted read
    assert sorted(int(i["sk"]) for i in items) == list(range(45))
    assert read.done and read.summary.pages >= 12

    queried = query(
        table,
        client=aio_ddb,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": "p1"},
        page_size=2,
    )
    assert sorted(int(i["sk"]) for i in [item async for item in queried]) == list(range(1, 45, 3))


async def test_async_read_resumes_from_its_cursor(moto_server: MotoServer, aio_ddb: Any) -> None:
    ddb, table = new_table(moto_server)
    for i in range(20):
        ddb.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": str(i)}})
    first = scan(table, client=aio_ddb, max_items=7, page_size=5)
    head = [item async for item in first]
    assert len(head) == 7 and first.cursor is not None
    rest = [item async for item in scan(table, client=aio_ddb, cursor=first.cursor)]
    assert sorted(int(i["sk"]) for i in head + rest) == list(range(20))


async def test_async_parallel_scan_reads_every_segment_within_its_budget(
    moto_server: MotoServer, aio_ddb: Any
) -> None:
    from resilient_aws.dynamodb import parallel_scan

    ddb, table = new_table(moto_server)
    for i in range(120):
        ddb.put_item(
            TableName=table,
            Item={"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}, "note": {"S": "x" * 200}},
        )
    with Chaos(aio_ddb, throttle=0.2, seed=7):
        read = parallel_scan(
            table,
            client=aio_ddb,
            segments=4,
            workers=2,
            page_size=10,
            max_buffer_bytes=64 * 1024,
            policy=FakeClock().policy(),
        )
        items = [item async for item in read]
    assert sorted(int(i["sk"]) for i in items) == list(range(120))  # every item, once
    assert read.done and set(read.cursors) == {0, 1, 2, 3}
    assert sum(read.summary.by_segment.values()) == 120


async def test_async_parallel_scan_stopped_early_resumes_from_its_cursors(
    moto_server: MotoServer, aio_ddb: Any
) -> None:
    from resilient_aws.dynamodb import parallel_scan

    ddb, table = new_table(moto_server)
    for i in range(60):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}})
    first = parallel_scan(table, client=aio_ddb, segments=3, page_size=5)
    seen: list[int] = []
    async for segment_page in first.apages():
        seen.extend(int(i["sk"]) for i in segment_page[1].items)
        if len(seen) >= 20:
            break
    rest = parallel_scan(table, client=aio_ddb, segments=3, page_size=5, cursors=first.cursors)
    seen.extend([int(i["sk"]) async for i in rest])
    assert set(seen) == set(range(60))  # at least once: the pages in hand may come again

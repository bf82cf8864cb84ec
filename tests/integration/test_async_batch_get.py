"""abatch_get (aiobotocore) against a moto server under chaos: every key found or reported
missing, as the sync batch_get reads them; a key that cannot be read is named; a cancelled
read leaves no request running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session

from resilient_aws.dynamodb import abatch_get, batch_get
from resilient_aws.errors import BatchGetError, ConfigurationError, EntryValidationError
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


def table_with(moto_server: MotoServer, items: int) -> str:
    ddb = moto_server.client("dynamodb")
    name = f"aget-{next(_tables)}"
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
    for i in range(items):
        ddb.put_item(
            TableName=name,
            Item={"pk": {"S": f"p{i % 7}"}, "sk": {"N": str(i)}, "v": {"N": str(i * 3)}},
        )
    return name


def keys(n: int) -> list[dict[str, Any]]:
    return [{"pk": f"p{i % 7}", "sk": i} for i in range(n)]


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_every_key_is_found_or_missing_under_chaos(
    moto_server: MotoServer, aio_ddb: Any, concurrency: int
) -> None:
    table = table_with(moto_server, 300)
    wanted = keys(400) + keys(50)  # 100 absent, 50 repeated
    seed = 0
    while True:  # every run checked; seeds tried until one draws each fault
        seed += 1
        with Chaos(
            aio_ddb, partial=0.3, throttle=0.2, error5xx=0.05, seed=seed + 100 * concurrency
        ) as injected:
            got = await abatch_get(
                table,
                wanted,
                client=aio_ddb,
                concurrency=concurrency,
                keep_order=True,
                policy=FakeClock(seed=seed).policy(),
            )
        assert (got.submitted, got.deduplicated, got.succeeded, got.failed) == (450, 50, 400, [])
        assert [(i["pk"], i["sk"], i["v"]) for i in got.items] == [
            (f"p{i % 7}", i, i * 3) for i in range(300)
        ]
        assert got.missing == [{"pk": f"p{i % 7}", "sk": i} for i in range(300, 400)]
        if injected.stats.withheld_entries and injected.stats.throttled:
            break
    # the sync read of the same keys gives the same result
    same = batch_get(table, wanted, client=moto_server.client("dynamodb"), keep_order=True)
    assert (same.items, same.missing) == (got.items, got.missing)


async def test_keys_from_an_async_iterable_with_a_projection(
    moto_server: MotoServer, aio_ddb: Any
) -> None:
    table = table_with(moto_server, 20)

    async def produce() -> AsyncIterator[dict[str, Any]]:
        for key in keys(25):
            yield key

    got = await abatch_get(table, produce(), client=aio_ddb, projection=["pk"])
    assert sorted(i["sk"] for i in got.items) == list(range(20))
    assert all(set(i) == {"pk", "sk"} for i in got.items)  # key attributes always come back
    assert len(got.missing) == 5


async def test_a_key_the_service_never_reads_is_named(
    moto_server: MotoServer, aio_ddb: Any
) -> None:
    table = table_with(moto_server, 3)
    policy = FakeClock().policy(max_attempts=3, max_stalled=0.001)
    with Chaos(aio_ddb, throttle=1.0, seed=1), pytest.raises(BatchGetError) as raised:
        await abatch_get(table, keys(3), key=("pk", "sk"), client=aio_ddb, policy=policy)
    result = raised.value.result
    assert sorted(f.entry_id for f in result.failed) == [
        f"{table}[pk=p{i},sk={i}]" for i in range(3)
    ]
    assert {f.code for f in result.failed} == {"ProvisionedThroughputExceededException"}
    assert result.items == [] and result.missing == []  # a throttled key is not "missing"
    assert result.submitted == result.succeeded + len(result.failed) + result.deduplicated


async def test_bad_input_is_refused_before_anything_is_sent(aio_ddb: Any) -> None:
    with pytest.raises(ConfigurationError):
        await abatch_get("t", keys(1), client=None)
    with pytest.raises(ConfigurationError):
        await abatch_get("t", keys(1), client=aio_ddb, concurrency=0)
    with Chaos(aio_ddb, seed=1) as injected, pytest.raises(EntryValidationError):
        await abatch_get("t", [{"pk": object()}], client=aio_ddb, key="pk")
    assert injected.stats.calls == 0


class HangingClient:
    """An async client whose BatchGetItem never answers until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = 0

    async def batch_get_item(self, **_: Any) -> dict[str, Any]:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


async def test_a_cancelled_read_leaves_no_request_running() -> None:
    client = HangingClient()
    read = asyncio.create_task(
        abatch_get("t", keys(500), client=client, key=("pk", "sk"), concurrency=3)
    )
    await client.started.wait()
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    assert client.cancelled == 3  # every request in flight was cancelled with it
    assert asyncio.all_tasks() == {asyncio.current_task()}

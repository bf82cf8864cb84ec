"""32 simultaneous duplicates of one ``async def`` call on the store's aiobotocore client, under
chaos: the body runs once. The twin of ``test_idempotency_concurrency.py`` (threads and
``to_thread``), with every request made on the event loop.

Run against a moto server and against dynalite (which serialises conditional writes the way
DynamoDB does). Every caller is accounted for: it gets the result, or (``on_in_progress=
"raise"``) an ``IdempotencyInProgressError``; nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session

from resilient_aws.idempotency import IdempotencyInProgressError, IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock
from resilient_aws.testing._moto import DUMMY_CREDENTIALS
from tests.idempotency_support import CallCounter, create_idempotency_table

CALLERS = 32
FAULTS = {"throttle": 0.10, "error5xx": 0.02, "lost_response": 0.05}
# The raise-mode runs assert that faults were drawn. Their requests hold timestamps, so which ones
# a seed faults differs from run to run: at these rates 33 requests draw none once in ~2e7 runs
# (at FAULTS' it was once in ~500, seen in CI).
RAISE_FAULTS = {"throttle": 0.25, "error5xx": 0.05, "lost_response": 0.10}
_names = itertools.count()


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture(params=["moto", pytest.param("dynalite", marks=pytest.mark.emulator)])
def server(request: pytest.FixtureRequest) -> Any:
    name = "moto_server" if request.param == "moto" else "dynalite_server"
    return request.getfixturevalue(name)


@pytest.fixture
def ddb(server: Any) -> Any:
    return server.client("dynamodb")


@pytest.fixture
async def aio_ddb(server: Any) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=server.endpoint_url,
        config=RetryPolicy().botocore_config(max_pool_connections=CALLERS),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


@pytest.fixture
def store(ddb: Any, aio_ddb: Any) -> IdempotencyStore:
    table = create_idempotency_table(ddb, f"aio-dup-{next(_names)}")
    policy = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.2)
    return IdempotencyStore(table, client=ddb, async_client=aio_ddb, policy=policy)


async def call_all(wrapped: Any, event: dict[str, Any]) -> list[Any]:
    async def one() -> Any:
        try:
            return await wrapped(event)
        except IdempotencyInProgressError as error:
            return error

    return await asyncio.gather(*(one() for _ in range(CALLERS)))


@pytest.mark.parametrize("seed", [1, 2])
async def test_tasks_raise_mode(store: IdempotencyStore, aio_ddb: Any, ddb: Any, seed: int) -> None:
    runs: list[int] = []
    answered = itertools.count(1)
    others_answered = asyncio.Event()

    async def charge(event: dict[str, Any]) -> dict[str, Any]:
        runs.append(1)
        await asyncio.wait_for(others_answered.wait(), 60)  # until every duplicate has its answer
        return {"order_id": event["order_id"], "charged": True}

    wrapped = idempotent(store, key="order_id")(charge)

    async def one() -> Any:
        try:
            return await wrapped({"order_id": "o-1"})
        except IdempotencyInProgressError as error:
            return error
        finally:
            if next(answered) == CALLERS - 1:
                others_answered.set()

    sync_calls = CallCounter(ddb)
    with Chaos(aio_ddb, seed=seed, **RAISE_FAULTS) as injected:
        outcomes = await asyncio.gather(*(one() for _ in range(CALLERS)))
    assert len(runs) == 1
    results = [o for o in outcomes if not isinstance(o, IdempotencyInProgressError)]
    in_progress = [o for o in outcomes if isinstance(o, IdempotencyInProgressError)]
    assert results == [{"order_id": "o-1", "charged": True}]
    assert len(in_progress) == CALLERS - 1
    assert injected.stats.faults > 0
    assert sync_calls.take() == {}  # every request on the event loop
    # once done, every repeat replays
    assert await wrapped({"order_id": "o-1"}) == {"order_id": "o-1", "charged": True}


async def test_tasks_wait_mode(store: IdempotencyStore, aio_ddb: Any) -> None:
    runs: list[int] = []

    async def charge(event: dict[str, Any]) -> dict[str, Any]:
        runs.append(1)
        await asyncio.sleep(0.3)
        return {"order_id": event["order_id"], "charged": True}

    wait = RetryPolicy(max_attempts=100, base_delay=0.02, max_delay=0.2, max_elapsed=30)
    wrapped = idempotent(store, key="order_id", on_in_progress="wait", wait=wait)(charge)
    with Chaos(aio_ddb, seed=3, **FAULTS):
        outcomes = await call_all(wrapped, {"order_id": "o-2"})
    assert len(runs) == 1
    assert outcomes == [{"order_id": "o-2", "charged": True}] * CALLERS


async def test_a_crashed_first_call_is_taken_over_once_after_its_lease(
    store: IdempotencyStore, aio_ddb: Any, ddb: Any
) -> None:
    lease_clock = FakeClock(start=time.time())
    store = IdempotencyStore(
        store.table,
        client=ddb,
        async_client=aio_ddb,
        policy=store.policy,
        clock=lease_clock.monotonic,
    )
    runs: list[int] = []

    @idempotent(store, key="order_id", lease_s=1.0)
    async def charge(event: dict[str, Any]) -> str:
        runs.append(1)
        if len(runs) == 1:
            raise SystemExit("the process died mid-call")  # not an Exception: nothing released
        await asyncio.sleep(0.2)
        return "charged"

    with pytest.raises(SystemExit):
        await charge({"order_id": "o-3"})
    with Chaos(aio_ddb, seed=5, **FAULTS):
        outcomes = await call_all(charge, {"order_id": "o-3"})
        assert all(isinstance(o, IdempotencyInProgressError) for o in outcomes)
        lease_clock.advance(1.1)
        outcomes = await call_all(charge, {"order_id": "o-3"})
    assert runs == [1, 1]  # the crash, then exactly one takeover
    assert "charged" in outcomes  # the takeover's, and replays of it for callers retried after
    assert all(o == "charged" or isinstance(o, IdempotencyInProgressError) for o in outcomes)

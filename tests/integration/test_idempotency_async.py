"""``@idempotent`` on ``async def`` with the store's aiobotocore client (issue 18), against a
moto server, with chaos: the same requests and records as the sync path, made on the event
loop (the boto3 client is never called), and the holes the sync tests pin, pinned again.

The race of many duplicates at once is in
``tests/reliability/test_idempotency_async_concurrency.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from resilient_aws.errors import ConfigurationError
from resilient_aws.idempotency import (
    COMPLETED,
    INPROGRESS,
    IdempotencyInProgressError,
    IdempotencyResultError,
    IdempotencyStore,
    IdempotencyTableError,
    IdempotencyValidationError,
    idempotent,
)
from resilient_aws.idempotency._store import OFFLOADED_PREFIX, SEALED_PREFIX
from resilient_aws.payloads import PayloadConfig, PayloadStore
from resilient_aws.payloads.crypto import KmsEnvelope
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, FakeLambdaContext, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS
from tests.idempotency_support import EPOCH, CallCounter, create_idempotency_table

_names = itertools.count()
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture
def ddb(moto_server: MotoServer) -> Any:
    return moto_server.client("dynamodb")


@pytest.fixture
async def aio_ddb(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


@pytest.fixture
def table(ddb: Any) -> str:
    return create_idempotency_table(ddb, f"aio-idempotency-{next(_names)}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=EPOCH)


@pytest.fixture
def sync_calls(ddb: Any) -> CallCounter:
    """Requests on the boto3 client: the async path must make none."""
    return CallCounter(ddb)


@pytest.fixture
def calls(aio_ddb: Any) -> CallCounter:
    return CallCounter(aio_ddb)


@pytest.fixture
def store(ddb: Any, aio_ddb: Any, table: str, clock: FakeClock) -> IdempotencyStore:
    return IdempotencyStore(
        table, client=ddb, async_client=aio_ddb, policy=clock.policy(), clock=clock.monotonic
    )


def records(ddb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    return items


class Charge:
    """An async side effect (``run``) that counts its runs."""

    def __init__(self, result: Any = None) -> None:
        self.runs = 0
        self.result = result

    async def run(self, event: dict[str, Any], context: Any = None) -> Any:
        self.runs += 1
        await asyncio.sleep(0)
        return self.result if self.result is not None else {"order": event["id"], "ok": True}


async def test_a_call_and_its_repeat_use_the_async_client_only(
    store: IdempotencyStore, calls: CallCounter, sync_calls: CallCounter, ddb: Any
) -> None:
    charge = Charge()
    wrapped = idempotent(store, key="id")(charge.run)
    calls.take()
    assert await wrapped({"id": "o-1"}) == {"order": "o-1", "ok": True}
    assert calls.take() == {"PutItem": 1, "UpdateItem": 1}
    assert await wrapped({"id": "o-1"}) == {"order": "o-1", "ok": True}  # replayed
    assert calls.take() == {"PutItem": 1}
    assert charge.runs == 1
    assert sync_calls.take() == {}  # no worker thread, no boto3 request
    (item,) = records(ddb, store.table)
    assert item["status"] == {"S": COMPLETED}
    assert json.loads(item["data"]["S"]) == {"order": "o-1", "ok": True}


async def test_the_async_path_writes_the_records_the_sync_path_writes(
    ddb: Any, aio_ddb: Any, table: str, clock: FakeClock
) -> None:
    """Powertools-compatible records, attribute for attribute: one store, two drivers."""
    threaded = IdempotencyStore(table, client=ddb, policy=clock.policy(), clock=clock.monotonic)
    native = IdempotencyStore(
        table, client=ddb, async_client=aio_ddb, policy=clock.policy(), clock=clock.monotonic
    )
    for name, store in (("threaded", threaded), ("native", native)):
        await idempotent(store, key="id", validate="amount", key_prefix=name)(Charge().run)(
            {"id": "o-1", "amount": 3}
        )
    by_prefix = {item["id"]["S"].split("#")[0]: item for item in records(ddb, table)}
    threaded_item, native_item = by_prefix["threaded"], by_prefix["native"]
    assert set(native_item) == set(threaded_item) == {
        "id", "expiration", "in_progress_expiration", "status", "data", "validation", "owner"
    }  # fmt: skip
    for name in ("expiration", "in_progress_expiration", "status", "data", "validation"):
        assert native_item[name] == threaded_item[name], name


async def test_a_failed_call_releases_the_key_with_the_async_client(
    store: IdempotencyStore, calls: CallCounter, ddb: Any
) -> None:
    runs: list[int] = []

    @idempotent(store, key="id")
    async def fails(event: dict[str, Any]) -> None:
        runs.append(1)
        raise ValueError("declined")

    calls.take()
    for _ in range(2):
        with pytest.raises(ValueError, match="declined"):
            await fails({"id": "o-1"})
    assert runs == [1, 1]  # released, so the retry ran again
    assert calls.take() == {"PutItem": 2, "DeleteItem": 2}
    assert records(ddb, store.table) == []


async def test_a_crash_mid_call_holds_the_key_until_its_lease_ends(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    crashed: list[int] = []

    @idempotent(store, key="id", lease_s=30)
    async def charge(event: dict[str, Any]) -> str:
        if not crashed:
            crashed.append(1)
            raise SystemExit("the process died mid-call")  # not an Exception: nothing released
        return "charged"

    with pytest.raises(SystemExit):
        await charge({"id": "o-1"})
    with pytest.raises(IdempotencyInProgressError):
        await charge({"id": "o-1"})
    clock.advance(31)
    assert await charge({"id": "o-1"}) == "charged"  # the lease ran out: taken over
    assert await charge({"id": "o-1"}) == "charged"


async def test_an_expired_result_is_taken_over_and_runs_again(
    store: IdempotencyStore, clock: FakeClock, ddb: Any
) -> None:
    charge = Charge()
    wrapped = idempotent(store, key="id", ttl_s=60)(charge.run)
    await wrapped({"id": "o-1"})
    await wrapped({"id": "o-1"})
    assert charge.runs == 1
    (before,) = records(ddb, store.table)
    clock.advance(61)  # DynamoDB's TTL has not removed the record yet: it is taken over
    await wrapped({"id": "o-1"})
    assert charge.runs == 2
    (after,) = records(ddb, store.table)
    assert after["status"] == {"S": COMPLETED}
    assert int(after["expiration"]["N"]) > int(before["expiration"]["N"])
    assert after["owner"] != before["owner"]


async def test_a_crashed_lambda_invocation_is_taken_over_after_its_remaining_time(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    context = FakeLambdaContext(timeout_s=10, clock=clock.monotonic)
    crashed: list[int] = []

    @idempotent(store, key="id")
    async def handler(event: dict[str, Any], context: Any) -> str:
        if not crashed:
            crashed.append(1)
            raise asyncio.CancelledError  # the invocation's task cancelled mid-call
        return "done"

    with pytest.raises(asyncio.CancelledError):
        await handler({"id": "o-1"}, context)
    with pytest.raises(IdempotencyInProgressError):
        await handler({"id": "o-1"}, FakeLambdaContext(timeout_s=10, clock=clock.monotonic))
    clock.advance(11)
    assert await handler({"id": "o-1"}, FakeLambdaContext(clock=clock.monotonic)) == "done"


async def test_wait_mode_returns_the_first_calls_result(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()

    async def slow(event: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await finish.wait()
        return {"order": event["id"]}

    wait = clock.policy(RetryPolicy(max_attempts=200, base_delay=0.01, max_delay=0.01))
    wrapped = idempotent(store, key="id", on_in_progress="wait", wait=wait)(slow)
    first = asyncio.ensure_future(wrapped({"id": "o-1"}))
    await started.wait()

    async def release_soon() -> None:
        await asyncio.sleep(0.05)
        finish.set()

    releasing = asyncio.ensure_future(release_soon())
    waiting = await wrapped({"id": "o-1"})  # polls until the first call completes
    assert waiting == await first == {"order": "o-1"}
    await releasing


async def test_validation_refuses_another_payload(store: IdempotencyStore) -> None:
    wrapped = idempotent(store, key="id", validate="amount")(Charge().run)
    await wrapped({"id": "o-1", "amount": 1})
    with pytest.raises(IdempotencyValidationError) as raised:
        await wrapped({"id": "o-1", "amount": 2})
    assert raised.value.key.startswith("tests.") and "o-1" not in str(raised.value)


async def test_an_unstorable_result_keeps_the_key_on_the_async_client(
    store: IdempotencyStore, calls: CallCounter, ddb: Any
) -> None:
    charge = Charge(result={"blob": b"not json"})
    wrapped = idempotent(store, key="id")(charge.run)
    calls.take()
    for _ in range(3):
        with pytest.raises(IdempotencyResultError):
            await wrapped({"id": "o-1"})
    assert charge.runs == 1  # never released: the side effect ran once
    assert calls.take() == {"PutItem": 3, "UpdateItem": 1}
    (item,) = records(ddb, store.table)
    assert item["status"] == {"S": INPROGRESS}
    assert "TypeError" in item["error"]["S"] and "not json" not in json.dumps(item)


async def test_a_missing_table_is_a_table_error(ddb: Any, aio_ddb: Any, clock: FakeClock) -> None:
    store = IdempotencyStore(
        "no-such-table", client=ddb, async_client=aio_ddb, policy=clock.policy()
    )
    charge = Charge()
    with pytest.raises(IdempotencyTableError, match="'no-such-table' does not exist"):
        await idempotent(store, key="id")(charge.run)({"id": "o-1"})
    assert charge.runs == 0


async def test_a_throttled_and_failing_table_does_not_fail_the_handler(
    store: IdempotencyStore, aio_ddb: Any, ddb: Any
) -> None:
    charge = Charge()
    wrapped = idempotent(store, key="id")(charge.run)
    with Chaos(aio_ddb, throttle=0.2, error5xx=0.05, lost_response=0.2, seed=7) as injected:
        results = [await wrapped({"id": f"o-{i % 20}"}) for i in range(60)]
    assert results == [{"order": f"o-{i % 20}", "ok": True} for i in range(60)]
    assert charge.runs == 20  # lost responses to the take are recognised as our own
    assert injected.stats.throttled and injected.stats.lost_responses
    assert {item["status"]["S"] for item in records(ddb, store.table)} == {COMPLETED}


async def test_a_failed_complete_returns_the_result_and_holds_the_key(
    store: IdempotencyStore, aio_ddb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    charge = Charge()
    wrapped = idempotent(store, key="id", lease_s=60)(charge.run)
    with Chaos(aio_ddb, throttle=1.0, operations={"UpdateItem"}, seed=1):
        assert await wrapped({"id": "o-1"}) == {"order": "o-1", "ok": True}
    assert "could not be stored" in caplog.text
    with pytest.raises(IdempotencyInProgressError):
        await wrapped({"id": "o-1"})
    assert charge.runs == 1


async def test_a_task_cancelled_while_taking_its_key_gives_it_back(
    store: IdempotencyStore, aio_ddb: Any, calls: CallCounter, ddb: Any
) -> None:
    charge = Charge()
    wrapped = idempotent(store, key="id")(charge.run)
    sent = asyncio.Event()

    def hold(**_: Any) -> None:
        sent.set()

    aio_ddb.meta.events.register("before-call.dynamodb.PutItem", hold)
    task = asyncio.ensure_future(wrapped({"id": "o-1"}))
    await sent.wait()  # the take is on the wire
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    aio_ddb.meta.events.unregister("before-call.dynamodb.PutItem", hold)
    assert charge.runs == 0
    assert calls.take() == {"PutItem": 1, "DeleteItem": 1}  # the take ran out, then released
    assert records(ddb, store.table) == []
    assert await wrapped({"id": "o-1"}) == {"order": "o-1", "ok": True}


async def test_without_an_async_client_the_store_runs_in_a_thread(
    ddb: Any, table: str, clock: FakeClock, sync_calls: CallCounter
) -> None:
    store = IdempotencyStore(table, client=ddb, policy=clock.policy(), clock=clock.monotonic)
    assert store.async_client is None
    await idempotent(store, key="id")(Charge().run)({"id": "o-1"})
    assert sync_calls.take() == {"PutItem": 1, "UpdateItem": 1}
    with pytest.raises(ConfigurationError, match="async_client"):
        await store.aget("anything")


async def test_async_with_opens_and_closes_its_own_client(
    moto_server: MotoServer, ddb: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name.upper() if name != "region_name" else "AWS_DEFAULT_REGION", value)
    store = IdempotencyStore(table, client=ddb)
    sync_calls = CallCounter(ddb)
    wrapped = idempotent(store, key="id")(Charge().run)
    async with store:
        opened = store.async_client
        assert opened is not None
        async with store:  # nested: the outer block owns the client
            await wrapped({"id": "o-1"})
        assert store.async_client is opened
        assert await wrapped({"id": "o-1"}) == {"order": "o-1", "ok": True}
    assert store.async_client is None  # closed by the block that opened it
    assert sync_calls.take() == {}
    given = store.async_client = opened
    async with store:
        assert store.async_client is given
    assert store.async_client is given  # a client it was given is never closed


def test_async_client_must_be_an_async_client(ddb: Any) -> None:
    with pytest.raises(ConfigurationError, match="aiobotocore DynamoDB client") as raised:
        IdempotencyStore("t", async_client=ddb)
    assert raised.value.field == "async_client"


# -- large and sealed results: S3 and KMS stay on boto3, in a worker thread --------------------


@pytest.fixture
def s3(moto_server: MotoServer) -> Any:
    client = moto_server.client("s3")
    bucket = f"aio-results-{next(_names)}"
    client.create_bucket(Bucket=bucket)
    client.bucket_name = bucket  # type: ignore[attr-defined]
    return client


def objects(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=s3.bucket_name).get("Contents", [])]


async def test_a_large_sealed_result_goes_to_s3_and_replays(
    moto_server: MotoServer,
    ddb: Any,
    aio_ddb: Any,
    table: str,
    clock: FakeClock,
    s3: Any,
    calls: CallCounter,
    sync_calls: CallCounter,
) -> None:
    kms = moto_server.client("kms")
    payloads = PayloadStore(
        PayloadConfig(bucket=s3.bucket_name, prefix="results/"), client=s3, policy=clock.policy()
    )
    envelope = KmsEnvelope(kms.create_key()["KeyMetadata"]["KeyId"], client=kms)
    store = IdempotencyStore(
        table,
        client=ddb,
        async_client=aio_ddb,
        policy=clock.policy(),
        clock=clock.monotonic,
        payloads=payloads,
        encryptor=envelope,
    )
    big = Charge(result={"rows": "r" * MB, "secret": "4111-1111-1111-1111"})
    wrapped = idempotent(store, key="id", ttl_s=60)(big.run)
    calls.take()
    first = await wrapped({"id": "o-1"})
    assert await wrapped({"id": "o-1"}) == first and big.runs == 1
    assert calls.take() == {"PutItem": 2, "UpdateItem": 1}
    assert sync_calls.take() == {}  # DynamoDB on the loop; S3 and KMS on their boto3 clients
    (item,) = records(ddb, table)
    assert item["data"]["S"].startswith(OFFLOADED_PREFIX)
    (stored,) = objects(s3)
    body = s3.get_object(Bucket=s3.bucket_name, Key=stored)["Body"].read()
    assert b"4111" not in body  # sealed
    clock.advance(61)  # expired: taken over, and the object it replaced is deleted
    small = Charge(result={"rows": "few"})
    assert await idempotent(store, key="id", ttl_s=60)(small.run)({"id": "o-1"}) == {"rows": "few"}
    assert objects(s3) == []
    (item,) = records(ddb, table)
    assert item["data"]["S"].startswith(SEALED_PREFIX)


async def test_an_object_left_by_a_failed_mark_is_deleted_when_nothing_was_written(
    ddb: Any,
    aio_ddb: Any,
    table: str,
    clock: FakeClock,
    s3: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    payloads = PayloadStore(
        PayloadConfig(bucket=s3.bucket_name, prefix="results/", always=True),
        client=s3,
        policy=clock.policy(),
    )
    store = IdempotencyStore(
        table,
        client=ddb,
        async_client=aio_ddb,
        policy=clock.policy(max_attempts=3),
        clock=clock.monotonic,
        payloads=payloads,
    )
    charge = Charge()
    with (
        caplog.at_level(logging.WARNING),
        Chaos(aio_ddb, throttle=1.0, operations={"UpdateItem"}, seed=2),
    ):
        assert await idempotent(store, key="id")(charge.run)({"id": "o-1"}) == {
            "order": "o-1",
            "ok": True,
        }
    assert objects(s3) == []  # every attempt was refused (throttled): the object went again
    assert "may be left" not in caplog.text
    with (
        caplog.at_level(logging.WARNING),
        Chaos(aio_ddb, error5xx=1.0, operations={"UpdateItem"}, seed=2),
    ):
        await idempotent(store, key="id")(Charge().run)({"id": "o-2"})
    (kept,) = objects(s3)  # a 5xx may have been applied: kept, and named in the log
    assert kept in caplog.text


class NoOldItem:
    """The aiobotocore client of a table that does not return the record with a failed
    condition (dynalite, older emulators); with ``vanish``, the record is deleted (by another
    caller's release) between the failed take and the fallback read."""

    def __init__(self, client: Any, sync: Any, *, vanish: bool = False) -> None:
        self._client = client
        self._sync = sync
        self.meta = client.meta
        self.vanish = vanish

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def put_item(self, **params: Any) -> Any:
        try:
            return await self._client.put_item(**params)
        except ClientError as error:
            error.response.pop("Item", None)
            if self.vanish:
                self.vanish = False
                self._sync.delete_item(
                    TableName=params["TableName"], Key={"id": params["Item"]["id"]}
                )
            raise


@pytest.mark.parametrize("vanish", [False, True])
async def test_without_the_old_item_the_fallback_read_is_made_on_the_loop(
    store: IdempotencyStore, aio_ddb: Any, ddb: Any, calls: CallCounter, vanish: bool
) -> None:
    charge = Charge()
    wrapped = idempotent(store, key="id", lease_s=60)(charge.run)
    await wrapped({"id": "o-1"})
    store.async_client = NoOldItem(aio_ddb, ddb, vanish=vanish)
    calls.take()
    assert await wrapped({"id": "o-1"}) == {"order": "o-1", "ok": True}
    if vanish:  # nothing was written: taken again, for real, and run
        assert calls.take() == {"PutItem": 2, "GetItem": 1, "UpdateItem": 1}
        assert charge.runs == 2
    else:  # replayed from the consistent read
        assert calls.take() == {"PutItem": 1, "GetItem": 1}
        assert charge.runs == 1

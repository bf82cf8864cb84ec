"""Holes a hostile review found in ``@idempotent`` (issue 13), each pinned against moto:

* a result that cannot be stored never gives its key back after the side effect ran;
* outside Lambda, services sharing a table do not share keys (and no name at all warns);
* ``on_in_progress="wait"`` reports a failing table as the table's error, not "in progress";
* the store's ``complete()`` failing after the function ran.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency import idempotent as powertools_idempotent
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)

from resilient_aws.errors import AttemptsExhaustedError, RetryError
from resilient_aws.idempotency import (
    COMPLETED,
    INPROGRESS,
    IdempotencyInProgressError,
    IdempotencyResultError,
    IdempotencyStore,
    hash_json,
    idempotent,
)
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.idempotency_support import (
    EPOCH,
    CallCounter,
    create_idempotency_table,
    fake_store,
    real_store,
)

SECRET = "4111-1111-1111-1111"  # a payload/result value that must never reach a message or log


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=EPOCH)


@pytest.fixture
def table(ddb: Any) -> str:
    return create_idempotency_table(ddb)


@pytest.fixture
def store(ddb: Any, table: str, clock: FakeClock) -> IdempotencyStore:
    return fake_store(ddb, clock, table)


def records(ddb: Any, table: str = "idempotency") -> list[dict[str, Any]]:
    return ddb.scan(TableName=table, ConsistentRead=True)["Items"]


class Charge:
    """A side effect that counts its runs and returns ``result``."""

    def __init__(self, result: Any) -> None:
        self.runs = 0
        self.result = result

    def __call__(self, event: dict[str, Any], *rest: Any) -> Any:
        self.runs += 1
        return self.result


class Unserializable:
    def __repr__(self) -> str:
        return SECRET


# -- 7. a result that cannot be stored: the key is never given back ------------------------------

UNSTORABLE = {
    "bytes": SECRET.encode(),
    "object": Unserializable(),
    "set of objects": {Unserializable()},
    "nan": float("nan"),
    "over 400 KB": SECRET * 30_000,
}


@pytest.mark.parametrize("result", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
def test_an_unstorable_result_is_charged_once_however_often_sqs_delivers(
    store: IdempotencyStore, ddb: Any, clock: FakeClock, result: Any
) -> None:
    charge = Charge(result)
    handler = idempotent(store, key="order_id", ttl_s=3600, lease_s=60)(charge)
    delivery = {"order_id": "o-1", "card": SECRET}
    errors = []
    for _ in range(3):  # the error makes SQS deliver the message again, and again
        with pytest.raises(IdempotencyResultError) as info:
            handler(delivery)
        errors.append(info.value)
        clock.advance(120)  # each redelivery comes after the visibility timeout, past the lease
    assert charge.runs == 1
    assert "the key stays taken" in str(errors[0])
    assert all("an earlier call with this key ran" in str(e) for e in errors[1:])
    assert all(e.key is not None and e.key.endswith(hash_json("o-1")) for e in errors)
    assert not any(SECRET in str(e) for e in errors)
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS
    assert SECRET not in item["error"]["S"] and "data" not in item
    # held until the record expires, whatever the lease said
    assert int(item["in_progress_expiration"]["N"]) == int(item["expiration"]["N"]) * 1000
    assert int(item["expiration"]["N"]) == int(EPOCH) + 3600


async def test_an_async_unstorable_result_is_charged_once(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    runs: list[int] = []

    @idempotent(store, key="order_id", lease_s=60)
    async def charge(event: dict[str, Any]) -> bytes:
        runs.append(1)
        return b"receipt"

    for _ in range(3):
        with pytest.raises(IdempotencyResultError):
            await charge({"order_id": "o-1"})
        clock.advance(120)
    assert runs == [1]


def test_an_unstorable_result_runs_again_only_when_its_record_expires(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    charge = Charge(b"receipt")
    handler = idempotent(store, key="order_id", ttl_s=600, lease_s=60)(charge)
    with pytest.raises(IdempotencyResultError):
        handler({"order_id": "o-1"})
    clock.advance(599)
    with pytest.raises(IdempotencyResultError):
        handler({"order_id": "o-1"})
    clock.advance(2)  # past ttl_s: the key is free, as a completed result's would be
    with pytest.raises(IdempotencyResultError):
        handler({"order_id": "o-1"})
    assert charge.runs == 2


def test_a_waiting_repeat_of_an_unstorable_result_fails_at_once(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    charge = Charge(b"receipt")
    wait = clock.policy(max_attempts=20, base_delay=0.5, max_delay=1.0)
    handler = idempotent(store, key="order_id", on_in_progress="wait", wait=wait)(charge)
    with pytest.raises(IdempotencyResultError):
        handler({"order_id": "o-1"})
    slept = len(clock.slept)
    with pytest.raises(IdempotencyResultError, match="an earlier call with this key ran"):
        handler({"order_id": "o-1"})
    assert len(clock.slept) == slept  # nothing to wait for: it will never complete
    assert charge.runs == 1


def test_a_record_dynamodb_refuses_is_held_like_an_unstorable_result(
    store: IdempotencyStore, ddb: Any
) -> None:
    """DynamoDB has the last word on the item size: a ``ValidationException`` from the write of
    the result means the result cannot be stored, not "the table is down"."""
    store.record_size = lambda *args, **kwargs: 0  # type: ignore[method-assign]
    charge = Charge("x" * (401 * 1024))
    handler = idempotent(store, key="order_id")(charge)
    with pytest.raises(IdempotencyResultError, match="DynamoDB refused"):
        handler({"order_id": "o-1"})
    with pytest.raises(IdempotencyResultError, match="an earlier call with this key ran"):
        handler({"order_id": "o-1"})
    assert charge.runs == 1
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS and "error" in item


def test_when_the_mark_cannot_be_written_the_key_is_still_never_released(
    store: IdempotencyStore, ddb: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    counter = CallCounter(ddb)
    charge = Charge(b"receipt")
    handler = idempotent(store, key="order_id", lease_s=60)(charge)
    with (
        caplog.at_level(logging.ERROR, logger="resilient_aws.idempotency"),
        chaos(ddb, throttle=1.0, operations={"UpdateItem"}),
        pytest.raises(IdempotencyResultError),
    ):
        handler({"order_id": "o-1"})
    assert "DeleteItem" not in counter.take()
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS  # in progress until its lease, as a crash leaves it
    (message,) = [r.getMessage() for r in caplog.records]
    assert "could not be marked" in message and hash_json("o-1") in message
    with pytest.raises(IdempotencyInProgressError):
        handler({"order_id": "o-1"})
    assert charge.runs == 1


def test_powertools_sees_a_held_key_as_in_progress(
    ddb: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-fn")
    runs: list[int] = []

    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        runs.append(1)
        return b"not json" if len(runs) == 1 else {"ok": True}

    ours = idempotent(real_store(ddb, table), key="body.order_id")(lambda_handler)
    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=ddb)
    theirs = powertools_idempotent(
        persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="body.order_id")
    )(lambda_handler)
    event = {"body": {"order_id": "o-1"}}
    with pytest.raises(IdempotencyResultError):
        ours(event, FakeLambdaContext())
    with pytest.raises(IdempotencyAlreadyInProgressError):
        theirs(event, FakeLambdaContext())
    assert runs == [1]


# -- 8. outside Lambda, the service name keeps services sharing a table apart ---------------------


def same_named_handler(result: str) -> Charge:
    """A function that is ``app.handle`` wherever it is defined (two services, one layout)."""
    charge = Charge(result)
    charge.__module__ = "app"
    charge.__qualname__ = "handle"  # type: ignore[attr-defined]
    return charge


def test_two_services_sharing_a_table_do_not_share_keys(
    ddb: Any, table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    billing = same_named_handler("billed")
    shipping = same_named_handler("shipped")
    billing_handle = idempotent(fake_store(ddb, clock, table), key="order_id")(billing)
    shipping_handle = idempotent(fake_store(ddb, clock, table), key="order_id")(shipping)

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "billing")
    assert billing_handle({"order_id": "o-1"}) == "billed"
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "shipping")
    assert shipping_handle({"order_id": "o-1"}) == "shipped"  # not billing's result
    assert shipping_handle({"order_id": "o-1"}) == "shipped"
    assert (billing.runs, shipping.runs) == (1, 1)
    assert sorted(r["id"]["S"] for r in records(ddb)) == [
        f"billing.app.handle#{hash_json('o-1')}",
        f"shipping.app.handle#{hash_json('o-1')}",
    ]


def test_in_lambda_the_key_stays_powertools_own(
    store: IdempotencyStore, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-fn")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders")
    idempotent(store, key="order_id")(same_named_handler("ok"))({"order_id": "o-1"})
    (item,) = records(ddb)
    assert item["id"]["S"] == f"orders-fn.app.handle#{hash_json('o-1')}"


def test_no_function_and_no_service_name_warns(
    store: IdempotencyStore, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME")
    handle = idempotent(store, key="order_id")(same_named_handler("ok"))
    with pytest.warns(UserWarning, match="app.handle.*POWERTOOLS_SERVICE_NAME.*key_prefix"):
        handle({"order_id": SECRET})
    (item,) = records(ddb)
    assert item["id"]["S"] == f"test-func.app.handle#{hash_json(SECRET)}"  # Powertools' prefix


def test_a_key_prefix_needs_no_service_name(
    store: IdempotencyStore, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME")
    idempotent(store, key="order_id", key_prefix="charges")(Charge("ok"))({"order_id": "o-1"})
    assert [w for w in recwarn if "POWERTOOLS_SERVICE_NAME" in str(w.message)] == []


# -- 10. waiting on a failing table reports the table, not a call in progress ---------------------


def test_wait_reports_a_throttled_table_as_the_tables_error(
    ddb: Any, table: str, clock: FakeClock
) -> None:
    store = IdempotencyStore(
        table, client=ddb, policy=clock.policy(max_attempts=3), clock=clock.monotonic
    )
    clock.now = EPOCH
    counter = CallCounter(ddb)
    charge = Charge("ok")
    wait = clock.policy(max_attempts=20, base_delay=0.1, max_delay=1.0)
    handler = idempotent(store, key="order_id", on_in_progress="wait", wait=wait)(charge)
    with chaos(ddb, throttle=1.0, operations={"PutItem"}), pytest.raises(RetryError) as info:
        handler({"order_id": "o-1"})
    assert not isinstance(info.value, IdempotencyInProgressError)
    assert isinstance(info.value, AttemptsExhaustedError)
    assert "ProvisionedThroughputExceededException" in str(info.value)
    assert counter.take() == {"PutItem": 3}  # the store's attempts, not multiplied by the wait's
    assert charge.runs == 0


async def test_async_wait_reports_a_throttled_table_as_the_tables_error(
    ddb: Any, table: str, clock: FakeClock
) -> None:
    store = IdempotencyStore(
        table, client=ddb, policy=clock.policy(max_attempts=3), clock=clock.monotonic
    )
    runs: list[int] = []

    @idempotent(store, key="order_id", on_in_progress="wait", wait=clock.policy(max_attempts=20))
    async def charge(event: dict[str, Any]) -> str:
        runs.append(1)
        return "ok"

    with chaos(ddb, throttle=1.0, operations={"PutItem"}), pytest.raises(RetryError) as info:
        await charge({"order_id": "o-1"})
    assert not isinstance(info.value, IdempotencyInProgressError)
    assert runs == []


# -- 11. the result could not be stored because the table failed after the function ran ----------


def test_a_failed_complete_returns_the_result_and_holds_the_key_until_the_lease(
    store: IdempotencyStore, ddb: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    charge = Charge({"receipt": SECRET})
    handler = idempotent(store, key="order_id", lease_s=60)(charge)
    with (
        caplog.at_level(logging.ERROR, logger="resilient_aws.idempotency"),
        chaos(ddb, throttle=1.0, operations={"UpdateItem"}),
    ):
        # the side effect happened: the caller gets its result (an error would make the queue
        # run it again)
        assert handler({"order_id": "o-1"}) == {"receipt": SECRET}
    (message,) = [r.getMessage() for r in caplog.records]
    assert hash_json("o-1") in message and "until the lease ends" in message
    assert SECRET not in message
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS and "data" not in item
    lease_end = int(item["in_progress_expiration"]["N"]) / 1000
    assert lease_end == EPOCH + 60

    clock.now = lease_end - 1  # a duplicate within the lease is refused
    with pytest.raises(IdempotencyInProgressError):
        handler({"order_id": "o-1"})
    assert charge.runs == 1
    clock.now = lease_end + 1  # after it, the key is free, as after a crash (documented)
    assert handler({"order_id": "o-1"}) == {"receipt": SECRET}
    assert charge.runs == 2
    (item,) = records(ddb)
    assert item["status"]["S"] == COMPLETED


async def test_an_async_failed_complete_returns_the_result(
    store: IdempotencyStore, ddb: Any
) -> None:
    @idempotent(store, key="order_id")
    async def charge(event: dict[str, Any]) -> str:
        return "charged"

    with chaos(ddb, throttle=1.0, operations={"UpdateItem"}):
        assert await charge({"order_id": "o-1"}) == "charged"
    with pytest.raises(IdempotencyInProgressError):
        await charge({"order_id": "o-1"})


def test_a_failed_complete_in_lambda_holds_the_key_for_the_invocation(
    store: IdempotencyStore, ddb: Any, clock: FakeClock
) -> None:
    context = FakeLambdaContext(timeout_s=30, clock=clock.monotonic)
    runs: list[int] = []

    @idempotent(store, key="order_id")
    def handler(event: dict[str, Any], context: Any) -> str:
        runs.append(1)
        return "charged"

    with chaos(ddb, throttle=1.0, operations={"UpdateItem"}):
        assert handler({"order_id": "o-1"}, context) == "charged"
    assert clock.now - EPOCH < 30  # the store's retries stopped within the invocation
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS
    assert int(item["in_progress_expiration"]["N"]) == int(EPOCH * 1000) + 30_000
    retry = FakeLambdaContext(timeout_s=30, clock=clock.monotonic)
    with pytest.raises(IdempotencyInProgressError):
        handler({"order_id": "o-1"}, retry)
    assert runs == [1]


def test_a_complete_whose_response_was_lost_is_stored_once(
    store: IdempotencyStore, ddb: Any
) -> None:
    charge = Charge("charged")
    handler = idempotent(store, key="order_id")(charge)
    with chaos(ddb, lost_response=1.0, operations={"UpdateItem"}):
        assert handler({"order_id": "o-1"}) == "charged"
    assert handler({"order_id": "o-1"}) == "charged"
    assert charge.runs == 1
    (item,) = records(ddb)
    assert item["status"]["S"] == COMPLETED

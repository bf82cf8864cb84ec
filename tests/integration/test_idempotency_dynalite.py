"""@idempotent against dynalite: DynamoDB's validation, and a table without ALL_OLD on failure.

dynalite does not return the item with a failed condition (``ReturnValuesOnConditionCheckFailure``
is ignored), so every repeat here takes the fallback path: one consistent ``GetItem``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from resilient_aws.idempotency import (
    COMPLETED,
    INPROGRESS,
    IdempotencyInProgressError,
    IdempotencyResultError,
    IdempotencyTableError,
    idempotent,
)
from resilient_aws.testing import FakeClock, chaos
from resilient_aws.testing.emulators import NodeEmulator
from tests.idempotency_support import EPOCH, CallCounter, create_idempotency_table, fake_store

pytestmark = pytest.mark.emulator
_names = itertools.count()


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside Lambda the service name prefixes the keys; without one, every call warns.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture
def ddb(dynalite_server: NodeEmulator) -> Any:
    return dynalite_server.client("dynamodb")


@pytest.fixture
def table(ddb: Any) -> str:
    return create_idempotency_table(ddb, f"idempotency-{next(_names)}")


def test_first_call_repeat_and_release(ddb: Any, table: str) -> None:
    clock = FakeClock(start=EPOCH)
    store = fake_store(ddb, clock, table)
    counter = CallCounter(ddb)
    runs: list[int] = []

    @idempotent(store, key="id")
    def work(event: dict[str, Any]) -> dict[str, Any]:
        runs.append(event["id"])
        if event.get("fail"):
            raise RuntimeError("failed")
        return {"id": event["id"], "total": 1.5}

    assert work({"id": 1}) == {"id": 1, "total": 1.5}
    assert counter.take() == {"PutItem": 1, "UpdateItem": 1}
    assert work({"id": 1}) == {"id": 1, "total": 1.5}
    assert counter.take() == {"PutItem": 1, "GetItem": 1}

    with pytest.raises(RuntimeError):
        work({"id": 2, "fail": True})
    assert counter.take() == {"PutItem": 1, "DeleteItem": 1}
    assert work({"id": 2}) == {"id": 2, "total": 1.5}
    assert runs == [1, 2, 2]
    statuses = {i["status"]["S"] for i in ddb.scan(TableName=table)["Items"]}
    assert statuses == {COMPLETED}


def test_an_unstorable_result_keeps_its_key(ddb: Any, table: str) -> None:
    clock = FakeClock(start=EPOCH)
    store = fake_store(ddb, clock, table)
    runs: list[int] = []

    @idempotent(store, key="id", lease_s=60)
    def work(event: dict[str, Any]) -> bytes:
        runs.append(event["id"])
        return b"not json"

    for _ in range(3):
        with pytest.raises(IdempotencyResultError):
            work({"id": 1})
        clock.advance(120)  # past the lease: the mark holds the key until the record expires
    assert runs == [1]
    (item,) = ddb.scan(TableName=table)["Items"]
    assert item["status"]["S"] == INPROGRESS and "error" in item


def test_in_progress_and_lease(ddb: Any, table: str) -> None:
    clock = FakeClock(start=EPOCH)
    store = fake_store(ddb, clock, table)
    key = "p#c4ca4238a0b923820dcc509a6f75849b"  # md5 of "1"
    assert (
        store.put_in_progress(
            key,
            owner="crashed",
            expires_at=int(clock.now) + 3600,
            in_progress_until_ms=int((clock.now + 10) * 1000),
            validation=None,
        )
        is None
    )
    wrapped = idempotent(store, key="id", key_prefix="p")(lambda event: "ran")
    with pytest.raises(IdempotencyInProgressError):
        wrapped({"id": 1})
    clock.advance(11)
    assert wrapped({"id": 1}) == "ran"


def test_key_schema_errors_come_from_dynamodb_validation(ddb: Any) -> None:
    ddb.create_table(
        TableName="numbers",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(
        TableName="numbers", WaiterConfig={"Delay": 0.05, "MaxAttempts": 100}
    )
    store = fake_store(ddb, FakeClock(), "numbers")
    with pytest.raises(IdempotencyTableError, match="numbers") as caught:
        idempotent(store, key="id")(lambda event: 1)({"id": 1})
    assert "does not exist" not in str(caught.value)  # the key schema, not a missing table
    missing = fake_store(ddb, FakeClock(), "absent")
    with pytest.raises(IdempotencyTableError, match="does not exist"):
        idempotent(missing, key="id")(lambda event: 1)({"id": 1})


def test_chaos_on_dynalite(ddb: Any, table: str) -> None:
    clock = FakeClock(start=EPOCH)
    store = fake_store(ddb, clock, table)
    runs: list[int] = []

    @idempotent(store, key="id")
    def work(event: dict[str, Any]) -> int:
        runs.append(event["id"])
        return int(event["id"]) * 2

    with chaos(ddb, throttle=0.15, error5xx=0.05, lost_response=0.15, seed=5) as injected:
        results = [work({"id": i % 25}) for i in range(100)]
    assert results == [(i % 25) * 2 for i in range(100)]
    assert sorted(runs) == list(range(25))
    assert injected.stats.faults > 0

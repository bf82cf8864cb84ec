"""@idempotent against moto in process: call counts, replays, releases, errors, async."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from resilient_aws.errors import ConfigurationError, RetryError
from resilient_aws.idempotency import (
    COMPLETED,
    INPROGRESS,
    IdempotencyInProgressError,
    IdempotencyKeyError,
    IdempotencyResultError,
    IdempotencyStore,
    IdempotencyTableError,
    IdempotencyValidationError,
    hash_json,
    idempotent,
)
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.idempotency_support import EPOCH, CallCounter, create_idempotency_table, fake_store


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside Lambda the service name prefixes the keys; without one, every call warns.
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


@pytest.fixture
def counter(ddb: Any) -> CallCounter:
    return CallCounter(ddb)


def records(ddb: Any) -> list[dict[str, Any]]:
    return ddb.scan(TableName="idempotency", ConsistentRead=True)["Items"]


class Body:
    """A side effect that counts its runs."""

    def __init__(self, result: Any = "done") -> None:
        self.runs = 0
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.result


# -- the calls each path costs -------------------------------------------------------------------


def test_first_call_is_two_writes_and_a_repeat_one(
    store: IdempotencyStore, counter: CallCounter
) -> None:
    body = Body({"charged": 10})

    @idempotent(store, key="order_id")
    def charge(event: dict[str, Any]) -> dict[str, Any]:
        return body(event)

    counter.take()
    assert charge({"order_id": "o-1", "amount": 10}) == {"charged": 10}
    assert counter.take() == {"PutItem": 1, "UpdateItem": 1}
    assert charge({"order_id": "o-1", "amount": 10}) == {"charged": 10}
    assert counter.take() == {"PutItem": 1}
    assert body.runs == 1


def test_local_cache_makes_repeats_free(store: IdempotencyStore, counter: CallCounter) -> None:
    body = Body([1, 2])

    @idempotent(store, key="id", cache_size=8)
    def work(event: dict[str, Any]) -> list[int]:
        return body(event)  # type: ignore[no-any-return]

    work({"id": 1})
    counter.take()
    for _ in range(5):
        assert work({"id": 1}) == [1, 2]
    assert counter.take() == {}
    assert body.runs == 1


def test_a_record_found_by_another_process_fills_the_cache(
    store: IdempotencyStore, counter: CallCounter
) -> None:
    body = Body("x")
    idempotent(store, key="id", key_prefix="shared")(body)({"id": 1})

    @idempotent(store, key="id", key_prefix="shared", cache_size=8)
    def again(event: dict[str, Any]) -> str:
        raise AssertionError("must not run")

    counter.take()
    assert again({"id": 1}) == "x"
    assert again({"id": 1}) == "x"
    assert counter.take() == {"PutItem": 1}


# -- what is stored ------------------------------------------------------------------------------


def test_record_has_powertools_attributes(
    store: IdempotencyStore, ddb: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    @idempotent(store, key="order_id", ttl_s=600, validate="amount")
    def charge(event: dict[str, Any]) -> dict[str, int]:
        return {"ok": 1}

    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME")  # Powertools' own prefix outside Lambda
    with pytest.warns(UserWarning, match="POWERTOOLS_SERVICE_NAME"):
        charge({"order_id": "o-7", "amount": 3})
    (item,) = records(ddb)
    assert item["id"]["S"] == (
        f"test-func.{__name__}.test_record_has_powertools_attributes.<locals>.charge"
        f"#{hash_json('o-7')}"
    )
    assert item["status"]["S"] == COMPLETED
    assert int(item["expiration"]["N"]) == int(EPOCH) + 600
    assert int(item["in_progress_expiration"]["N"]) == int((EPOCH + 900) * 1000)
    assert item["data"]["S"] == '{"ok": 1}'
    assert item["validation"]["S"] == hash_json(3)


@pytest.mark.parametrize("result", [None, 0, "", [], {}, False, 0.0])
def test_falsy_results_replay_faithfully(store: IdempotencyStore, result: Any) -> None:
    body = Body(result)
    wrapped = idempotent(store, key="id")(body)
    first = wrapped({"id": 1})
    again = wrapped({"id": 1})
    assert first == again == result
    assert type(again) is type(result)
    assert body.runs == 1


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int


@dataclasses.dataclass
class Receipt:
    order_id: str
    lines: list[Line]
    note: str | None = None


def test_dataclass_results_are_rebuilt_from_the_annotation(store: IdempotencyStore) -> None:
    runs = []

    @idempotent(store, key="order_id")
    def checkout(event: dict[str, Any]) -> Receipt:
        runs.append(1)
        return Receipt(event["order_id"], [Line("a", 2), Line("b", 1)])

    first = checkout({"order_id": "o-1"})
    again = checkout({"order_id": "o-1"})
    assert again == first
    assert isinstance(again, Receipt) and isinstance(again.lines[0], Line)
    assert len(runs) == 1


def test_pydantic_results_are_rebuilt(store: IdempotencyStore) -> None:
    import pydantic

    class Order(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        order_id: str
        total: float

    @idempotent(store, key="order_id", result_type=Order)
    def place(event: dict[str, Any]) -> Any:
        return Order(order_id=event["order_id"], total=9.5)

    first = place({"order_id": "o-2"})
    again = place({"order_id": "o-2"})
    assert isinstance(again, Order) and again == first


def test_pydantic_payloads_are_keyed_by_their_json(store: IdempotencyStore) -> None:
    import pydantic

    class Order(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        order_id: str

    body = Body()

    @idempotent(store, key="order_id")
    def place(order: Any) -> str:
        return body(order)  # type: ignore[no-any-return]

    place(Order(order_id="x"))
    place(Order(order_id="x"))
    place({"order_id": "x"})
    assert body.runs == 1


# -- failures of the function --------------------------------------------------------------------


def test_a_failed_call_releases_the_key(store: IdempotencyStore, ddb: Any) -> None:
    attempts = []

    @idempotent(store, key="id")
    def flaky(event: dict[str, Any]) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("downstream failed")
        return "second time lucky"

    with pytest.raises(RuntimeError, match="downstream failed"):
        flaky({"id": 1})
    assert records(ddb) == []
    assert flaky({"id": 1}) == "second time lucky"
    assert flaky({"id": 1}) == "second time lucky"
    assert len(attempts) == 2


def test_unserializable_result_is_a_typed_error_and_keeps_the_key(
    store: IdempotencyStore, ddb: Any
) -> None:
    body = Body(object())
    wrapped = idempotent(store, key="id")(body)

    with pytest.raises(IdempotencyResultError, match="cannot be stored as JSON") as info:
        wrapped({"id": 1})
    assert info.value.key is not None and info.value.key.endswith(hash_json(1))
    (item,) = records(ddb)  # the function ran: the key is kept, never released
    assert item["status"]["S"] == INPROGRESS and "error" in item
    with pytest.raises(IdempotencyResultError, match="an earlier call with this key ran"):
        wrapped({"id": 1})
    assert body.runs == 1


def test_result_over_the_item_limit_is_refused_before_the_write(
    store: IdempotencyStore, ddb: Any, counter: CallCounter
) -> None:
    @idempotent(store, key="id")
    def huge(event: dict[str, Any]) -> str:
        return "x" * (400 * 1024)

    counter.take()
    with pytest.raises(IdempotencyResultError, match="409600-byte item limit"):
        huge({"id": 1})
    # the key taken, then marked (a small UpdateItem): the result itself is never sent
    assert counter.take() == {"PutItem": 1, "UpdateItem": 1}
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS and "data" not in item


# -- keys -----------------------------------------------------------------------------------------


def test_missing_key_raises_by_default_and_runs_when_asked(
    store: IdempotencyStore, ddb: Any
) -> None:
    body = Body()
    strict = idempotent(store, key="order_id")(body)
    with pytest.raises(IdempotencyKeyError, match="order_id"):
        strict({"other": 1})
    assert body.runs == 0

    lenient = idempotent(store, key="order_id", on_missing_key="run")(body)
    lenient({"other": 1})
    lenient({"other": 1})
    assert body.runs == 2
    assert records(ddb) == []


def test_multi_select_with_nothing_in_it_is_missing(store: IdempotencyStore) -> None:
    strict = idempotent(store, key="[a, b]")(Body())
    with pytest.raises(IdempotencyKeyError):
        strict({"c": 1})


def test_callable_key_and_stable_prefix(store: IdempotencyStore, ddb: Any) -> None:
    body = Body()
    wrapped = idempotent(store, key=lambda event: event["id"].lower(), key_prefix="orders-v1")(body)
    wrapped({"id": "ABC"})
    wrapped({"id": "abc"})
    assert body.runs == 1
    assert records(ddb)[0]["id"]["S"] == f"orders-v1#{hash_json('abc')}"


def test_key_inside_a_json_body(store: IdempotencyStore) -> None:
    body = Body()
    wrapped = idempotent(store, key="powertools_json(body).order_id")(body)
    wrapped({"body": '{"order_id": "o-1", "at": 1}'})
    wrapped({"body": '{"at": 2, "order_id": "o-1"}'})
    assert body.runs == 1
    with pytest.raises(IdempotencyKeyError, match="failed"):
        wrapped({"body": "not json"})


def test_validation_refuses_a_different_payload(store: IdempotencyStore) -> None:
    wrapped = idempotent(store, key="order_id", validate="amount")(Body())
    wrapped({"order_id": "o-1", "amount": 10})
    wrapped({"order_id": "o-1", "amount": 10})
    with pytest.raises(IdempotencyValidationError) as info:
        wrapped({"order_id": "o-1", "amount": 11})
    assert "11" not in str(info.value)  # never the payload


def test_payload_parameter_and_methods(store: IdempotencyStore) -> None:
    class Service:
        def __init__(self) -> None:
            self.runs = 0

        @idempotent(store, key="id")
        def handle(self, event: dict[str, Any], context: object = None) -> int:
            self.runs += 1
            return self.runs

        @idempotent(store, payload="order", key="id")
        def place(self, customer: str, order: dict[str, Any]) -> str:
            self.runs += 1
            return customer

    service = Service()
    assert service.handle({"id": 1}) == service.handle({"id": 1}) == 1
    assert service.place("c", order={"id": 2}) == service.place("c", {"id": 2}) == "c"
    assert service.runs == 2


def test_bad_options_fail_at_decoration(store: IdempotencyStore) -> None:
    with pytest.raises(ConfigurationError, match="key"):
        idempotent(store, key="a[")(Body())
    with pytest.raises(ConfigurationError, match="payload"):
        idempotent(store, payload="missing")(lambda event: event)
    with pytest.raises(ConfigurationError, match="on_in_progress"):
        idempotent(store, on_in_progress="spin")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl_s"):
        idempotent(store, ttl_s=0)
    with pytest.raises(ConfigurationError, match="hash_function"):
        idempotent(store, hash_function="nope")(lambda event: event)


def test_unserializable_key_is_a_key_error(store: IdempotencyStore) -> None:
    wrapped = idempotent(store, key="id")(Body())
    with pytest.raises(IdempotencyKeyError, match="JSON"):
        wrapped({"id": object()})


# -- the table -----------------------------------------------------------------------------------


def test_missing_table_is_a_table_error(ddb: Any, clock: FakeClock) -> None:
    store = fake_store(ddb, clock, "no-such-table")
    with pytest.raises(IdempotencyTableError, match="no-such-table"):
        idempotent(store, key="id")(Body())({"id": 1})


def test_wrong_key_schema_is_a_table_error(ddb: Any, clock: FakeClock) -> None:
    ddb.create_table(
        TableName="wrong",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = fake_store(ddb, clock, "wrong")
    body = Body()
    with pytest.raises(IdempotencyTableError, match="'id'"):
        idempotent(store, key="id")(body)({"id": 1})
    assert body.runs == 0


def test_composite_key_table(ddb: Any, clock: FakeClock) -> None:
    create_idempotency_table(ddb, "composite", sort_key=True)
    store = fake_store(ddb, clock, "composite", sort_key_attr="sk", static_pk_value="idem#svc")
    body = Body("r")
    wrapped = idempotent(store, key="id", key_prefix="p")(body)
    assert wrapped({"id": 1}) == wrapped({"id": 1}) == "r"
    assert body.runs == 1
    (item,) = ddb.scan(TableName="composite")["Items"]
    assert item["id"]["S"] == "idem#svc" and item["sk"]["S"] == f"p#{hash_json(1)}"


# -- in progress, leases, waiting ------------------------------------------------------------------


def hold(store: IdempotencyStore, key: str, *, lease_s: float = 60.0) -> None:
    """Write an in-progress record for ``key`` as another caller would."""
    now = store.clock()
    assert (
        store.put_in_progress(
            key,
            owner="someone-else",
            expires_at=int(now) + 3600,
            in_progress_until_ms=int((now + lease_s) * 1000),
            validation=None,
        )
        is None
    )


def key_of(value: Any, prefix: str = "p") -> str:
    return f"{prefix}#{hash_json(value)}"


def test_in_progress_raises_by_default(store: IdempotencyStore) -> None:
    hold(store, key_of(1))
    body = Body()
    with pytest.raises(IdempotencyInProgressError) as info:
        idempotent(store, key="id", key_prefix="p")(body)({"id": 1})
    assert info.value.key == key_of(1)
    assert body.runs == 0


def test_a_crashed_call_can_run_again_after_its_lease(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    hold(store, key_of(1), lease_s=30)
    body = Body("recovered")
    wrapped = idempotent(store, key="id", key_prefix="p")(body)
    with pytest.raises(IdempotencyInProgressError):
        wrapped({"id": 1})
    clock.advance(31)
    assert wrapped({"id": 1}) == "recovered"
    assert body.runs == 1


def test_a_short_ttl_does_not_end_the_hold_before_the_lease(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    runs: list[str] = []

    @idempotent(store, key="id", key_prefix="p", ttl_s=60, lease_s=900)
    def charge(event: dict[str, Any]) -> str:
        runs.append(event["who"])
        if event["who"] == "first":
            clock.advance(120)  # past ttl_s, well inside the lease: a duplicate arrives
            with pytest.raises(IdempotencyInProgressError):
                charge({"id": 1, "who": "duplicate"})
        return "charged"

    assert charge({"id": 1, "who": "first"}) == "charged"
    assert runs == ["first"]


def test_a_release_never_deletes_a_result_completed_meanwhile(
    store: IdempotencyStore, ddb: Any
) -> None:
    # A call whose lease ran out completes into the record of the call that took the key over;
    # when that one fails, its release must leave the completed result for duplicates to replay.
    key = key_of(1)
    assert (
        store.put_in_progress(
            key, owner="takeover", expires_at=EPOCH + 3600, in_progress_until_ms=0, validation=None
        )
        is None
    )
    store.complete(key, data='"shipped by late"', expires_at=EPOCH + 3600, validation=None)
    store.release(key, owner="takeover")
    (record,) = records(ddb)
    assert record["status"]["S"] == COMPLETED and record["data"]["S"] == '"shipped by late"'
    body = Body()
    assert idempotent(store, key="id", key_prefix="p")(body)({"id": 1}) == "shipped by late"
    assert body.runs == 0


class _NoOldItemAndAReleaseBeforeTheRead:
    """A DynamoDB-compatible table that sends no record with a failed condition, and whose
    holder releases the key between that failure and the fallback read."""

    def __init__(self, ddb: Any) -> None:
        self.ddb = ddb
        self.release_before_read = False

    def put_item(self, **kwargs: Any) -> Any:
        try:
            return self.ddb.put_item(**kwargs)
        except self.ddb.exceptions.ConditionalCheckFailedException as error:
            error.response.pop("Item", None)
            self.release_before_read = True
            raise

    def get_item(self, **kwargs: Any) -> Any:
        if self.release_before_read:
            self.release_before_read = False
            self.ddb.delete_item(TableName="idempotency", Key=kwargs["Key"])
        return self.ddb.get_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_a_record_gone_before_the_fallback_read_is_taken_for_real(
    ddb: Any, table: str, clock: FakeClock
) -> None:
    store = IdempotencyStore(
        table, client=_NoOldItemAndAReleaseBeforeTheRead(ddb), policy=clock.policy(),
        clock=clock.monotonic,
    )  # fmt: skip
    hold(store, key_of(1))
    seen_while_running: list[list[str]] = []

    def body(event: dict[str, Any]) -> str:
        seen_while_running.append([r["status"]["S"] for r in records(ddb)])
        return "done"

    assert idempotent(store, key="id", key_prefix="p")(body)({"id": 1}) == "done"
    # the call ran holding an in-progress record of its own, not with none at all
    assert seen_while_running == [[INPROGRESS]]


def test_wait_returns_the_first_calls_result(store: IdempotencyStore, clock: FakeClock) -> None:
    hold(store, key_of(1))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)
        if len(sleeps) == 3:  # the other caller finishes while we wait
            store.complete(
                key_of(1), data='"theirs"', expires_at=int(clock.now) + 60, validation=None
            )

    wait = clock.policy(max_attempts=20, base_delay=0.1, max_delay=1.0, sleep=sleep)
    body = Body("ours")
    result = idempotent(store, key="id", key_prefix="p", on_in_progress="wait", wait=wait)(body)(
        {"id": 1}
    )
    assert result == "theirs"
    assert body.runs == 0
    assert len(sleeps) == 3


def test_wait_gives_up_with_an_in_progress_error(store: IdempotencyStore, clock: FakeClock) -> None:
    hold(store, key_of(1), lease_s=600)
    wait = clock.policy(max_attempts=4, base_delay=0.1, max_delay=0.2)
    wrapped = idempotent(store, key="id", key_prefix="p", on_in_progress="wait", wait=wait)(Body())
    with pytest.raises(IdempotencyInProgressError, match="after waiting") as info:
        wrapped({"id": 1})
    assert isinstance(info.value.__cause__, RetryError)


def test_wait_stops_at_the_lambda_deadline(store: IdempotencyStore, clock: FakeClock) -> None:
    hold(store, key_of(1), lease_s=600)
    context = FakeLambdaContext(timeout_s=5, clock=clock.monotonic)
    wait = clock.policy(max_attempts=1000, base_delay=0.5, max_delay=0.5, jitter="none")

    @idempotent(store, key="id", key_prefix="p", on_in_progress="wait", wait=wait, margin_s=1.0)
    def handler(event: dict[str, Any], context: Any) -> str:
        return "never"

    with pytest.raises(IdempotencyInProgressError):
        handler({"id": 1}, context)
    assert clock.now - EPOCH <= 4.0


def test_lambda_lease_is_the_remaining_time(
    store: IdempotencyStore, ddb: Any, clock: FakeClock
) -> None:
    context = FakeLambdaContext(timeout_s=12, clock=clock.monotonic)
    seen: list[dict[str, Any]] = []

    @idempotent(store, key="id")
    def handler(event: dict[str, Any], context: Any) -> str:
        seen.extend(records(ddb))
        return "ok"

    handler({"id": 1}, context)
    assert seen[0]["status"]["S"] == INPROGRESS
    assert int(seen[0]["in_progress_expiration"]["N"]) == int(EPOCH * 1000) + 12_000


# -- the retry core under the store ----------------------------------------------------------------


def test_throttled_table_does_not_fail_the_handler(store: IdempotencyStore, ddb: Any) -> None:
    body = Body("ok")
    wrapped = idempotent(store, key="id")(body)
    with chaos(ddb, throttle=0.2, error5xx=0.05, seed=7) as injected:
        results = [wrapped({"id": i % 20}) for i in range(60)]
    assert results == ["ok"] * 60
    assert body.runs == 20
    assert injected.stats.throttled > 0


def test_lost_responses_do_not_lock_out_the_caller(store: IdempotencyStore, ddb: Any) -> None:
    """A PutItem applied but whose response was lost is recognised as our own on retry."""
    body = Body("ok")
    wrapped = idempotent(store, key="id")(body)
    with chaos(ddb, lost_response=0.4, seed=3) as injected:
        results = [wrapped({"id": i}) for i in range(40)]
    assert results == ["ok"] * 40
    assert body.runs == 40
    assert injected.stats.lost_responses > 0
    assert {item["status"]["S"] for item in records(ddb)} == {COMPLETED}


# -- async ---------------------------------------------------------------------------------------


async def test_async_functions(store: IdempotencyStore, ddb: Any, counter: CallCounter) -> None:
    runs: list[int] = []

    @idempotent(store, key="id")
    async def work(event: dict[str, Any]) -> Receipt:
        runs.append(1)
        await asyncio.sleep(0)
        return Receipt(str(event["id"]), [Line("a", 1)])

    counter.take()
    first = await work({"id": 1})
    assert counter.take() == {"PutItem": 1, "UpdateItem": 1}
    again = await work({"id": 1})
    assert counter.take() == {"PutItem": 1}
    assert again == first and isinstance(again, Receipt)
    assert len(runs) == 1


async def test_async_failure_releases_and_in_progress_raises(
    store: IdempotencyStore, ddb: Any
) -> None:
    @idempotent(store, key="id")
    async def fails(event: dict[str, Any]) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await fails({"id": 1})
    assert records(ddb) == []

    hold(store, key_of(2))

    @idempotent(store, key="id", key_prefix="p")
    async def blocked(event: dict[str, Any]) -> None:
        raise AssertionError("must not run")

    with pytest.raises(IdempotencyInProgressError):
        await blocked({"id": 2})


async def test_a_task_cancelled_while_taking_its_key_gives_the_key_back(
    ddb: Any, table: str, clock: FakeClock
) -> None:
    import threading

    writing, finish, written = threading.Event(), threading.Event(), threading.Event()

    class SlowPut:
        def put_item(self, **kwargs: Any) -> Any:
            writing.set()
            assert finish.wait(30)
            try:
                return ddb.put_item(**kwargs)
            finally:
                written.set()

        def __getattr__(self, name: str) -> Any:
            return getattr(ddb, name)

    store = fake_store(SlowPut(), clock, table)
    runs: list[int] = []

    @idempotent(store, key="id", key_prefix="p")
    async def work(event: dict[str, Any]) -> str:
        runs.append(1)
        return "done"

    task = asyncio.ensure_future(work({"id": 1}))
    await asyncio.to_thread(writing.wait, 30)  # the PutItem is on its way in its thread
    task.cancel()
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(written.wait, 30)  # the write the cancel could not stop landed
    assert runs == [] and records(ddb) == []  # never ran, and does not hold the key


async def test_an_async_result_that_cannot_be_stored_keeps_the_key(
    store: IdempotencyStore, ddb: Any
) -> None:
    runs: list[int] = []

    @idempotent(store, key="id")
    async def work(event: dict[str, Any]) -> Any:
        runs.append(1)
        return object()

    with pytest.raises(IdempotencyResultError, match="the key stays taken"):
        await work({"id": 1})
    with pytest.raises(IdempotencyResultError, match="an earlier call with this key ran"):
        await work({"id": 1})
    assert runs == [1]
    (item,) = records(ddb)
    assert item["status"]["S"] == INPROGRESS


async def test_async_wait(store: IdempotencyStore, clock: FakeClock) -> None:
    hold(store, key_of(1))
    sleeps: list[float] = []

    async def async_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)
        if len(sleeps) == 2:
            store.complete(key_of(1), data="[1]", expires_at=int(clock.now) + 60, validation=None)

    wait = clock.policy(max_attempts=10, async_sleep=async_sleep)

    @idempotent(store, key="id", key_prefix="p", on_in_progress="wait", wait=wait)
    async def work(event: dict[str, Any]) -> list[int]:
        raise AssertionError("must not run")

    assert await work({"id": 1}) == [1]

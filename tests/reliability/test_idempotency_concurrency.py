"""32 simultaneous duplicates of one call, under chaos, against dynalite: the body runs once.

dynalite serialises conditional writes the way DynamoDB does, so the race is real (moto's
in-process backend does not lock between threads). Every caller is accounted for: it gets the
result, or (``on_in_progress="raise"``) an ``IdempotencyInProgressError``; nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config

from resilient_aws.idempotency import IdempotencyInProgressError, IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeClock, chaos
from resilient_aws.testing.emulators import NodeEmulator
from tests.idempotency_support import create_idempotency_table

pytestmark = pytest.mark.emulator
CALLERS = 32
FAULTS = {"throttle": 0.10, "error5xx": 0.02}
# The raise-mode runs assert that faults were drawn. Their requests hold timestamps, so which ones
# a seed faults differs from run to run: at these rates 33 requests draw none once in ~1.5e6 runs
# (at FAULTS' once in ~70).
RAISE_FAULTS = {"throttle": 0.30, "error5xx": 0.05}
_names = itertools.count()


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside Lambda the service name prefixes the keys; without one, every call warns.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture
def ddb(dynalite_server: NodeEmulator) -> Any:
    return dynalite_server.client("dynamodb", config=Config(max_pool_connections=CALLERS))


@pytest.fixture
def store(ddb: Any) -> IdempotencyStore:
    table = create_idempotency_table(ddb, f"dup-{next(_names)}")
    policy = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.2)
    return IdempotencyStore(table, client=ddb, policy=policy)


class SlowBody:
    """A side effect that runs until every duplicate has arrived (``release``), or for 0.3 s."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.runs = 0
        self.lock = threading.Lock()
        self.release = release

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.runs += 1
        if self.release is not None:
            assert self.release.wait(60), "the duplicates never all returned"
        else:
            time.sleep(0.3)
        return {"order_id": event["order_id"], "charged": True}


def call_all(
    wrapped: Any, event: dict[str, Any], *, others_returned: threading.Event | None = None
) -> list[Any]:
    """Call ``wrapped`` from every caller at once; ``others_returned`` is set when all but one
    have returned (in raise mode: every duplicate got its answer while the first call runs)."""
    start = threading.Barrier(CALLERS)
    returned = itertools.count(1)

    def one(_: int) -> Any:
        start.wait()
        try:
            return wrapped(event)
        except IdempotencyInProgressError as error:
            return error
        finally:
            if next(returned) == CALLERS - 1 and others_returned is not None:
                others_returned.set()

    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(one, range(CALLERS)))


@pytest.mark.parametrize("seed", [1, 2])
def test_threads_raise_mode(ddb: Any, store: IdempotencyStore, seed: int) -> None:
    duplicates_answered = threading.Event()
    body = SlowBody(release=duplicates_answered)
    wrapped = idempotent(store, key="order_id")(body)
    with chaos(ddb, seed=seed, **RAISE_FAULTS) as injected:
        outcomes = call_all(wrapped, {"order_id": "o-1"}, others_returned=duplicates_answered)
    assert body.runs == 1
    results = [o for o in outcomes if not isinstance(o, IdempotencyInProgressError)]
    in_progress = [o for o in outcomes if isinstance(o, IdempotencyInProgressError)]
    # the body runs until every duplicate has its answer: each of them saw the call in progress
    assert results == [{"order_id": "o-1", "charged": True}]
    assert len(in_progress) == CALLERS - 1
    assert injected.stats.faults > 0
    # once done, every repeat replays
    assert wrapped({"order_id": "o-1"}) == {"order_id": "o-1", "charged": True}


def test_threads_wait_mode(ddb: Any, store: IdempotencyStore) -> None:
    body = SlowBody()
    wait = RetryPolicy(max_attempts=100, base_delay=0.02, max_delay=0.2, max_elapsed=30)
    wrapped = idempotent(store, key="order_id", on_in_progress="wait", wait=wait)(body)
    with chaos(ddb, seed=3, **FAULTS):
        outcomes = call_all(wrapped, {"order_id": "o-2"})
    assert body.runs == 1
    assert outcomes == [{"order_id": "o-2", "charged": True}] * CALLERS


@pytest.mark.parametrize("mode", ["raise", "wait"])
def test_asyncio_tasks(ddb: Any, store: IdempotencyStore, mode: str) -> None:
    runs: list[int] = []
    wait = RetryPolicy(max_attempts=100, base_delay=0.02, max_delay=0.2, max_elapsed=30)

    @idempotent(store, key="order_id", on_in_progress=mode, wait=wait)  # type: ignore[arg-type]
    async def charge(event: dict[str, Any]) -> dict[str, Any]:
        runs.append(1)
        await asyncio.sleep(0.3)
        return {"order_id": event["order_id"], "charged": True}

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(charge({"order_id": f"o-{mode}"}) for _ in range(CALLERS)), return_exceptions=True
        )

    with chaos(ddb, seed=4, **FAULTS):
        outcomes = asyncio.run(main())
    assert len(runs) == 1
    expected = {"order_id": f"o-{mode}", "charged": True}
    unexpected = [
        o for o in outcomes if o != expected and not isinstance(o, IdempotencyInProgressError)
    ]
    assert unexpected == []
    if mode == "wait":
        assert outcomes == [expected] * CALLERS


def test_a_crashed_first_call_is_retryable_after_its_lease(
    ddb: Any, store: IdempotencyStore
) -> None:
    # The lease runs on a clock the test moves: on a loaded machine, 32 callers under chaos can
    # take longer than a real one-second lease, and one of them would take over too early.
    lease_clock = FakeClock(start=time.time())
    store = IdempotencyStore(
        store.table, client=ddb, policy=store.policy, clock=lease_clock.monotonic
    )
    crashed = threading.Event()

    @idempotent(store, key="order_id", lease_s=1.0)
    def charge(event: dict[str, Any]) -> str:
        if not crashed.is_set():
            crashed.set()
            raise SystemExit("the process died mid-call")  # not an Exception: nothing released
        return "charged"

    with pytest.raises(SystemExit):
        charge({"order_id": "o-3"})
    with chaos(ddb, seed=5, **FAULTS):
        outcomes = call_all(charge, {"order_id": "o-3"})
        assert all(isinstance(o, IdempotencyInProgressError) for o in outcomes)
        lease_clock.advance(1.1)
        outcomes = call_all(charge, {"order_id": "o-3"})
    assert "charged" in outcomes
    assert all(o == "charged" or isinstance(o, IdempotencyInProgressError) for o in outcomes)

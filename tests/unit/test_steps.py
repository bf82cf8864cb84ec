"""The step drivers the redrive and the idempotency store share (resilient_aws._steps): one
operation, the same requests, answers, errors and results from a boto3-like and an
aiobotocore-like client."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws._steps import Blocking, Call, Steps, arun_steps, run_steps
from resilient_aws.redrive import _steps as redrive_steps
from resilient_aws.testing import FakeClock


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
        "PutItem",  # type: ignore[arg-type]
    )


def denied() -> ClientError:
    return ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}},
        "PutItem",  # type: ignore[arg-type]
    )


class Client:
    """``put_item`` fails with the errors in ``failures`` first, then echoes its parameters."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.requests: list[dict[str, Any]] = []

    def _answer(self, params: dict[str, Any]) -> Any:
        self.requests.append(params)
        if self.failures:
            raise self.failures.pop(0)
        return {"echo": params}

    def put_item(self, **params: Any) -> Any:
        return self._answer(params)


class AsyncClient(Client):
    async def put_item(self, **params: Any) -> Any:  # type: ignore[override]
        return self._answer(params)


Driver = Callable[..., Any]


def sync_driver(client: Any, steps: Steps[Any], **options: Any) -> Any:
    return run_steps(lambda: client, FakeClock().policy(max_attempts=3), steps, **options)


def async_driver(client: Any, steps: Steps[Any], **options: Any) -> Any:
    import asyncio

    policy = FakeClock().policy(max_attempts=3)
    return asyncio.run(arun_steps(lambda: client, policy, steps, **options))


DRIVERS = [(sync_driver, Client), (async_driver, AsyncClient)]


@pytest.mark.parametrize(("drive", "client_type"), DRIVERS)
def test_every_attempt_s_error_is_kept_for_the_step(drive: Driver, client_type: type) -> None:
    attempts: list[BaseException] = []

    def steps() -> Steps[Any]:
        answer = yield Call("put_item", {"Item": 1}, attempts)
        return answer

    client = client_type(throttled(), throttled())
    assert drive(client, steps()) == {"echo": {"Item": 1}}
    assert [type(error) for error in attempts] == [ClientError, ClientError]
    assert len(client.requests) == 3


@pytest.mark.parametrize(("drive", "client_type"), DRIVERS)
def test_the_error_a_request_means_is_thrown_in_raised_from_the_core_s(
    drive: Driver, client_type: type
) -> None:
    seen: list[BaseException] = []

    def steps() -> Steps[str]:
        try:
            yield Call("put_item", {})
        except LookupError as error:
            seen.append(error)
            raise
        return "not reached"

    def means(error: Exception) -> BaseException | None:
        return LookupError("the table is missing") if isinstance(error, ClientError) else None

    with pytest.raises(LookupError, match="the table is missing") as raised:
        drive(client_type(denied()), steps(), errors=means)
    assert seen == [raised.value]
    assert isinstance(raised.value.__cause__, ClientError)


@pytest.mark.parametrize(("drive", "client_type"), DRIVERS)
def test_a_blocking_step_s_error_is_not_read_as_a_request_s(
    drive: Driver, client_type: type
) -> None:
    def kms() -> None:
        raise denied()  # KMS's AccessDenied is not the table's

    def steps() -> Steps[str]:
        try:
            yield Blocking(kms)
        except ClientError as error:
            return f"caught {error.response['Error']['Code']}"
        return "not reached"

    def means(error: Exception) -> BaseException | None:
        return LookupError("the table is missing")

    assert drive(client_type(), steps(), errors=means) == "caught AccessDeniedException"


@pytest.mark.parametrize(("drive", "client_type"), DRIVERS)
def test_blocking_steps_run_here_when_sync_in_a_worker_thread_when_async(
    drive: Driver, client_type: type
) -> None:
    def steps() -> Steps[tuple[bool, Any]]:
        thread = yield Blocking(threading.get_ident)
        answer = yield Call("put_item", {"Thread": thread})
        return thread == threading.get_ident(), answer

    here, answer = drive(client_type(), steps())
    assert here is (drive is sync_driver)
    assert answer == {"echo": {"Thread": answer["echo"]["Thread"]}}


def accounting(accounted: list[str]) -> Steps[None]:
    """A request that notes what interrupted it, as an operation interrupted mid-request must
    be able to say what it may have left behind."""
    try:
        yield Call("put_item", {})
    except BaseException as error:
        accounted.append(type(error).__name__)
        raise


@pytest.mark.parametrize(("drive", "client_type"), DRIVERS)
def test_an_interrupt_reaches_the_steps_before_it_leaves(drive: Driver, client_type: type) -> None:
    accounted: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        drive(client_type(KeyboardInterrupt()), accounting(accounted))
    assert accounted == ["KeyboardInterrupt"]


@pytest.mark.parametrize(("drive", "client_type"), DRIVERS)
def test_the_client_is_asked_for_at_each_request(drive: Driver, client_type: type) -> None:
    first, second = client_type(), client_type()
    given = iter([first, second])

    def steps() -> Steps[None]:
        yield Call("put_item", {"n": 1})
        yield Call("put_item", {"n": 2})

    if drive is sync_driver:
        run_steps(lambda: next(given), FakeClock().policy(), steps())
    else:
        import asyncio

        asyncio.run(arun_steps(lambda: next(given), FakeClock().policy(), steps()))
    assert (first.requests, second.requests) == ([{"n": 1}], [{"n": 2}])


async def test_the_redrive_s_drivers_are_the_shared_ones() -> None:
    def steps() -> Steps[Any]:
        return (yield Call("put_item", {"Item": 1}))

    policy = FakeClock().policy(max_attempts=2)
    assert redrive_steps.run_steps(Client(throttled()), policy, steps()) == {"echo": {"Item": 1}}
    assert await redrive_steps.arun_steps(AsyncClient(throttled()), policy, steps()) == {
        "echo": {"Item": 1}
    }
    assert redrive_steps.Call is Call


def test_the_drivers_do_not_import_the_retry_core() -> None:
    code = (
        "import sys, resilient_aws._steps; "
        "print(sorted(m for m in ('tenacity', 'resilient_aws.retry', 'asyncio', 'botocore') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


async def test_an_interrupt_reaches_the_redrive_s_steps_too() -> None:
    # before the shared drivers, the redrive's let an interrupt by (its steps were closed later)
    accounted: list[str] = []
    policy = FakeClock().policy()
    with pytest.raises(KeyboardInterrupt):
        redrive_steps.run_steps(Client(KeyboardInterrupt()), policy, accounting(accounted))
    with pytest.raises(KeyboardInterrupt):
        await redrive_steps.arun_steps(
            AsyncClient(KeyboardInterrupt()), policy, accounting(accounted)
        )
    assert accounted == ["KeyboardInterrupt", "KeyboardInterrupt"]

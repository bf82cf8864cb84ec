from __future__ import annotations

import dataclasses
import logging

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from tenacity import stop_after_attempt

from resilient_aws.errors import (
    AttemptsExhaustedError,
    DeadlineExceededError,
    ElapsedTimeExceededError,
    RetryBudgetExhaustedError,
    RetryError,
)
from resilient_aws.retry import RetryBudget, RetryEvent, add_listener, remove_listener, retry
from resilient_aws.testing import FakeClock
from tests.unit.helpers import Flaky, client_error


def test_a_call_that_succeeds_is_called_once_and_never_sleeps(fake_clock: FakeClock) -> None:
    flaky = Flaky(result={"Items": []})
    assert fake_clock.policy().call(flaky) == {"Items": []}
    assert flaky.calls == 1
    assert fake_clock.slept == []


def test_arguments_are_passed_through(fake_clock: FakeClock) -> None:
    def put(table: str, *, item: dict[str, int]) -> tuple[str, dict[str, int]]:
        return table, item

    assert fake_clock.policy().call(put, "orders", item={"n": 1}) == ("orders", {"n": 1})


def test_attempts_are_capped_and_the_last_error_is_the_cause(fake_clock: FakeClock) -> None:
    errors = [client_error("ProvisionedThroughputExceededException") for _ in range(10)]
    flaky = Flaky(*errors)
    with pytest.raises(AttemptsExhaustedError) as caught:
        fake_clock.policy(max_attempts=4).call(flaky)
    assert flaky.calls == 4
    assert len(fake_clock.slept) == 3
    assert caught.value.attempts == 4
    assert caught.value.reason == "attempts"
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.last_error is caught.value.__cause__
    assert "ProvisionedThroughputExceededException" in str(caught.value)


def test_botocore_retries_count_toward_max_attempts_so_layers_do_not_multiply(
    fake_clock: FakeClock,
) -> None:
    # Each error says botocore already sent the request 3 times (2 retries).
    flaky = Flaky(*[client_error("ThrottlingException", retry_attempts=2) for _ in range(10)])
    with pytest.raises(AttemptsExhaustedError) as caught:
        fake_clock.policy(max_attempts=9).call(flaky)
    assert flaky.calls == 3
    assert caught.value.attempts == 9


@pytest.mark.parametrize(
    "error",
    [
        client_error("ValidationException"),
        client_error("AccessDeniedException", 403),
        client_error("ConditionalCheckFailedException"),
        client_error("ResourceNotFoundException"),
        ValueError("a bug in the caller"),
    ],
)
def test_permanent_errors_are_raised_unchanged_without_retry(
    fake_clock: FakeClock, error: Exception
) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)) as caught:
        fake_clock.policy().call(flaky)
    assert caught.value is error
    assert flaky.calls == 1
    assert fake_clock.slept == []


@pytest.mark.parametrize(
    "error",
    [
        client_error("InternalServerError", 500),
        client_error("ServiceUnavailable", 503),
        client_error("SlowDown", 503),
        client_error("TooManyRequestsException", 429),
        ConnectionClosedError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
    ],
)
def test_transient_errors_are_retried(fake_clock: FakeClock, error: Exception) -> None:
    flaky = Flaky(error)
    assert fake_clock.policy().call(flaky) == "ok"
    assert flaky.calls == 2


def test_no_sleep_ever_ends_past_the_deadline(fake_clock: FakeClock) -> None:
    deadline = fake_clock.deadline(2.0)
    policy = fake_clock.policy(max_attempts=100, base_delay=0.2, max_delay=1.0).with_deadline(
        deadline
    )
    sleeps_end: list[float] = []

    def sleep(seconds: float) -> None:
        fake_clock.sleep(seconds)
        sleeps_end.append(fake_clock.now)

    policy = dataclasses.replace(policy, sleep=sleep)
    flaky = Flaky(*[client_error("Throttling") for _ in range(100)], clock=fake_clock, cost=0.05)
    with pytest.raises(DeadlineExceededError) as caught:
        policy.call(flaky)
    assert sleeps_end, "the call should have retried before the deadline"
    assert all(end < deadline.at for end in sleeps_end)
    assert fake_clock.now <= deadline.at
    assert caught.value.reason == "deadline"


def test_an_expired_deadline_allows_the_first_attempt_but_no_retry(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy().with_deadline(0.0)
    flaky = Flaky(client_error("Throttling"))
    with pytest.raises(DeadlineExceededError):
        policy.call(flaky)
    assert flaky.calls == 1


def test_max_elapsed_caps_the_time_spent(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(
        max_attempts=100, base_delay=0.5, max_delay=0.5, jitter="none", max_elapsed=2.0
    )
    start = fake_clock.now
    with pytest.raises(ElapsedTimeExceededError):
        policy.call(Flaky(*[client_error("Throttling") for _ in range(100)]))
    assert fake_clock.now - start <= 2.0


# The lower bound of max_elapsed: the core keeps retrying while the next sleep still ends within
# it. A policy that gave up after the first failure would pass the upper-bound test above.


def test_max_elapsed_keeps_retrying_while_the_next_sleep_still_fits(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(
        max_attempts=100, base_delay=0.5, max_delay=0.5, jitter="none", max_elapsed=2.0
    )
    flaky = Flaky(*[client_error("InternalError", 500) for _ in range(100)])
    with pytest.raises(ElapsedTimeExceededError) as caught:
        policy.call(flaky)
    # four sleeps of 0.5 s end exactly at max_elapsed (allowed); a fifth would end at 2.5 s
    assert fake_clock.slept == [0.5] * 4
    assert flaky.calls == 5
    assert caught.value.attempts == 5
    assert caught.value.reason == "elapsed"


def test_max_elapsed_counts_the_time_spent_in_requests_from_the_first_one(
    fake_clock: FakeClock,
) -> None:
    # each request costs 0.05 s: sleeps of 0.1, 0.2 and 0.4 s end at 0.15, 0.4 and 0.85 s; the
    # fourth request ends at 0.9 s and a sleep of 0.8 s would end at 1.7 s, past max_elapsed
    policy = fake_clock.policy(
        max_attempts=100, base_delay=0.1, max_delay=10.0, jitter="none", max_elapsed=1.0
    )
    errors = [client_error("InternalError", 500) for _ in range(100)]
    flaky = Flaky(*errors, clock=fake_clock, cost=0.05)
    with pytest.raises(ElapsedTimeExceededError) as caught:
        policy.call(flaky)
    assert fake_clock.slept == pytest.approx([0.1, 0.2, 0.4])
    assert flaky.calls == 4
    assert caught.value.attempts == 4


def test_a_call_that_recovers_within_max_elapsed_succeeds(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(
        max_attempts=100, base_delay=0.5, max_delay=0.5, jitter="none", max_elapsed=2.0
    )
    flaky = Flaky(*[client_error("InternalError", 500) for _ in range(4)])
    assert policy.call(flaky) == "ok"
    assert flaky.calls == 5
    assert fake_clock.total_slept == pytest.approx(2.0)


async def test_max_elapsed_lower_bound_holds_for_async_calls(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(
        max_attempts=100, base_delay=0.5, max_delay=0.5, jitter="none", max_elapsed=2.0
    )
    calls = 0

    async def always() -> None:
        nonlocal calls
        calls += 1
        raise client_error("InternalError", 500)

    with pytest.raises(ElapsedTimeExceededError):
        await policy.acall(always)
    assert calls == 5
    assert fake_clock.slept == [0.5] * 4


def test_the_budget_refuses_retries_when_many_calls_fail(fake_clock: FakeClock) -> None:
    budget = RetryBudget(12, retry_cost=5, throttle_cost=5)
    policy = fake_clock.policy(max_attempts=50, budget=budget)
    refused: list[RetryEvent] = []
    policy = dataclasses.replace(policy, listeners=(refused.append,))
    with pytest.raises(RetryBudgetExhaustedError):
        policy.call(Flaky(*[client_error("Throttling") for _ in range(50)]))
    assert budget.available == 2
    assert [e.kind for e in refused].count("budget_refused") == 1
    # a second caller sharing the budget gets no retry at all
    flaky = Flaky(client_error("InternalError", 500))
    with pytest.raises(RetryBudgetExhaustedError):
        policy.call(flaky)
    assert flaky.calls == 1


def test_success_refills_the_budget(fake_clock: FakeClock) -> None:
    budget = RetryBudget(100, retry_cost=10, throttle_cost=5, success_refund=1)
    policy = fake_clock.policy(budget=budget)
    policy.call(Flaky(client_error("Throttling")))
    assert budget.available == 100  # the retry's 5 tokens came back on success
    budget.try_acquire(50)
    policy.call(Flaky())
    assert budget.available == 51


def test_budget_for_client_is_shared_per_client() -> None:
    class Client:
        pass

    a, b = Client(), Client()
    assert RetryBudget.for_client(a) is RetryBudget.for_client(a)
    assert RetryBudget.for_client(a) is not RetryBudget.for_client(b)


def test_a_tenacity_stop_composes_with_the_policy(fake_clock: FakeClock) -> None:
    flaky = Flaky(*[client_error("Throttling") for _ in range(10)])
    with pytest.raises(RetryError) as caught:
        fake_clock.policy(stop=stop_after_attempt(2)).call(flaky)
    assert flaky.calls == 2
    assert caught.value.reason == "stop"


def test_listeners_and_logs_see_retries_and_give_ups(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[RetryEvent] = []
    add_listener(seen.append)
    try:
        caplog.set_level(logging.DEBUG, logger="resilient_aws")
        with pytest.raises(AttemptsExhaustedError):
            fake_clock.policy(max_attempts=3).call(Flaky(*[client_error("Throttling")] * 3))
        fake_clock.policy().call(Flaky(client_error("Throttling")))
    finally:
        remove_listener(seen.append)
    kinds = [e.kind for e in seen]
    assert kinds == ["retry", "retry", "give_up", "retry", "recovered"]
    assert seen[-1].attempt == 2  # recovered on the second attempt
    assert seen[2].reason == "attempts"
    assert seen[0].error_code == "Throttling"
    assert seen[0].operation == "flaky"
    give_ups = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(give_ups) == 1
    assert "gave up after 3 attempt(s)" in give_ups[0].getMessage()


def test_a_broken_listener_does_not_break_the_call(fake_clock: FakeClock) -> None:
    def broken(event: RetryEvent) -> None:
        raise RuntimeError("metrics backend down")

    policy = fake_clock.policy(listeners=(broken,))
    assert policy.call(Flaky(client_error("Throttling"))) == "ok"


def test_the_library_logger_is_silent_by_default() -> None:
    import resilient_aws

    handlers = logging.getLogger(resilient_aws.__name__).handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


async def test_async_callables_are_retried_with_async_sleep(fake_clock: FakeClock) -> None:
    calls = 0

    async def fetch(key: str) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise client_error("ThrottlingException")
        return key

    assert await fake_clock.policy().acall(fetch, "k") == "k"
    assert calls == 3
    assert len(fake_clock.slept) == 2


async def test_async_give_up_raises_retry_error(fake_clock: FakeClock) -> None:
    async def always() -> None:
        raise client_error("ThrottlingException")

    with pytest.raises(AttemptsExhaustedError):
        await fake_clock.policy(max_attempts=2).acall(always)


async def test_retry_decorator_on_async_def(fake_clock: FakeClock) -> None:
    calls = 0

    @retry(fake_clock.policy())
    async def handler(event: dict[str, int]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise client_error("InternalFailure", 500)
        return event["n"]

    assert await handler({"n": 5}) == 5
    assert handler.__name__ == "handler"


def test_retry_decorator_forms(fake_clock: FakeClock) -> None:
    @retry
    def bare() -> str:
        return "bare"

    @retry()
    def empty() -> str:
        return "empty"

    flaky = Flaky(client_error("Throttling"))
    wrapped = retry(fake_clock.policy())(flaky)
    assert (bare(), empty(), wrapped()) == ("bare", "empty", "ok")
    assert flaky.calls == 2


class NotReadyError(Exception):
    pass


def test_a_classifier_makes_an_application_error_retryable(fake_clock: FakeClock) -> None:
    from resilient_aws.retry import ErrorClass, classify

    def not_ready_is_transient(error: BaseException) -> ErrorClass:
        if isinstance(error, NotReadyError):
            return ErrorClass(True, "transient", "NotReady")
        return classify(error)

    policy = fake_clock.policy(max_attempts=5, classifier=not_ready_is_transient)
    flaky = Flaky(NotReadyError(), NotReadyError(), result="ready")
    assert policy.call(flaky) == "ready"
    assert flaky.calls == 3
    assert len(fake_clock.slept) == 2

    with pytest.raises(AttemptsExhaustedError) as info:
        policy.call(Flaky(*[NotReadyError() for _ in range(5)]))
    assert isinstance(info.value.last_error, NotReadyError)
    # the default classifier still applies to everything else
    with pytest.raises(ValueError, match="permanent"):
        policy.call(Flaky(ValueError("permanent")))


async def test_a_classifier_applies_to_async_calls(fake_clock: FakeClock) -> None:
    from resilient_aws.retry import ErrorClass

    policy = fake_clock.policy(
        classifier=lambda error: ErrorClass(isinstance(error, NotReadyError), "transient", "x")
    )
    errors = [NotReadyError()]

    async def attempt() -> str:
        if errors:
            raise errors.pop()
        return "ok"

    assert await policy.acall(attempt) == "ok"


def test_a_permanent_error_after_retries_is_raised_unchanged(fake_clock: FakeClock) -> None:
    permanent = client_error("ValidationException")
    flaky = Flaky(client_error("Throttling"), permanent)
    with pytest.raises(ClientError) as caught:
        fake_clock.policy().call(flaky)
    assert caught.value is permanent
    assert flaky.calls == 2


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "Throttling"}}, "Op"),  # no ResponseMetadata at all
        client_error("Throttling", retry_attempts=0),
        ConnectionClosedError(endpoint_url="http://x"),
    ],
)
def test_an_error_without_botocore_retries_counts_as_one_attempt(
    fake_clock: FakeClock, error: Exception
) -> None:
    flaky = Flaky(*[error] * 5)
    with pytest.raises(AttemptsExhaustedError) as caught:
        fake_clock.policy(max_attempts=3).call(flaky)
    assert flaky.calls == 3
    assert caught.value.attempts == 3


def test_one_botocore_retry_counts_as_one_more_attempt(fake_clock: FakeClock) -> None:
    flaky = Flaky(*[client_error("Throttling", retry_attempts=1) for _ in range(5)])
    with pytest.raises(AttemptsExhaustedError) as caught:
        fake_clock.policy(max_attempts=4).call(flaky)
    assert flaky.calls == 2
    assert caught.value.attempts == 4


def test_a_retry_count_that_is_not_a_number_counts_as_none(fake_clock: FakeClock) -> None:
    error = client_error("Throttling")
    error.response["ResponseMetadata"]["RetryAttempts"] = "2"  # type: ignore[typeddict-item]
    flaky = Flaky(*[error] * 5)
    with pytest.raises(AttemptsExhaustedError):
        fake_clock.policy(max_attempts=3).call(flaky)
    assert flaky.calls == 3


async def test_an_async_call_that_recovers_returns_its_retry_tokens_and_says_so(
    fake_clock: FakeClock,
) -> None:
    budget = RetryBudget(100, retry_cost=10, throttle_cost=5, success_refund=1)
    seen: list[RetryEvent] = []
    policy = fake_clock.policy(budget=budget, listeners=(seen.append,))
    errors = [client_error("Throttling")]

    async def attempt() -> str:
        if errors:
            raise errors.pop()
        return "ok"

    assert await policy.acall(attempt) == "ok"
    assert budget.available == 100  # the retry's 5 tokens came back
    assert [e.kind for e in seen] == ["retry", "recovered"]

    budget.try_acquire(50)
    assert await policy.acall(attempt) == "ok"  # at once: the success refund
    assert budget.available == 51


@pytest.mark.parametrize(
    ("error", "left"),
    [(client_error("InternalError", 500), 90), (client_error("Throttling"), 95)],
)
def test_a_retry_costs_the_budget_by_the_kind_of_error(
    fake_clock: FakeClock, error: Exception, left: int
) -> None:
    budget = RetryBudget(100, retry_cost=10, throttle_cost=5)
    with pytest.raises(AttemptsExhaustedError):
        fake_clock.policy(max_attempts=2, budget=budget).call(Flaky(error, error))
    assert budget.available == left  # one retry, paid for and never given back

from __future__ import annotations

import random
import statistics

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from resilient_aws.retry import RetryPolicy, wait_jittered
from resilient_aws.retry._wait import retry_after
from resilient_aws.testing import FakeClock
from tests.unit.helpers import Flaky, client_error


class _State:
    def __init__(self, attempt_number: int, upcoming_sleep: float = 0.0) -> None:
        self.attempt_number = attempt_number
        self.upcoming_sleep = upcoming_sleep


bases = st.floats(min_value=0.001, max_value=1.0)
caps = st.floats(min_value=1.0, max_value=30.0)
attempts = st.integers(min_value=1, max_value=200)


@given(base=bases, cap=caps, attempt=attempts, seed=st.integers(0, 2**32))
def test_full_jitter_stays_between_zero_and_the_capped_exponential(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    wait = wait_jittered(base, cap, "full", random.Random(seed))
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert 0.0 <= wait(_State(attempt)) <= ceiling  # type: ignore[arg-type]


@given(base=bases, cap=caps, attempt=attempts, seed=st.integers(0, 2**32))
def test_equal_jitter_keeps_at_least_half_the_exponential(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    wait = wait_jittered(base, cap, "equal", random.Random(seed))
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= wait(_State(attempt)) <= ceiling  # type: ignore[arg-type]


@given(base=bases, cap=caps, previous=st.floats(0.0, 100.0), seed=st.integers(0, 2**32))
def test_decorrelated_jitter_grows_from_the_previous_sleep_up_to_the_cap(
    base: float, cap: float, previous: float, seed: int
) -> None:
    wait = wait_jittered(base, cap, "decorrelated", random.Random(seed))
    delay = wait(_State(3, previous))  # type: ignore[arg-type]
    assert min(base, cap) <= delay <= cap
    assert delay <= max(base, (previous or base) * 3)


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (500, 2.0)]
)
def test_no_jitter_is_the_capped_exponential(attempt: int, expected: float) -> None:
    wait = wait_jittered(0.1, 2.0, "none")
    assert wait(_State(attempt)) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated", "none"])
def test_every_sleep_of_a_retried_call_is_within_the_jitter_bounds(jitter: str) -> None:
    clock = FakeClock()
    policy = clock.policy(
        max_attempts=8, base_delay=0.1, throttle_base_delay=0.1, max_delay=1.0, jitter=jitter
    )
    flaky = Flaky(*[client_error("ThrottlingException") for _ in range(7)])
    assert policy.call(flaky) == "ok"
    assert flaky.calls == 8
    assert len(clock.slept) == 7
    for n, delay in enumerate(clock.slept, start=1):
        assert 0.0 <= delay <= 1.0
        if jitter in ("full", "equal", "none"):
            assert delay <= min(1.0, 0.1 * 2 ** (n - 1)) + 1e-12
        if jitter in ("equal", "none"):
            assert delay >= min(1.0, 0.1 * 2 ** (n - 1)) / 2 - 1e-12


def test_same_seed_same_sleeps() -> None:
    first, second = FakeClock(seed=7), FakeClock(seed=7)
    for clock in (first, second):
        clock.policy(max_attempts=5).call(Flaky(*[client_error("Throttling")] * 4))
    assert first.slept == second.slept


def test_a_tenacity_wait_replaces_the_jitter() -> None:
    from tenacity import wait_fixed

    clock = FakeClock()
    policy = clock.policy(wait=wait_fixed(0.25), max_attempts=3)
    policy.call(Flaky(client_error("Throttling"), client_error("Throttling")))
    assert clock.slept == [0.25, 0.25]


def test_default_policy_uses_full_jitter() -> None:
    assert RetryPolicy().jitter == "full"


# Spread: the bounds above hold for a jitter replaced by its ceiling too. These draw many delays
# from a seeded generator and check that they cover the formula's whole range, evenly.

DRAWS = 4_000


def _spread_ok(delays: list[float], low: float, high: float) -> None:
    """``delays`` within ``[low, high]``, reaching both ends, about uniformly spread."""
    assert all(low <= d <= high for d in delays)
    width = high - low
    assert min(delays) < low + 0.01 * width
    assert max(delays) > high - 0.01 * width
    assert len(set(delays)) > 0.99 * len(delays)  # not a handful of fixed values
    assert statistics.fmean(delays) == pytest.approx((low + high) / 2, rel=0.03)
    # each tenth of the range holds about a tenth of the draws
    tenths = [0] * 10
    for d in delays:
        tenths[min(9, int((d - low) / width * 10))] += 1
    assert all(0.07 * len(delays) < count < 0.13 * len(delays) for count in tenths), tenths


@pytest.mark.parametrize("attempt", [1, 4, 9])
def test_full_jitter_draws_uniformly_between_zero_and_the_ceiling(attempt: int) -> None:
    wait = wait_jittered(0.1, 10.0, "full", random.Random(1234))
    ceiling = min(10.0, 0.1 * 2 ** (attempt - 1))
    _spread_ok([wait.delay(attempt) for _ in range(DRAWS)], 0.0, ceiling)


@pytest.mark.parametrize("attempt", [1, 4, 9])
def test_equal_jitter_draws_uniformly_between_half_the_ceiling_and_the_ceiling(
    attempt: int,
) -> None:
    wait = wait_jittered(0.1, 10.0, "equal", random.Random(1234))
    ceiling = min(10.0, 0.1 * 2 ** (attempt - 1))
    _spread_ok([wait.delay(attempt) for _ in range(DRAWS)], ceiling / 2, ceiling)


@pytest.mark.parametrize("previous", [0.0, 0.1, 0.5, 2.0])
def test_decorrelated_jitter_draws_uniformly_between_base_and_three_times_the_previous(
    previous: float,
) -> None:
    wait = wait_jittered(0.1, 10.0, "decorrelated", random.Random(1234))
    high = max(0.1, (previous or 0.1) * 3)
    _spread_ok([wait.delay(3, previous=previous) for _ in range(DRAWS)], 0.1, high)


def test_decorrelated_jitter_is_capped() -> None:
    wait = wait_jittered(0.1, 10.0, "decorrelated", random.Random(1234))
    delays = [wait.delay(3, previous=5.0) for _ in range(DRAWS)]  # uniform(0.1, 15), capped
    assert max(delays) == 10.0
    assert min(delays) < 0.5
    assert sum(d == 10.0 for d in delays) / DRAWS == pytest.approx(5.0 / 14.9, abs=0.03)


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated"])
def test_the_throttle_base_is_jittered_too(jitter: str) -> None:
    wait = wait_jittered(0.05, 10.0, jitter, random.Random(1234), throttle_base=1.0)  # type: ignore[arg-type]
    delays = [wait.delay(1, throttle=True) for _ in range(DRAWS)]
    low = {"full": 0.0, "equal": 0.5, "decorrelated": 1.0}[jitter]
    high = 3.0 if jitter == "decorrelated" else 1.0
    _spread_ok(delays, low, high)


@pytest.mark.parametrize(
    ("jitter", "low", "high"), [("full", 0.0, 1.0), ("equal", 0.5, 1.0), ("none", 1.0, 1.0)]
)
def test_the_sleeps_of_retried_calls_spread_per_attempt(
    jitter: str, low: float, high: float
) -> None:
    """End to end: the sleeps a policy's calls make, attempt by attempt, spread over the
    formula's range (the seam is the policy's seeded rng)."""
    clock = FakeClock(seed=99)
    policy = clock.policy(base_delay=0.05, max_delay=5.0, jitter=jitter)
    by_attempt: list[list[float]] = [[], [], []]
    for _ in range(600):
        clock.slept.clear()
        flaky = Flaky(*[client_error("InternalError", 500) for _ in range(3)])
        assert policy.call(flaky) == "ok"
        for n, delay in enumerate(clock.slept):
            by_attempt[n].append(delay)
    for n, delays in enumerate(by_attempt, start=1):
        ceiling = 0.05 * 2 ** (n - 1)
        assert len(delays) == 600
        if jitter == "none":
            assert delays == [pytest.approx(ceiling)] * 600
            continue
        assert all(low * ceiling <= d <= high * ceiling for d in delays)
        assert min(delays) < (low + 0.02) * ceiling
        assert max(delays) > (high - 0.02) * ceiling
        assert statistics.fmean(delays) == pytest.approx((low + high) / 2 * ceiling, rel=0.08)


def test_decorrelated_sleeps_of_a_retried_call_follow_the_previous_sleep() -> None:
    clock = FakeClock(seed=5)
    policy = clock.policy(max_attempts=6, base_delay=0.05, max_delay=100.0, jitter="decorrelated")
    firsts: list[float] = []
    for _ in range(400):
        clock.slept.clear()
        policy.call(Flaky(*[client_error("InternalError", 500) for _ in range(5)]))
        assert len(clock.slept) == 5
        previous = 0.0
        for delay in clock.slept:
            assert 0.05 <= delay <= max(0.05, (previous or 0.05) * 3)
            previous = delay
        firsts.append(clock.slept[0])
    # the first sleep draws from uniform(base, 3 * base)
    assert min(firsts) < 0.06 and max(firsts) > 0.14
    assert statistics.fmean(firsts) == pytest.approx(0.1, rel=0.08)


# -- defaults and x-amz-retry-after ------------------------------------------------------------


def test_the_ceiling_and_delay_default_to_no_throttle_and_no_previous_sleep() -> None:
    wait = wait_jittered(0.1, 10.0, "none", throttle_base=1.0)
    assert wait.ceiling(1) == pytest.approx(0.1)
    assert wait.delay(1) == pytest.approx(0.1)
    assert wait.ceiling(1, throttle=True) == pytest.approx(1.0)
    decorrelated = wait_jittered(0.1, 10.0, "decorrelated", random.Random(3))
    _spread_ok([decorrelated.delay(3) for _ in range(DRAWS)], 0.1, 0.3)  # uniform(base, 3 base)


def _with_headers(headers: dict[str, str] | None) -> ClientError:
    metadata: dict[str, object] = {"HTTPStatusCode": 400}
    if headers is not None:
        metadata["HTTPHeaders"] = headers
    return ClientError(
        {"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": metadata},  # type: ignore[typeddict-item]
        "Op",
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-amz-retry-after": "1500"}, 1.5),
        ({"X-Amz-Retry-After": "2500"}, 2.5),  # a hand-built error may keep the header's case
        ({"x-amz-retry-after": "0"}, 0.0),
        ({"x-amz-retry-after": "-5"}, None),
        ({"x-amz-retry-after": "soon"}, None),
        ({"x-amz-request-id": "abc"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_reads_the_header_in_milliseconds(
    headers: dict[str, str] | None, seconds: float | None
) -> None:
    assert retry_after(_with_headers(headers)) == seconds

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_aws.retry import RetryPolicy, wait_jittered
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

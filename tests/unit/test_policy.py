from __future__ import annotations

import dataclasses
import math

import pytest

from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import Deadline, RetryBudget, RetryPolicy
from resilient_aws.testing import FakeClock


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -3),
        ("max_attempts", 2.5),
        ("max_attempts", True),
        ("base_delay", -0.1),
        ("base_delay", math.nan),
        ("max_delay", -1.0),
        ("max_delay", math.inf),
        ("jitter", "fancy"),
        ("max_elapsed", 0),
        ("max_elapsed", -5.0),
        ("deadline", 3.0),
        ("budget", 100),
    ],
)
def test_invalid_values_raise_configuration_error_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy(**{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_max_delay_below_base_delay_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="max_delay"):
        RetryPolicy(base_delay=1.0, max_delay=0.5)


def test_policy_is_frozen_and_variants_come_from_replace() -> None:
    policy = RetryPolicy(max_attempts=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 4  # type: ignore[misc]
    variant = dataclasses.replace(policy, max_attempts=4)
    assert (policy.max_attempts, variant.max_attempts) == (3, 4)
    with pytest.raises(ConfigurationError):
        dataclasses.replace(policy, jitter="nope")  # type: ignore[arg-type]


def test_with_deadline_keeps_the_shared_policy_untouched_and_picks_the_sooner() -> None:
    clock = FakeClock()
    shared = clock.policy()
    late = shared.with_deadline(10.0)
    assert shared.deadline is None
    assert late.deadline is not None
    assert late.deadline.remaining() == pytest.approx(10.0)
    sooner = late.with_deadline(clock.deadline(2.0))
    assert sooner.deadline is not None
    assert sooner.deadline.remaining() == pytest.approx(2.0)
    assert late.with_deadline(clock.deadline(30.0)).deadline == late.deadline


class _Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_deadline_from_lambda_context_keeps_a_margin() -> None:
    clock = FakeClock()
    deadline = Deadline.from_lambda_context(_Context(5000), margin_s=1.5, clock=clock.monotonic)
    assert deadline.remaining() == pytest.approx(3.5)
    assert deadline.allows(3.4)
    assert not deadline.allows(3.5)
    clock.advance(3.5)
    assert deadline.expired


def test_deadline_from_an_almost_finished_invocation_is_already_expired() -> None:
    clock = FakeClock()
    deadline = Deadline.from_lambda_context(_Context(200), margin_s=1.0, clock=clock.monotonic)
    assert deadline.expired
    assert deadline.remaining() == 0.0


def test_for_lambda_uses_the_policy_clock() -> None:
    clock = FakeClock()
    policy = clock.policy().for_lambda(_Context(3000), margin_s=0.5)
    assert policy.deadline is not None
    assert policy.deadline.remaining() == pytest.approx(2.5)


@pytest.mark.parametrize("bad", [{"margin_s": -1.0}])
def test_deadline_rejects_negative_margin(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="margin_s"):
        Deadline.from_lambda_context(_Context(1000), **bad)
    with pytest.raises(ConfigurationError, match="seconds"):
        Deadline.after(-1)


def test_botocore_config_leaves_every_retry_to_the_core() -> None:
    config = RetryPolicy(max_attempts=2).botocore_config(connect_timeout=3)
    assert config.retries == {"mode": "legacy", "total_max_attempts": 1}
    assert config.connect_timeout == 3


def test_budget_rejects_negative_settings() -> None:
    with pytest.raises(ConfigurationError, match="capacity"):
        RetryBudget(-1)

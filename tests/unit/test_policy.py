from __future__ import annotations

import dataclasses
import math
import warnings

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


def test_botocore_config_with_one_attempt_is_not_deprecated() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = RetryPolicy(max_attempts=3).botocore_config(max_attempts=1)
    assert config.retries == {"mode": "legacy", "total_max_attempts": 1}


def test_botocore_config_with_a_share_warns_at_the_caller_and_is_capped() -> None:
    with pytest.warns(DeprecationWarning, match="deprecated") as caught:
        config = RetryPolicy(max_attempts=3).botocore_config(max_attempts=5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert caught[0].filename == __file__  # stacklevel: the line that asked for it
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert RetryPolicy(max_attempts=3).botocore_config(max_attempts=2).retries == {
            "mode": "standard",
            "total_max_attempts": 2,
        }


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_botocore_config_refuses_a_share_that_is_not_a_positive_int(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy().botocore_config(max_attempts=bad)  # type: ignore[arg-type]


def test_deadline_from_lambda_context_keeps_one_second_by_default_and_may_keep_none() -> None:
    clock = FakeClock()
    default = Deadline.from_lambda_context(_Context(5000), clock=clock.monotonic)
    assert default.remaining() == pytest.approx(4.0)
    none = Deadline.from_lambda_context(_Context(5000), margin_s=0, clock=clock.monotonic)
    assert none.remaining() == pytest.approx(5.0)


def test_deadline_allows_a_sleep_only_if_it_ends_before_the_deadline() -> None:
    clock = FakeClock()
    deadline = clock.deadline(2.0)
    assert deadline.allows(1.999)
    assert not deadline.allows(2.0)
    assert not deadline.expired
    assert deadline.remaining() == pytest.approx(2.0)
    clock.advance(2.0)
    assert deadline.expired
    assert deadline.remaining() == 0.0
    clock.advance(1.0)
    assert deadline.remaining() == 0.0  # never negative


def test_the_sooner_deadline_wins_either_way_round() -> None:
    clock = FakeClock()
    soon, late = clock.deadline(1.0), clock.deadline(5.0)
    assert soon.earliest(late) is soon
    assert late.earliest(soon) is soon
    assert late.earliest(None) is late

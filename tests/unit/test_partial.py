from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_aws.retry import FailedEntry, RetryPolicy, arun_partial, run_partial
from resilient_aws.testing import FakeClock
from tests.unit.helpers import client_error


class FakeBatchApi:
    """A batch API that fails some entries per call, retryably or not, and records what it kept."""

    def __init__(
        self, *, seed: int = 0, retryable_rate: float = 0.3, poison: frozenset[str] = frozenset()
    ):
        self.rng = random.Random(seed)
        self.retryable_rate = retryable_rate
        self.poison = poison
        self.stored: Counter[str] = Counter()
        self.requests: list[list[str]] = []
        self.retryable_failures: list[set[str]] = []
        self.request_errors: list[Exception] = []

    def send(self, batch: list[str]) -> list[FailedEntry[str]]:
        self.requests.append(list(batch))
        if self.request_errors:
            raise self.request_errors.pop(0)
        failed = []
        for entry in batch:
            if entry in self.poison:
                failed.append(FailedEntry(entry, entry, "ValidationError", "bad", retryable=False))
            elif self.rng.random() < self.retryable_rate:
                failed.append(FailedEntry(entry, entry, "ThrottlingException", retryable=True))
            else:
                self.stored[entry] += 1
        self.retryable_failures.append({f.entry for f in failed if f.retryable})
        return failed


def _entries(n: int) -> list[str]:
    return [f"e{i}" for i in range(n)]


def test_every_entry_ends_stored_and_only_failures_are_resent(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(seed=3, retryable_rate=0.4)
    entries = _entries(25)
    outcome = run_partial(
        fake_clock.policy(max_attempts=30), api.send, entries, entry_id=str, operation="Put"
    )
    assert outcome.ok
    assert outcome.succeeded == 25
    assert set(api.stored) == set(entries)
    assert all(count == 1 for count in api.stored.values())
    # each request after the first holds only entries that failed in the one before
    for before, after in zip(api.requests, api.requests[1:], strict=False):
        assert set(after) <= set(before)
        assert not set(after) & set(api.stored) - set(after)
    assert outcome.resent == sum(len(r) for r in api.requests[1:])
    assert len(fake_clock.slept) == len(api.requests) - 1


def test_permanent_failures_are_reported_at_once_and_never_resent(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(seed=1, retryable_rate=0.5, poison=frozenset({"e3", "e7"}))
    outcome = run_partial(
        fake_clock.policy(max_attempts=30), api.send, _entries(10), entry_id=str, operation="Put"
    )
    assert sorted(f.entry_id for f in outcome.failed) == ["e3", "e7"]
    assert all(f.attempts == 1 and not f.retryable and f.gave_up is None for f in outcome.failed)
    assert sum(r.count("e3") for r in api.requests) == 1
    assert outcome.succeeded == 8


def test_giving_up_reports_every_pending_entry_with_the_reason(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(retryable_rate=1.0)
    outcome = run_partial(
        fake_clock.policy(max_attempts=3), api.send, _entries(5), entry_id=str, operation="Put"
    )
    assert outcome.gave_up == "attempts"
    assert [f.entry_id for f in outcome.failed] == _entries(5)
    assert all(f.retryable and f.gave_up == "attempts" and f.attempts == 3 for f in outcome.failed)
    assert len(api.requests) == 3


def test_the_deadline_stops_retries_and_reports_what_is_left(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(retryable_rate=1.0)
    policy = fake_clock.policy(max_attempts=100, base_delay=0.5, max_delay=0.5, jitter="none")
    outcome = run_partial(
        policy.with_deadline(1.2), api.send, _entries(4), entry_id=str, operation="Put"
    )
    assert outcome.gave_up == "deadline"
    assert len(outcome.failed) == 4
    assert fake_clock.total_slept <= 1.2


def test_a_retryable_request_error_resends_the_whole_pending_set(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(retryable_rate=0.0)
    api.request_errors = [client_error("InternalServerError", 500), client_error("Throttling")]
    outcome = run_partial(fake_clock.policy(), api.send, _entries(3), entry_id=str, operation="Put")
    assert outcome.ok
    assert api.requests == [_entries(3)] * 3
    assert outcome.attempts == 3


def test_a_permanent_request_error_fails_every_pending_entry(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(retryable_rate=0.0)
    api.request_errors = [client_error("AccessDeniedException")]
    outcome = run_partial(fake_clock.policy(), api.send, _entries(3), entry_id=str, operation="Put")
    assert [f.code for f in outcome.failed] == ["AccessDeniedException"] * 3
    assert all(not f.retryable and f.gave_up is None for f in outcome.failed)


def test_bugs_in_send_propagate(fake_clock: FakeClock) -> None:
    def send(batch: list[str]) -> list[FailedEntry[str]]:
        raise TypeError("adapter bug")

    with pytest.raises(TypeError):
        run_partial(fake_clock.policy(), send, ["a"], entry_id=str, operation="Put")


def test_nothing_to_send_sends_nothing(fake_clock: FakeClock) -> None:
    api = FakeBatchApi()
    outcome = run_partial(fake_clock.policy(), api.send, [], entry_id=str, operation="Put")
    assert (outcome.total, outcome.failed, api.requests) == (0, (), [])


def test_failed_entry_repr_names_the_entry_not_its_payload() -> None:
    failure = FailedEntry({"card": "4111 1111 1111 1111"}, "order-7", "Throttled")
    assert "4111" not in repr(failure)
    assert "order-7" in repr(failure)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    seed=st.integers(0, 10_000),
    rate=st.floats(0.0, 0.9),
    poison=st.sets(st.integers(0, 59), max_size=5),
    max_attempts=st.integers(1, 6),
)
def test_property_each_entry_is_stored_once_or_reported_once(
    n: int, seed: int, rate: float, poison: set[int], max_attempts: int
) -> None:
    clock = FakeClock(seed=seed)
    entries = _entries(n)
    api = FakeBatchApi(seed=seed, retryable_rate=rate, poison=frozenset(f"e{i}" for i in poison))
    outcome = run_partial(
        clock.policy(max_attempts=max_attempts), api.send, entries, entry_id=str, operation="Put"
    )
    failed = [f.entry for f in outcome.failed]
    assert len(failed) == len(set(failed))
    assert set(failed).isdisjoint(api.stored)
    assert set(failed) | set(api.stored) == set(entries)
    assert all(count == 1 for count in api.stored.values())
    assert outcome.succeeded == len(api.stored)


async def test_async_partial(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(seed=5, retryable_rate=0.5)

    async def send(batch: list[str]) -> list[FailedEntry[str]]:
        return api.send(batch)

    outcome = await arun_partial(
        fake_clock.policy(max_attempts=30), send, _entries(20), entry_id=str, operation="Put"
    )
    assert outcome.ok
    assert set(api.stored) == set(_entries(20))


def test_policy_method_is_the_same_engine(fake_clock: FakeClock) -> None:
    api = FakeBatchApi(seed=2)
    policy: RetryPolicy = fake_clock.policy(max_attempts=30)
    assert policy.run_partial(api.send, _entries(7), entry_id=str, operation="Put").ok


def test_attempts_are_counted_by_entry_id_even_when_send_rebuilds_entries(
    fake_clock: FakeClock,
) -> None:
    def send(batch: list[str]) -> list[FailedEntry[str]]:
        # like parsing UnprocessedItems: new objects, equal ids
        return [
            FailedEntry("".join(list(e)), "".join(list(e)), "Unprocessed", retryable=True)
            for e in batch
        ]

    outcome = run_partial(
        fake_clock.policy(max_attempts=4), send, ["a", "b"], entry_id=str, operation="Put"
    )
    assert [f.attempts for f in outcome.failed] == [4, 4]
    assert outcome.resent == 6


def test_botocore_retries_of_a_200_count_toward_max_attempts(fake_clock: FakeClock) -> None:
    from resilient_aws.retry import SendResult

    calls = 0

    def send(batch: list[str]) -> SendResult[str]:
        nonlocal calls
        calls += 1
        # botocore retried twice (two 500s) before the 200 that still failed every entry
        return SendResult(
            [FailedEntry(e, e, "Unprocessed", retryable=True) for e in batch], botocore_retries=2
        )

    outcome = run_partial(
        fake_clock.policy(max_attempts=6), send, ["a"], entry_id=str, operation="Put"
    )
    assert calls == 2
    assert outcome.attempts == 6
    assert outcome.gave_up == "attempts"

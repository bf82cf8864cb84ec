"""Retry under pressure: withheld entries ride in full requests, the pacer slows the whole
writer, and nothing is given up while the service keeps completing entries.

Every scenario runs on a :class:`FakeClock` (time moves only when the library sleeps or the
fake service spends time) with the default policy's attempts and delays.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import tenacity

from resilient_aws.batch import SqsSender
from resilient_aws.errors import BatchWriteError, ConfigurationError
from resilient_aws.results import BatchResult
from resilient_aws.retry import Pacer, RetryBudget, RetryEvent, RetryPolicy
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


def balanced(result: BatchResult[Any]) -> bool:
    return result.submitted == result.succeeded + len(result.failed) + result.deduplicated


class Queue:
    """A fake SendMessageBatch: ``withhold(body, sends)`` says whether to fail an entry now.

    Each request costs ``latency`` seconds of the fake clock; ``capacity`` (entries per second,
    a token bucket of a tenth of a second) withholds what the queue cannot take, as a
    throttled service does. ``accepted`` lists bodies in the order they were taken.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        withhold: Any = None,
        latency: float = 0.005,
        capacity: float | None = None,
    ) -> None:
        self.clock, self.withhold, self.latency, self.capacity = clock, withhold, latency, capacity
        self.accepted: list[str] = []
        self.sends: dict[str, int] = {}
        self.request_sizes: list[int] = []
        self.tokens = capacity / 10 if capacity else 0.0
        self.refilled = clock.now

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.clock.advance(self.latency)
        self.request_sizes.append(len(Entries))
        if self.capacity:
            now = self.clock.now
            self.tokens = min(
                self.capacity / 10, self.tokens + (now - self.refilled) * self.capacity
            )
            self.refilled = now
        ok, failed = [], []
        for entry in Entries:
            body = entry["MessageBody"]
            self.sends[body] = self.sends.get(body, 0) + 1
            held = self.withhold is not None and self.withhold(body, self.sends[body])
            if self.capacity:
                held = held or self.tokens < 1
                if not held:
                    self.tokens -= 1
            if held:
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False})
            else:
                ok.append({"Id": entry["Id"], "MessageId": body})
                self.accepted.append(body)
        return {"Successful": ok, "Failed": failed}


def send_all(queue: Queue, policy: RetryPolicy, count: int, **options: Any) -> BatchResult[Any]:
    sender = SqsSender(QUEUE, client=queue, policy=policy, raise_on_failure=False, **options)
    with sender:
        for i in range(count):
            sender.send_message(f"m{i}")
    return sender.result


def test_withheld_entries_ride_in_full_requests_with_new_ones() -> None:
    clock = FakeClock()
    rng = random.Random(7)
    queue = Queue(clock, withhold=lambda body, sends: rng.random() < 0.3)
    result = send_all(queue, clock.policy(), 2_000, concurrency=1)
    assert balanced(result) and not result.failed
    assert sorted(queue.accepted) == sorted(f"m{i}" for i in range(2_000))
    # Re-sent alone, the leftovers of every request made a small request of their own (several
    # hundred); riding with new entries, only the drain at close sends partial requests.
    partial = sum(1 for size in queue.request_sizes if size < 10)
    assert partial <= 10, queue.request_sizes
    assert result.requests <= 2_000 / (0.7 * 10) * 1.1


def test_an_entry_the_service_keeps_withholding_is_not_given_up_while_others_complete() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: body == "m0" and sends <= 20)
    result = send_all(queue, clock.policy(), 500, concurrency=1)
    assert not result.failed, result
    assert queue.sends["m0"] == 21 > RetryPolicy().max_attempts
    assert sorted(queue.accepted) == sorted(f"m{i}" for i in range(500))


def test_a_service_that_completes_nothing_gets_everything_reported_with_growing_backoff() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: True)
    policy = clock.policy()
    result = send_all(queue, policy, 35, concurrency=2)
    assert balanced(result)
    assert len(result.failed) == 35
    assert {f.gave_up for f in result.failed} == {"attempts"}
    assert not queue.accepted
    # given up once the writer (both workers) has gone max_attempts responses and max_stalled
    # seconds without completing anything; the rest then go after one request each
    assert clock.now - 1000.0 >= policy.max_stalled
    assert min(f.attempts for f in result.failed) >= 1
    assert result.requests >= policy.max_attempts  # two workers share the stalls
    assert result.requests <= 20
    # stalls back off exponentially from the base: later sleeps are longer than the first
    stall_sleeps = [s for s in clock.slept if s > 0]
    assert len(stall_sleeps) >= policy.max_attempts - 1
    assert max(stall_sleeps) > 8 * policy.base_delay


def test_without_max_stalled_max_attempts_alone_decides() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: True)
    policy = clock.policy(max_stalled=0)
    result = send_all(queue, policy, 10, concurrency=1)
    assert [f.attempts for f in result.failed] == [policy.max_attempts] * 10
    assert clock.now - 1000.0 < policy.max_stalled + 10


def test_a_lone_entry_unlucky_max_attempts_times_is_not_taken_for_an_outage() -> None:
    """The tail of a batch: one entry left, withheld nine times in a row by a service that takes
    most entries. Eight no-progress rounds in under 20 s are bad luck, not a stopped service."""
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: body == "m9" and sends <= 9)
    result = send_all(queue, clock.policy(), 10, concurrency=1)
    assert not result.failed
    assert queue.sends["m9"] == 10


def test_retried_entries_give_up_at_the_deadline_fresh_ones_are_still_sent() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: True)
    policy = clock.policy().with_deadline(clock.deadline(0.3))
    with pytest.raises(BatchWriteError) as caught:
        send_all_raising(queue, policy, 10)
    result = caught.value.result
    assert balanced(result) and len(result.failed) == 10
    assert {f.gave_up for f in result.failed} == {"deadline"}
    assert clock.now - 1000.0 <= 0.3 + 0.01  # one request's latency past it at most


def send_all_raising(queue: Queue, policy: RetryPolicy, count: int) -> None:
    with SqsSender(QUEUE, client=queue, policy=policy, concurrency=1) as sender:
        for i in range(count):
            sender.send_message(f"m{i}")


def test_max_elapsed_is_counted_from_an_entrys_first_send() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: body == "m0")
    policy = clock.policy(max_elapsed=2.0)
    result = send_all(queue, policy, 2_000, concurrency=1)
    assert [f.entry_id for f in result.failed] == ["#0"]
    assert result.failed[0].gave_up in ("elapsed", "attempts")
    assert len(queue.accepted) == 1_999


def test_the_pacer_holds_a_capacity_limited_service_near_what_it_takes() -> None:
    """1,000 entries into a queue taking 100 per second: re-sending at once would make about
    a request per 5 ms for 10 s (some 2,000); paced, the writer sends near twice the capacity."""
    clock = FakeClock()
    queue = Queue(clock, capacity=100.0)
    result = send_all(queue, clock.policy(), 1_000, concurrency=1)
    assert not result.failed and len(queue.accepted) == 1_000
    assert clock.now - 1000.0 < 12.0  # as fast as the capacity allows, give or take
    assert result.requests < 400, result


def test_an_unpressed_writer_never_sleeps() -> None:
    clock = FakeClock()
    queue = Queue(clock)
    result = send_all(queue, clock.policy(), 500, concurrency=1)
    assert result.succeeded == 500 and result.requests == 50
    assert not clock.slept


# -- the pacer on its own ---------------------------------------------------------------------


def test_a_fresh_pacer_lets_every_request_go_at_once() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(), clock.policy()
    assert [pacer.reserve(25, policy) for _ in range(5)] == [0.0] * 5
    assert pacer.rate is None


def test_a_stall_backs_off_and_spaces_probes_one_backoff_apart() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(), clock.policy()
    pacer.record(policy, completed=0, withheld=25)
    assert pacer.stalls == 1
    first = pacer.reserve(25, policy)
    second = pacer.reserve(25, policy)
    assert 0 <= first <= policy.base_delay
    assert second >= first  # the second worker waits behind the first probe
    assert pacer.record(policy, completed=25, withheld=0) is True  # recovered
    assert pacer.stalls == 0


def test_a_throttled_request_backs_off_from_the_throttle_base() -> None:
    clock = FakeClock()
    policy = clock.policy(jitter="none")
    throttled, withheld = Pacer(), Pacer()
    for _ in range(2):
        throttled.record(policy, completed=0, withheld=10, throttled=True)
        withheld.record(policy, completed=0, withheld=10)
    # the second stall in a row: the first throttle alone is a pacing signal, not an outage
    assert withheld.reserve(10, policy) == pytest.approx(2 * policy.base_delay)
    assert throttled.reserve(10, policy) == pytest.approx(2 * policy.throttle_base_delay)


def test_one_throttle_among_progress_backs_off_from_the_base_not_the_throttle_base() -> None:
    clock = FakeClock()
    policy = clock.policy(jitter="none")
    pacer = Pacer()
    pacer.record(policy, completed=0, withheld=10, throttled=True)
    assert pacer.reserve(10, policy) == pytest.approx(policy.base_delay)


def test_the_rate_follows_what_the_service_completes_and_recovers() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(window=1.0), clock.policy()
    pacer.reserve(25, policy)
    clock.advance(1.0)
    pacer.record(policy, completed=100, withheld=400)
    assert pacer.rate == pytest.approx(200.0)  # twice the 100 per second it completed
    assert pacer.reserve(50, policy) == 0.0
    assert pacer.reserve(50, policy) == pytest.approx(0.25)  # 50 entries at 200 per second
    # a clean window raises the rate only if the rate held a request back in it (as above)
    clock.advance(1.0)
    pacer.record(policy, completed=100, withheld=0)
    assert pacer.rate == pytest.approx(200.0 * pacer.increase)
    clock.advance(1.0)
    pacer.record(policy, completed=100, withheld=0)  # a tail: nothing held back
    assert pacer.rate == pytest.approx(200.0 * pacer.increase)
    for _ in range(3):
        pacer.reserve(400, policy)
        pacer.reserve(400, policy)  # held back: the writer has more to send than the rate
        clock.advance(1.0)
        pacer.record(policy, completed=100, withheld=0)
    assert pacer.rate == pytest.approx(200.0 * pacer.increase**4)


def test_the_headroom_shrinks_at_capacity_and_grows_under_random_failures() -> None:
    """Completions that stay put when the send rate moves mean a capacity limit: send little
    more than the service takes. Completions that follow it mean random failures: slowing
    down would only lose throughput."""

    def started() -> tuple[Pacer, FakeClock, RetryPolicy]:
        clock = FakeClock()
        pacer, policy = Pacer(window=1.0), clock.policy()
        pacer.reserve(25, policy)
        clock.advance(1.0)
        pacer.record(policy, completed=100, withheld=900)  # unpaced: 1,000 sent, 100 taken
        return pacer, clock, policy

    capacity, clock, policy = started()
    for _ in range(12):
        assert capacity.rate is not None
        sent = capacity.rate
        clock.advance(1.0)
        capacity.record(policy, completed=100, withheld=int(sent) - 100)
    assert capacity.headroom == pytest.approx(Pacer.MIN_HEADROOM)
    assert capacity.rate == pytest.approx(100 * Pacer.MIN_HEADROOM)
    random_failures, clock, policy = started()
    for _ in range(12):
        assert random_failures.rate is not None
        sent = random_failures.rate
        clock.advance(1.0)
        random_failures.record(policy, completed=int(sent * 0.4), withheld=int(sent * 0.6))
    assert random_failures.headroom > 2.0
    assert random_failures.rate is not None and random_failures.rate > 200.0


def test_a_window_that_completed_nothing_keeps_the_measured_rate() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(window=1.0), clock.policy()
    pacer.reserve(25, policy)
    clock.advance(1.0)
    pacer.record(policy, completed=50, withheld=50)
    clock.advance(1.0)
    pacer.record(policy, completed=0, withheld=50, throttled=True)
    assert pacer.rate == pytest.approx(100.0)


def test_spacing_never_exceeds_max_delay() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(window=1.0), clock.policy()
    pacer.reserve(1, policy)
    clock.advance(1.0)
    pacer.record(policy, completed=1, withheld=1_000)
    pacer.reserve(1_000, policy)
    assert pacer.reserve(1_000, policy) <= policy.max_delay


def test_one_pacer_shared_by_two_writers_slows_both() -> None:
    clock = FakeClock()
    shared, policy = Pacer(), clock.policy()
    stalled = Queue(clock, withhold=lambda body, sends: sends == 1)
    healthy = Queue(clock)
    with SqsSender(QUEUE, client=stalled, policy=policy, pacer=shared, concurrency=1) as a:
        for i in range(10):
            a.send_message(f"a{i}")
    slept = len(clock.slept)
    assert slept >= 1
    assert shared.stalls == 0  # the retry went through
    with SqsSender(QUEUE, client=healthy, policy=policy, pacer=shared, concurrency=1) as b:
        for i in range(10):
            b.send_message(f"b{i}")
    assert len(healthy.accepted) == 10


@pytest.mark.parametrize(
    "options", [{"headroom": 1.0}, {"window": 0}, {"increase": float("nan")}, {"headroom": "2"}]
)
def test_pacer_options_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Pacer(**options)


# -- from a hostile review: each failed on the first version of the pacer --------------------


def test_an_interrupt_while_an_answer_is_read_loses_no_entry() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: body == "m0" and sends == 1)

    def interrupt(event: RetryEvent) -> None:
        if event.kind == "partial_failure":
            raise KeyboardInterrupt

    sender = SqsSender(
        QUEUE, client=queue, policy=clock.policy(listeners=(interrupt,)), raise_on_failure=False
    )
    with pytest.raises(KeyboardInterrupt), sender:
        for i in range(3):
            sender.send_message(f"m{i}")
    result = sender.result
    assert balanced(result)
    assert result.succeeded == len(queue.accepted) == 2  # what the queue took is counted


def test_a_wait_strategy_that_needs_an_outcome_falls_back_to_the_policys_backoff() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: sends == 1)
    needs_outcome = tenacity.wait_exception(lambda error: 0.1)
    result = send_all(queue, clock.policy(wait=needs_outcome), 3, concurrency=1)
    assert balanced(result) and not result.failed


def test_a_shared_budget_is_not_spent_on_one_unlucky_response_among_progress() -> None:
    clock = FakeClock()
    budget = RetryBudget()
    budget.try_acquire(budget.capacity - 3)  # a storm elsewhere drained it
    requests = itertools.count(1)
    queue = Queue(clock, withhold=lambda body, sends: next(requests) % 30 < 10 and sends == 1)
    result = send_all(queue, clock.policy(budget=budget), 3_000, concurrency=1)
    assert balanced(result) and not result.failed


def test_a_stall_streak_returns_its_tokens_when_the_service_recovers() -> None:
    clock = FakeClock()
    budget = RetryBudget()
    queue = Queue(clock, withhold=lambda body, sends: sends <= 3)  # each entry three stalls
    result = send_all(queue, clock.policy(budget=budget), 100, concurrency=1)
    assert balanced(result) and not result.failed
    assert budget.available >= budget.capacity - 2 * budget.retry_cost


def test_a_policy_that_never_sleeps_still_gives_up_on_a_dead_service() -> None:
    clock = FakeClock()
    queue = Queue(clock, withhold=lambda body, sends: True, latency=0.0)
    policy = clock.policy(base_delay=0.0, max_delay=0.0)
    result = send_all(queue, policy, 3, concurrency=1)
    assert balanced(result) and len(result.failed) == 3
    assert result.requests <= 4 * policy.max_attempts


def test_a_stall_long_past_says_nothing_about_the_next_writer() -> None:
    clock = FakeClock()
    shared = Pacer()
    policy = clock.policy(pacer=shared)
    dead = Queue(clock, withhold=lambda body, sends: True)
    assert len(send_all(dead, policy, 10, concurrency=1).failed) == 10
    assert shared.stalls >= policy.max_attempts
    clock.advance(600)  # the next Lambda invocation
    hiccup = Queue(clock, withhold=lambda body, sends: sends == 1)
    result = send_all(hiccup, policy, 1, concurrency=1)
    assert not result.failed and hiccup.accepted == ["m0"]

"""Tests that pin the retry core's critical lines: what `make mutate` (scripts/mutate.py) found
surviving, and the batch engine's accounting of botocore's own retries.

Each test names the line it protects; every scenario runs on a :class:`FakeClock`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from resilient_aws._batching import Sent, _botocore_retries, botocore_retries
from resilient_aws.batch import SqsSender
from resilient_aws.dynamodb import BatchWriter
from resilient_aws.results import BatchResult
from resilient_aws.retry import (
    FailedEntry,
    Pacer,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    SendResult,
    arun_partial,
    run_partial,
)
from resilient_aws.retry._pacer import backoff
from resilient_aws.testing import FakeClock
from tests.unit.helpers import client_error

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"

Answer = Callable[[list[dict[str, Any]]], dict[str, Any]]


def withhold_all(retries: int = 0) -> Answer:
    """Every entry failed retryably (SQS ``InternalError``); botocore retried ``retries`` times."""

    def answer(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Successful": [],
            "Failed": [
                {"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in entries
            ],
            "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": retries},
        }

    return answer


def accept_all(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Successful": [{"Id": e["Id"], "MessageId": "m" + e["Id"]} for e in entries],
        "Failed": [],
        "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 0},
    }


def raise_error(error: BaseException) -> Answer:
    def answer(entries: list[dict[str, Any]]) -> dict[str, Any]:
        raise error

    return answer


class Queue:
    """A fake SQS client: the n-th SendMessageBatch answers with ``script[n]`` (the last one
    repeats). Each request costs ``latency`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, *script: Answer, latency: float = 0.0) -> None:
        self.clock, self.script, self.latency = clock, list(script), latency
        self.requests: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.clock.advance(self.latency)
        self.requests.append([e["MessageBody"] for e in Entries])
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        return step(Entries)


def send(queue: Queue, policy: RetryPolicy, *bodies: str) -> BatchResult[Any]:
    with SqsSender(
        QUEUE, client=queue, policy=policy, raise_on_failure=False, concurrency=1
    ) as sender:
        for body in bodies:
            sender.send_message(body, id=body)
    return sender.result


def balanced(result: BatchResult[Any]) -> bool:
    return result.submitted == result.succeeded + len(result.failed) + result.deduplicated


# -- botocore's RetryAttempts in the batch engine ---------------------------------------------
# _batching._send_back: `entry.stalled += 1 + botocore`, from Sent.botocore_retries (a 200
# response) or _botocore_retries(error) (a whole-request error).


@pytest.mark.parametrize(("retries", "requests"), [(0, 6), (1, 3), (2, 2), (5, 1)])
def test_botocore_retries_of_a_response_count_toward_an_entrys_attempts(
    retries: int, requests: int
) -> None:
    # max_stalled=0: max_attempts alone decides. Each response that completed nothing counts
    # 1 + RetryAttempts requests on the wire for every entry it carried.
    clock = FakeClock()
    queue = Queue(clock, withhold_all(retries))
    result = send(queue, clock.policy(max_attempts=6, max_stalled=0), "a", "b")
    assert len(queue.requests) == requests
    assert [(f.entry_id, f.gave_up, f.attempts) for f in result.failed] == [
        ("a", "attempts", requests),
        ("b", "attempts", requests),
    ]
    assert balanced(result)


@pytest.mark.parametrize(("retries", "requests"), [(0, 6), (1, 3), (2, 2), (5, 1)])
def test_botocore_retries_of_a_failed_request_count_toward_an_entrys_attempts(
    retries: int, requests: int
) -> None:
    clock = FakeClock()
    error = client_error("ThrottlingException", retry_attempts=retries)
    queue = Queue(clock, raise_error(error))
    result = send(queue, clock.policy(max_attempts=6, max_stalled=0), "a")
    assert len(queue.requests) == requests
    assert [(f.code, f.gave_up, f.attempts) for f in result.failed] == [
        ("ThrottlingException", "attempts", requests)
    ]


def test_botocore_retries_of_a_response_that_made_progress_stall_nothing() -> None:
    # "a" completes, "b" is withheld: the writer made progress, so however often botocore
    # retried that request, "b" has not been in a request that completed nothing.
    clock = FakeClock()

    def first(entries: list[dict[str, Any]]) -> dict[str, Any]:
        a, b = entries
        return {
            "Successful": [{"Id": a["Id"], "MessageId": "ma"}],
            "Failed": [{"Id": b["Id"], "Code": "InternalError", "SenderFault": False}],
            "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 5},
        }

    queue = Queue(clock, first, accept_all)
    result = send(queue, clock.policy(max_attempts=2, max_stalled=0), "a", "b")
    assert not result.failed
    assert queue.requests == [["a", "b"], ["b"]]
    assert result.succeeded == 2


def test_connection_errors_carry_no_retry_count_and_count_once() -> None:
    clock = FakeClock()
    queue = Queue(clock, raise_error(ConnectionClosedError(endpoint_url="http://x")))
    result = send(queue, clock.policy(max_attempts=3, max_stalled=0), "a")
    assert len(queue.requests) == 3
    assert [f.attempts for f in result.failed] == [3]


def test_batch_writer_counts_botocore_retries_of_batch_write_item() -> None:
    class Table:
        def __init__(self) -> None:
            self.requests = 0

        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
            self.requests += 1
            return {
                "UnprocessedItems": RequestItems,
                "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 2},
            }

    clock = FakeClock()
    table = Table()
    policy = clock.policy(max_attempts=6, max_stalled=0)
    writer = BatchWriter("t", client=table, policy=policy, keys="pk", raise_on_failure=False)
    with writer:
        writer.put({"pk": "1"})
    assert table.requests == 2
    assert [(f.gave_up, f.attempts) for f in writer.result.failed] == [("attempts", 2)]


def test_botocore_retries_reads_a_responses_retry_attempts() -> None:
    assert botocore_retries({"ResponseMetadata": {"RetryAttempts": 3}}) == 3
    assert botocore_retries({"ResponseMetadata": {"RetryAttempts": 0}}) == 0
    assert botocore_retries({"ResponseMetadata": {}}) == 0
    assert botocore_retries({}) == 0
    assert botocore_retries({"ResponseMetadata": {"RetryAttempts": "3"}}) == 0
    assert Sent([], []).botocore_retries == 0


def test_botocore_retries_of_an_error() -> None:
    assert _botocore_retries(client_error("Throttling", retry_attempts=2)) == 2
    assert _botocore_retries(client_error("Throttling", retry_attempts=1)) == 1
    assert _botocore_retries(client_error("Throttling")) == 0
    assert _botocore_retries(client_error("Throttling", retry_attempts=-1)) == 0
    assert _botocore_retries(ConnectionClosedError(endpoint_url="http://x")) == 0
    no_metadata = ClientError({"Error": {"Code": "Throttling"}}, "Op")
    assert _botocore_retries(no_metadata) == 0
    odd = ClientError({"Error": {"Code": "Throttling"}}, "Op")
    odd.response["ResponseMetadata"] = {"RetryAttempts": "2"}  # type: ignore[typeddict-item]
    assert _botocore_retries(odd) == 0


# -- when the batch engine gives up -----------------------------------------------------------


def test_max_stalled_keeps_an_entry_past_max_attempts_until_that_long_without_progress() -> None:
    # _send_back: `entry.stalled >= max_attempts and now - entry.first_sent >= max_stalled`
    clock = FakeClock()
    queue = Queue(clock, withhold_all(), latency=0.5)
    policy = clock.policy(max_attempts=2, max_stalled=3.0, base_delay=0.0, max_delay=0.0)
    result = send(queue, policy, "a")
    # requests end at 0.5, 1.0, 1.5 ... s after the entry was first sent: the sixth is the first
    # to end max_stalled (3 s) after it (the writer's own check counts from the first response,
    # at 0.5 s, and would wait for a seventh)
    assert len(queue.requests) == 6
    assert [f.gave_up for f in result.failed] == ["attempts"]


@pytest.mark.parametrize(("max_elapsed", "requests"), [(1.5, 5), (1.3, 4)])
def test_max_elapsed_gives_an_entry_up_once_the_next_send_would_start_past_it(
    max_elapsed: float, requests: int
) -> None:
    # _still_worth_sending: `now + delay - entry.first_sent > max_elapsed`. Times are exact in
    # binary: requests cost 0.125 s and every stall backs off 0.25 s, so the sends start at 0,
    # 0.375, 0.75, 1.125 and 1.5 s after the first one. At 1.5 s, the fifth starts exactly at
    # max_elapsed (allowed) and the sixth would start past it; at 1.3 s, the fifth would.
    clock = FakeClock()
    events: list[RetryEvent] = []
    queue = Queue(clock, withhold_all(), latency=0.125)
    policy = clock.policy(
        max_attempts=100,
        max_stalled=1000.0,
        base_delay=0.25,
        max_delay=0.25,
        jitter="none",
        max_elapsed=max_elapsed,
        listeners=(events.append,),
    )
    result = send(queue, policy, "a")
    assert len(queue.requests) == requests
    assert [(f.entry_id, f.code, f.gave_up, f.attempts, f.retryable) for f in result.failed] == [
        ("a", "GaveUp", "elapsed", requests, True)
    ]
    give_ups = [e for e in events if e.kind == "give_up"]
    assert [(e.reason, e.entries, e.attempt) for e in give_ups] == [("elapsed", 1, requests)]
    # never slept toward the send it gave up
    assert clock.now - 1000.0 == pytest.approx(0.375 * (requests - 1) + 0.125)


def test_max_elapsed_spares_the_fresh_entries_of_a_request() -> None:
    # An entry sent for the first time is always sent, whatever its request-mates' clocks say.
    clock = FakeClock()
    queue = Queue(clock, withhold_all(), latency=0.125)
    policy = clock.policy(
        max_attempts=100,
        max_stalled=1000.0,
        base_delay=0.25,
        max_delay=0.25,
        jitter="none",
        max_elapsed=0.3,
    )
    with SqsSender(
        QUEUE, client=queue, policy=policy, raise_on_failure=False, concurrency=1
    ) as sender:
        sender.send_message("a", id="a")
        sender.flush()  # "a" is sent once, then given up: its next send would end too late
        sender.send_message("b", id="b")
    assert queue.requests[0] == ["a"]
    assert ["b"] in queue.requests
    assert {f.entry_id: f.gave_up for f in sender.result.failed} == {
        "a": "elapsed",
        "b": "elapsed",
    }


def test_a_request_of_fresh_entries_waits_for_a_backoff_no_longer_than_the_deadline() -> None:
    # _send: `delay = min(delay, deadline.remaining())`: first attempts are always made, at the
    # latest at the deadline, however long the backoff the stall asked for.
    clock = FakeClock()
    queue = Queue(clock, withhold_all(), accept_all)
    policy = clock.policy(base_delay=4.0, max_delay=4.0, jitter="none")
    policy = policy.with_deadline(clock.deadline(0.5))
    with SqsSender(
        QUEUE, client=queue, policy=policy, raise_on_failure=False, concurrency=1
    ) as sender:
        sender.send_message("a", id="a")
        sender.flush()  # withheld: the stall backs off 4 s, past the deadline: "a" is given up
        sender.send_message("b", id="b")
    assert queue.requests == [["a"], ["b"]]
    assert all(s <= 0.5 for s in clock.slept), clock.slept
    assert clock.now - 1000.0 == pytest.approx(0.5)
    assert [(f.entry_id, f.gave_up) for f in sender.result.failed] == [("a", "deadline")]
    assert sender.result.succeeded == 1


def test_requests_and_resent_entries_are_counted() -> None:
    # _send: result.requests, and result.resent (entries sent again) per request
    clock = FakeClock()
    queue = Queue(clock, withhold_all(), withhold_all(), accept_all)
    result = send(queue, clock.policy(), "a", "b", "c")
    assert len(queue.requests) == 3
    assert (result.requests, result.resent, result.succeeded) == (3, 6, 3)


def test_whole_request_errors_back_off_from_the_throttle_base_from_the_second() -> None:
    # _request_failed: a retryable error of the whole request is a stall for the pacer (one
    # throttle alone backs off from base_delay, two in a row from throttle_base_delay)
    clock = FakeClock()
    queue = Queue(clock, raise_error(client_error("ThrottlingException")))
    policy = clock.policy(max_attempts=3, max_stalled=0, jitter="none")
    result = send(queue, policy, "a")
    assert len(queue.requests) == 3
    assert clock.slept == pytest.approx([0.05, 2.0])
    assert [(f.code, f.retryable, f.gave_up) for f in result.failed] == [
        ("ThrottlingException", True, "attempts")
    ]


@pytest.mark.parametrize("succeeded", [0, 1])
def test_a_response_with_a_permanent_failure_made_progress(succeeded: int) -> None:
    # _answered: `completed = succeeded + permanent`: "a" failed for good (settled), so "b",
    # withheld in the same response, was not in a request that completed nothing.
    clock = FakeClock()

    def first(entries: list[dict[str, Any]]) -> dict[str, Any]:
        a, b, *c = entries
        return {
            "Successful": [{"Id": e["Id"], "MessageId": "m"} for e in c],
            "Failed": [
                {"Id": a["Id"], "Code": "InvalidParameterValue", "SenderFault": True},
                {"Id": b["Id"], "Code": "InternalError", "SenderFault": False},
            ],
        }

    queue = Queue(clock, first, accept_all)
    bodies = ["a", "b", "c"][: 2 + succeeded]
    result = send(queue, clock.policy(max_attempts=1, max_stalled=0), *bodies)
    assert [(f.entry_id, f.code, f.gave_up) for f in result.failed] == [
        ("a", "InvalidParameterValue", None)
    ]
    assert queue.requests == [bodies, ["b"]]
    assert result.succeeded == 1 + succeeded


def test_retry_give_up_and_recovery_events_of_a_stall() -> None:
    clock = FakeClock()
    events: list[RetryEvent] = []
    queue = Queue(clock, withhold_all(), withhold_all(), accept_all)
    policy = clock.policy(jitter="none", listeners=(events.append,))
    send(queue, policy, "a", "b")
    retries = [e for e in events if e.kind == "retry"]
    assert [(e.attempt, e.entries, e.error_code) for e in retries] == [
        (1, 2, "InternalError"),
        (2, 2, "InternalError"),
    ]
    assert [e.delay for e in retries] == pytest.approx([0.05, 0.1])  # the stall's backoff
    recovered = [e for e in events if e.kind == "recovered"]
    assert [(e.entries, e.attempt, e.operation) for e in recovered] == [(2, 0, "SendMessageBatch")]

    events.clear()
    clock = FakeClock()
    queue = Queue(clock, withhold_all())
    policy = clock.policy(max_attempts=3, max_stalled=0, listeners=(events.append,))
    send(queue, policy, "a", "b")
    give_ups = [e for e in events if e.kind == "give_up"]
    assert [(e.reason, e.entries, e.attempt, e.error_code) for e in give_ups] == [
        ("attempts", 2, 3, "InternalError")
    ]


def test_a_response_that_completes_entries_refunds_the_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(100)
    assert budget.try_acquire(10)
    send(Queue(clock, accept_all), clock.policy(budget=budget), "a")
    assert budget.available == 91


def test_the_budget_refuses_the_retries_of_a_stall() -> None:
    clock = FakeClock()
    budget = RetryBudget(0)
    events: list[RetryEvent] = []
    queue = Queue(clock, withhold_all())
    policy = clock.policy(budget=budget, max_stalled=0, listeners=(events.append,))
    result = send(queue, policy, "a")
    assert [(f.gave_up, f.retryable) for f in result.failed] == [("budget", True)]
    assert len(queue.requests) < RetryPolicy().max_attempts
    refused = [e for e in events if e.kind == "budget_refused"]
    assert [(e.entries, e.attempt) for e in refused] == [(1, 0)]


# -- the pacer on its own ---------------------------------------------------------------------


def test_a_stall_spaces_requests_one_backoff_apart() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(), clock.policy(base_delay=0.1, max_delay=5.0, jitter="none")
    assert pacer.reserve(10, policy) == 0.0
    pacer.record(policy, completed=0, withheld=10)
    assert pacer.stalls == 1
    assert pacer.reserve(10, policy) == pytest.approx(0.1)  # the first probe
    assert pacer.reserve(10, policy) == pytest.approx(0.2)  # the next one a backoff later
    clock.advance(0.25)
    assert pacer.stalled_for(clock.now) == pytest.approx(0.25)
    pacer.record(policy, completed=0, withheld=10)
    assert pacer.stalls == 2
    assert pacer.stalled_for(clock.now) == pytest.approx(0.25)  # from the first of the stalls
    pacer.record(policy, completed=0, withheld=0)  # an empty answer is no stall
    assert pacer.stalls == 2


def test_a_completion_ends_the_stall_and_the_wait() -> None:
    clock = FakeClock()
    pacer, policy = Pacer(), clock.policy(base_delay=1.0, max_delay=5.0, jitter="none")
    pacer.record(policy, completed=0, withheld=10)
    pacer.record(policy, completed=0, withheld=10)
    assert pacer.reserve(10, policy) > 1.0
    assert pacer.record(policy, completed=3, withheld=0) is True  # recovered
    assert pacer.stalls == 0
    assert pacer.stalled_for(clock.now) == 0.0
    assert pacer.reserve(10, policy) == 0.0  # unpaced again: no backoff left to wait for
    assert pacer.record(policy, completed=3, withheld=0) is False


def test_a_throttled_stall_backs_off_from_the_throttle_base_from_the_second() -> None:
    clock = FakeClock()
    policy = clock.policy(base_delay=0.1, throttle_base_delay=1.0, max_delay=10.0, jitter="none")
    pacer = Pacer()
    pacer.record(policy, completed=0, withheld=5, throttled=True)
    assert pacer.reserve(5, policy) == pytest.approx(0.1)
    clock.advance(0.1)
    pacer.record(policy, completed=0, withheld=5, throttled=True)
    assert pacer.reserve(5, policy) == pytest.approx(2.0)  # 1.0 * 2 ** (2 - 1)


def test_the_measured_rate_and_its_gradual_increase() -> None:
    clock = FakeClock()
    policy = clock.policy()
    pacer = Pacer(headroom=2.0, window=0.25, increase=1.25)
    pacer.record(policy, completed=5, withheld=5)
    clock.advance(0.1)
    pacer.record(policy, completed=0, withheld=0)
    assert pacer.rate is None  # a window is not over before `window` seconds
    clock.advance(0.15)  # exactly one window
    pacer.record(policy, completed=5, withheld=5)
    assert pacer.rate == pytest.approx(2.0 * 10 / 0.25)  # headroom x completions per second
    assert pacer.reserve(10, policy) == 0.0
    assert pacer.reserve(10, policy) == pytest.approx(10 / 80)  # held back by the rate
    clock.advance(0.25)
    pacer.record(policy, completed=10, withheld=0)  # nothing withheld, and the rate held back
    assert pacer.rate == pytest.approx(80 * 1.25)
    clock.advance(0.25)
    assert pacer.reserve(10, policy) == 0.0  # sent at once: the rate held nothing back
    pacer.record(policy, completed=10, withheld=0)
    assert pacer.rate == pytest.approx(80 * 1.25)  # so that window proves nothing


def test_a_stall_nobody_asked_about_for_long_is_forgotten() -> None:
    # reserve: a stall older than any backoff (2 * max_delay + 1 s) says nothing about now
    clock = FakeClock()
    policy = clock.policy(base_delay=1.0, max_delay=5.0, jitter="none")
    pacer = Pacer()
    pacer.record(policy, completed=0, withheld=5)
    clock.advance(11.0)
    pacer.reserve(5, policy)
    assert pacer.stalls == 1  # 11 s: not longer than 2 * 5 + 1
    clock.advance(0.5)
    assert pacer.reserve(5, policy) == pytest.approx(0.5)  # what the last one booked
    assert pacer.stalls == 0
    assert pacer.reserve(5, policy) == pytest.approx(0.5)  # no backoff spaces them any more


def test_a_wait_strategy_is_asked_with_the_attempt_number_capped() -> None:
    asked: list[int] = []

    def wait(state: Any) -> float:
        asked.append(state.attempt_number)
        return 0.5

    policy = FakeClock().policy(max_attempts=4, wait=wait)
    assert backoff(policy, 2, throttle=False) == 0.5
    assert backoff(policy, 50, throttle=False) == 0.5
    assert asked == [2, 4]
    no_wait = FakeClock().policy(base_delay=0.1, max_delay=5.0, jitter="none")
    assert backoff(no_wait, 3, throttle=False) == pytest.approx(0.4)
    assert backoff(no_wait, 3, throttle=True) == pytest.approx(4.0)


# -- the budget's defaults --------------------------------------------------------------------


def test_the_budget_defaults_are_botocores_quota() -> None:
    budget = RetryBudget()
    assert budget.available == 500
    assert budget.cost_of(throttle=False) == 14
    assert budget.cost_of(throttle=True) == 5
    assert budget.success_refund == 1


# -- run_partial's accounting of attempts -----------------------------------------------------


def _script(*answers: SendResult[str] | list[FailedEntry[str]]) -> Callable[[list[str]], Any]:
    remaining = list(answers)

    def send(batch: list[str]) -> SendResult[str] | list[FailedEntry[str]]:
        return remaining.pop(0)

    return send


def _withheld(*ids: str) -> list[FailedEntry[str]]:
    return [FailedEntry(i, i, "ThrottlingException", retryable=True) for i in ids]


def test_run_partial_of_nothing_makes_no_attempt() -> None:
    outcome = run_partial(FakeClock().policy(), _script(), [], entry_id=str, operation="Op")
    assert (outcome.total, outcome.attempts, outcome.resent, outcome.failed) == (0, 0, 0, ())


@pytest.mark.parametrize(("answer", "attempts"), [([], 1), (SendResult([], 2), 3)])
def test_run_partial_at_once_counts_botocores_retries(
    answer: SendResult[str] | list[FailedEntry[str]], attempts: int
) -> None:
    clock = FakeClock()
    budget = RetryBudget(100)
    budget.try_acquire(10)
    policy = clock.policy(budget=budget)
    outcome = run_partial(policy, _script(answer), ["a", "b"], entry_id=str, operation="Op")
    assert (outcome.total, outcome.attempts, outcome.resent, outcome.ok) == (2, attempts, 0, True)
    assert budget.available == 91  # the success refund


def test_run_partial_after_retries_counts_every_request_and_botocores_retries() -> None:
    clock = FakeClock()
    send = _script(SendResult(_withheld("a"), 1), SendResult([], 2))
    outcome = run_partial(clock.policy(), send, ["a", "b"], entry_id=str, operation="Op")
    assert outcome.ok
    assert (outcome.attempts, outcome.resent) == ((1 + 1) + (1 + 2), 1)


def test_run_partial_with_only_permanent_failures_settles_at_once() -> None:
    clock = FakeClock()
    bad = [FailedEntry("a", "a", "ValidationError", retryable=False)]
    outcome = run_partial(clock.policy(), _script(bad), ["a", "b"], entry_id=str, operation="Op")
    assert [(f.entry_id, f.gave_up, f.attempts) for f in outcome.failed] == [("a", None, 1)]
    assert outcome.attempts == 1
    assert clock.slept == []


async def test_arun_partial_at_once_counts_botocores_retries_and_refunds_the_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(100)
    budget.try_acquire(10)

    async def send(batch: list[str]) -> SendResult[str]:
        return SendResult([], 2)

    outcome = await arun_partial(
        clock.policy(budget=budget), send, ["a"], entry_id=str, operation="Op"
    )
    assert (outcome.attempts, outcome.ok) == (3, True)
    assert budget.available == 91


# -- whole requests refused, the stall budget, the writer's own give-up -------------------------


def too_long_unless_alone(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """SQS refuses a batch "too long" because of "a": halving isolates it."""
    if any(e["MessageBody"] == "a" for e in entries):
        raise client_error("BatchRequestTooLong")
    return accept_all(entries)


def test_the_halves_of_a_refused_batch_are_new_requests_not_resends() -> None:
    # _request_failed: `entry.sends -= 1` before sending the halves
    clock = FakeClock()
    queue = Queue(clock, too_long_unless_alone)
    result = send(queue, clock.policy(), "a", "b")
    assert queue.requests == [["a", "b"], ["a"], ["b"]]
    assert [(f.entry_id, f.code, f.attempts, f.gave_up) for f in result.failed] == [
        ("a", "BatchRequestTooLong", 1, None)
    ]
    assert (result.requests, result.resent, result.succeeded) == (3, 0, 1)


def test_a_batch_refused_past_the_deadline_is_given_up_not_halved() -> None:
    clock = FakeClock()
    queue = Queue(clock, too_long_unless_alone)
    result = send(queue, clock.policy().with_deadline(0.0), "a", "b")
    assert queue.requests == [["a", "b"]]  # a first attempt is always made
    assert [(f.entry_id, f.retryable, f.gave_up) for f in result.failed] == [
        ("a", True, "deadline"),
        ("b", True, "deadline"),
    ]


def test_a_permanent_whole_request_error_ends_the_stall() -> None:
    # _request_failed: the pacer counts entries failed for good as completed
    clock = FakeClock()
    pacer = Pacer()
    queue = Queue(clock, withhold_all(), raise_error(client_error("AccessDenied", 403)))
    with SqsSender(
        QUEUE, client=queue, policy=clock.policy(), pacer=pacer, raise_on_failure=False
    ) as sender:
        sender.send_message("a", id="a")
    assert [(f.entry_id, f.code) for f in sender.result.failed] == [("a", "AccessDenied")]
    assert pacer.stalls == 0


@pytest.mark.parametrize(("code", "requests"), [("InternalError", 3), ("RequestThrottled", 6)])
def test_a_stall_pays_the_budget_from_its_second_response(code: str, requests: int) -> None:
    # _send_back: from the second response in a row that completed nothing, each retry costs
    # retry_cost (throttle_cost for a throttle); an empty budget gives the entries up
    clock = FakeClock()
    budget = RetryBudget(20, retry_cost=14, throttle_cost=5)

    def withheld(entries: list[dict[str, Any]]) -> dict[str, Any]:
        failed = [{"Id": e["Id"], "Code": code, "SenderFault": False} for e in entries]
        return {"Successful": [], "Failed": failed}

    queue = Queue(clock, withheld)
    result = send(queue, clock.policy(budget=budget, max_attempts=100), "a")
    assert len(queue.requests) == requests
    assert [(f.code, f.gave_up) for f in result.failed] == [(code, "budget")]


def test_a_recovered_stall_gives_back_what_its_retries_took() -> None:
    # _answered: a response that ends a stall gives back the tokens the stall's retries took
    # (two here: from the second response in a row); one that ends no stall, the success refund
    clock = FakeClock()
    budget = RetryBudget(100, retry_cost=14)
    assert budget.try_acquire(50)
    stall = [withhold_all()] * 3
    queue = Queue(clock, *stall, accept_all, *stall, accept_all, accept_all)
    with SqsSender(
        QUEUE, client=queue, policy=clock.policy(budget=budget), raise_on_failure=False
    ) as sender:
        for body in ("a", "b", "c"):
            sender.send_message(body, id=body)
            sender.flush()
            assert budget.available == (50 if body != "c" else 51)
    assert sender.result.succeeded == 3


def test_a_single_unlucky_response_costs_nothing_and_its_recovery_refunds() -> None:
    clock = FakeClock()
    budget = RetryBudget(100, retry_cost=14)
    assert budget.try_acquire(10)
    send(Queue(clock, withhold_all(), accept_all), clock.policy(budget=budget), "a")
    assert budget.available == 91


def test_a_stalled_writer_gives_up_its_late_entries_too() -> None:
    # _send_back: `stalls >= max_attempts and stalled_for(now) >= max_stalled` gives up every
    # entry of a writer that stopped making progress, even one sent once. Zero backoff and
    # latency: the clock never moves, so max_stalled=0 is met exactly.
    clock = FakeClock()
    holder: list[SqsSender] = []

    def second(entries: list[dict[str, Any]]) -> dict[str, Any]:
        holder[0].send_message("b", id="b")  # a producer adds "b" while "a" is in flight
        return withhold_all()(entries)

    queue = Queue(clock, withhold_all(), second, withhold_all())
    policy = clock.policy(max_attempts=3, max_stalled=0, base_delay=0.0, max_delay=0.0)
    with SqsSender(
        QUEUE, client=queue, policy=policy, raise_on_failure=False, concurrency=1
    ) as sender:
        holder.append(sender)
        sender.send_message("a", id="a")
    assert queue.requests == [["a"], ["a"], ["a", "b"]]
    assert [(f.entry_id, f.gave_up, f.attempts) for f in sender.result.failed] == [
        ("a", "attempts", 3),
        ("b", "attempts", 1),
    ]
    assert clock.now == 1000.0


def test_a_policy_that_never_sleeps_gives_up_after_four_times_max_attempts() -> None:
    # _send_back's backstop: max_stalled is measured on the policy's clock, which nothing moves
    clock = FakeClock()
    queue = Queue(clock, withhold_all())
    policy = clock.policy(max_attempts=2, max_stalled=1000.0, base_delay=0.0, max_delay=0.0)
    result = send(queue, policy, "a")
    assert len(queue.requests) == 8
    assert [(f.gave_up, f.attempts) for f in result.failed] == [("attempts", 8)]


def test_entries_sent_back_after_progress_are_retried_at_once() -> None:
    # _send_back: the retry event of a response that made progress carries no backoff
    clock = FakeClock()
    events: list[RetryEvent] = []

    def first(entries: list[dict[str, Any]]) -> dict[str, Any]:
        a, b = entries
        return {
            "Successful": [{"Id": a["Id"], "MessageId": "ma"}],
            "Failed": [{"Id": b["Id"], "Code": "InternalError", "SenderFault": False}],
        }

    queue = Queue(clock, first, accept_all)
    send(queue, clock.policy(listeners=(events.append,)), "a", "b")
    retries = [e for e in events if e.kind == "retry"]
    assert [(e.delay, e.entries, e.attempt) for e in retries] == [(0.0, 1, 1)]
    assert clock.slept == []


def test_an_entry_sent_back_never_overwrites_a_newer_write_of_its_key() -> None:
    # _send_back: `if entry.slot in pending`: a put of the same key made while the first was in
    # flight replaced it; the withheld older one is dropped (counted as deduplicated)
    class Table:
        def __init__(self) -> None:
            self.requests: list[Any] = []
            self.writer: BatchWriter | None = None

        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
            self.requests.append(RequestItems["t"])
            if len(self.requests) == 1:
                assert self.writer is not None
                self.writer.put({"pk": "1", "v": 2})  # a newer write while the first is out
                return {"UnprocessedItems": RequestItems}
            return {"UnprocessedItems": {}}

    clock = FakeClock()
    table = Table()
    writer = BatchWriter("t", client=table, policy=clock.policy(), keys="pk")
    table.writer = writer
    with writer:
        writer.put({"pk": "1", "v": 1})
    assert [[r["PutRequest"]["Item"]["v"] for r in request] for request in table.requests] == [
        [{"N": "1"}],
        [{"N": "2"}],
    ]
    assert (writer.result.succeeded, writer.result.deduplicated, writer.result.failed) == (1, 1, [])


# -- an interrupt while an answer is handled loses nothing and counts nothing twice ------------


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt: raised by a listener, it is not swallowed like a bug."""


def interrupt_on(kind: str) -> Callable[[RetryEvent], None]:
    def listener(event: RetryEvent) -> None:
        if event.kind == kind:
            raise Interrupt

    return listener


def test_an_interrupt_while_a_failed_request_is_handled_leaves_every_entry_accounted() -> None:
    # _send: what handling a whole-request error left unsettled is reported, not lost
    clock = FakeClock()
    queue = Queue(clock, raise_error(client_error("ThrottlingException")))

    def wait(state: Any) -> float:  # asked for the stall's backoff, before any entry went back
        raise Interrupt

    policy = clock.policy(wait=wait)
    sender = SqsSender(QUEUE, client=queue, policy=policy, concurrency=1)
    with pytest.raises(Interrupt), sender:
        sender.send_message("a", id="a")
        sender.send_message("b", id="b")
    result = sender.result
    assert balanced(result)
    assert sorted(f.entry_id for f in result.failed) == ["a", "b"]
    assert result.succeeded == 0


def test_an_interrupt_after_an_answer_was_counted_counts_nothing_twice() -> None:
    # _answered marks what succeeded as settled before sending the rest back: an interrupt
    # raised then (by the retry event) must not count "a" again
    clock = FakeClock()

    def first(entries: list[dict[str, Any]]) -> dict[str, Any]:
        a, b = entries
        return {
            "Successful": [{"Id": a["Id"], "MessageId": "ma"}],
            "Failed": [{"Id": b["Id"], "Code": "InternalError", "SenderFault": False}],
        }

    queue = Queue(clock, first, accept_all)
    policy = clock.policy(listeners=(interrupt_on("retry"),))
    sender = SqsSender(QUEUE, client=queue, policy=policy, concurrency=1)
    with pytest.raises(Interrupt), sender:
        sender.send_message("a", id="a")
        sender.send_message("b", id="b")
    result = sender.result
    assert balanced(result)
    assert result.succeeded + len(result.failed) == 2
    assert "a" not in [f.entry_id for f in result.failed]


def test_an_interrupt_during_the_backoff_reports_the_entries_it_held_back() -> None:
    # _send: entries waiting for the pacer's sleep when it is interrupted are reported NotSent
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        raise Interrupt

    queue = Queue(clock, withhold_all())
    sender = SqsSender(QUEUE, client=queue, policy=clock.policy(sleep=sleep), concurrency=1)
    with pytest.raises(Interrupt), sender:
        sender.send_message("a", id="a")
    assert len(queue.requests) == 1
    assert [(f.entry_id, f.code) for f in sender.result.failed] == [("a", "NotSent")]
    assert balanced(sender.result)

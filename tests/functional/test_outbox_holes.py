"""Holes a hostile review found in the outbox (issue 13), pinned against moto in process:
a failed delivery is counted once, even when the response to the count was lost."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from resilient_aws.outbox import (
    BLOCKED,
    PENDING,
    CallableTarget,
    Outbox,
    OutboxEvent,
    OutboxSweeper,
)
from resilient_aws.testing import FakeClock
from tests.outbox_support import create_outbox_table, make_moto_dynamodb_atomic


@pytest.fixture(autouse=True)
def _atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    make_moto_dynamodb_atomic(monkeypatch)  # the sweeper marks from several threads


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=float(int(time.time())))


@pytest.fixture
def outbox(ddb: Any, clock: FakeClock) -> Outbox:
    create_outbox_table(ddb)
    return Outbox(
        "orders", client=ddb, policy=clock.policy(), max_attempts=2, clock=clock.monotonic
    )


def placed(n: int, aggregate: str = "order-1") -> OutboxEvent:
    return OutboxEvent("OrderPlaced", aggregate, {"n": n}, sequence=n, id=f"{aggregate}#{n}")


def failing(events: Sequence[OutboxEvent]) -> dict[str, str]:
    return {e.id: "InvalidParameterValue: refused" for e in events}


class LoseResponses:
    """Lets the next ``count`` successful ``operation`` requests be applied, then drops their
    responses (the caller sees a read timeout for a write that happened)."""

    def __init__(self, client: Any, operation: str, count: int = 1) -> None:
        self.left = count
        client.meta.events.register(f"after-call.dynamodb.{operation}", self._after)

    def _after(self, http_response: Any, **_: Any) -> None:
        if self.left and http_response.status_code < 300:
            self.left -= 1
            raise ReadTimeoutError(endpoint_url=getattr(http_response, "url", ""))


def stored(outbox: Outbox, aggregate: str = "order-1") -> list[tuple[str, str, int]]:
    return [(s.event.id, s.status, s.attempts) for s in outbox.undelivered(aggregate)]


def test_a_lost_response_does_not_count_one_failure_twice(
    outbox: Outbox, ddb: Any, clock: FakeClock
) -> None:
    outbox.write(events=[placed(1), placed(2)])
    sweeper = OutboxSweeper(outbox, CallableTarget(failing), grace_s=0)
    clock.advance(5)
    lost = LoseResponses(ddb, "UpdateItem")
    report = sweeper.run()
    assert lost.left == 0  # the count was applied, its response lost, the request retried
    # one real failure of max_attempts=2: counted once, so neither the event nor its
    # aggregate is blocked
    assert report.blocked == {} and list(report.failed) == ["order-1#1"]
    assert stored(outbox) == [("order-1#1", PENDING, 1), ("order-1#2", PENDING, 0)]

    report = sweeper.run()  # the second real failure blocks it
    assert list(report.blocked) == ["order-1#1"]
    assert stored(outbox) == [("order-1#1", BLOCKED, 2), ("order-1#2", PENDING, 0)]


def test_mark_failed_without_the_count_reads_it_and_counts_once(outbox: Outbox, ddb: Any) -> None:
    (event,) = outbox.write(events=[placed(1)])
    LoseResponses(ddb, "UpdateItem")
    assert outbox.mark_failed(event, "refused") is False
    assert stored(outbox) == [("order-1#1", PENDING, 1)]
    assert outbox.mark_failed(event, "refused") is True
    assert stored(outbox) == [("order-1#1", BLOCKED, 2)]


def test_a_failure_counted_meanwhile_by_another_relay_is_counted_on_top(
    outbox: Outbox, ddb: Any
) -> None:
    (event,) = outbox.write(events=[placed(1)])
    outbox.max_attempts = 5
    # two relays read attempts=0 and both fail to deliver: two failures
    assert outbox.mark_failed(event, "first", attempts=0) is False
    assert outbox.mark_failed(event, "second", attempts=0) is False
    (state,) = outbox.undelivered("order-1")
    assert state.attempts == 2 and state.last_error == "second"


def test_a_settled_event_is_not_counted(outbox: Outbox) -> None:
    (event,) = outbox.write(events=[placed(1)])
    assert outbox.mark_delivered(event) is True
    assert outbox.mark_failed(event, "late", attempts=0) is False
    assert outbox.mark_failed(event, "late") is False
    assert stored(outbox) == []

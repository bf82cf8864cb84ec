"""Publishing pending events in order per aggregate; shared by the stream relay and the sweeper.

Events go out in *waves*: wave n holds the n-th deliverable event of every aggregate whose
earlier events in this run were published. So an aggregate's events are published in sequence
order, a failure holds back only the later events of its own aggregate, and every wave is one
batched, concurrent publish through the batch engine.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field
from typing import TYPE_CHECKING, Any

from resilient_aws import tracing
from resilient_aws._dataclass import lean_dataclass
from resilient_aws.outbox._event import OutboxEvent
from resilient_aws.outbox._layout import BLOCKED, DELIVERED

if TYPE_CHECKING:
    from resilient_aws.outbox._outbox import Outbox
    from resilient_aws.outbox._targets import Target
    from resilient_aws.retry import Deadline

__all__ = ["DeliveryReport", "deliver"]

logger = logging.getLogger("resilient_aws.outbox")

_MARKING_THREADS = 8


@lean_dataclass
class DeliveryReport:
    """What became of every event handed to a relay or sweep run (by event id).

    - ``delivered``: published and marked delivered now;
    - ``already_delivered``: delivered before (a repeated stream record, a race with a sweep);
    - ``failed``: publishing failed, the event stays pending (error per id);
    - ``blocked``: failed ``max_attempts`` times, now blocked (error per id);
    - ``held``: not attempted, behind a failed, blocked or undelivered earlier event of the
      same aggregate;
    - ``left_for_sweeper``: the part of ``held`` that waits for a blocked event (until
      :meth:`Outbox.unblock`) or for an earlier event the stream no longer has; the sweeper
      delivers them in order, so a relay does not hand them back to the stream;
    - ``unattempted``: not attempted because the deadline came first;
    - ``missing``: no record anymore (delivered and expired by TTL);
    - ``unmarked``: published, but the delivered mark could not be written (published again
      later: consumers de-duplicate by event id).
    """

    delivered: list[str] = field(default_factory=list)
    already_delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    left_for_sweeper: list[str] = field(default_factory=list)
    unattempted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unmarked: list[str] = field(default_factory=list)

    @property
    def to_retry(self) -> set[str]:
        """Events a stream relay should hand back to Lambda (``batchItemFailures``)."""
        for_sweeper = set(self.left_for_sweeper)
        return (
            set(self.failed)
            | {event_id for event_id in self.held if event_id not in for_sweeper}
            | set(self.unattempted)
        )

    def outcomes(self) -> dict[str, str]:
        """Each event id's outcome: the name of the list it is in (``held`` for those left for
        the sweeper too)."""
        found: dict[str, str] = {}
        for name in (
            "delivered",
            "already_delivered",
            "failed",
            "blocked",
            "held",
            "unattempted",
            "missing",
            "unmarked",
        ):
            for event_id in getattr(self, name):
                found[event_id] = name
        return found

    def summary(self) -> dict[str, int]:
        return {
            "delivered": len(self.delivered),
            "already_delivered": len(self.already_delivered),
            "failed": len(self.failed),
            "blocked": len(self.blocked),
            "held": len(self.held),
            "unattempted": len(self.unattempted),
            "missing": len(self.missing),
            "unmarked": len(self.unmarked),
        }


def deliver(
    outbox: Outbox,
    target: Target,
    events: Sequence[OutboxEvent],
    *,
    deadline: Deadline | None = None,
) -> DeliveryReport:
    """Publish what is still pending of ``events`` in order per aggregate; mark each result."""
    report = DeliveryReport()
    unique = {event.id: event for event in events}
    if not unique:
        return report
    policy = outbox.policy if deadline is None else outbox.policy.with_deadline(deadline)
    states, blocked_aggregates = outbox.states(list(unique.values()))

    queues: dict[str, list[OutboxEvent]] = defaultdict(list)
    for event in sorted(unique.values(), key=lambda e: (e.aggregate_id, e.sequence or 0)):
        queues[event.aggregate_id].append(event)
    ready: dict[str, list[OutboxEvent]] = {}
    # the failures counted so far, as read: a failure is counted conditionally on it
    attempts = {event_id: stored.attempts for event_id, stored in states.items()}
    for aggregate, queue in queues.items():
        deliverable: list[OutboxEvent] = []
        for index, event in enumerate(queue):
            stored = states.get(event.id)
            if stored is None:
                report.missing.append(event.id)
            elif stored.status == DELIVERED:
                report.already_delivered.append(event.id)
            elif stored.status == BLOCKED or aggregate in blocked_aggregates:
                held = [e.id for e in queue[index:] if e.id in states]
                report.held.extend(held)
                report.left_for_sweeper.extend(held)
                break
            else:
                deliverable.append(stored.event)
        if deliverable:
            ready[aggregate] = deliverable

    with ThreadPoolExecutor(_MARKING_THREADS) as marking:
        for aggregate in _behind_earlier_events(outbox, ready, set(unique), marking):
            held = [e.id for e in ready.pop(aggregate)]
            report.held.extend(held)
            report.left_for_sweeper.extend(held)
        while ready:
            if deadline is not None and deadline.expired:
                for queue in ready.values():
                    report.unattempted.extend(e.id for e in queue)
                break
            wave = [queue[0] for queue in ready.values()]
            try:
                failures = target.publish(wave, deadline=deadline)
            except Exception as raised:  # a target that raises fails the whole wave, not the run
                failures = {e.id: f"{type(raised).__name__}: {raised}" for e in wave}
            marks = [
                (
                    event,
                    marking.submit(
                        _settle, outbox, event, failures.get(event.id), policy, attempts[event.id]
                    ),
                )
                for event in wave
            ]
            for event, mark in marks:
                queue = ready[event.aggregate_id]
                queue.pop(0)
                outcome = mark.result()
                problem = failures.get(event.id)
                if outcome == "delivered":
                    report.delivered.append(event.id)
                elif outcome == "unmarked":
                    report.unmarked.append(event.id)
                elif outcome == "blocked":
                    report.blocked[event.id] = problem or ""
                else:
                    report.failed[event.id] = problem or outcome
                if outcome in ("failed", "blocked"):
                    held = [e.id for e in queue]
                    report.held.extend(held)
                    if outcome == "blocked":
                        report.left_for_sweeper.extend(held)
                    queue.clear()
                if not queue:
                    del ready[event.aggregate_id]
    if report.failed or report.blocked:
        logger.warning("outbox delivery: %s", report.summary())
    return report


OUTCOME = "resilient_aws.outbox.outcome"


class _Undelivered(Exception):  # noqa: N818  # never raised: how a span is marked failed
    """A failed delivery, named by the code of its ``"Code: message"`` text only."""

    def __init__(self, problem: str) -> None:
        code = problem.partition(":")[0].strip() or "DeliveryFailed"
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


def deliver_in_spans(
    name: str,
    outbox: Outbox,
    target: Target,
    events: Sequence[OutboxEvent],
    *,
    deadline: Deadline | None = None,
) -> DeliveryReport:
    """:func:`deliver`, with a ``CONSUMER`` span ``name`` per event while tracing is on: a
    child of the context the event was written in (its ``trace``), or of the current one,
    ended with the event's outcome (``resilient_aws.outbox.outcome``; ``error.type`` and an
    error status for a failed or blocked one).

    Events go out in batched waves, so no event's span can be the current one while they are
    published: delivery runs in the context from before the spans, and the batch requests'
    spans are children of the caller's span, not of one event's.
    """
    if not events or not tracing.enabled():
        return deliver(outbox, target, events, deadline=deadline)
    caller = contextvars.copy_context()
    base = tracing.current_context()
    spans: dict[str, tracing.SpanLike] = {}
    with contextlib.ExitStack() as stack:
        for event in events:
            if event.id in spans:
                continue
            parent = tracing.extract(event.trace) if event.trace else None
            attributes = {
                "messaging.message.id": event.id,
                "messaging.destination.name": outbox.outbox_table,
            }
            spans[event.id] = stack.enter_context(
                tracing.span(name, attributes, kind="consumer", parent=parent or base)
            )
        report = caller.run(deliver, outbox, target, events, deadline=deadline)
        problems = {**report.failed, **report.blocked}
        for event_id, outcome in report.outcomes().items():
            span = spans.get(event_id)
            if span is None:
                continue
            span.set_attribute(OUTCOME, outcome)
            if event_id in problems:
                tracing.mark_failed(span, _Undelivered(problems[event_id]))
    return report


def _behind_earlier_events(
    outbox: Outbox,
    ready: dict[str, list[OutboxEvent]],
    in_run: set[str],
    pool: ThreadPoolExecutor,
) -> list[str]:
    """Aggregates with an earlier event that is neither in this run nor delivered.

    The stream can lose an event (a record older than 24 hours, a batch the relay gave up
    on) while later ones of the same aggregate still arrive: publishing those would break
    the order, so they wait for the sweeper. The pending index says which earlier events may
    be undelivered; a consistent read of those records decides.
    """
    lookups = {
        aggregate: pool.submit(outbox.undelivered, aggregate, before=queue[0].sequence)
        for aggregate, queue in ready.items()
    }
    earlier: dict[str, list[OutboxEvent]] = {}
    for aggregate, lookup in lookups.items():
        found = [s.event for s in lookup.result() if s.event.id not in in_run]
        if found:
            earlier[aggregate] = found
    if not earlier:
        return []
    states, blocked = outbox.states([e for events in earlier.values() for e in events])
    return [
        aggregate
        for aggregate, events in earlier.items()
        if aggregate in blocked
        or any(
            (stored := states.get(e.id)) is not None and stored.status != DELIVERED for e in events
        )
    ]


def _settle(
    outbox: Outbox, event: OutboxEvent, error: str | None, policy: Any, attempts: int
) -> str:
    if error is None:
        try:
            outbox.mark_delivered(event, policy=policy)
        except Exception as failure:
            logger.warning(
                "outbox: %s was published but could not be marked delivered (%s); it will be "
                "published again",
                event.describe(),
                type(failure).__name__,
            )
            return "unmarked"
        return "delivered"
    try:
        blocked = outbox.mark_failed(event, error, policy=policy, attempts=attempts)
        return "blocked" if blocked else "failed"
    except Exception as failure:
        logger.warning(
            "outbox: could not count the failed delivery of %s (%s)",
            event.describe(),
            type(failure).__name__,
        )
        return "failed"

"""The sweeper: delivers what the stream relay missed, failed on, or lost with the stream."""

from __future__ import annotations

from typing import Any

from resilient_aws.outbox._deliver import DeliveryReport, deliver_in_spans
from resilient_aws.outbox._event import OutboxEvent
from resilient_aws.outbox._layout import BLOCKED, PENDING
from resilient_aws.outbox._outbox import Outbox
from resilient_aws.outbox._targets import Target, check_target
from resilient_aws.retry import Deadline

__all__ = ["OutboxSweeper"]


class OutboxSweeper:
    """Finds events still pending ``grace_s`` after they were written and publishes them.

    Run it on a schedule (``handler`` is a Lambda handler) or from a script (``run``). It reads
    the sparse pending index, then each affected aggregate's undelivered events with a
    consistent query, and delivers them with the relay's rules: in sequence order per aggregate,
    nothing past a failed or blocked event. Marks are conditional, so a sweep racing the relay
    never corrupts a record; at worst an event is published twice, and carries its id.

    With tracing on, each event is published in a ``CONSUMER`` span ``outbox sweep``, a child
    of the span that wrote it, and its messages carry that context, as the relay's do.
    """

    def __init__(
        self, outbox: Outbox, target: Target, *, grace_s: float = 300.0, margin_s: float = 1.0
    ) -> None:
        check_target(target)
        self.outbox = outbox
        self.target = target
        self.grace_s = grace_s
        self.margin_s = margin_s

    def run(self, *, deadline: Deadline | None = None) -> DeliveryReport:
        """One sweep; the report accounts for every pending event it found."""
        stale = self.outbox.pending(older_than_s=self.grace_s)
        newest_stale: dict[str, int] = {}
        for stored in stale:
            sequence = stored.event.sequence or 0
            aggregate = stored.event.aggregate_id
            newest_stale[aggregate] = max(sequence, newest_stale.get(aggregate, sequence))
        events: list[OutboxEvent] = []
        for aggregate in sorted(newest_stale):
            # Up to the newest stale event only: later ones are the relay's for now, and the
            # index may not show a just-written one yet — a gap that would break the order.
            events.extend(
                stored.event
                for stored in self.outbox.undelivered(aggregate)
                if stored.status in (PENDING, BLOCKED)
                and (stored.event.sequence or 0) <= newest_stale[aggregate]
            )
        return deliver_in_spans("outbox sweep", self.outbox, self.target, events, deadline=deadline)

    def handler(self, event: Any, context: Any) -> dict[str, int]:
        """A scheduled Lambda handler: one sweep within the invocation's time."""
        deadline = None
        if callable(getattr(context, "get_remaining_time_in_millis", None)):
            deadline = Deadline.from_lambda_context(
                context, margin_s=self.margin_s, clock=self.outbox.policy.clock
            )
        return self.run(deadline=deadline).summary()

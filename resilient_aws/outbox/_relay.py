"""The stream relay: a Lambda handler for the outbox table's DynamoDB stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from resilient_aws.consumer._processor import BatchProcessor
from resilient_aws.consumer._records import DynamoDBStreamRecord, check_event
from resilient_aws.dynamodb import deserialize_item
from resilient_aws.errors import ConfigurationError
from resilient_aws.outbox._deliver import DeliveryReport, deliver_in_spans
from resilient_aws.outbox._event import OutboxEvent
from resilient_aws.outbox._outbox import Outbox
from resilient_aws.outbox._targets import Target, check_target
from resilient_aws.retry import Deadline

logger = logging.getLogger(__name__)

__all__ = ["events_from_stream", "relay_handler"]


class EventNotDelivered(Exception):  # noqa: N818  # the batch processor reports it per record
    """Raised for a stream record whose event must come back (failed, or held behind one)."""


# Delivery already kept the order per aggregate and the deadline: the processor only names the
# records to hand back, each on its own (not every record after the first, as for a stream
# consumer), from light records (Powertools is not imported).
_PROCESSOR: list[BatchProcessor] = []


def _processor() -> BatchProcessor:
    if not _PROCESSOR:
        _PROCESSOR.append(BatchProcessor(source="dynamodb", ordered=False, records="light"))
    return _PROCESSOR[0]


def events_from_stream(outbox: Outbox, event: dict[str, Any]) -> dict[str, OutboxEvent]:
    """Outbox events of a stream batch, by stream sequence number: new outbox records only
    (``INSERT``), not the delivery marks (``MODIFY``), TTL removals or other items."""
    found: dict[str, OutboxEvent] = {}
    for record in event.get("Records", []):
        if record.get("eventName") != "INSERT":
            continue
        stream = record.get("dynamodb", {})
        image = stream.get("NewImage")
        if not image:
            # Answering "done" for records it cannot read would leave every event to the
            # sweeper without a word: a stream without new images is a setup error.
            raise ConfigurationError(
                "stream",
                f"the relay needs the new image of each record (StreamViewType NEW_IMAGE or "
                f"NEW_AND_OLD_IMAGES); this stream sends {stream.get('StreamViewType', 'none')}",
            )
        item = deserialize_item(image)
        if outbox.layout.is_event(item):
            found[str(stream.get("SequenceNumber"))] = outbox.stored(item).event
    return found


def relay_handler(
    outbox: Outbox,
    target: Target,
    *,
    margin_s: float = 1.0,
    on_report: Callable[[DeliveryReport], None] | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler for the outbox table's stream (``NEW_IMAGE`` or ``NEW_AND_OLD_IMAGES``).

    It publishes the batch's new outbox events through ``target`` in order per aggregate and
    answers with a partial batch response (turn on ``ReportBatchItemFailures``): only records
    whose event failed, or waits behind one that failed, come back. Events of an aggregate with a
    blocked (poison) event are left pending for the sweeper, so one poison event never blocks the
    stream. The response is built by :class:`resilient_aws.consumer.BatchProcessor`.

    With tracing on, each event is published in a ``CONSUMER`` span ``outbox relay``, a child
    of the span that wrote it (the ``outbox_traceparent`` of its record), and its messages
    carry that context to the consumer (see :attr:`OutboxEvent.trace`).
    """
    check_target(target)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # A batch the response could not answer for (a record without its SequenceNumber...)
        # is refused before anything is published: Lambda retries it whole, and events
        # published first would go out again on every retry.
        check_event(event, "dynamodb", False)
        by_sequence = events_from_stream(outbox, event)
        deadline = None
        if callable(getattr(context, "get_remaining_time_in_millis", None)):
            deadline = Deadline.from_lambda_context(
                context, margin_s=margin_s, clock=outbox.policy.clock
            )
        report = deliver_in_spans(
            "outbox relay", outbox, target, list(by_sequence.values()), deadline=deadline
        )
        if on_report is not None:
            try:
                on_report(report)
            except Exception as error:
                # The events are published: raising now would make Lambda retry the whole
                # batch and publish them all again. The hook's failure is logged instead.
                logger.error("relay on_report hook failed: %s", type(error).__name__)
        to_retry = report.to_retry

        def record_handler(record: DynamoDBStreamRecord) -> None:
            outbox_event = by_sequence.get(record.dynamodb.sequence_number)
            if outbox_event is not None and outbox_event.id in to_retry:
                raise EventNotDelivered(outbox_event.describe())

        # no context: delivery is done, so no record is left unprocessed for want of time
        return _processor().process(event, record_handler).response

    return handler

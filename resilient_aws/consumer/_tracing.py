"""Spans of a batch and of each of its records, loaded by the first batch processed while
tracing is on (:mod:`resilient_aws.tracing`).

A batch is a span, ``consume:<source>``, in the invocation's context; its records'
failures are its events (the ``partial_failure`` retry events), their count an attribute.
Each record that runs is a span, ``consume:<source> record``, of kind CONSUMER, made a
**child of the context the record carries** (the producer's ``traceparent`` or
``AWSTraceHeader``): one message is one trace from the producer through the queue to this
record function, and the retries of a ``policy``, the payload's S3 read and whatever the
function calls nest inside it. The record's span links back to the batch's span, so the
invocation is one click away. A record that carries no context is a child of the batch's
span.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilient_aws import tracing
from resilient_aws.consumer._async import awaitable_function, process_async
from resilient_aws.consumer._processor import ProcessedBatch, _identity, _refuse_awaitable
from resilient_aws.consumer._records import _ID_OF

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from resilient_aws.consumer._processor import BatchProcessor
    from resilient_aws.consumer._records import CheckedBatch, Source
    from resilient_aws.retry import Deadline, RetryPolicy

__all__ = ["atraced_batch", "traced_batch"]

# OpenTelemetry's messaging.system value for SQS; the two streams have none, these follow it
_SYSTEM = {"sqs": "aws_sqs", "kinesis": "aws_kinesis", "dynamodb": "aws_dynamodb_streams"}


def traced_batch(
    processor: BatchProcessor,
    batch: CheckedBatch,
    wrap: Callable[[dict[str, Any]], Any],
    fn: Callable[..., Any],
    passes_context: bool,
    context: Any,
    deadline: Deadline | None,
    policy: RetryPolicy | None,
) -> ProcessedBatch:
    """The sync loop of :class:`BatchProcessor`, each record in its span: ``fn`` becomes a
    step that opens the record's span, then wraps the raw record and calls ``fn`` (through
    ``policy``) inside it."""
    attributes = _batch_attributes(batch)
    with tracing.span(f"consume:{batch.source}", attributes) as span:
        call = policy.call if policy is not None else None
        record_span = _record_span(batch.source, attributes, tracing.current_context())

        def step(raw: dict[str, Any], *rest: Any) -> Any:
            with record_span(raw):
                record = wrap(raw)
                result = call(fn, record, *rest) if call is not None else fn(record, *rest)
                if result is not None and inspect.isawaitable(result):
                    _refuse_awaitable(fn, result)  # raises inside the span: the record failed
                return result

        failed = processor._run(batch, _identity, step, passes_context, context, deadline, None)
        done = processor._finish(batch, failed, deadline)
        span.set_attribute(tracing.FAILED, len(done.failed))
        return done


async def atraced_batch(
    processor: BatchProcessor,
    batch: CheckedBatch,
    wrap: Callable[[dict[str, Any]], Any],
    fn: Callable[..., Any],
    passes_context: bool,
    context: Any,
    deadline: Deadline | None,
    policy: RetryPolicy | None,
) -> ProcessedBatch:
    """:func:`traced_batch` for :meth:`BatchProcessor.aprocess` (each lane's task keeps its
    own current span)."""
    attributes = _batch_attributes(batch)
    with tracing.span(f"consume:{batch.source}", attributes) as span:
        function = awaitable_function(fn)
        record_span = _record_span(batch.source, attributes, tracing.current_context())

        async def step(raw: dict[str, Any], *rest: Any) -> Any:
            with record_span(raw):
                record = wrap(raw)
                if policy is not None:
                    return await policy.acall(function, record, *rest)
                return await function(record, *rest)

        failed = await process_async(
            processor, batch, _identity, step, passes_context, context, deadline, None
        )
        done = processor._finish(batch, failed, deadline)
        span.set_attribute(tracing.FAILED, len(done.failed))
        return done


def _record_span(
    source: Source, batch_attributes: dict[str, Any], batch_context: Context | None
) -> Callable[[dict[str, Any]], Any]:
    """What opens the span of one raw record: a child of the context it carries, linked to
    the batch's span; a child of the batch's span when it carries none."""
    name = f"consume:{source} record"
    identifier = _ID_OF[source]
    shared = {
        key: value
        for key, value in batch_attributes.items()
        if key in ("messaging.system", "messaging.destination.name")
    }
    shared["messaging.operation.type"] = "process"
    back = (batch_context,) if batch_context is not None else ()

    def open_span(raw: dict[str, Any]) -> Any:
        parent = tracing.extract(raw)
        attributes = {**shared, "messaging.message.id": str(identifier(raw))}
        return tracing.span(
            name,
            attributes,
            kind="consumer",
            parent=parent,
            links=back if parent is not None else (),
        )

    return open_span


def _batch_attributes(batch: CheckedBatch) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": _SYSTEM[batch.source],
        "messaging.batch.message_count": len(batch.records),
        tracing.OPERATION: f"consume:{batch.source}",
    }
    destination = _destination(batch.records[0]) if batch.records else None
    if destination:
        attributes["messaging.destination.name"] = destination
    return attributes


def _destination(record: dict[str, Any]) -> str | None:
    """The queue, stream or table of a record, from its ``eventSourceARN``:
    ``arn:aws:sqs:...:orders``, ``arn:aws:kinesis:...:stream/orders``,
    ``arn:aws:dynamodb:...:table/orders/stream/2024-...``."""
    arn = record.get("eventSourceARN")
    if not isinstance(arn, str) or arn.count(":") < 5:
        return None
    resource = arn.split(":", 5)[5]
    if resource.startswith(("stream/", "table/")):
        return resource.split("/")[1] or None
    return resource or None

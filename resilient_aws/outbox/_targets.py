"""Where events go: thin targets over the batch senders (SQS, SNS, EventBridge, Kinesis).

A target publishes a list of events in one go through the batch engine (chunking, concurrency,
per-entry retries through the core) and says, per event id, what failed; every other event was
accepted. Each message carries the event id (in the body's envelope and as the ``event_id``
message attribute) so that consumers can de-duplicate, and the trace context the event was
written in (:attr:`OutboxEvent.trace`, when tracing was on): ``traceparent``/``tracestate``
message attributes on SQS and SNS (and the X-Ray ``AWSTraceHeader`` on SQS), ``traceparent``
and ``tracestate`` in an EventBridge event's ``detail`` (and its ``TraceHeader``); Kinesis
records carry none (the API has no field for it outside the data).

An event whose payload the outbox offloaded to S3 (an :class:`OffloadedPayload`) goes to SQS
and SNS as the extended client libraries' pointer message (the object already exists: nothing
is downloaded); EventBridge and Kinesis have no pointer convention, so their targets download
the envelope and put it whole (an event over the service's entry limit fails, reported by its
id).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from resilient_aws.batch import EventBridgePutter, KinesisPutter, SnsPublisher, SqsSender
from resilient_aws.batch._base import BatchSender
from resilient_aws.errors import ConfigurationError, ResilientAWSError
from resilient_aws.outbox._event import (
    OffloadedPayload,
    OutboxEvent,
    envelope,
    message_attributes,
    with_trace,
    xray_header,
)
from resilient_aws.retry import DEFAULT_POLICY, Deadline, RetryPolicy

__all__ = [
    "EventBridgeTarget",
    "KinesisTarget",
    "Router",
    "SnsTarget",
    "SqsTarget",
    "Target",
]

Failures = dict[str, str]  # event id -> "Code: message"


class Target(Protocol):
    """Publishes events; returns the ids of those that failed, with the error."""

    def publish(
        self, events: Sequence[OutboxEvent], *, deadline: Deadline | None = None
    ) -> Failures: ...


class _SenderTarget:
    """Runs one batch sender per ``publish`` and reads its per-entry result."""

    def __init__(
        self, *, client: Any = None, policy: RetryPolicy = DEFAULT_POLICY, concurrency: int = 4
    ) -> None:
        self.client = client
        self.policy = policy
        self.concurrency = concurrency

    def _sender(self, deadline: Deadline | None) -> BatchSender:
        raise NotImplementedError

    def _add(self, sender: Any, event: OutboxEvent, body: str) -> None:
        raise NotImplementedError

    def _body(self, event: OutboxEvent) -> str:
        """The message body: the envelope; an offloaded one is downloaded (a target that cannot
        carry the extended clients' pointer)."""
        payload = event.payload
        if isinstance(payload, OffloadedPayload):
            return payload.load_envelope(message_id=event.id)
        return envelope(event)

    def publish(
        self, events: Sequence[OutboxEvent], *, deadline: Deadline | None = None
    ) -> Failures:
        failures: Failures = {}
        sender = self._sender(deadline)
        with sender:
            for event in events:
                try:
                    self._add(sender, event, self._body(event))
                # a bad entry, or an offloaded envelope that could not be read (PayloadError)
                except (ResilientAWSError, TypeError, ValueError) as error:
                    failures[event.id] = f"{type(error).__name__}: {error}"
        for failed in sender.result.failed:
            failures[failed.entry_id] = f"{failed.code}: {failed.message}"
        return failures

    def _options(self, deadline: Deadline | None) -> dict[str, Any]:
        return {
            "client": self.client,
            "policy": self.policy,
            "deadline": deadline,
            "concurrency": self.concurrency,
            "raise_on_failure": False,
            "on_invalid": "report",
        }


class _PointerTarget(_SenderTarget):
    """SQS and SNS: an offloaded event goes as the extended client libraries' pointer message
    (its pointer as body, ``ExtendedPayloadSize`` among its attributes), which a consumer
    with ``BatchProcessor(payloads=store)`` (or on those libraries) resolves to the envelope."""

    def _body(self, event: OutboxEvent) -> str:
        payload = event.payload
        if isinstance(payload, OffloadedPayload):
            return payload.message_body()
        return envelope(event)

    @staticmethod
    def _attributes(event: OutboxEvent) -> dict[str, Any]:
        attributes = message_attributes(event)
        if isinstance(event.payload, OffloadedPayload):
            attributes.update(event.payload.message_attributes())
        return attributes


class SqsTarget(_PointerTarget):
    """An SQS queue. On a FIFO queue, ``MessageGroupId`` is the aggregate id and
    ``MessageDeduplicationId`` the event id."""

    def __init__(self, queue_url: str, **options: Any) -> None:
        super().__init__(**options)
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")

    def _sender(self, deadline: Deadline | None) -> BatchSender:
        return SqsSender(self.queue_url, **self._options(deadline))

    def _add(self, sender: Any, event: OutboxEvent, body: str) -> None:
        fifo = {"group_id": event.aggregate_id, "deduplication_id": event.id} if self.fifo else {}
        system = None
        if event.trace:
            header = xray_header(event.trace)
            system = {"AWSTraceHeader": {"DataType": "String", "StringValue": header}}
        sender.send_message(
            body, id=event.id, attributes=self._attributes(event), system_attributes=system, **fifo
        )


class SnsTarget(_PointerTarget):
    """An SNS topic (FIFO topics as FIFO queues)."""

    def __init__(self, topic_arn: str, **options: Any) -> None:
        super().__init__(**options)
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")

    def _sender(self, deadline: Deadline | None) -> BatchSender:
        return SnsPublisher(self.topic_arn, **self._options(deadline))

    def _add(self, sender: Any, event: OutboxEvent, body: str) -> None:
        fifo = {"group_id": event.aggregate_id, "deduplication_id": event.id} if self.fifo else {}
        sender.publish(body, id=event.id, attributes=self._attributes(event), **fifo)


class EventBridgeTarget(_SenderTarget):
    """An event bus: ``DetailType`` is the event type, ``Detail`` the envelope (an offloaded
    one downloaded first; one over EventBridge's entry limit, 1 MB, is reported failed,
    ``EntryTooLargeError``, and blocked after ``max_attempts``)."""

    def __init__(
        self, bus_name: str = "default", *, source: str = "resilient_aws.outbox", **options: Any
    ) -> None:
        super().__init__(**options)
        self.bus_name = bus_name
        self.source = source

    def _sender(self, deadline: Deadline | None) -> BatchSender:
        return EventBridgePutter(bus_name=self.bus_name, **self._options(deadline))

    def _add(self, sender: Any, event: OutboxEvent, body: str) -> None:
        trace = event.trace
        sender.put(
            with_trace(body, trace),
            source=self.source,
            detail_type=event.type,
            id=event.id,
            trace_header=xray_header(trace) if trace else None,
        )


class KinesisTarget(_SenderTarget):
    """A Kinesis stream, partitioned by aggregate id (one aggregate stays on one shard); an
    offloaded envelope is downloaded and put whole (a record takes 1 MiB, up to 10 MiB on a
    stream configured for it)."""

    def __init__(self, stream_name: str, **options: Any) -> None:
        super().__init__(**options)
        self.stream_name = stream_name

    def _sender(self, deadline: Deadline | None) -> BatchSender:
        return KinesisPutter(self.stream_name, **self._options(deadline))

    def _add(self, sender: Any, event: OutboxEvent, body: str) -> None:
        sender.put(body, event.aggregate_id, id=event.id)


class Router:
    """Sends each event to the target named by its ``destination`` (or ``default``)."""

    def __init__(self, routes: Mapping[str, Target], *, default: Target | None = None) -> None:
        self.routes = dict(routes)
        self.default = default

    def publish(
        self, events: Sequence[OutboxEvent], *, deadline: Deadline | None = None
    ) -> Failures:
        failures: Failures = {}
        by_target: dict[int, tuple[Target, list[OutboxEvent]]] = {}
        for event in events:
            target = self.routes.get(event.destination or "", self.default)
            if target is None:
                failures[event.id] = f"NoRoute: no target for destination {event.destination!r}"
                continue
            by_target.setdefault(id(target), (target, []))[1].append(event)
        for target, routed in by_target.values():
            failures.update(target.publish(routed, deadline=deadline))
        return failures


class CallableTarget:
    """Any function that takes the events and returns the failures (for tests and glue)."""

    def __init__(self, publish: Callable[[Sequence[OutboxEvent]], Failures]) -> None:
        self._publish = publish

    def publish(
        self, events: Sequence[OutboxEvent], *, deadline: Deadline | None = None
    ) -> Failures:
        return self._publish(events)


def check_target(target: Any) -> None:
    if not callable(getattr(target, "publish", None)):
        raise ConfigurationError("target", f"must have a publish(events) method, got {target!r}")

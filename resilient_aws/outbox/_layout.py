"""Where outbox records live in the table and what they hold.

One item per event, in the aggregate's partition (``OUTBOX#<aggregate>``, sort key
``EVENT#<sequence>``): DynamoDB Streams keeps the records of one partition key in order, so the
stream hands the relay an aggregate's events in sequence. While an event is not delivered it
carries ``outbox_pending_aggregate``: with ``outbox_sequence`` it keys a sparse GSI holding only
undelivered events, by aggregate and in order; the relay asks it whether an aggregate has an
earlier event still undelivered, the sweeper scans it. Delivery removes the attribute and sets
the TTL attribute. An aggregate with a poison event gets a
``BLOCKED`` marker item in its partition, which holds back its later events until unblocked.

An event whose payload was offloaded to S3 (``Outbox(payloads=...)``) keeps the same record
with ``outbox_payload`` holding the extended client libraries' pointer
(``["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":..,"s3Key":..}]``)
instead of the payload's JSON, and ``outbox_payload_size`` (a number: the bytes of the object,
the event's envelope) marking it as such, as ``ExtendedPayloadSize`` marks a pointer message.

An event written while a span was current (tracing on) stores its W3C context in
``outbox_traceparent`` (and ``outbox_tracestate``): where :func:`resilient_aws.tracing.extract`
finds it in a stream record, and what the targets put on the messages.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from resilient_aws._dataclass import lean_dataclass
from resilient_aws._json import dumps
from resilient_aws.errors import ConfigurationError, UnsupportedValueError
from resilient_aws.outbox._event import (
    TRACEPARENT,
    TRACESTATE,
    OffloadedPayload,
    OutboxEvent,
    trace_context,
)

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadPointer, PayloadStore

__all__ = ["PENDING", "DELIVERED", "BLOCKED", "Layout", "StoredEvent"]

PENDING = "PENDING"
DELIVERED = "DELIVERED"
BLOCKED = "BLOCKED"

A_ID = "outbox_event_id"  # present on every outbox record: how the relay recognises one
A_TYPE = "outbox_type"
A_AGGREGATE = "outbox_aggregate_id"
A_SEQUENCE = "outbox_sequence"
A_PAYLOAD = "outbox_payload"
A_PAYLOAD_SIZE = "outbox_payload_size"  # present when outbox_payload holds an S3 pointer
A_CREATED = "outbox_created_at"
A_DESTINATION = "outbox_destination"
A_STATUS = "outbox_status"
A_ATTEMPTS = "outbox_attempts"
A_LAST_ERROR = "outbox_last_error"
A_LAST_FAILURE = "outbox_last_failure"  # a token per counted failure: a retry knows its own
A_PENDING = "outbox_pending_aggregate"
A_PENDING_AT = "outbox_pending_at"
A_BLOCKED_EVENT = "outbox_blocked_event"
# the writer's trace context (what resilient_aws.tracing.extract reads from a stream record)
A_TRACEPARENT = "outbox_traceparent"
A_TRACESTATE = "outbox_tracestate"

MARKER_SORT_KEY = "BLOCKED"


@lean_dataclass(frozen=True)
class StoredEvent:
    """An event as read back from its record, with its delivery state."""

    event: OutboxEvent
    status: str
    attempts: int = 0
    last_error: str | None = None

    @property
    def pointer(self) -> PayloadPointer | None:
        """Where the event's payload is when it was offloaded to S3, else ``None``."""
        payload = self.event.payload
        return payload.pointer if isinstance(payload, OffloadedPayload) else None


@lean_dataclass(frozen=True)
class Layout:
    """Key attribute names and index of the outbox table."""

    partition_key: str = "pk"
    sort_key: str = "sk"
    pending_index: str = "outbox-pending"
    ttl_attribute: str = "expires_at"

    def __post_init__(self) -> None:
        if self.partition_key == self.sort_key:
            raise ConfigurationError("sort_key", "must differ from partition_key")

    def partition(self, aggregate_id: str) -> str:
        return f"OUTBOX#{aggregate_id}"

    def event_key(self, aggregate_id: str, sequence: int) -> dict[str, Any]:
        return {
            self.partition_key: {"S": self.partition(aggregate_id)},
            self.sort_key: {"S": f"EVENT#{sequence:020d}"},
        }

    def marker_key(self, aggregate_id: str) -> dict[str, Any]:
        return {
            self.partition_key: {"S": self.partition(aggregate_id)},
            self.sort_key: {"S": MARKER_SORT_KEY},
        }

    @staticmethod
    def payload_json(event: OutboxEvent) -> str:
        """The JSON text of ``event``'s payload, or :class:`UnsupportedValueError` naming it."""
        try:
            return dumps(event.payload)
        except (TypeError, ValueError) as error:
            raise UnsupportedValueError(
                event.id, f"the payload of {event.describe()} has no JSON form: {error}"
            ) from error

    def record(
        self,
        event: OutboxEvent,
        *,
        written_at: float,
        payload_json: str | None = None,
        offloaded: OffloadedPayload | None = None,
    ) -> dict[str, Any]:
        """The outbox item of ``event`` in wire format (its ``sequence`` must be set).

        ``written_at`` (epoch seconds, the outbox's clock) starts the sweeper's grace period:
        an event's own ``created_at`` may be set by the caller to any time, and an old one
        would let the sweeper race the relay the moment the record lands. ``payload_json``:
        :meth:`payload_json`, if already made. ``offloaded``: the record holds this pointer
        instead of the payload.
        """
        assert event.sequence is not None
        if offloaded is not None:
            payload = offloaded.message_body()
        else:
            payload = payload_json if payload_json is not None else self.payload_json(event)
        item: dict[str, Any] = {
            **self.event_key(event.aggregate_id, event.sequence),
            A_ID: {"S": event.id},
            A_TYPE: {"S": event.type},
            A_AGGREGATE: {"S": event.aggregate_id},
            A_SEQUENCE: {"N": str(event.sequence)},
            A_PAYLOAD: {"S": payload},
            A_CREATED: {"S": event.created_at.isoformat()},
            A_STATUS: {"S": PENDING},
            A_ATTEMPTS: {"N": "0"},
            A_PENDING: {"S": event.aggregate_id},
            A_PENDING_AT: {"N": str(int(written_at * 1000))},
        }
        if offloaded is not None:
            item[A_PAYLOAD_SIZE] = {"N": str(offloaded.size)}
        if event.destination is not None:
            item[A_DESTINATION] = {"S": event.destination}
        if event.trace:
            item[A_TRACEPARENT] = {"S": event.trace[TRACEPARENT]}
            if TRACESTATE in event.trace:
                item[A_TRACESTATE] = {"S": event.trace[TRACESTATE]}
        return item

    @staticmethod
    def is_event(item: Mapping[str, Any]) -> bool:
        return A_ID in item and A_SEQUENCE in item

    @staticmethod
    def stored(item: Mapping[str, Any], store: PayloadStore | None = None) -> StoredEvent:
        """The event of an outbox item (plain Python values, as reads hand them out). An
        offloaded payload is an :class:`OffloadedPayload` (read through ``store`` when asked),
        never downloaded here."""

        def text(name: str) -> str | None:
            value = item.get(name)
            return value if isinstance(value, str) else None

        def number(name: str) -> int:
            value = item.get(name)
            return int(value) if isinstance(value, (int, Decimal)) else 0

        created = text(A_CREATED)
        event = OutboxEvent(
            type=text(A_TYPE) or "unknown",
            aggregate_id=text(A_AGGREGATE) or "unknown",
            payload=(
                _offloaded(item, text(A_ID), store)
                if A_PAYLOAD_SIZE in item
                else json.loads(text(A_PAYLOAD) or "null")
            ),
            sequence=number(A_SEQUENCE),
            destination=text(A_DESTINATION),
            id=text(A_ID) or "unknown",
            created_at=dt.datetime.fromisoformat(created) if created else _EPOCH,
            trace=_trace(item),
        )
        return StoredEvent(
            event=event,
            status=text(A_STATUS) or PENDING,
            attempts=number(A_ATTEMPTS),
            last_error=text(A_LAST_ERROR),
        )


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _trace(item: Mapping[str, Any]) -> dict[str, str] | None:
    """The trace context a record stores; ``None`` without one, or with one damaged (the
    event goes out without a trace rather than not at all)."""
    if A_TRACEPARENT not in item:
        return None
    fields = {TRACEPARENT: item[A_TRACEPARENT]}
    if A_TRACESTATE in item:
        fields[TRACESTATE] = item[A_TRACESTATE]
    return trace_context(fields)


def _offloaded(
    item: Mapping[str, Any], event_id: str | None, store: PayloadStore | None
) -> OffloadedPayload:
    """The pointer of a record marked offloaded; :class:`InvalidPointerError` naming the event
    when it holds none (a record damaged by hand: publishing its text as the payload, or
    nothing, would hand consumers a wrong event without a word)."""
    from resilient_aws.payloads import LEGACY_POINTER_CLASS, InvalidPointerError, PayloadPointer

    body = item.get(A_PAYLOAD)
    pointer = PayloadPointer.parse(body)
    size = item.get(A_PAYLOAD_SIZE)
    if pointer is None or not isinstance(size, (int, Decimal)):
        raise InvalidPointerError(
            event_id,
            f"the record is marked offloaded ({A_PAYLOAD_SIZE}) but {A_PAYLOAD} holds no pointer",
        )
    assert isinstance(body, str)  # parsed above
    legacy = body.lstrip().startswith(f'["{LEGACY_POINTER_CLASS}"')
    return OffloadedPayload(pointer, int(size), legacy, store)

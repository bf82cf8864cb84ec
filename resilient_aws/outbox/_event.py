"""An event to publish, and the envelope every target receives."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from resilient_aws._dataclass import lean_dataclass
from resilient_aws._json import dumps
from resilient_aws.errors import ConfigurationError

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadPointer, PayloadStore

__all__ = ["OffloadedPayload", "OutboxEvent", "envelope"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_id() -> str:
    return str(uuid.uuid4())


@lean_dataclass(frozen=True)
class OutboxEvent:
    """A domain event written in the same transaction as the change it describes.

    ``payload`` is anything JSON-serializable (dicts, dataclasses, pydantic models).
    ``sequence`` orders the events of one aggregate: pass the aggregate's version for a strict
    order across writers; left out, the outbox assigns a time-ordered number. ``destination``
    picks a target when a :class:`Router` publishes. ``id`` is generated once and travels with
    every message, so consumers can de-duplicate (``@idempotent(key="event_id")``).

    An event read back from the table (by the relay, the sweeper, :meth:`Outbox.pending`...)
    whose payload was offloaded to S3 (``Outbox(payloads=...)``) has an
    :class:`OffloadedPayload` as its ``payload``: the pointer, not the payload.

    ``trace`` is the W3C trace context the event carries (``{"traceparent": ..., "tracestate":
    ...}``): :meth:`Outbox.write` sets it from the current span when tracing is on (unless the
    event has one), the record stores it, and the targets put it on the message they publish,
    so the consumer's span continues the writer's trace. Not part of the event's value.
    """

    type: str
    aggregate_id: str
    payload: Any = None
    sequence: int | None = None
    destination: str | None = None
    id: str = field(default_factory=_new_id)
    created_at: dt.datetime = field(default_factory=_now)
    trace: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("type", "aggregate_id", "id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"OutboxEvent.{name} must be a non-empty string, got {value!r}")
        if self.sequence is not None and (
            not isinstance(self.sequence, int)
            or isinstance(self.sequence, bool)
            or self.sequence < 0
        ):
            raise ValueError(f"OutboxEvent.sequence must be an int >= 0, got {self.sequence!r}")
        if self.trace is not None:
            trace = trace_context(self.trace)
            if trace is None:
                raise ValueError(
                    f"OutboxEvent.trace of event {self.id} must map traceparent to a valid W3C "
                    "traceparent (and may map tracestate to an ASCII string), nothing else"
                )
            object.__setattr__(self, "trace", trace)  # a copy of its own: frozen means frozen

    def describe(self) -> str:
        """``event <id> (<aggregate> #<sequence>)``: how errors and logs name it."""
        return f"event {self.id} ({self.aggregate_id} #{self.sequence})"


@lean_dataclass(frozen=True)
class OffloadedPayload:
    """The payload of an event that ``Outbox(payloads=store)`` stored in S3: what a record
    read back holds in the payload's place. Reading a record never downloads the object.

    ``pointer`` names the object, which holds the event's whole :func:`envelope` (the message
    body a consumer gets), ``size`` its length in bytes (UTF-8, before any encryption) and
    ``legacy`` whether the pointer is written in the extended clients' older format. SQS and
    SNS targets send :meth:`message_body` with :meth:`message_attributes` (the extended
    clients' pointer message) without touching S3; :meth:`load` and :meth:`load_envelope`
    download it (other targets, operators).
    """

    pointer: PayloadPointer
    size: int
    legacy: bool = False
    # how to read the object (the outbox's store); not part of the value
    store: PayloadStore | None = field(default=None, compare=False, repr=False)

    def message_body(self) -> str:
        """The extended client libraries' pointer body for this object."""
        return self.pointer.to_body(legacy=self.legacy)

    def message_attributes(self) -> dict[str, Any]:
        """The size attribute (``ExtendedPayloadSize``, or ``SQSLargePayloadSize`` when
        ``legacy``) that marks a pointer message for a consumer."""
        from resilient_aws.payloads import LEGACY_SIZE_ATTRIBUTE, SIZE_ATTRIBUTE

        name = LEGACY_SIZE_ATTRIBUTE if self.legacy else SIZE_ATTRIBUTE
        return {name: {"DataType": "Number", "StringValue": str(self.size)}}

    def load_envelope(self, *, message_id: str | None = None) -> str:
        """The envelope text stored in S3 (one ``GetObject`` through the store's retry core).
        :class:`~resilient_aws.payloads.PayloadNotFoundError` /
        :class:`~resilient_aws.payloads.PayloadError` name ``message_id`` and the object."""
        if self.store is None:
            raise ConfigurationError(
                "payloads",
                f"the payload of {message_id or 'this event'} is in "
                f"s3://{self.pointer.bucket}/{self.pointer.key}: read it through an Outbox made "
                "with payloads= (a PayloadStore that can read the bucket)",
            )
        return self.store.get(self.pointer, message_id=message_id)

    def load(self, *, message_id: str | None = None) -> Any:
        """The payload itself (the envelope's ``payload``), as JSON values."""
        return json.loads(self.load_envelope(message_id=message_id)).get("payload")


def envelope(event: OutboxEvent) -> str:
    """The message body every target gets: the event's identity and its payload."""
    if isinstance(event.payload, OffloadedPayload):
        pointer = event.payload.pointer
        raise ValueError(
            f"the payload of {event.describe()} is offloaded to s3://{pointer.bucket}/"
            f"{pointer.key}, which holds its envelope: see OffloadedPayload.load_envelope()"
        )
    return envelope_text(event, dumps(event.payload))


def envelope_text(event: OutboxEvent, payload_json: str) -> str:
    """:func:`envelope` of ``event`` whose payload's JSON text is ``payload_json``, without
    serializing the payload again (byte for byte what ``dumps`` writes: sorted keys, so
    ``payload`` goes between ``event_id`` and ``sequence``)."""
    head = dumps(
        {
            "aggregate_id": event.aggregate_id,
            "created_at": event.created_at.isoformat(),
            "event_id": event.id,
        }
    )
    tail = dumps({"sequence": event.sequence, "type": event.type})
    return f'{head[:-1]}, "payload": {payload_json}, {tail[1:]}'


def message_attributes(event: OutboxEvent) -> dict[str, Any]:
    """The message attributes SQS and SNS targets send with every event: its id and type, and
    the trace context it carries (``traceparent``, ``tracestate``)."""
    attributes = {
        "event_id": {"DataType": "String", "StringValue": event.id},
        "event_type": {"DataType": "String", "StringValue": event.type},
    }
    for name, value in (event.trace or {}).items():
        attributes[name] = {"DataType": "String", "StringValue": value}
    return attributes


def message_attributes_size(event: OutboxEvent) -> int:
    """Bytes SQS and SNS count for :func:`message_attributes` (name, type and value of each)."""
    fixed = len("event_id") + len("event_type") + 2 * len("String")
    size = fixed + len(event.id.encode("utf-8")) + len(event.type.encode("utf-8"))
    for name, value in (event.trace or {}).items():
        size += len(name) + len("String") + len(value.encode("utf-8"))
    return size


# -- trace context ------------------------------------------------------------------------------

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_HEX = frozenset("0123456789abcdef")


def trace_context(fields: Any) -> dict[str, str] | None:
    """``fields`` as an event's ``trace`` (``traceparent`` and, if any, ``tracestate``), or
    ``None`` when it holds no valid W3C ``traceparent`` (a record damaged by hand carries no
    trace rather than a broken one). Never quotes what it checks."""
    if not isinstance(fields, Mapping):
        return None
    traceparent, tracestate = fields.get(TRACEPARENT), fields.get(TRACESTATE)
    if not isinstance(traceparent, str) or not _valid_traceparent(traceparent):
        return None
    if set(fields) - {TRACEPARENT, TRACESTATE}:
        return None
    if tracestate is None or tracestate == "":
        return {TRACEPARENT: traceparent}
    if not isinstance(tracestate, str) or not tracestate.isascii():
        return None
    return {TRACEPARENT: traceparent, TRACESTATE: tracestate}


def _valid_traceparent(value: str) -> bool:
    """``00-{32 hex}-{16 hex}-{2 hex}``, neither id all zeros (what W3C calls valid)."""
    parts = value.split("-")
    if len(parts) != 4 or [len(p) for p in parts] != [2, 32, 16, 2]:
        return False
    if not _HEX.issuperset("".join(parts)) or parts[0] == "ff":
        return False
    return set(parts[1]) != {"0"} and set(parts[2]) != {"0"}


def xray_header(trace: Mapping[str, str]) -> str:
    """The X-Ray ``AWSTraceHeader``/``TraceHeader`` of a valid ``trace``, made from the W3C ids
    as :func:`resilient_aws.tracing.inject` makes it."""
    _, trace_id, span_id, flags = trace[TRACEPARENT].split("-")
    sampled = int(flags, 16) & 1
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled={sampled}"


def with_trace(body: str, trace: Mapping[str, str] | None) -> str:
    """The JSON object text ``body`` (an envelope) with the trace context added as top-level
    fields (an EventBridge ``detail``, where :func:`resilient_aws.tracing.extract` reads it);
    ``body`` itself without a trace or when it is not an object's text."""
    text = body.strip()
    if not trace or not text.startswith("{") or not text.endswith("}"):
        return body
    fields = dumps(dict(trace))
    if not text[1:-1].strip():
        return fields
    return f"{text[:-1]}, {fields[1:]}"

"""An event to publish, and the envelope every target receives."""

from __future__ import annotations

import datetime as dt
import json
import uuid
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
    """

    type: str
    aggregate_id: str
    payload: Any = None
    sequence: int | None = None
    destination: str | None = None
    id: str = field(default_factory=_new_id)
    created_at: dt.datetime = field(default_factory=_now)

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
    """The message attributes SQS and SNS targets send with every event."""
    return {
        "event_id": {"DataType": "String", "StringValue": event.id},
        "event_type": {"DataType": "String", "StringValue": event.type},
    }


def message_attributes_size(event: OutboxEvent) -> int:
    """Bytes SQS and SNS count for :func:`message_attributes` (name, type and value of each)."""
    fixed = len("event_id") + len("event_type") + 2 * len("String")
    return fixed + len(event.id.encode("utf-8")) + len(event.type.encode("utf-8"))

"""An event to publish, and the envelope every target receives."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import field
from typing import Any

from resilient_aws._dataclass import lean_dataclass
from resilient_aws._json import dumps

__all__ = ["OutboxEvent", "envelope"]


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


def envelope(event: OutboxEvent) -> str:
    """The message body every target gets: the event's identity and its payload."""
    return dumps(
        {
            "event_id": event.id,
            "type": event.type,
            "aggregate_id": event.aggregate_id,
            "sequence": event.sequence,
            "created_at": event.created_at.isoformat(),
            "payload": event.payload,
        }
    )

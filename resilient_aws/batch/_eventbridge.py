"""EventBridge: PutEvents, sized the way the service documents it."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import BatchSender, positional
from resilient_aws.errors import EntryValidationError
from resilient_aws.limits import EVENTBRIDGE_PUT_EVENTS

__all__ = ["EventBridgePutter", "event_size"]

_TIME_BYTES = 14


def event_size(entry: Mapping[str, Any]) -> int:
    """The size EventBridge counts for one ``PutEvents`` entry ("Calculating PutEvents event
    entry size"): 14 bytes for ``Time`` if present, plus the UTF-8 bytes of ``Source``,
    ``DetailType``, ``Detail`` and each ``Resources`` entry."""
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    for field in ("Source", "DetailType", "Detail"):
        if entry.get(field):
            size += len(str(entry[field]).encode("utf-8"))
    size += sum(len(str(r).encode("utf-8")) for r in entry.get("Resources", ()))
    return size


class EventBridgePutter(BatchSender):
    """``PutEvents`` for any number of events; every event put or reported.

    ::

        with EventBridgePutter(bus_name="orders") as events:
            events.put({"order_id": "o-1"}, source="shop.orders", detail_type="OrderPlaced")

    ``result.answers`` maps each event to its ``EventId``.
    """

    client_name = "events"
    service = "events"
    operation = "PutEvents"
    default_limits = EVENTBRIDGE_PUT_EVENTS

    def __init__(
        self, *, bus_name: str | None = None, endpoint_id: str | None = None, **options: Any
    ) -> None:
        self.bus_name = bus_name
        self.endpoint_id = endpoint_id
        super().__init__(**options)

    def put(
        self,
        detail: Mapping[str, Any] | str,
        *,
        source: str,
        detail_type: str,
        id: str | None = None,
        resources: Sequence[str] = (),
        time: datetime.datetime | None = None,
        trace_header: str | None = None,
        bus_name: str | None = None,
    ) -> None:
        """Buffer one event; ``detail`` is a dict (serialized to JSON) or a JSON object string."""
        entry_id = self._next_id(id)
        source_entry = {"id": entry_id, "source": source, "detail_type": detail_type}
        if isinstance(detail, str):
            try:
                is_object = isinstance(json.loads(detail), dict)
            except ValueError:
                is_object = False
            if not is_object:
                self._refuse(
                    source_entry, EntryValidationError(entry_id, "detail must be a JSON object")
                )
                return
            text = detail
        else:
            try:
                text = json.dumps(detail, separators=(",", ":"), default=str)
            except (TypeError, ValueError) as error:
                self._refuse(
                    source_entry,
                    EntryValidationError(entry_id, f"detail is not JSON-serializable: {error}"),
                )
                return
        if not source or not detail_type:
            self._refuse(
                source_entry, EntryValidationError(entry_id, "source and detail_type are required")
            )
            return
        payload: dict[str, Any] = {"Source": source, "DetailType": detail_type, "Detail": text}
        if resources:
            payload["Resources"] = list(resources)
        if time is not None:
            payload["Time"] = time
        if trace_header:
            payload["TraceHeader"] = trace_header
        if bus_name or self.bus_name:
            payload["EventBusName"] = bus_name or self.bus_name
        self._add(source_entry, entry_id, payload, event_size(payload))

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        options: dict[str, Any] = {"EndpointId": self.endpoint_id} if self.endpoint_id else {}
        response = self.client.put_events(Entries=[e.payload for e in batch], **options)
        return positional(batch, response, "Entries", self.service)

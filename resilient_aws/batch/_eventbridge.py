"""EventBridge: PutEvents, sized the way the service documents it."""

from __future__ import annotations

import datetime
import json
import math
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from resilient_aws import tracing
from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import positional
from resilient_aws.batch._sqs import PARAMETERS_REFUSED, TRACE_API, Offloading
from resilient_aws.errors import EntryValidationError, UnsupportedValueError
from resilient_aws.limits import EVENTBRIDGE_PUT_EVENTS

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadPointer, PayloadStore

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


class EventBridgePutter(Offloading):
    """``PutEvents`` for any number of events; every event put or reported.

    ::

        with EventBridgePutter(bus_name="orders") as events:
            events.put({"order_id": "o-1"}, source="shop.orders", detail_type="OrderPlaced")

    With ``keep_answers=True``, ``result.answers`` maps each event to its ``EventId``.

    ``payloads=`` a :class:`~resilient_aws.payloads.PayloadStore` offloads the ``detail`` of an
    event over the store's threshold (or over EventBridge's entry limit, or every event with
    ``always=True``) to S3 when it is added; the event carries
    ``{"ExtendedPayloadSize": <bytes>, "s3BucketName": ..., "s3Key": ...}`` as its detail,
    which :func:`~resilient_aws.payloads.resolve` turns back into the detail. A detail with
    its own top-level ``ExtendedPayloadSize`` field is offloaded whatever its size: a consumer
    would take it for a pointer. The objects of
    events that finally fail are deleted after the flush, or listed in :attr:`payloads_left`
    when the event may have been put.
    """

    client_name = "events"
    service = "events"
    operation = "PutEvents"
    method = "put_events"
    default_limits = EVENTBRIDGE_PUT_EVENTS
    split_codes = frozenset({PARAMETERS_REFUSED})

    def __init__(
        self,
        *,
        bus_name: str | None = None,
        endpoint_id: str | None = None,
        payloads: PayloadStore | None = None,
        **options: Any,
    ) -> None:
        self._init_payloads(payloads)
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
        """Buffer one event; ``detail`` is a dict (serialized to JSON) or a JSON object string.

        Numbers keep their value (a ``Decimal`` is written digit for digit); NaN, infinity and
        values JSON has no form for (sets, bytes, datetimes...) make the entry invalid, named by
        its id and the path and type of the value, never the value.
        """
        entry_id = self._next_id(id)
        source_entry = {"id": entry_id, "source": source, "detail_type": detail_type}
        if trace_header is None and TRACE_API in sys.modules:
            trace_header = tracing.inject("eventbridge").get("TraceHeader")
        try:
            text = _detail_text(detail, entry_id)
            payload = _payload(
                entry_id,
                source,
                detail_type,
                text,
                resources,
                time,
                trace_header,
                bus_name or self.bus_name,
            )
            size = _sized(entry_id, payload)
        except EntryValidationError as invalid:
            self._refuse(source_entry, invalid)
            return
        if self.payloads is not None:
            offloaded = self._offload_detail(entry_id, source_entry, payload, size)
            if offloaded is None:
                return
            size = offloaded
        self._add(source_entry, entry_id, payload, size)

    def _offload_detail(
        self, entry_id: str, source: dict[str, Any], payload: dict[str, Any], size: int
    ) -> int | None:
        """``size`` when the event goes as it is, its new size when its detail went to S3, or
        None when it was refused or reported failed."""
        from resilient_aws.payloads._senders import offload_data, offloads

        store = self.payloads
        assert store is not None
        if not offloads(store, size, self.limits.max_entry_bytes) and not _marked(
            payload["Detail"]
        ):
            return size
        data = payload["Detail"].encode("utf-8")

        def point(pointer: PayloadPointer) -> int:
            payload["Detail"] = pointer.to_detail(len(data))
            return event_size(payload)

        return offload_data(self, store, entry_id, source, data, point)

    def _request(self, batch: list[Entry[Any]]) -> dict[str, Any]:
        request: dict[str, Any] = {"Entries": [e.payload for e in batch]}
        if self.endpoint_id:
            request["EndpointId"] = self.endpoint_id
        return request

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        return positional(batch, response, "Entries", self.service)


def _marked(text: str) -> bool:
    """Whether a consumer would take the detail ``text`` for an offloaded one (its own
    top-level ``ExtendedPayloadSize`` field): such a detail goes to S3 whatever its size, so
    that :func:`~resilient_aws.payloads.resolve` gives it back as it was put."""
    from resilient_aws.payloads._pointer import SIZE_ATTRIBUTE, detail_pointer

    if SIZE_ATTRIBUTE not in text:  # one search: most details are never parsed
        return False
    try:
        return detail_pointer(json.loads(text))[0]
    except (ValueError, RecursionError):  # checked when put: not reached, but never a crash
        return False


def _payload(
    entry_id: str,
    source: Any,
    detail_type: Any,
    text: str,
    resources: Any,
    time: Any,
    trace_header: Any,
    bus_name: Any,
) -> dict[str, Any]:
    """The ``PutEvents`` entry, or a typed error naming the option that botocore or EventBridge
    would refuse (a wrong type would otherwise fail every event of its request)."""
    if not source or not detail_type:
        raise EntryValidationError(entry_id, "source and detail_type are required")
    if not isinstance(source, str) or not isinstance(detail_type, str):
        raise EntryValidationError(entry_id, "source and detail_type must be str")
    payload: dict[str, Any] = {"Source": source, "DetailType": detail_type, "Detail": text}
    if resources:
        if isinstance(resources, (str, bytes)) or not all(isinstance(r, str) for r in resources):
            raise EntryValidationError(entry_id, "resources must be a sequence of str (ARNs)")
        payload["Resources"] = list(resources)
    if time is not None:
        payload["Time"] = time
    if trace_header:
        if not isinstance(trace_header, str):
            raise EntryValidationError(entry_id, "trace_header must be a str")
        payload["TraceHeader"] = trace_header
    if bus_name:
        if not isinstance(bus_name, str):
            raise EntryValidationError(entry_id, "bus_name must be a str")
        payload["EventBusName"] = bus_name
    return payload


def _sized(entry_id: str, payload: Mapping[str, Any]) -> int:
    """:func:`event_size`, or a typed error naming the fields that hold a string that is not
    valid UTF-8 (a lone surrogate: a Python str, not Unicode text; the request would fail whole
    at send time)."""
    try:
        return event_size(payload)
    except UnicodeEncodeError:
        pass
    fields = []
    for name, value in payload.items():
        texts = value if name == "Resources" else [value]
        if any(isinstance(text, str) and _not_utf8(text) for text in texts):
            fields.append(name)
    where = ", ".join(fields) or "a field"
    raise EntryValidationError(
        entry_id, f"{where}: a string that is not valid UTF-8 (a lone surrogate)"
    )


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _detail_text(detail: Any, entry_id: str) -> str:
    """Compact JSON text of ``detail``, or a typed error naming the path and type of what JSON
    cannot hold (never the value: it may be personal data)."""
    if isinstance(detail, str):
        try:
            is_object = isinstance(json.loads(detail), dict)
        except (ValueError, RecursionError):
            is_object = False
        if not is_object:
            raise EntryValidationError(entry_id, "detail must be a JSON object")
        return detail
    if not isinstance(detail, Mapping):
        raise EntryValidationError(
            entry_id, f"detail must be a JSON object (a dict or its text), not a {_kind(detail)}"
        )
    try:
        # The common case, in C: plain JSON values only.
        return json.dumps(detail, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        pass  # a Decimal, NaN, a set...: the walk below writes it or names it
    try:
        return _json_text(detail, entry_id, "detail", set())
    except RecursionError:
        raise UnsupportedValueError(
            entry_id, "detail: nested too deeply to be written as JSON"
        ) from None


def _kind(value: Any) -> str:
    return type(value).__name__


def _json_text(value: Any, entry_id: str, path: str, open_: set[int]) -> str:
    """``json.dumps(value, separators=(",", ":"), allow_nan=False)``, but a ``Decimal`` is a
    number written with exactly its digits, and a value JSON has no form for is a typed error."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return int.__repr__(value)
        except ValueError:  # more digits than Python writes (sys.set_int_max_str_digits)
            raise UnsupportedValueError(entry_id, f"{path}: an int too long to write") from None
    if isinstance(value, float):
        if math.isfinite(value):
            return float.__repr__(value)
        raise UnsupportedValueError(entry_id, f"{path}: {_NOT_FINITE}")
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)  # a JSON number, digit for digit: 1.50 stays 1.50
        raise UnsupportedValueError(entry_id, f"{path}: {_NOT_FINITE}")
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in open_:
            raise UnsupportedValueError(entry_id, f"{path}: a circular reference")
        open_.add(id(value))
        try:
            if isinstance(value, Mapping):
                members = (
                    f"{_json_key(key, entry_id, path)}:"
                    f"{_json_text(member, entry_id, f'{path}.{key}', open_)}"
                    for key, member in value.items()
                )
                return "{" + ",".join(members) + "}"
            elements = (
                _json_text(element, entry_id, f"{path}[{i}]", open_)
                for i, element in enumerate(value)
            )
            return "[" + ",".join(elements) + "]"
        finally:
            open_.discard(id(value))
    raise UnsupportedValueError(
        entry_id,
        f"{path}: JSON has no {_kind(value)}; convert it first (a str, a number, a list...)",
    )


def _json_key(key: Any, entry_id: str, path: str) -> str:
    """An object key as ``json.dumps`` writes it (str, and int, float, bool or None as text)."""
    if isinstance(key, str):
        return json.dumps(key)
    if isinstance(key, bool):
        return '"true"' if key else '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return f'"{int.__repr__(key)}"'
    if isinstance(key, float) and math.isfinite(key):
        return f'"{float.__repr__(key)}"'
    raise UnsupportedValueError(
        entry_id, f"{path}: a key of type {_kind(key)}; JSON object keys are strings"
    )


_NOT_FINITE = "NaN and infinity are not JSON numbers"

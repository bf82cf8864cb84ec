"""SQS: SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from resilient_aws import tracing
from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import BatchSender, by_id
from resilient_aws.errors import ConfigurationError, EntryTooLargeError, EntryValidationError
from resilient_aws.limits import SQS_BATCH

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadPointer, PayloadStore
    from resilient_aws.results import BatchResult

__all__ = ["SqsDeleter", "SqsSender", "SqsVisibilityChanger", "message_attributes_size"]

_MAX_ATTRIBUTES = 10
_payloads_logger = logging.getLogger("resilient_aws.payloads")
PARAMETERS_REFUSED = "ParamValidationError"
"""botocore's own check of a request, before it is sent: a request it refuses is split until the
entry at fault stands alone, so that one entry a sender's checks missed never fails the rest."""
_IDS = tuple(map(str, range(SQS_BATCH.max_entries)))  # a request's entry ids: their indexes
_MAX_DELAY_S = 900


def message_attributes_size(attributes: Mapping[str, Any] | None) -> int:
    """Bytes SQS counts for message attributes: name, data type and value of each."""
    total = 0
    for name, attribute in (attributes or {}).items():
        total += len(name.encode("utf-8")) + len(str(attribute.get("DataType", "")).encode("utf-8"))
        if "StringValue" in attribute:
            total += len(str(attribute["StringValue"]).encode("utf-8"))
        if "BinaryValue" in attribute:
            total += len(attribute["BinaryValue"])
    return total


_ATTRIBUTE_SHAPE = "{'DataType': 'String', 'StringValue': ...} (or 'BinaryValue')"


def attributes_problem(attributes: Any) -> str | None:
    """What is wrong with message ``attributes`` (SQS and SNS share their shape), or None.

    Names the attribute, never its value: the message may hold personal data.
    """
    if not isinstance(attributes, Mapping):
        return f"attributes must map each name to {_ATTRIBUTE_SHAPE}"
    for name, attribute in attributes.items():
        if not isinstance(name, str) or not name:
            return "an attribute name must be a non-empty str"
        if not isinstance(attribute, Mapping):
            return f"attribute {name!r} must be {_ATTRIBUTE_SHAPE}"
        data_type = attribute.get("DataType")
        if not isinstance(data_type, str) or not data_type.startswith(
            ("String", "Number", "Binary")
        ):
            return f"attribute {name!r} needs a DataType of String, Number or Binary"
        values = [key for key in ("StringValue", "BinaryValue") if key in attribute]
        if len(values) != 1:
            return f"attribute {name!r} needs exactly one of StringValue and BinaryValue"
        if values == ["StringValue"] and not isinstance(attribute["StringValue"], str):
            return f"attribute {name!r}: StringValue must be a str"
        if values == ["BinaryValue"] and not isinstance(
            attribute["BinaryValue"], (bytes, bytearray, memoryview)
        ):
            return f"attribute {name!r}: BinaryValue must be bytes"
    return None


_SYSTEM_ATTRIBUTES = ("AWSTraceHeader",)
_SYSTEM_SHAPE = "{'DataType': 'String', 'StringValue': ...}"


def system_attributes_problem(attributes: Any) -> str | None:
    """What is wrong with SQS message system ``attributes``, or None: SQS takes one,
    ``AWSTraceHeader``, a ``String``. Names the attribute, never its value."""
    if not isinstance(attributes, Mapping):
        return f"system_attributes must map AWSTraceHeader to {_SYSTEM_SHAPE}"
    for name, attribute in attributes.items():
        if name not in _SYSTEM_ATTRIBUTES:
            shown = repr(name) if isinstance(name, str) else f"of type {type(name).__name__}"
            return f"system attribute {shown}: SQS takes only {', '.join(_SYSTEM_ATTRIBUTES)}"
        if not isinstance(attribute, Mapping) or attribute.get("DataType") != "String":
            return f"system attribute {name!r} must be {_SYSTEM_SHAPE}"
        if set(attribute) - {"DataType", "StringValue"}:
            return f"system attribute {name!r} takes only DataType and StringValue"
        if not isinstance(attribute.get("StringValue"), str) or not attribute["StringValue"]:
            return f"system attribute {name!r}: StringValue must be a non-empty str"
    return None


def attributes_size(entry_id: str, attributes: Mapping[str, Any] | None) -> int:
    """:func:`message_attributes_size` of checked ``attributes``, or a typed error naming the
    attribute that holds a string that is not valid UTF-8 (a lone surrogate)."""
    try:
        return message_attributes_size(attributes)
    except UnicodeEncodeError:
        pass
    for name, attribute in (attributes or {}).items():
        texts = (name, attribute.get("DataType", ""), attribute.get("StringValue", ""))
        if not all(valid_text(text) for text in texts):
            raise EntryValidationError(entry_id, f"attribute {name!r}: {NOT_TEXT}")
    raise EntryValidationError(entry_id, f"attributes: {NOT_TEXT}")  # pragma: no cover


NOT_TEXT = "a string that is not valid UTF-8 (a lone surrogate)"
"""Why a ``str`` holding a lone surrogate ("\\ud800") is refused: not Unicode text, it cannot
be encoded, and the request carrying it would fail whole."""


def valid_text(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_size(entry_id: str, what: str, text: str) -> int:
    """UTF-8 bytes of ``text``, or a typed error naming ``what`` holds a lone surrogate."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise EntryValidationError(entry_id, f"{what}: {NOT_TEXT}") from None


TRACE_API = "opentelemetry.trace"
"""Imported once OpenTelemetry may be tracing: until then no message carries a trace context
and nothing more is looked up per message."""


def add_trace(
    carrier: Literal["sqs", "sns"], payload: dict[str, Any], size: int, limit: int | None
) -> int:
    """Add the current trace context to a checked entry ``payload`` of ``size`` bytes, as far
    as it fits: the W3C attributes within SQS's and SNS's 10 message attributes and within
    ``limit`` (they count toward a message's size), the X-Ray ``AWSTraceHeader`` always (it
    counts toward neither). A message that fits without the trace is never refused because of
    it. What the caller set wins (:func:`~resilient_aws.tracing.inject_into`). The new size."""
    merged = tracing.inject_into(payload, carrier)
    if merged is payload:
        return size
    before, after = payload.get("MessageAttributes"), merged.get("MessageAttributes")
    if after is not before:
        extra = message_attributes_size(after) - message_attributes_size(before)
        if limit is None or size + extra <= limit:
            payload["MessageAttributes"] = after
            size += extra
    system = merged.get("MessageSystemAttributes")
    if system is not payload.get("MessageSystemAttributes"):
        payload["MessageSystemAttributes"] = system
    return size


class Offloading(BatchSender):
    """A sender that can offload large messages to S3 (``payloads=`` a
    :class:`~resilient_aws.payloads.PayloadStore`): after each flush, the objects of the
    messages that finally failed are deleted, or listed in :attr:`payloads_left` when the
    message may have been sent (a request that ended without a response) or the delete
    failed."""

    payloads: PayloadStore | None = None

    def _init_payloads(self, payloads: PayloadStore | None) -> None:
        if payloads is not None and not callable(getattr(payloads, "offload", None)):
            raise ConfigurationError(
                "payloads", f"must be a PayloadStore, got {type(payloads).__name__}"
            )
        self.payloads = payloads
        self.payloads_left: list[tuple[str, PayloadPointer]] = []
        """``(entry id, pointer)`` of failed messages whose object was kept."""
        self._payloads_settled = 0
        self._payloads_lock = threading.Lock()

    def __del__(self) -> None:
        # Dropped without close() or ``with``: what it still buffers is never sent (the engine
        # warns about the entries). Name the objects left behind, by entry id and key, for a
        # cleanup job; deleting them here would make S3 calls, with retries and sleeps, from the
        # garbage collector, in whatever thread it runs.
        try:
            engine = getattr(self, "_engine", None)
            if self.payloads is None or engine is None or engine.closed:
                return
            left = [
                (entry.entry_id, entry.source["pointer"])
                for entry in list(engine._pending.values())
                if isinstance(entry.source, dict) and "pointer" in entry.source
            ]
            for entry_id, pointer in left:
                _payloads_logger.error(
                    "payload of entry %r left in s3://%s/%s: its %s was garbage-collected "
                    "without close(), the message never sent",
                    entry_id,
                    pointer.bucket,
                    pointer.key,
                    type(self).__name__,
                )
        except Exception:  # at interpreter exit, modules may already be gone
            pass

    def _settle_payloads(self) -> None:
        from resilient_aws.payloads._senders import settle_failed

        settle_failed(self)

    def flush(self) -> None:
        if self.payloads is None:
            super().flush()
            return
        try:
            super().flush()
        finally:
            self._settle_payloads()

    def close(self) -> BatchResult[Any]:
        if self.payloads is None:
            return super().close()
        try:
            return super().close()
        finally:
            self._settle_payloads()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.payloads is None:
            super().__exit__(exc_type, exc, tb)
            return
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self._settle_payloads()

    def _offload(
        self, entry_id: str, source: dict[str, Any], payload: dict[str, Any], body_key: str
    ) -> int | None:
        """Offload ``payload``'s body: its new size, or None if refused or reported failed."""
        from resilient_aws.payloads._senders import offload_entry

        assert self.payloads is not None
        return offload_entry(
            self, self.payloads, entry_id, source, payload, body_key, max_attributes=_MAX_ATTRIBUTES
        )

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        if self.payloads is None:
            # BatchSender.send_request, inlined: this runs once per request
            return self._read(batch, getattr(self.client, self.method)(**self._request(batch)))
        try:
            return super().send_request(batch)
        except BaseException as error:
            self._unknown_outcome(batch, error)
            raise

    def _unknown_outcome(self, batch: list[Entry[Any]], error: BaseException) -> None:
        from resilient_aws.payloads._senders import mark_maybe_sent

        mark_maybe_sent(batch, error)


class _SqsBatch(BatchSender):
    client_name = "sqs"
    service = "sqs"
    default_limits = SQS_BATCH
    # A request refused whole for one entry's sake is halved until that entry stands alone.
    # InvalidMessageContents (a body with a character SQS does not take, such as U+0000) is
    # answered per entry as far as we know; if a request is refused whole for it, the other
    # nine still go.
    split_codes = frozenset(
        {
            "AWS.SimpleQueueService.BatchRequestTooLong",
            "BatchRequestTooLong",
            "InvalidMessageContents",
            "AWS.SimpleQueueService.InvalidMessageContents",
            PARAMETERS_REFUSED,
        }
    )

    def __init__(self, queue_url: str, **options: Any) -> None:
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        super().__init__(**options)

    def _request(self, batch: list[Entry[Any]]) -> dict[str, Any]:
        # a larger limits= than SQS allows (an emulator) needs more ids than the ones kept
        ids = _IDS if len(batch) <= len(_IDS) else tuple(map(str, range(len(batch))))
        entries = []
        for id_, entry in zip(ids, batch):  # noqa: B905  # as many ids as entries or more
            # the payload is the sender's own dict, made for this entry: its Id is set in place
            # (an entry is in one request at a time) instead of copying it per request
            payload = entry.payload
            payload["Id"] = id_
            entries.append(payload)
        return {"QueueUrl": self.queue_url, "Entries": entries}

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        return by_id(batch, response, self.service)


class _Message(Entry[dict[str, Any]]):
    """A message that is a body alone, the common case: its default id (``#n``) and its
    ``source`` (``{"id": ..., "body": ...}``, what ``FailedEntry.entry`` holds) are made when
    first read, for a failure or a kept answer, not for every message sent."""

    __slots__ = ("_id", "_source")

    _id: str | int
    _source: dict[str, Any] | None
    # a message of a standard queue has neither: read from the class, never stored per message
    group = None
    dedupe = None

    def __init__(self, id_: str | int, payload: dict[str, Any], size: int) -> None:
        # Entry.__init__'s fields, set here: entry_id and source are the properties below
        self._id = id_
        self._source = None
        self.payload = payload
        self.size = size
        self.slot = None
        self.sends = 0
        self.stalled = 0
        self.first_sent = 0.0
        self.settled = False

    @property
    def entry_id(self) -> str:  # type: ignore[override]
        id_ = self._id
        if type(id_) is not str:
            id_ = self._id = f"#{id_}"
        return id_

    @property
    def source(self) -> dict[str, Any]:  # type: ignore[override]
        source = self._source
        if source is None:
            # made once: the caller's failed entry and the engine's are the same dict
            source = self._source = {"id": self.entry_id, "body": self.payload["MessageBody"]}
        return source


class SqsSender(Offloading, _SqsBatch):
    """``SendMessageBatch`` for any number of messages; every message sent or reported.

    ::

        with SqsSender(queue_url, policy=policy) as sender:
            sender.send_message(json.dumps(order), attributes={"type": {"DataType": "String", "StringValue": "order"}})

    FIFO queues (URL ending in ``.fifo``) need ``group_id`` and are sent in order by default
    (``ordered=True``): at most one message of a group per request and one request of a group
    in flight, so a retried message is never overtaken by a later one of its group; if one
    finally fails, the later messages of its group are not sent (``PrecedingEntryFailed``).
    With ``keep_answers=True``, ``result.answers`` maps each message to its ``MessageId`` (and
    ``SequenceNumber``).

    ``payloads=`` a :class:`~resilient_aws.payloads.PayloadStore` offloads a message whose body
    and attributes exceed its threshold (or every message) to S3 when it is added, and sends the
    extended client libraries' pointer instead; the objects of messages that finally fail are
    deleted after the flush (see :attr:`payloads_left`).
    """

    operation = "SendMessageBatch"
    method = "send_message_batch"

    def __init__(
        self,
        queue_url: str,
        *,
        ordered: bool | None = None,
        payloads: PayloadStore | None = None,
        **options: Any,
    ) -> None:
        self._init_payloads(payloads)
        super().__init__(
            queue_url,
            ordered=queue_url.endswith(".fifo") if ordered is None else ordered,
            **options,
        )
        # what send_message's fast path needs, looked up once: a standard queue without a
        # payload store, the largest body it sends as it is, the engine's add
        limit = self.limits.max_entry_bytes
        plain = not self.fifo and payloads is None
        self._max_plain = (sys.maxsize if limit is None else limit) if plain else 0
        engine = self._engine
        self._add_entry = engine.add
        # ...and its staging (BatchEngine.send_staged): bodies small enough that a request's
        # worth of them fits one request are staged, the rest added (0: none staged)
        stages = engine.stages and engine.flush_interval is None
        per_request = self.limits.max_request_bytes // self.limits.max_entries
        self._max_staged = min(self._max_plain, per_request) if stages else 0
        self._staged = engine.staged
        self._stage_size = self.limits.max_entries

    def send_message(
        self,
        body: str,
        *,
        id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        system_attributes: Mapping[str, Any] | None = None,
        delay_seconds: int | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> None:
        """Buffer one message. ``id`` names it in errors and in ``result`` (default ``#n``)."""
        if (
            type(body) is str
            and attributes is None
            and system_attributes is None
            and delay_seconds is None
            and group_id is None
            and deduplication_id is None
            and (id is None or type(id) is str)
            and body.isascii()
            and 0 < (size := len(body)) <= self._max_plain  # 0: not a standard queue alone
            and TRACE_API not in sys.modules
        ):
            # A body alone (most messages): every check below would pass, and the size is its
            # length. Its default id and the source a failure reports are made when first read.
            message = _Message(next(self._ids) if id is None else id, {"MessageBody": body}, size)
            if size <= self._max_staged:
                engine = self._engine
                # only while nothing is buffered: what is (entries sent back, larger bodies)
                # decides when a request is full, message by message
                if not engine._pending:
                    # appended without the lock (BatchEngine.staged says why that is safe)
                    staged = self._staged
                    staged.append(message)
                    if engine.closed:
                        engine.unstage(message)
                    elif len(staged) >= self._stage_size:
                        engine.send_staged()
                    return
            self._add_entry(message)
            return
        entry_id = f"#{next(self._ids)}" if id is None else id  # BatchSender._next_id, inlined
        source = {"id": entry_id, "body": body}
        if not isinstance(body, str):
            self._refuse(  # type: ignore[unreachable]  # untyped callers
                source,
                EntryValidationError(
                    entry_id, f"the body must be a str, got {type(body).__name__}"
                ),
            )
            return
        if not body:
            self._refuse(source, EntryValidationError(entry_id, "the body is empty"))
            return
        payload: dict[str, Any] = {"MessageBody": body}
        # UTF-8 bytes; an ASCII body (most JSON) is as long in bytes as in characters
        if body.isascii():
            size = len(body)
        else:
            try:
                size = text_size(entry_id, "the body", body)
            except EntryValidationError as invalid:
                self._refuse(source, invalid)
                return
        if (
            self.fifo
            or attributes
            or system_attributes
            or delay_seconds is not None
            or group_id
            or deduplication_id
        ):
            try:
                size += self._with_options(
                    entry_id,
                    payload,
                    attributes,
                    system_attributes,
                    delay_seconds,
                    group_id,
                    deduplication_id,
                )
            except EntryValidationError as invalid:
                self._refuse(source, invalid)
                return
        store = self.payloads
        if store is not None and (
            store.config.always or size > store.config.threshold or _pointer_like(body)
        ):
            offloaded = self._offload(entry_id, source, payload, "MessageBody")
            if offloaded is None:
                return
            size = offloaded
        limit = self.limits.max_entry_bytes
        if TRACE_API in sys.modules:  # a span may be current: its context rides on the message
            size = add_trace("sqs", payload, size, limit)
        if limit is not None and size > limit:
            self._refuse(source, EntryTooLargeError(entry_id, size, limit))
            return
        # BatchSender._add, inlined: this runs once per message
        self._engine.add(Entry(source, entry_id, payload, size, group_id if self.ordered else None))

    def _with_options(
        self,
        entry_id: str,
        payload: dict[str, Any],
        attributes: Mapping[str, Any] | None,
        system_attributes: Mapping[str, Any] | None,
        delay_seconds: int | None,
        group_id: str | None,
        deduplication_id: str | None,
    ) -> int:
        """Check a message's options and add them to ``payload``; the bytes its attributes
        add. A typed error for an option SQS or botocore would refuse: a wrong type would fail
        every message of its request, not only this one."""
        problem = attributes_problem(attributes) if attributes is not None else None
        if problem is not None:
            raise EntryValidationError(entry_id, problem)
        if attributes and len(attributes) > _MAX_ATTRIBUTES:
            raise EntryValidationError(
                entry_id, f"{len(attributes)} message attributes, SQS allows {_MAX_ATTRIBUTES}"
            )
        problem = (
            system_attributes_problem(system_attributes) if system_attributes is not None else None
        )
        if problem is not None:
            raise EntryValidationError(entry_id, problem)
        if delay_seconds is not None and (
            type(delay_seconds) is not int or not 0 <= delay_seconds <= _MAX_DELAY_S
        ):
            raise EntryValidationError(entry_id, f"delay_seconds must be an int, 0..{_MAX_DELAY_S}")
        for name, value in (("group_id", group_id), ("deduplication_id", deduplication_id)):
            if value is not None and not isinstance(value, str):
                raise EntryValidationError(entry_id, f"{name} must be a str")
        if self.fifo and not group_id:
            raise EntryValidationError(entry_id, "a FIFO queue needs a group_id")
        if self.fifo and delay_seconds:
            raise EntryValidationError(entry_id, "FIFO queues do not take a per-message delay")
        if deduplication_id and not self.fifo:
            # SQS fails the entry (InvalidParameterValue): say so before anything is sent
            raise EntryValidationError(entry_id, "a standard queue takes no deduplication_id")
        size = attributes_size(entry_id, attributes) if attributes else 0
        if system_attributes:
            # not counted in the message size (SQS), but a lone surrogate fails the request
            for name, attribute in system_attributes.items():
                if not valid_text(attribute["StringValue"]):
                    raise EntryValidationError(entry_id, f"system attribute {name!r}: {NOT_TEXT}")
        for name, value in (("group_id", group_id), ("deduplication_id", deduplication_id)):
            if value and not valid_text(value):
                raise EntryValidationError(entry_id, f"{name}: {NOT_TEXT}")
        if attributes:
            payload["MessageAttributes"] = dict(attributes)
        if system_attributes:
            payload["MessageSystemAttributes"] = dict(system_attributes)
        if delay_seconds is not None:
            payload["DelaySeconds"] = delay_seconds
        if group_id:
            payload["MessageGroupId"] = group_id
        if deduplication_id:
            payload["MessageDeduplicationId"] = deduplication_id
        return size

    def send_many(self, bodies: Any, **options: Any) -> None:
        """``send_message`` each body of an iterable, with the same options."""
        for body in bodies:
            self.send_message(body, **options)


class SqsDeleter(_SqsBatch):
    """``DeleteMessageBatch`` by receipt handle; every delete confirmed or reported."""

    operation = "DeleteMessageBatch"
    method = "delete_message_batch"

    def delete(self, receipt_handle: str, *, id: str | None = None) -> None:
        """Buffer the deletion of one received message."""
        entry_id = self._next_id(id)
        if not receipt_handle:
            self._refuse({"id": entry_id}, EntryValidationError(entry_id, "empty receipt handle"))
            return
        self._add(
            {"id": entry_id, "receipt_handle": receipt_handle},
            entry_id,
            {"ReceiptHandle": receipt_handle},
            len(receipt_handle),
        )


class SqsVisibilityChanger(_SqsBatch):
    """``ChangeMessageVisibilityBatch``: extend (or end) the visibility of received messages."""

    operation = "ChangeMessageVisibilityBatch"
    method = "change_message_visibility_batch"

    def change(self, receipt_handle: str, timeout_s: int, *, id: str | None = None) -> None:
        """Buffer a visibility change of one received message to ``timeout_s`` seconds."""
        entry_id = self._next_id(id)
        if not 0 <= timeout_s <= 43_200:
            self._refuse(
                {"id": entry_id}, EntryValidationError(entry_id, "timeout_s must be 0..43200")
            )
            return
        payload = {"ReceiptHandle": receipt_handle, "VisibilityTimeout": timeout_s}
        self._add(
            {"id": entry_id, "receipt_handle": receipt_handle},
            entry_id,
            payload,
            len(receipt_handle),
        )


def _pointer_like(body: str) -> bool:
    """A body a consumer would read as a pointer (an extended client's message forwarded as it
    is): offloaded too, so that what is read back is what was sent, not someone else's object."""
    from resilient_aws.payloads._pointer import PayloadPointer

    return PayloadPointer.looks_like(body)

"""Consumers: resolve pointer messages into their payloads, delete objects once settled.

One resolver reads every shape a pointer arrives in: an SQS message (a Lambda event's record
or a ``ReceiveMessage`` message) whose body is the pointer, or whose body is an SNS
notification (raw message delivery off) or an EventBridge event carrying one; an EventBridge
event as a Lambda target gets it; a Kinesis record (a Lambda event's) whose data is one.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from resilient_aws.payloads._errors import InvalidPointerError, PayloadError
from resilient_aws.payloads._pointer import (
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    SIZE_ATTRIBUTES,
    PayloadPointer,
    detail_pointer,
    size_attribute,
)

if TYPE_CHECKING:
    from resilient_aws.payloads._store import PayloadStore
    from resilient_aws.retry import RetryPolicy

__all__ = ["delete_settled", "pointer_of", "resolve", "resolving"]

logger = logging.getLogger("resilient_aws.payloads")

# (body, attributes, message id) keys: a Lambda event's record, boto3's ReceiveMessage message
_SHAPES = (("body", "messageAttributes", "messageId"), ("Body", "MessageAttributes", "MessageId"))
# What a JSON body must contain to be worth parsing for a pointer inside: the end of both size
# attributes' names (an SNS notification's attribute, an event detail's field). One search,
# about 0.6 ns a byte: under half of what parsing the body would cost.
_MARK = "PayloadSize"
# A Kinesis record's data is base64: a pointer's starts with the base64 of '["<class>"' (cut
# to whole 3-byte groups, which encode the same whatever follows), so no record is decoded
# to find out it is none.
_KINESIS_PREFIXES = tuple(
    base64.b64encode(start[: len(start) - len(start) % 3]).decode("ascii")
    for start in (f'["{name}"'.encode() for name in (POINTER_CLASS, LEGACY_POINTER_CLASS))
)

_Rebuild = Callable[[Any], dict[str, Any]]
# where a message's pointer is: the pointer, the id naming the message in errors, how to
# build the resolved message from the payload, and whether the payload is bytes (not text)
_Found = tuple[PayloadPointer, Any, _Rebuild, bool]


def _shape(message: Mapping[str, Any]) -> tuple[str, str, str]:
    return _SHAPES[0] if "body" in message else _SHAPES[1]


def pointer_of(message: Mapping[str, Any]) -> PayloadPointer | None:
    """The pointer a message carries, or ``None``: an SQS message (a Lambda event's record or a
    ``ReceiveMessage`` message, its body the pointer, an SNS notification or an EventBridge
    event carrying one), an EventBridge event, or a Kinesis record of a Lambda event. A message
    marked as carrying a pointer that carries none raises :class:`InvalidPointerError` naming
    the message."""
    found = _locate(message)
    return None if found is None else found[0]


def resolve(
    message: Mapping[str, Any], store: PayloadStore, *, policy: RetryPolicy | None = None
) -> Mapping[str, Any]:
    """``message`` itself when it carries no pointer, else a copy holding the payload, as the
    extended clients hand it out: an SQS message's body (its size attribute removed); the
    ``Message`` of an SNS notification in an SQS body (the size attribute removed from the
    notification's ``MessageAttributes``); an EventBridge event's ``detail`` (parsed); a
    Kinesis record's ``data`` (base64). Raises :class:`PayloadNotFoundError` /
    :class:`PayloadError` naming the message and the object, :class:`InvalidPointerError`
    for a malformed one. ``policy`` replaces the store's (e.g.
    ``store.policy.with_deadline(deadline)``)."""
    found = _locate(message)
    if found is None:
        return message
    pointer, message_id, rebuild, binary = found
    read = store.get_bytes if binary else store.get
    return rebuild(read(pointer, message_id=message_id, policy=policy))


def _locate(message: Mapping[str, Any]) -> _Found | None:
    if "kinesis" in message:
        return _in_kinesis(message)
    if "detail-type" in message:
        return _in_event(message, message.get("id"))
    body_key, attributes_key, id_key = _shape(message)
    body = message.get(body_key)
    message_id = message.get(id_key)
    attributes = message.get(attributes_key)
    marked = size_attribute(attributes) is not None
    if not marked and not PayloadPointer.looks_like(body):
        return _in_body(message, body_key, body, message_id)
    pointer = PayloadPointer.parse(body)
    if pointer is None:
        if marked:
            raise InvalidPointerError(
                message_id, "its ExtendedPayloadSize attribute says pointer, its body is none"
            )
        return None

    def rebuild(payload: str) -> dict[str, Any]:
        resolved = dict(message)
        resolved[body_key] = payload
        if attributes:
            resolved[attributes_key] = _without_size(attributes)
        return resolved

    return pointer, message_id, rebuild, False


def _without_size(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in attributes.items() if name not in SIZE_ATTRIBUTES}


def _in_body(
    message: Mapping[str, Any], body_key: str, body: Any, message_id: Any
) -> _Found | None:
    """The pointer in an SNS notification (a subscription without raw message delivery) or an
    EventBridge event (a rule's SQS target) that is an SQS message's body."""
    if not (isinstance(body, str) and body.lstrip().startswith("{") and _MARK in body):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        if '"Notification"' in body:
            raise InvalidPointerError(
                message_id, "its body, an SNS notification naming a pointer, is not valid JSON"
            ) from None
        return None
    # a JSON text that starts with "{" is an object
    if document.get("Type") == "Notification":
        found = _in_notification(document, message_id)
    elif "detail-type" in document:
        found = _in_event(document, message_id)
    else:
        return None
    if found is None:
        return None
    pointer, _, rebuild_document, binary = found

    def rebuild(payload: Any) -> dict[str, Any]:
        resolved = dict(message)
        resolved[body_key] = json.dumps(rebuild_document(payload), ensure_ascii=False)
        return resolved

    return pointer, message_id, rebuild, binary


def _in_notification(document: dict[str, Any], message_id: Any) -> _Found | None:
    """An SNS notification's pointer, as the SNS Extended Client Library publishes it: the
    ``Message`` is the pointer, ``MessageAttributes`` holds the size attribute
    (``{"Type": "Number", "Value": "..."}``)."""
    attributes = document.get("MessageAttributes")
    marked = isinstance(attributes, Mapping) and size_attribute(attributes) is not None
    text = document.get("Message")
    if not marked and not PayloadPointer.looks_like(text):
        return None
    pointer = PayloadPointer.parse(text)
    if pointer is None:
        if marked:
            raise InvalidPointerError(
                message_id,
                "its SNS notification's ExtendedPayloadSize attribute says pointer, its "
                "Message is none",
            )
        return None

    def rebuild(payload: str) -> dict[str, Any]:
        resolved = dict(document)
        resolved["Message"] = payload
        if isinstance(attributes, Mapping):
            kept = _without_size(attributes)
            if kept:
                resolved["MessageAttributes"] = kept
            else:  # as SNS delivers a message published without attributes
                del resolved["MessageAttributes"]
        return resolved

    return pointer, message_id, rebuild, False


def _in_event(event: Mapping[str, Any], message_id: Any) -> _Found | None:
    """An EventBridge event's pointer: its ``detail`` as ``EventBridgePutter`` offloads it."""
    marked, pointer = detail_pointer(event.get("detail"))
    if not marked:
        return None
    if pointer is None:
        raise InvalidPointerError(
            message_id, "its detail's ExtendedPayloadSize field says pointer, it has none"
        )

    def rebuild(payload: str) -> dict[str, Any]:
        try:
            detail = json.loads(payload)
        except (ValueError, RecursionError):
            detail = None
        if not isinstance(detail, dict):
            raise PayloadError(
                message_id,
                "the payload is not a JSON object (an event's detail)",
                bucket=pointer.bucket,
                key=pointer.key,
                code="NotAJsonObject",
            )
        resolved = dict(event)
        resolved["detail"] = detail
        return resolved

    return pointer, message_id, rebuild, False


def _in_kinesis(record: Mapping[str, Any]) -> _Found | None:
    """A Kinesis record's pointer: its data (base64) is the extended clients' pointer body."""
    inner = record.get("kinesis")
    data = inner.get("data") if isinstance(inner, Mapping) else None
    if not isinstance(data, str) or not data.startswith(_KINESIS_PREFIXES):
        return None
    assert isinstance(inner, Mapping)
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except ValueError:  # not base64, not UTF-8: no pointer
        return None
    pointer = PayloadPointer.parse(text)
    if pointer is None:
        return None

    def rebuild(payload: bytes) -> dict[str, Any]:
        resolved = dict(record)
        resolved["kinesis"] = {**inner, "data": base64.b64encode(payload).decode("ascii")}
        return resolved

    return pointer, inner.get("sequenceNumber"), rebuild, True


def resolving(
    wrap: Callable[[dict[str, Any]], Any],
    store: PayloadStore,
    policy: RetryPolicy | None = None,
) -> Callable[[dict[str, Any]], Any]:
    """``wrap`` (how a processor turns a raw record into what the record function gets) after
    resolving the record's pointer: a failure fails that record only. ``policy``: the store's
    policy bound to the invocation's deadline, so that S3 is not retried past it."""

    def resolve_then_wrap(raw: dict[str, Any]) -> Any:
        return wrap(resolve(raw, store, policy=policy))  # type: ignore[arg-type]

    return resolve_then_wrap


def delete_settled(
    records: list[dict[str, Any]],
    indexes: list[int],
    store: PayloadStore,
    *,
    policy: RetryPolicy | None = None,
) -> int:
    """Delete the objects of the records at ``indexes`` (their records succeeded), but an
    object that another record of the batch, one not at ``indexes`` (failed, skipped, not
    reached), points to too: SQS delivers at least once, the same message can come twice in
    one batch, and the copy that comes back needs its object. Failures are logged by message
    id and key, never raised. How many objects were deleted."""
    settled = set(indexes)
    still_needed: set[PayloadPointer] = set()
    for index, record in enumerate(records):
        if index in settled:
            continue
        try:
            pointer = pointer_of(record)
        except PayloadError:
            continue
        if pointer is not None:
            still_needed.add(pointer)
    deleted = 0
    done: set[PayloadPointer] = set()
    for index in indexes:
        record = records[index]
        try:
            pointer = pointer_of(record)
        except PayloadError:
            continue
        if pointer is None or pointer in done:
            continue
        message_id = record.get("messageId")
        if pointer in still_needed:
            logger.info(
                "payload of message %r kept in s3://%s/%s: a record of the batch that did not "
                "succeed points to it too",
                message_id,
                pointer.bucket,
                pointer.key,
            )
            continue
        done.add(pointer)
        try:
            store.delete(pointer, message_id=message_id, policy=policy)
        except PayloadError as error:
            logger.warning(
                "payload of message %r not deleted from s3://%s/%s (%s): a lifecycle rule will",
                message_id,
                pointer.bucket,
                pointer.key,
                error.code,
            )
            continue
        deleted += 1
    return deleted

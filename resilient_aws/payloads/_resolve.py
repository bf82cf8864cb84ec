"""Consumers: resolve pointer messages into their payloads, delete objects once settled."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from resilient_aws.payloads._errors import InvalidPointerError, PayloadError
from resilient_aws.payloads._pointer import SIZE_ATTRIBUTES, PayloadPointer, size_attribute

if TYPE_CHECKING:
    from resilient_aws.payloads._store import PayloadStore

__all__ = ["delete_settled", "pointer_of", "resolve", "resolving"]

logger = logging.getLogger("resilient_aws.payloads")

# (body, attributes, message id) keys: a Lambda event's record, boto3's ReceiveMessage message
_SHAPES = (("body", "messageAttributes", "messageId"), ("Body", "MessageAttributes", "MessageId"))


def _shape(message: Mapping[str, Any]) -> tuple[str, str, str]:
    return _SHAPES[0] if "body" in message else _SHAPES[1]


def pointer_of(message: Mapping[str, Any]) -> PayloadPointer | None:
    """The pointer an SQS message (a Lambda event's record or a ``ReceiveMessage`` message)
    carries, or ``None``. A message with the size attribute whose body is not a pointer raises
    :class:`InvalidPointerError` naming the message."""
    body_key, attributes_key, id_key = _shape(message)
    body = message.get(body_key)
    marked = size_attribute(message.get(attributes_key)) is not None
    if not marked and not PayloadPointer.looks_like(body):
        return None
    pointer = PayloadPointer.parse(body)
    if pointer is None and marked:
        raise InvalidPointerError(
            message.get(id_key), "its ExtendedPayloadSize attribute says pointer, its body is none"
        )
    return pointer


def resolve(message: Mapping[str, Any], store: PayloadStore) -> Mapping[str, Any]:
    """``message`` itself when it carries no pointer, else a copy with the payload as its body
    and without the size attribute (as the extended clients hand it out). Raises
    :class:`PayloadNotFoundError` / :class:`PayloadError` naming the message and the object."""
    pointer = pointer_of(message)
    if pointer is None:
        return message
    body_key, attributes_key, id_key = _shape(message)
    resolved = dict(message)
    resolved[body_key] = store.get(pointer, message_id=message.get(id_key))
    attributes = message.get(attributes_key)
    if attributes:
        resolved[attributes_key] = {
            name: value for name, value in attributes.items() if name not in SIZE_ATTRIBUTES
        }
    return resolved


def resolving(
    wrap: Callable[[dict[str, Any]], Any], store: PayloadStore
) -> Callable[[dict[str, Any]], Any]:
    """``wrap`` (how a processor turns a raw record into what the record function gets) after
    resolving the record's pointer: a failure fails that record only."""

    def resolve_then_wrap(raw: dict[str, Any]) -> Any:
        return wrap(resolve(raw, store))  # type: ignore[arg-type]

    return resolve_then_wrap


def delete_settled(records: list[dict[str, Any]], indexes: list[int], store: PayloadStore) -> int:
    """Delete the objects of the records at ``indexes`` (their records succeeded); failures are
    logged by message id and key, never raised. How many objects were deleted."""
    deleted = 0
    for index in indexes:
        record = records[index]
        try:
            pointer = pointer_of(record)
        except PayloadError:
            continue
        if pointer is None:
            continue
        message_id = record.get("messageId")
        try:
            store.delete(pointer, message_id=message_id)
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

"""Consumers: resolve pointer messages into their payloads, delete objects once settled."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from resilient_aws.payloads._errors import InvalidPointerError, PayloadError
from resilient_aws.payloads._pointer import SIZE_ATTRIBUTES, PayloadPointer, size_attribute

if TYPE_CHECKING:
    from resilient_aws.payloads._store import PayloadStore
    from resilient_aws.retry import RetryPolicy

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


def resolve(
    message: Mapping[str, Any], store: PayloadStore, *, policy: RetryPolicy | None = None
) -> Mapping[str, Any]:
    """``message`` itself when it carries no pointer, else a copy with the payload as its body
    and without the size attribute (as the extended clients hand it out). Raises
    :class:`PayloadNotFoundError` / :class:`PayloadError` naming the message and the object.
    ``policy`` replaces the store's (e.g. ``store.policy.with_deadline(deadline)``)."""
    pointer = pointer_of(message)
    if pointer is None:
        return message
    body_key, attributes_key, id_key = _shape(message)
    resolved = dict(message)
    resolved[body_key] = store.get(pointer, message_id=message.get(id_key), policy=policy)
    attributes = message.get(attributes_key)
    if attributes:
        resolved[attributes_key] = {
            name: value for name, value in attributes.items() if name not in SIZE_ATTRIBUTES
        }
    return resolved


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

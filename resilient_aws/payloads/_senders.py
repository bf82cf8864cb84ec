"""What the senders do with a :class:`PayloadStore`: offload a message (``SqsSender``,
``SnsPublisher``), an event's detail (``EventBridgePutter``) or a record's data
(``KinesisPutter``) when it is added, and after a flush delete the objects of the entries that
finally failed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ParamValidationError

from resilient_aws.batch._sqs import message_attributes_size
from resilient_aws.errors import ConfigurationError, EntryTooLargeError, EntryValidationError
from resilient_aws.payloads._errors import PayloadError, PayloadUploadError

if TYPE_CHECKING:
    from resilient_aws._batching import Entry
    from resilient_aws.batch._base import BatchSender
    from resilient_aws.payloads._pointer import PayloadPointer
    from resilient_aws.payloads._store import PayloadStore

__all__ = ["mark_maybe_sent", "offload_data", "offload_entry", "offloads", "settle_failed"]

logger = logging.getLogger("resilient_aws.payloads")

POINTER = "pointer"
"""The key of an offloaded entry's pointer in its ``source`` (``FailedEntry.entry``): present
while the object exists."""
MAYBE_SENT = "maybe_sent"


def offload_entry(
    sender: BatchSender,
    store: PayloadStore,
    entry_id: str,
    source: dict[str, Any],
    payload: dict[str, Any],
    body_key: str,
    *,
    max_attributes: int,
) -> int | None:
    """Store the body of ``payload`` in S3 and put the pointer in its place. The entry's new
    size, or ``None`` when it was refused (bad input) or reported failed (the upload failed).

    Whatever would refuse the entry once uploaded is checked first (a closed sender, a pointer
    message still over the entry limit): an object uploaded for an entry that is then refused
    would be deleted by nobody."""
    if sender._engine.closed:
        raise ConfigurationError("closed", "the writer is closed")
    try:
        pointer, pointer_body, attributes = store.offload(
            entry_id,
            payload[body_key],
            payload.get("MessageAttributes"),
            max_attributes=max_attributes,
            max_entry_bytes=sender.limits.max_entry_bytes,
        )
    except PayloadUploadError as failed:
        _upload_failed(sender, source, failed)
        return None
    except EntryValidationError as invalid:
        sender._refuse(source, invalid)
        return None
    payload[body_key] = pointer_body
    payload["MessageAttributes"] = attributes
    source[POINTER] = pointer
    return len(pointer_body.encode("utf-8")) + message_attributes_size(attributes)


def offloads(store: PayloadStore, size: int, limit: int | None) -> bool:
    """Whether an entry of ``size`` bytes goes to S3: over the store's threshold (or every
    entry with ``always=True``), or over the service's entry ``limit`` whatever the
    threshold."""
    return store.config.offloads(size) or (limit is not None and size > limit)


def offload_data(
    sender: BatchSender,
    store: PayloadStore,
    entry_id: str,
    source: dict[str, Any],
    data: bytes,
    point: Callable[[PayloadPointer], int],
) -> int | None:
    """Store ``data`` (an event's detail, a record's data) in S3; ``point(pointer)`` puts the
    pointer in the entry's place and returns the entry's new size. That size, or ``None``
    when the entry was refused (bad input) or reported failed (the upload failed).

    Whatever would refuse the entry once uploaded (a closed sender, a payload over
    ``max_bytes``, an entry still over the service's limit with the pointer) is checked
    first: an object uploaded for a refused entry would be deleted by nobody."""
    if sender._engine.closed:
        raise ConfigurationError("closed", "the writer is closed")
    try:
        if len(data) > store.config.max_bytes:
            raise EntryTooLargeError(entry_id, len(data), store.config.max_bytes)
        pointer = store.new_pointer()
        size = point(pointer)
        limit = sender.limits.max_entry_bytes
        if limit is not None and size > limit:
            raise EntryTooLargeError(entry_id, size, limit)
        store.put_for(data, entry_id, pointer)
    except PayloadUploadError as failed:
        _upload_failed(sender, source, failed)
        return None
    except EntryValidationError as invalid:
        sender._refuse(source, invalid)
        return None
    source[POINTER] = pointer
    return size


def _upload_failed(sender: BatchSender, source: dict[str, Any], failed: PayloadUploadError) -> None:
    logger.warning(
        "entry %r not sent: its payload could not be stored in s3://%s/%s (%s)",
        failed.entry_id,
        failed.bucket,
        failed.key,
        failed.code,
    )
    sender._engine.reject(source, failed)


def mark_maybe_sent(batch: list[Entry[Any]], error: BaseException) -> None:
    """A request raised ``error``. Unless the service refused it (an error response under 500:
    nothing was applied), it ended without a trustworthy answer (a lost connection, a timeout,
    a 5xx, a response that does not account for each entry): its messages may have been sent,
    so their objects must outlive a failure. botocore's parameter validation refuses a request
    before anything is sent: its messages were not sent."""
    if isinstance(error, ParamValidationError):
        return
    response = getattr(error, "response", None)
    if isinstance(error, ClientError) and isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int) and status < 500:
            return
    for entry in batch:
        source = entry.source
        if isinstance(source, dict) and POINTER in source:
            source[MAYBE_SENT] = True


def settle_failed(sender: Any) -> None:
    """Delete the objects of the entries that finally failed since the last call, unless their
    message may have been sent; those, and the ones whose delete failed, stay in
    ``sender.payloads_left`` (and in ``FailedEntry.entry["pointer"]``) for a lifecycle rule or
    a cleanup job."""
    store: PayloadStore = sender.payloads
    with sender._payloads_lock:
        failed = sender.result.failed
        start, end = sender._payloads_settled, len(failed)
        sender._payloads_settled = end
        kept: list[tuple[str, PayloadPointer, str]] = []
        for failure in failed[start:end]:
            source = failure.entry
            if not isinstance(source, dict):
                continue
            pointer = source.get(POINTER)
            if pointer is None:
                continue
            if source.get(MAYBE_SENT):
                kept.append((failure.entry_id, pointer, "its message may have been sent"))
                continue
            try:
                store.delete(pointer, message_id=failure.entry_id)
            except PayloadError as error:
                kept.append((failure.entry_id, pointer, f"delete failed: {error.code}"))
                continue
            del source[POINTER]
        for entry_id, pointer, why in kept:
            sender.payloads_left.append((entry_id, pointer))
            logger.warning(
                "payload of failed entry %r kept in s3://%s/%s: %s",
                entry_id,
                pointer.bucket,
                pointer.key,
                why,
            )

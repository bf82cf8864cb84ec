"""SNS: PublishBatch, standard and FIFO topics."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import by_id
from resilient_aws.batch._sqs import (
    NOT_TEXT,
    PARAMETERS_REFUSED,
    TRACE_API,
    Offloading,
    _pointer_like,
    add_trace,
    attributes_problem,
    attributes_size,
    text_size,
    valid_text,
)
from resilient_aws.errors import EntryValidationError
from resilient_aws.limits import SNS_PUBLISH_BATCH

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadStore

__all__ = ["SnsPublisher"]


class SnsPublisher(Offloading):
    """``PublishBatch`` for any number of messages; every message published or reported.

    FIFO topics (ARN ending in ``.fifo``) need ``group_id`` and are published in order by
    default, as for :class:`SqsSender`. With ``keep_answers=True``, ``result.answers`` maps
    each message to its ``MessageId``.

    ``payloads=`` a :class:`~resilient_aws.payloads.PayloadStore` offloads large messages to S3
    as the SNS Extended Client Library does (subscribed queues receive the pointer; turn on raw
    message delivery so that its attribute reaches them), see :class:`SqsSender`.
    """

    client_name = "sns"
    service = "sns"
    operation = "PublishBatch"
    method = "publish_batch"
    default_limits = SNS_PUBLISH_BATCH
    split_codes = frozenset({"BatchRequestTooLong", PARAMETERS_REFUSED})

    def __init__(
        self,
        topic_arn: str,
        *,
        ordered: bool | None = None,
        payloads: PayloadStore | None = None,
        **options: Any,
    ) -> None:
        self._init_payloads(payloads)
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        super().__init__(ordered=self.fifo if ordered is None else ordered, **options)

    def publish(
        self,
        message: str,
        *,
        id: str | None = None,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        message_structure: str | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> None:
        """Buffer one message. ``id`` names it in errors and in ``result`` (default ``#n``)."""
        entry_id = self._next_id(id)
        source = {"id": entry_id, "message": message}
        try:
            payload, size = self._checked(
                entry_id,
                message,
                subject,
                attributes,
                message_structure,
                group_id,
                deduplication_id,
            )
        except EntryValidationError as invalid:
            self._refuse(source, invalid)
            return
        store = self.payloads
        if store is not None and (
            store.config.always or size > store.config.threshold or _pointer_like(message)
        ):
            if message_structure:
                self._refuse(
                    source,
                    EntryValidationError(
                        entry_id, "a message with a message_structure cannot be offloaded"
                    ),
                )
                return
            offloaded = self._offload(entry_id, source, payload, "Message")
            if offloaded is None:
                return
            size = offloaded
        if TRACE_API in sys.modules:  # a span may be current: its context rides on the message
            size = add_trace("sns", payload, size, self.limits.max_entry_bytes)
        self._add(source, entry_id, payload, size, group=group_id if self.ordered else None)

    def _checked(
        self,
        entry_id: str,
        message: Any,
        subject: Any,
        attributes: Any,
        message_structure: Any,
        group_id: Any,
        deduplication_id: Any,
    ) -> tuple[dict[str, Any], int]:
        """The entry and its size, or a typed error for what SNS or botocore would refuse (a
        wrong type or a lone surrogate would fail every message of its request)."""
        if not isinstance(message, str) or not message:
            raise EntryValidationError(entry_id, "the message must be a non-empty str")
        if self.fifo and not group_id:
            raise EntryValidationError(entry_id, "a FIFO topic needs a group_id")
        problem = attributes_problem(attributes) if attributes is not None else None
        if problem is not None:
            raise EntryValidationError(entry_id, problem)
        payload: dict[str, Any] = {"Message": message}
        size = text_size(entry_id, "the message", message)
        if subject or message_structure or group_id or deduplication_id:
            for name, key, value in (
                ("subject", "Subject", subject),
                ("message_structure", "MessageStructure", message_structure),
                ("group_id", "MessageGroupId", group_id),
                ("deduplication_id", "MessageDeduplicationId", deduplication_id),
            ):
                if not value:
                    continue
                if not isinstance(value, str):
                    raise EntryValidationError(entry_id, f"{name} must be a str")
                if not valid_text(value):
                    raise EntryValidationError(entry_id, f"{name}: {NOT_TEXT}")
                payload[key] = value
        if attributes:
            payload["MessageAttributes"] = dict(attributes)
            size += attributes_size(entry_id, attributes)
        return payload, size

    def _request(self, batch: list[Entry[Any]]) -> dict[str, Any]:
        entries = [{**entry.payload, "Id": str(index)} for index, entry in enumerate(batch)]
        return {"TopicArn": self.topic_arn, "PublishBatchRequestEntries": entries}

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        return by_id(batch, response, self.service)

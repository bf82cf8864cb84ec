"""SNS: PublishBatch, standard and FIFO topics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import BatchSender, by_id
from resilient_aws.batch._sqs import attributes_problem, message_attributes_size
from resilient_aws.errors import EntryValidationError
from resilient_aws.limits import SNS_PUBLISH_BATCH

__all__ = ["SnsPublisher"]


class SnsPublisher(BatchSender):
    """``PublishBatch`` for any number of messages; every message published or reported.

    FIFO topics (ARN ending in ``.fifo``) need ``group_id`` and are published in order by
    default, as for :class:`SqsSender`. ``result.answers`` maps each message to its
    ``MessageId``.
    """

    client_name = "sns"
    service = "sns"
    operation = "PublishBatch"
    default_limits = SNS_PUBLISH_BATCH
    split_codes = frozenset({"BatchRequestTooLong"})

    def __init__(self, topic_arn: str, *, ordered: bool | None = None, **options: Any) -> None:
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
        if not isinstance(message, str) or not message:
            self._refuse(
                source, EntryValidationError(entry_id, "the message must be a non-empty str")
            )
            return
        if self.fifo and not group_id:
            self._refuse(source, EntryValidationError(entry_id, "a FIFO topic needs a group_id"))
            return
        problem = attributes_problem(attributes) if attributes is not None else None
        if problem is not None:
            self._refuse(source, EntryValidationError(entry_id, problem))
            return
        payload: dict[str, Any] = {"Message": message}
        if subject:
            payload["Subject"] = subject
        if attributes:
            payload["MessageAttributes"] = dict(attributes)
        if message_structure:
            payload["MessageStructure"] = message_structure
        if group_id:
            payload["MessageGroupId"] = group_id
        if deduplication_id:
            payload["MessageDeduplicationId"] = deduplication_id
        size = len(message.encode("utf-8")) + message_attributes_size(attributes)
        self._add(source, entry_id, payload, size, group=group_id if self.ordered else None)

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        entries = [{**entry.payload, "Id": str(index)} for index, entry in enumerate(batch)]
        response = self.client.publish_batch(
            TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
        )
        return by_id(batch, response, self.service)

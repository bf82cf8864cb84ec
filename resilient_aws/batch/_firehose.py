"""Amazon Data Firehose: PutRecordBatch."""

from __future__ import annotations

from typing import Any

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import BatchSender, positional
from resilient_aws.errors import EntryValidationError
from resilient_aws.limits import FIREHOSE_PUT_RECORD_BATCH

__all__ = ["FirehosePutter"]


class FirehosePutter(BatchSender):
    """``PutRecordBatch`` for any number of records; every record put or reported.

    ``result.answers`` maps each record to its ``RecordId``.
    """

    client_name = "firehose"
    service = "firehose"
    operation = "PutRecordBatch"
    default_limits = FIREHOSE_PUT_RECORD_BATCH

    def __init__(self, delivery_stream: str, **options: Any) -> None:
        self.delivery_stream = delivery_stream
        super().__init__(**options)

    def put(self, data: bytes | str, *, id: str | None = None) -> None:
        """Buffer one record (``str`` data is encoded as UTF-8)."""
        entry_id = self._next_id(id)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            self._refuse(  # type: ignore[unreachable]  # untyped callers
                {"id": entry_id},
                EntryValidationError(
                    entry_id, f"data must be bytes or str, got {type(data).__name__}"
                ),
            )
            return
        self._add({"id": entry_id}, entry_id, {"Data": bytes(data)}, len(data))

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        response = self.client.put_record_batch(
            DeliveryStreamName=self.delivery_stream, Records=[e.payload for e in batch]
        )
        return positional(batch, response, "RequestResponses", self.service)

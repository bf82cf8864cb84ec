"""Amazon Data Firehose: PutRecordBatch."""

from __future__ import annotations

from typing import Any

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import BatchSender, positional
from resilient_aws.batch._kinesis import record_data
from resilient_aws.batch._sqs import PARAMETERS_REFUSED
from resilient_aws.errors import EntryValidationError
from resilient_aws.limits import FIREHOSE_PUT_RECORD_BATCH

__all__ = ["FirehosePutter"]


class FirehosePutter(BatchSender):
    """``PutRecordBatch`` for any number of records; every record put or reported.

    With ``keep_answers=True``, ``result.answers`` maps each record to its ``RecordId``.

    It takes no ``payloads=`` store: Firehose delivers records to S3, Redshift, OpenSearch or
    HTTP endpoints that cannot follow a pointer, so an offloaded record would arrive as a
    dangling reference in the destination (see "Kinesis and Firehose" in docs/payloads.md).
    """

    client_name = "firehose"
    service = "firehose"
    operation = "PutRecordBatch"
    method = "put_record_batch"
    default_limits = FIREHOSE_PUT_RECORD_BATCH
    split_codes = frozenset({PARAMETERS_REFUSED})

    def __init__(self, delivery_stream: str, **options: Any) -> None:
        self.delivery_stream = delivery_stream
        super().__init__(**options)

    def put(self, data: bytes | str, *, id: str | None = None) -> None:
        """Buffer one record (``str`` data is encoded as UTF-8)."""
        entry_id = self._next_id(id)
        try:
            data = record_data(entry_id, data)
        except EntryValidationError as invalid:
            self._refuse({"id": entry_id}, invalid)
            return
        self._add({"id": entry_id}, entry_id, {"Data": data}, len(data))

    def _request(self, batch: list[Entry[Any]]) -> dict[str, Any]:
        return {"DeliveryStreamName": self.delivery_stream, "Records": [e.payload for e in batch]}

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        return positional(batch, response, "RequestResponses", self.service)

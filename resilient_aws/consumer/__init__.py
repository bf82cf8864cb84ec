"""Lambda batch consumers for SQS (standard and FIFO), Kinesis and DynamoDB Streams.

One :class:`BatchProcessor` runs a record function over each record of a batch and answers the
partial batch response Lambda expects (``{"batchItemFailures": [{"itemIdentifier": ...}]}``),
without Powertools::

    from resilient_aws.consumer import BatchProcessor
    from resilient_aws.retry import RetryPolicy

    processor = BatchProcessor(policy=RetryPolicy(max_attempts=3))

    @processor.handler
    def handler(record):
        charge(record.json_body)

Every record succeeds or is reported; streams stop at their first failure; FIFO queues skip
the rest of a failed group only; records are not started when the invocation is about to end;
failed SQS messages can be backed off by receive count (:class:`VisibilityBackoff`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.consumer._processor import (
        NOT_PROCESSED,
        PRECEDING_RECORD_FAILED,
        BatchProcessor,
        FailedRecord,
        ProcessedBatch,
        RecordKind,
        process_partial_response,
    )
    from resilient_aws.consumer._records import (
        DynamoDBStreamRecord,
        KinesisStreamRecord,
        KinesisStreamRecordPayload,
        Source,
        SQSRecord,
        SQSRecordAttributes,
        StreamRecord,
    )
    from resilient_aws.consumer._visibility import VisibilityBackoff

__all__ = [
    "NOT_PROCESSED",
    "PRECEDING_RECORD_FAILED",
    "BatchProcessor",
    "DynamoDBStreamRecord",
    "FailedRecord",
    "KinesisStreamRecord",
    "KinesisStreamRecordPayload",
    "ProcessedBatch",
    "RecordKind",
    "SQSRecord",
    "SQSRecordAttributes",
    "Source",
    "StreamRecord",
    "VisibilityBackoff",
    "process_partial_response",
]

# PEP 562: a name is imported from its module when first asked for; the retry core's tenacity,
# asyncio and the batch engine load only when a batch needs them.
_MODULE_OF = {
    "NOT_PROCESSED": "_processor",
    "PRECEDING_RECORD_FAILED": "_processor",
    "BatchProcessor": "_processor",
    "FailedRecord": "_processor",
    "ProcessedBatch": "_processor",
    "RecordKind": "_processor",
    "process_partial_response": "_processor",
    "DynamoDBStreamRecord": "_records",
    "KinesisStreamRecord": "_records",
    "KinesisStreamRecordPayload": "_records",
    "SQSRecord": "_records",
    "SQSRecordAttributes": "_records",
    "Source": "_records",
    "StreamRecord": "_records",
    "VisibilityBackoff": "_visibility",
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

"""The service limits the library validates against before sending, in one table.

AWS raises limits from time to time (SQS messages went from 256 KiB to 1 MiB in 2025,
EventBridge events from 256 KB to 1 MB in 2026): every value here is today's default, and every
writer accepts a ``limits=`` override (``dataclasses.replace(KINESIS_PUT_RECORDS,
max_entry_bytes=10 * MiB)``) for a resource configured above the default (a Kinesis stream's
``MaxRecordSizeInKiB``, an SNS topic's ``MaximumMessageSize``), older setups, emulators or a
stricter budget.
"""

from __future__ import annotations

from resilient_aws._dataclass import lean_dataclass

__all__ = [
    "DYNAMODB_BATCH_GET",
    "DYNAMODB_BATCH_WRITE",
    "DYNAMODB_ITEM_BYTES",
    "DYNAMODB_TRANSACT_WRITE",
    "EVENTBRIDGE_PUT_EVENTS",
    "FIREHOSE_PUT_RECORD_BATCH",
    "KINESIS_PUT_RECORDS",
    "SNS_PUBLISH_BATCH",
    "SQS_BATCH",
    "BatchLimits",
]

KB = 1000
KiB = 1024
MB = 1000 * 1000
MiB = 1024 * 1024


@lean_dataclass(frozen=True, kw_only=True)
class BatchLimits:
    """What one batch request of a service may hold."""

    max_entries: int
    max_request_bytes: int
    max_entry_bytes: int | None = None


DYNAMODB_ITEM_BYTES = 400 * KiB
"""DynamoDB's item limit: 400 KB, counted in binary kilobytes (409,600 bytes)."""

DYNAMODB_BATCH_WRITE = BatchLimits(
    max_entries=25, max_request_bytes=16 * MiB, max_entry_bytes=DYNAMODB_ITEM_BYTES
)
DYNAMODB_BATCH_GET = BatchLimits(max_entries=100, max_request_bytes=16 * MiB)
DYNAMODB_TRANSACT_WRITE = BatchLimits(
    max_entries=100, max_request_bytes=4 * MiB, max_entry_bytes=DYNAMODB_ITEM_BYTES
)
SQS_BATCH = BatchLimits(max_entries=10, max_request_bytes=1 * MiB, max_entry_bytes=1 * MiB)
# A topic's MaximumMessageSize can be raised to 1 MiB; 256 KiB is the default.
SNS_PUBLISH_BATCH = BatchLimits(
    max_entries=10, max_request_bytes=256 * KiB, max_entry_bytes=256 * KiB
)
# "The total entry size must be less than 1MB": at most one byte less, per event and per request.
EVENTBRIDGE_PUT_EVENTS = BatchLimits(
    max_entries=10, max_request_bytes=1 * MB - 1, max_entry_bytes=1 * MB - 1
)
# A stream takes 1 MiB records (data + partition key) unless its MaxRecordSizeInKiB was raised
# (up to 10 MiB); a request takes 10 MiB in all.
KINESIS_PUT_RECORDS = BatchLimits(
    max_entries=500, max_request_bytes=10 * MiB, max_entry_bytes=1 * MiB
)
FIREHOSE_PUT_RECORD_BATCH = BatchLimits(
    max_entries=500, max_request_bytes=4 * MiB, max_entry_bytes=1000 * KiB
)

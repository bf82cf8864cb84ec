"""The service limits the library validates against before sending, in one table.

AWS raises limits from time to time (SQS messages went from 256 KiB to 1 MiB in 2025, Kinesis
records from 1 MiB to 10 MiB): every value here is today's, and every writer accepts a
``limits=`` override (``dataclasses.replace(DYNAMODB_BATCH_WRITE, max_entries=10)``) for
older setups, emulators or a stricter budget.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, kw_only=True)
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
SNS_PUBLISH_BATCH = BatchLimits(
    max_entries=10, max_request_bytes=256 * KiB, max_entry_bytes=256 * KiB
)
EVENTBRIDGE_PUT_EVENTS = BatchLimits(
    max_entries=10, max_request_bytes=256 * KB, max_entry_bytes=256 * KB
)
KINESIS_PUT_RECORDS = BatchLimits(
    max_entries=500, max_request_bytes=10 * MiB, max_entry_bytes=10 * MiB
)
FIREHOSE_PUT_RECORD_BATCH = BatchLimits(
    max_entries=500, max_request_bytes=4 * MiB, max_entry_bytes=1000 * KiB
)

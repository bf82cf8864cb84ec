"""Documented usage of resilient_aws.consumer; checked with ``mypy --strict``."""

from __future__ import annotations

from typing import Any

from resilient_aws.consumer import (
    NOT_PROCESSED,
    BatchProcessor,
    DynamoDBStreamRecord,
    FailedRecord,
    KinesisStreamRecord,
    ProcessedBatch,
    SQSRecord,
    VisibilityBackoff,
    process_partial_response,
)
from resilient_aws.retry import RetryPolicy

processor = BatchProcessor(
    policy=RetryPolicy(max_attempts=3),
    margin_s=2.0,
    visibility=VisibilityBackoff(base_s=30, max_s=900),
    concurrency=8,
    records="light",
)


@processor.handler
def handler(record: SQSRecord) -> None:
    order: dict[str, Any] = record.json_body
    print(record.message_id, record.attributes.approximate_receive_count, order)


def kinesis(record: KinesisStreamRecord, lambda_context: Any) -> None:
    print(record.kinesis.sequence_number, record.kinesis.data_as_json())


def stream(record: DynamoDBStreamRecord) -> None:
    print(record.event_name, record.dynamodb.sequence_number, record.dynamodb.new_image)


async def charge(record: SQSRecord) -> None:
    print(record.body)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    batch: ProcessedBatch = processor.process(event, kinesis, context)
    failed: list[FailedRecord] = batch.failed
    untouched = [f.item_identifier for f in failed if f.code == NOT_PROCESSED]
    print(batch.total, batch.succeeded, untouched)
    return batch.response


def with_defaults(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event, stream, context=context)


async def in_a_loop(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return (await processor.aprocess(event, charge, context)).response


timeout: int = VisibilityBackoff().timeout_for(3)

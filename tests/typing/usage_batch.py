"""Documented usage of resilient_aws.batch; checked with ``mypy --strict``."""

from __future__ import annotations

import json
from typing import Any

import boto3

from resilient_aws.batch import (
    Answer,
    BatchResult,
    EventBridgePutter,
    FirehosePutter,
    KinesisPutter,
    SnsPublisher,
    SqsDeleter,
    SqsSender,
    SqsVisibilityChanger,
)
from resilient_aws.errors import BatchWriteError, EntryValidationError
from resilient_aws.retry import RetryPolicy

policy = RetryPolicy(max_attempts=10)
sqs = boto3.client("sqs")


def publish_orders(queue_url: str, orders: list[dict[str, Any]]) -> list[str]:
    try:
        with SqsSender(queue_url, client=sqs, policy=policy, concurrency=8) as sender:
            for order in orders:
                try:
                    sender.send_message(json.dumps(order), id=str(order["id"]), group_id=None)
                except EntryValidationError as bad:
                    print("refused", bad.entry_id, bad.reason)
    except BatchWriteError as failed:
        return [f.entry_id for f in failed.result.failed]
    answers: list[Answer[Any]] = sender.result.answers
    return [str(a.response["MessageId"]) for a in answers]


with SqsDeleter("url", client=sqs) as deleter:
    deleter.delete("receipt-handle")
with SqsVisibilityChanger("url", client=sqs) as visibility:
    visibility.change("receipt-handle", 300)
with SnsPublisher("arn:aws:sns:us-east-1:123456789012:t.fifo", ordered=True) as publisher:
    publisher.publish("hello", group_id="g", deduplication_id="1")
with EventBridgePutter(bus_name="orders", flush_interval=1.0) as events:
    events.put({"order_id": 1}, source="shop", detail_type="OrderPlaced")
with KinesisPutter("clicks", ordered=True, raise_on_failure=False) as records:
    records.put(b"data", "user-1")
result: BatchResult[Any] = records.result
with FirehosePutter("delivery", on_invalid="report") as firehose:
    firehose.put("line\n")

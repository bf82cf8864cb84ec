"""Documented usage of resilient_aws.dynamodb; checked with ``mypy --strict``."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import boto3

from resilient_aws.dynamodb import (
    BatchGetResult,
    BatchResult,
    BatchWriter,
    Page,
    batch_get,
    parallel_scan,
    query,
    scan,
    scan_segment,
)
from resilient_aws.errors import BatchWriteError, EntryValidationError
from resilient_aws.retry import RetryPolicy

client = boto3.client("dynamodb")
policy = RetryPolicy(max_attempts=10)


@dataclasses.dataclass
class Order:
    pk: str
    total: float


for item in scan(
    "orders",
    client=client,
    FilterExpression="city = :c",
    ExpressionAttributeValues={":c": {"S": "Milan"}},
):
    city: Any = item["city"]

read = query(
    "orders",
    KeyConditionExpression="pk = :p",
    ExpressionAttributeValues={":p": {"S": "a"}},
    numbers="native",
)
first: dict[str, Any] | None = read.first()
cursor: str | None = read.cursor
pages: list[Page] = list(scan("orders", max_items=10, cursor=cursor).pages())
total: int = scan("orders").count()

parallel = parallel_scan("orders", segments=8, workers=4, client=client)
resume: dict[int, str | None] = parallel.cursors
segment_cursor: str | None = scan_segment("orders", 0, 8).cursor


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        with BatchWriter(
            "orders", client=client, policy=policy.for_lambda(context), concurrency=4
        ) as writer:
            for order in event["orders"]:
                writer.put(Order(order["id"], order["total"]))
            writer.delete({"pk": "old"})
    except EntryValidationError as bad:
        return {"bad": bad.entry_id}
    except BatchWriteError as failed:
        return {"failed": [f.entry_id for f in failed.result.failed]}
    result: BatchResult[Any] = writer.result
    return {"written": result.succeeded}


got: BatchGetResult = batch_get("orders", [{"pk": "a"}], keep_order=True, projection=["total"])
amounts: list[Decimal] = [i["total"] for i in got.items]

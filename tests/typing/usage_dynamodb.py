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


# issue 16: boto3 conditions, plain values, default clients, JSON answers, chaos on defaults
def new_user_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from boto3.dynamodb.conditions import Attr, Key

    from resilient_aws import json as rjson

    p = policy.for_lambda(context, margin_s=1.0)
    with BatchWriter("orders", policy=p) as writer:  # the shared default client
        writer.put_many(event["orders"])
    milan = list(scan("orders", policy=p, FilterExpression=Attr("city").eq("Milan")))
    plain = query(
        "orders",
        KeyConditionExpression=Key("pk").eq("o-1"),
        FilterExpression="total > :t",
        ExpressionAttributeValues={":t": 10},
    ).count()
    number: int | float | str = rjson.decimal_to_json(Decimal("9.99"))
    body: str = rjson.dumps({"orders": milan, "count": plain, "n": number}, sort_keys=True)
    return {"statusCode": 200, "body": body}


def new_user_test() -> None:
    from resilient_aws.testing import ChaosStats, chaos_defaults, clear_default_clients

    clear_default_clients()
    with chaos_defaults(partial=0.3, throttle=0.05, seed=1, services={"dynamodb"}) as faults:
        new_user_handler({"orders": []}, None)
    stats: ChaosStats = faults.stats
    assert stats.faults >= 0

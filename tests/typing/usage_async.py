"""Documented usage of the async writers, senders and reads; checked with ``mypy --strict``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from resilient_aws.batch import AsyncSnsPublisher, AsyncSqsSender
from resilient_aws.dynamodb import AsyncBatchWriter, BatchGetResult, BatchResult, abatch_get, scan
from resilient_aws.retry import RetryPolicy

policy = RetryPolicy(max_attempts=10)


async def orders() -> AsyncIterator[dict[str, Any]]:
    for n in range(10):
        yield {"pk": f"order-{n}", "total": n / 4}


async def write_orders(dynamodb: Any) -> BatchResult[Any]:
    async with AsyncBatchWriter("orders", client=dynamodb, concurrency=8, policy=policy) as writer:
        await writer.put_many(orders())
        await writer.put({"pk": "one-more"})
        await writer.delete({"pk": "order-0"})
        await writer.flush()
    return writer.result


async def send_orders(queue_url: str, topic_arn: str) -> int:
    async with AsyncSqsSender(queue_url, policy=policy) as sender:
        await sender.send_message(json.dumps({"order": 1}), id="order-1")
        await sender.send_many(["a", "b"])
    async with AsyncSnsPublisher(topic_arn) as publisher:
        await publisher.publish("hello", subject="greeting")
    return sender.result.succeeded + publisher.result.succeeded


async def read_orders(dynamodb: Any) -> list[str]:
    read = scan("orders", client=dynamodb, page_size=100)
    keys = [str(item["pk"]) async for item in read]
    async for page in scan("orders", client=dynamodb).apages():
        keys.extend(str(item["pk"]) for item in page.items)
    return keys


async def read_by_key(dynamodb: Any) -> list[dict[str, Any]]:
    got: BatchGetResult = await abatch_get(
        "orders", [{"pk": "order-1"}, {"pk": "order-2"}], client=dynamodb, concurrency=4
    )
    return got.items + got.missing

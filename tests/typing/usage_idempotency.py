"""Documented usage of resilient_aws.idempotency; checked with ``mypy --strict``."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3

from resilient_aws.errors import IdempotencyError, IdempotencyInProgressError
from resilient_aws.idempotency import IdempotencyRecord, IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeLambdaContext

store = IdempotencyStore(
    "idempotency", client=boto3.client("dynamodb"), policy=RetryPolicy(max_attempts=8)
)


@dataclasses.dataclass
class Receipt:
    order_id: str
    amount: int


@idempotent(store, key="body.order_id", validate="body", ttl_s=3600)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


@idempotent(store, payload="order", key="order_id", key_prefix="orders", cache_size=128)
def charge(customer: str, order: dict[str, Any]) -> Receipt:
    return Receipt(order["order_id"], 10)


@idempotent(store, key=lambda event: event["id"], on_in_progress="wait")
async def refund(event: dict[str, Any]) -> str:
    return "refunded"


class Service:
    @idempotent(store, key="id", on_missing_key="run")
    def handle(self, event: dict[str, Any]) -> int:
        return 1


def use() -> None:
    status: int = handler({"body": {"order_id": "o-1"}}, FakeLambdaContext())["statusCode"]
    receipt: Receipt = charge("c-1", order={"order_id": "o-1"})
    count: int = Service().handle({"id": 1})
    try:
        charge("c-1", {"order_id": "o-2"})
    except IdempotencyInProgressError as error:
        key: str | None = error.key
        print(key)
    except IdempotencyError:
        pass
    record: IdempotencyRecord | None = store.get("orders#abc")
    print(status, receipt.amount, count, record)


async def use_async() -> str:
    return await refund({"id": 1})


async def on_the_loop(aio_dynamodb: Any) -> IdempotencyRecord | None:
    store.async_client = aio_dynamodb  # an aiobotocore client, made on the running loop
    record = await store.aget("order-1")
    async with IdempotencyStore("idempotency") as own:  # opens and closes its own client
        await own.aget("order-2")
    store.async_client = None  # back to threads
    return record

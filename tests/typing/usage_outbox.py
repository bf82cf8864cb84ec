"""Documented usage of resilient_aws.outbox; checked with ``mypy --strict``."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3

from resilient_aws.errors import TransactionCanceledError, TransactionConditionFailedError
from resilient_aws.outbox import (
    ConditionCheck,
    DeliveryReport,
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    Put,
    Router,
    SnsTarget,
    SqsTarget,
    StoredEvent,
    Update,
    relay_handler,
)
from resilient_aws.retry import Deadline, RetryPolicy

outbox = Outbox("orders", client=boto3.client("dynamodb"), policy=RetryPolicy(max_attempts=8))


@dataclasses.dataclass
class OrderPlaced:
    order_id: str
    total: int


def place(order_id: str, total: int, version: int) -> list[OutboxEvent]:
    try:
        return outbox.write(
            puts=[Put({"pk": f"order#{order_id}", "sk": "order", "total": total})],
            updates=[
                Update(
                    {"pk": "customer#1", "sk": "profile"},
                    "SET orders = orders + :one",
                    values={":one": 1},
                )
            ],
            conditions=[
                ConditionCheck(
                    {"pk": "stock#sku-1", "sk": "stock"}, "quantity > :zero", values={":zero": 0}
                )
            ],
            events=[
                OutboxEvent(
                    "OrderPlaced",
                    f"order#{order_id}",
                    OrderPlaced(order_id, total),
                    sequence=version,
                )
            ],
        )
    except TransactionConditionFailedError as error:
        reasons: list[tuple[str, str, str]] = error.reasons  # (action, code, message)
        print(f"not placed: {reasons[0][2]}")
        return []
    except TransactionCanceledError:
        raise  # contention that outlived the retries, or a transaction that was never valid


target = Router(
    {"billing": SqsTarget("https://sqs.eu-west-1.amazonaws.com/1/billing.fifo")},
    default=SnsTarget("arn:aws:sns:eu-west-1:1:orders"),
)
handler = relay_handler(outbox, target)


def relay(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handler(event, context)


sweeper = OutboxSweeper(outbox, target, grace_s=300)


def sweep(event: dict[str, Any], context: Any) -> dict[str, int]:
    return sweeper.handler(event, context)


def sweep_now() -> DeliveryReport:
    report = sweeper.run(deadline=Deadline.after(60))
    blocked: list[StoredEvent] = outbox.blocked()
    for stored in blocked:
        outbox.unblock(stored.event.aggregate_id)
    return report

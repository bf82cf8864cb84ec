"""An SQS consumer that charges each order exactly once, though SQS delivers at least once.

The handler answers with a partial batch response (``batchItemFailures``) so that only failed
records come back; ``@idempotent`` makes a redelivered record replay the stored result instead
of charging again. Runs against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/idempotent_sqs_handler.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import boto3
from moto import mock_aws

from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeLambdaContext, chaos

charges: list[str] = []  # the side effect: in real life, a call to the payment provider


def build_handler(store: IdempotencyStore) -> Any:
    # One key per order, whatever the message id: a producer that sends twice is covered too.
    @idempotent(store, key="powertools_json(body).order_id", validate="powertools_json(body)")
    def charge(record: dict[str, Any], context: Any) -> dict[str, Any]:
        order = json.loads(record["body"])
        charges.append(order["order_id"])
        return {"order_id": order["order_id"], "charged": order["amount"]}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            try:
                charge(record, context)
            except Exception as error:  # this record comes back; the others are done
                print(f"  {record['messageId']} failed: {type(error).__name__}")
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    return handler


def sqs_event(orders: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m-{n}", "body": json.dumps({"order_id": o, "amount": a})}
            for n, (o, a) in enumerate(orders)
        ]
    }


with mock_aws():
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = IdempotencyStore(
        "idempotency", client=dynamodb, policy=RetryPolicy(base_delay=0.01, max_delay=0.2)
    )
    handler = build_handler(store)
    event = sqs_event([("o-1", 10), ("o-2", 25), ("o-1", 10), ("o-3", 5)])

    # The same batch delivered three times, while the idempotency table is being throttled.
    with chaos(dynamodb, throttle=0.2, seed=4) as faults:
        for delivery in range(3):
            response = handler(event, FakeLambdaContext(timeout_s=30))
            print(f"delivery {delivery + 1}: {response}")
    print(f"charged {sorted(charges)} (table throttled {faults.stats.throttled} times)")
    assert sorted(charges) == ["o-1", "o-2", "o-3"]

    # async def works the same way.
    @idempotent(store, key="order_id", key_prefix="refunds")
    async def refund(order: dict[str, Any]) -> str:
        charges.remove(order["order_id"])
        return f"refunded {order['order_id']}"

    async def refund_twice() -> list[str]:
        return [await refund({"order_id": "o-2"}), await refund({"order_id": "o-2"})]

    print(asyncio.run(refund_twice()), "-> still charged:", sorted(charges))
    assert sorted(charges) == ["o-1", "o-3"]

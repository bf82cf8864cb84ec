"""A first Lambda handler: import an order's lines once, however often the request is retried.

An API Gateway (or SQS, or EventBridge) event carries an order with its lines. The handler

* is ``@idempotent`` on the request's ``order_id``: a retried request (client timeout, Lambda
  retry, duplicate delivery) replays the first answer instead of importing again;
* writes the lines with ``BatchWriter``: 25 per request, ``UnprocessedItems`` retried with
  backoff, nothing dropped silently — and never retrying past the invocation's deadline.

``examples/test_first_handler.py`` tests it with moto and ``chaos``. Run it directly against
moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/first_handler.py
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import boto3

from resilient_aws.dynamodb import BatchWriter
from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy

# --8<-- [start:handler]
POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)
LINES_TABLE = os.environ.get("LINES_TABLE", "order-lines")


@functools.cache
def dynamodb() -> Any:
    """One client per container, with botocore's retries counted by the core."""
    return boto3.client("dynamodb", config=POLICY.botocore_config())


def import_order(event: dict[str, Any], context: Any) -> dict[str, Any]:
    order = json.loads(event["body"])
    # Stop retrying one second before the invocation would be killed, and report instead.
    with BatchWriter(
        LINES_TABLE, client=dynamodb(), policy=POLICY.for_lambda(context, margin_s=1.0)
    ) as writer:
        for n, line in enumerate(order["lines"]):
            writer.put({"order_id": order["order_id"], "line": n, **line})  # floats welcome
    return {"statusCode": 201, "body": json.dumps({"lines": writer.result.succeeded})}


@functools.cache
def app() -> Any:
    store = IdempotencyStore(
        os.environ.get("IDEMPOTENCY_TABLE", "idempotency"), client=dynamodb(), policy=POLICY
    )
    return idempotent(store, key="powertools_json(body).order_id", key_prefix="import-order")(
        import_order
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app()(event, context)


# --8<-- [end:handler]


def create_tables(client: Any) -> None:
    """The two tables the handler needs (see examples/template.yaml for the real ones)."""
    client.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName=LINES_TABLE,
        KeySchema=[
            {"AttributeName": "order_id", "KeyType": "HASH"},
            {"AttributeName": "line", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "order_id", "AttributeType": "S"},
            {"AttributeName": "line", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def request(order_id: str, lines: int) -> dict[str, Any]:
    """An API Gateway proxy event with an order of ``lines`` lines."""
    body = {
        "order_id": order_id,
        "lines": [{"sku": f"sku-{n}", "quantity": 1 + n % 3, "price": 9.99} for n in range(lines)],
    }
    return {"httpMethod": "POST", "path": "/orders", "body": json.dumps(body)}


if __name__ == "__main__":
    from moto import mock_aws

    from resilient_aws.testing import FakeLambdaContext

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        create_tables(dynamodb())
        first = handler(request("o-1", 60), FakeLambdaContext(timeout_s=30))
        again = handler(request("o-1", 60), FakeLambdaContext(timeout_s=30))  # a retried request
        stored = dynamodb().scan(TableName=LINES_TABLE, Select="COUNT")["Count"]
        print(f"first: {first}\nagain: {again}\nlines stored: {stored}")
        assert first == again
        assert stored == 60

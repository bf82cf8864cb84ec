"""An HTTP API that writes orders and their events in one transaction (the outbox).

A Lambda function behind an API Gateway HTTP API (``PlaceOrderFunction`` in
``examples/template.yaml``, payload format 2.0):

* ``POST /orders`` ``{"order_id", "customer", "total"}`` puts the order (version 1) and its
  ``OrderPlaced`` event with ``Outbox.write``: both or neither. **201**; **409** if the order
  exists (a failed condition is the caller's business, never retried).
* ``POST /orders/{order_id}/cancel`` ``{"version"}`` cancels it if it is still at that version
  (optimistic concurrency) and records ``OrderCancelled`` with the next version as its sequence,
  so the relay publishes an order's events in order. **200**; **409** on a stale version.
* **400** for bad input (nothing written), **503** when DynamoDB stayed throttled until the
  invocation's deadline (the transaction carries one ``ClientRequestToken``: never applied twice).

The events are published by ``outbox_relay_handler.py`` (the table's stream) and
``outbox_sweeper_handler.py`` (a schedule). Run it against moto in process
(``pip install 'resilient-aws[test]'``)::

    python examples/outbox_api_handler.py
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

import boto3

from resilient_aws.errors import (
    EntryValidationError,
    RetryError,
    TransactionConditionFailedError,
    TransactionTooLargeError,
)
from resilient_aws.outbox import Outbox, OutboxEvent, Put, Update
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)
_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@functools.cache
def app() -> Outbox:
    """Built on the first invocation and reused while the Lambda container lives."""
    dynamodb = boto3.client("dynamodb", config=POLICY.botocore_config())
    return Outbox(os.environ.get("ORDERS_TABLE", "orders"), client=dynamodb, policy=POLICY)


class BadRequestError(Exception):
    """The request can never succeed as sent: 400."""


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0) in, HTTP response out."""
    # Retries stop a second before the invocation times out: a 503 beats a killed invocation.
    policy = POLICY.for_lambda(context, margin_s=1.0)
    try:
        body = _body(event)
        if event["routeKey"] == "POST /orders":
            return _response(201, place_order(body, policy))
        if event["routeKey"] == "POST /orders/{order_id}/cancel":
            return _response(200, cancel_order(event["pathParameters"]["order_id"], body, policy))
        return _response(404, {"error": f"no route {event['routeKey']}"})
    except TransactionConditionFailedError as conflict:
        # reasons name the failed action by key, e.g. "put orders[pk=order#1,sk=order]"
        return _response(409, {"error": "conflict", "reasons": [r[0] for r in conflict.reasons]})
    except (BadRequestError, EntryValidationError, TransactionTooLargeError) as bad:
        return _response(400, {"error": str(bad)})
    except RetryError as busy:
        return _response(503, {"error": f"try again: {busy}"}, {"Retry-After": "1"})


def place_order(body: dict[str, Any], policy: RetryPolicy) -> dict[str, Any]:
    order_id = _order_id(body.get("order_id"))
    total = body.get("total")
    if not isinstance(total, (int, float)) or isinstance(total, bool) or total <= 0:
        raise BadRequestError("total must be a positive number")
    order = {
        "pk": f"order#{order_id}",
        "sk": "order",
        "customer": str(body.get("customer", "")),
        "total": total,  # floats are stored as exact Decimals
        "status": "placed",
        "version": 1,
    }
    events = app().write(
        puts=[Put(order, condition="attribute_not_exists(pk)")],
        events=[
            OutboxEvent(
                "OrderPlaced",
                f"order#{order_id}",
                {"order_id": order_id, "customer": order["customer"], "total": total},
                sequence=1,  # the order's version: an aggregate's events go out in this order
            )
        ],
        policy=policy,
    )
    return {"order_id": order_id, "version": 1, "events": [e.id for e in events]}


def cancel_order(order_id: str, body: dict[str, Any], policy: RetryPolicy) -> dict[str, Any]:
    order_id = _order_id(order_id)
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadRequestError("version must be the order's current version (an int >= 1)")
    events = app().write(
        updates=[
            Update(
                {"pk": f"order#{order_id}", "sk": "order"},
                "SET #status = :cancelled, #version = :next",
                condition="#version = :current AND #status = :placed",
                names={"#status": "status", "#version": "version"},
                values={
                    ":cancelled": "cancelled",
                    ":placed": "placed",
                    ":current": version,
                    ":next": version + 1,
                },
            )
        ],
        events=[
            OutboxEvent(
                "OrderCancelled", f"order#{order_id}", {"order_id": order_id}, sequence=version + 1
            )
        ],
        policy=policy,
    )
    return {"order_id": order_id, "version": version + 1, "events": [e.id for e in events]}


def _body(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("body") or "{}"
    if event.get("isBase64Encoded"):
        import base64

        raw = base64.b64decode(raw).decode("utf-8")
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise BadRequestError(f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


def _order_id(value: Any) -> str:
    if not isinstance(value, str) or not _ORDER_ID.match(value):
        raise BadRequestError("order_id must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def _response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


# -- running it locally ---------------------------------------------------------------------------


def create_orders_table(dynamodb: Any, name: str = "orders") -> None:
    """``OrdersTable`` of template.yaml (docs/outbox.md): pk/sk, a stream with both images,
    the sparse pending index, TTL on ``expires_at``."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "outbox_pending_aggregate", "AttributeType": "S"},
            {"AttributeName": "outbox_sequence", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "outbox-pending",
                "KeySchema": [
                    {"AttributeName": "outbox_pending_aggregate", "KeyType": "HASH"},
                    {"AttributeName": "outbox_sequence", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True}
    )


def http_event(route: str, body: Any = None, **path: str) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload 2.0), reduced to what the handler reads."""
    method, raw_path = route.split(" ", 1)
    for name, value in path.items():
        raw_path = raw_path.replace("{" + name + "}", value)
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": raw_path,
        "pathParameters": path,
        "requestContext": {"http": {"method": method, "path": raw_path}},
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


if __name__ == "__main__":
    from moto import mock_aws

    from resilient_aws.testing import FakeLambdaContext

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        create_orders_table(boto3.client("dynamodb"))
        context = FakeLambdaContext(timeout_s=10)

        def call(route: str, body: Any = None, **path: str) -> int:
            response = handler(http_event(route, body, **path), context)
            print(f"{route:32} {response['statusCode']} {response['body']}")
            return int(response["statusCode"])

        placed = {"order_id": "1", "customer": "ada", "total": 30.5}
        assert call("POST /orders", placed) == 201
        assert call("POST /orders", placed) == 409  # already placed: nothing written
        assert call("POST /orders", {"order_id": "2", "customer": "bob", "total": 12}) == 201
        assert call("POST /orders/{order_id}/cancel", {"version": 1}, order_id="1") == 200
        assert call("POST /orders/{order_id}/cancel", {"version": 1}, order_id="1") == 409
        assert call("POST /orders", "{not json") == 400
        assert call("POST /orders", {"order_id": "3", "total": -1}) == 400

        pending = app().undelivered("order#1")
        print(
            "order#1 events waiting for the relay:",
            [(s.event.type, s.event.sequence) for s in pending],
        )
        assert [s.event.sequence for s in pending] == [1, 2]

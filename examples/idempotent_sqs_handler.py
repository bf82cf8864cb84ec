"""An SQS consumer that charges each order once, though SQS delivers at least once.

A Lambda function on the order-events queue (``ChargeOrdersFunction`` in
``examples/template.yaml``, with ``ReportBatchItemFailures``). Each message is an outbox event
(see ``outbox_relay_handler.py``); an ``OrderPlaced`` event charges the order:

* ``@idempotent`` keyed by the event id: a message delivered twice — by SQS, or published twice
  by the relay and the sweeper — replays the stored result instead of charging again;
* the handler answers with a partial batch response (``batchItemFailures``): only the records
  that failed come back, the others are deleted; a message that keeps failing goes to the
  queue's DLQ after ``maxReceiveCount`` receives (``scheduled_redrive.py`` brings it back).

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/idempotent_sqs_handler.py

It plays the Lambda SQS poller: receive, invoke, delete what succeeded, while the idempotency
table is throttled; one event is delivered three times, a malformed one ends in the DLQ.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any

import boto3

from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)

charged: list[str] = []  # the side effect: in real life, a call to the payment provider


def charge(record: dict[str, Any], context: Any) -> dict[str, Any]:
    """Charge the order of an ``OrderPlaced`` event (wrapped in ``@idempotent`` by ``app``)."""
    order = json.loads(record["body"])["payload"]
    amount = order["total"]
    charged.append(order["order_id"])
    return {"order_id": order["order_id"], "charged": amount}


@functools.cache
def app() -> Any:
    """Built on the first invocation and reused while the Lambda container lives."""
    store = IdempotencyStore(
        os.environ.get("IDEMPOTENCY_TABLE", "idempotency"),
        client=boto3.client("dynamodb", config=POLICY.botocore_config()),
        policy=POLICY,
    )
    # The relay and the sweeper may both publish an event: its id is the key. key_prefix keeps
    # the records valid if this function is renamed or moved.
    return idempotent(store, key="powertools_json(body).event_id", key_prefix="charge")(charge)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch in, partial batch response out: only the failed records come back."""
    idempotent_charge = app()
    failures = []
    for record in event["Records"]:
        try:
            if json.loads(record["body"])["type"] == "OrderPlaced":
                idempotent_charge(record, context)
        except Exception as error:  # this record comes back (or goes to the DLQ); not the others
            print(f"  {record['messageId']} failed: {type(error).__name__}: {error}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


# -- running it locally ---------------------------------------------------------------------------


def create_idempotency_table(dynamodb: Any, name: str = "idempotency") -> None:
    """The table of ``IdempotencyTable`` in template.yaml: key ``id``, TTL on ``expiration``."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"AttributeName": "expiration", "Enabled": True},
    )


def create_queue_with_dlq(sqs: Any, name: str, max_receive_count: int = 5) -> tuple[str, str]:
    """A queue whose messages move to ``<name>-dlq`` after ``max_receive_count`` receives."""
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": max_receive_count}
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})
    return queue["QueueUrl"], dlq


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
            for m in messages
        ]
    }


def poll(sqs: Any, queue_url: str, function: Any, context: Any) -> list[dict[str, Any]]:
    """What the event source mapping does, until the queue is empty: receive a batch, invoke,
    delete the records the partial batch response does not name. Returns the responses."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    arn = arn["Attributes"]["QueueArn"]
    responses = []
    while True:
        # VisibilityTimeout=0: a failed record is visible again at once (not in 30 s).
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        if not messages:
            return responses
        response = function(sqs_event(messages, arn), context)
        responses.append(response)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        done = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)


def order_placed(event_id: str, order_id: str, total: int, created_at: str = "") -> str:
    """The body the outbox relay publishes for an ``OrderPlaced`` event (written now)."""
    import datetime as dt

    return json.dumps(
        {
            "event_id": event_id,
            "type": "OrderPlaced",
            "aggregate_id": f"order#{order_id}",
            "sequence": 1,
            "created_at": created_at or dt.datetime.now(dt.timezone.utc).isoformat(),
            "payload": {"order_id": order_id, "total": total},
        }
    )


if __name__ == "__main__":
    from moto import mock_aws

    from resilient_aws.testing import FakeLambdaContext, chaos

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        create_idempotency_table(dynamodb)
        queue, dlq = create_queue_with_dlq(sqs, "order-events", max_receive_count=2)

        bodies = [order_placed("e-1", "1", 30), order_placed("e-2", "2", 45)]
        bodies += [order_placed("e-1", "1", 30)] * 2  # delivered again, and again
        bodies += ['{"type": "OrderPlaced", "payload": {}}']  # malformed: fails every time
        for body in bodies:
            sqs.send_message(QueueUrl=queue, MessageBody=body)

        # The idempotency table throttles 20 % of the calls: retried, nothing charged twice.
        with chaos(app().idempotency.store.client, throttle=0.2, seed=4) as faults:
            responses = poll(sqs, queue, handler, FakeLambdaContext(timeout_s=30))
        for n, response in enumerate(responses, 1):
            print(f"batch {n}: {response}")
        in_dlq = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
        print(f"charged {sorted(charged)}; table throttled {faults.stats.throttled} times")
        print(f"in the DLQ after 2 receives: {[m['Body'] for m in in_dlq]}")
        assert sorted(charged) == ["1", "2"]
        assert len(in_dlq) == 1

        # Any function can be idempotent, async def too: here by the order id.
        @idempotent(app().idempotency.store, key="order_id", key_prefix="refunds")
        async def refund(order: dict[str, Any]) -> str:
            charged.remove(order["order_id"])
            return f"refunded {order['order_id']}"

        async def refund_twice() -> list[str]:
            return [await refund({"order_id": "2"}), await refund({"order_id": "2"})]

        print(asyncio.run(refund_twice()), "-> still charged:", sorted(charged))
        assert charged == ["1"]

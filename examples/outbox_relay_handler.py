"""The outbox relay: a Lambda function on the orders table's DynamoDB stream.

``OutboxRelayFunction`` in ``examples/template.yaml``: the stream's event source mapping turns on
``ReportBatchItemFailures`` and ``BisectBatchOnFunctionError``, retries a batch at most
``MaximumRetryAttempts`` times, then sends its description to an on-failure queue. The handler
is ``relay_handler(outbox, SqsTarget(queue_url))``: it publishes the batch's new outbox events
to the order-events queue in order per order, marks each one delivered, and answers with a
partial batch response naming only the stream records whose event failed (or waits behind one
that failed). What the stream never hands over, the sweeper delivers
(``outbox_sweeper_handler.py``).

Run it against moto in process (``pip install 'resilient-aws[test,lambda]'``)::

    python examples/outbox_relay_handler.py

It places orders through ``outbox_api_handler.py``, hands the table's stream records to the
relay while the queue refuses every message (the events stay pending and the records come
back), then hands Lambda's retry of the same batch over: every event published once, in order.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from resilient_aws.outbox import Outbox, SqsTarget, relay_handler
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)


@dataclass(frozen=True)
class Relay:
    outbox: Outbox
    target: SqsTarget
    handle: Callable[[dict[str, Any], Any], dict[str, Any]]


@functools.cache
def app() -> Relay:
    """Built on the first invocation and reused while the Lambda container lives."""
    config = POLICY.botocore_config()
    outbox = Outbox(
        os.environ.get("ORDERS_TABLE", "orders"),
        client=boto3.client("dynamodb", config=config),
        policy=POLICY,
    )
    target = SqsTarget(
        os.environ["EVENTS_QUEUE_URL"], client=boto3.client("sqs", config=config), policy=POLICY
    )
    return Relay(outbox, target, relay_handler(outbox, target, margin_s=1.0))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream batch in, ``{"batchItemFailures": [...]}`` out."""
    return app().handle(event, context)


# -- running it locally ---------------------------------------------------------------------------


def stream_event(dynamodb: Any, table: str) -> dict[str, Any]:
    """The table's stream records as Lambda hands them to the function (read through moto)."""
    region = dynamodb.meta.region_name
    # moto serves DynamoDB Streams on the regional endpoint only
    streams = boto3.client(
        "dynamodbstreams",
        region_name=region,
        endpoint_url=f"https://streams.dynamodb.{region}.amazonaws.com",
    )
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    return {
        "Records": [
            {**r, "eventSource": "aws:dynamodb", "eventSourceARN": arn, "awsRegion": region}
            for r in records
        ]
    }


if __name__ == "__main__":
    import json

    import outbox_api_handler as api
    from idempotent_sqs_handler import create_queue_with_dlq
    from moto import mock_aws

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    # The demo's retries sleep on a fake clock: the same decisions, without the waiting.
    POLICY = FakeClock().policy(POLICY)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        api.create_orders_table(dynamodb)
        queue, _ = create_queue_with_dlq(sqs, "order-events")
        os.environ["EVENTS_QUEUE_URL"] = queue

        context = FakeLambdaContext(timeout_s=60)
        for n in range(1, 4):
            order = {"order_id": str(n), "customer": "ada", "total": 10 * n}
            api.handler(api.http_event("POST /orders", order), context)
        api.handler(
            api.http_event("POST /orders/{order_id}/cancel", {"version": 1}, order_id="2"),
            context,
        )
        batch = stream_event(dynamodb, "orders")
        print(f"stream batch: {len(batch['Records'])} records (orders and their 4 events)")

        # SQS refuses every entry: the retries run out, the events stay pending, and the
        # partial batch response hands their stream records back to Lambda.
        with chaos(app().target.client, partial=1.0, seed=1):
            failed = handler(batch, context)["batchItemFailures"]
        print(f"queue refusing messages: {len(failed)} records handed back")
        assert len(failed) == 4
        print("pending:", len(app().outbox.pending()))

        # Lambda retries the batch; the queue is back (and still fails 30 % of entries).
        with chaos(app().target.client, partial=0.3, seed=2) as faults:
            response = handler(batch, context)
        print(f"retry: {response}; chaos withheld {faults.stats.withheld_entries} entries")
        assert response == {"batchItemFailures": []}

        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        for body in sorted(
            (json.loads(m["Body"]) for m in messages),
            key=lambda b: (b["aggregate_id"], b["sequence"]),
        ):
            print(f"  {body['type']:15} {body['aggregate_id']} #{body['sequence']}")
        assert len(messages) == 4
        assert app().outbox.pending() == []

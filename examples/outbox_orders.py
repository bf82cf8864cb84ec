"""Place orders through the outbox, relay their events from the table's stream, sweep the rest.

Runs against moto in process (``pip install 'resilient-aws[test,lambda]'``)::

    python examples/outbox_orders.py
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from moto import mock_aws

from resilient_aws.outbox import (
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    Put,
    SqsTarget,
    TransactionConditionFailedError,
    relay_handler,
)
from resilient_aws.testing import FakeLambdaContext

REGION = "us-east-1"


def create_orders_table(dynamodb: Any) -> None:
    """The table of docs/outbox.md (``OrdersTable`` in template.yaml): pk/sk, a stream, the
    sparse pending index."""
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in [
                ("pk", "S"),
                ("sk", "S"),
                ("outbox_pending_aggregate", "S"),
                ("outbox_sequence", "N"),
            ]
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
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def place_order(outbox: Outbox, order_id: str, total: int, version: int) -> None:
    """The API handler's job: the order and its event, both or neither."""
    outbox.write(
        puts=[Put({"pk": f"order#{order_id}", "sk": "order", "total": total, "version": version})],
        events=[
            OutboxEvent("OrderPlaced", f"order#{order_id}", {"total": total}, sequence=version)
        ],
    )


def stream_event(dynamodb: Any, streams: Any) -> dict[str, Any]:
    """What Lambda would hand the relay: the stream's records (read here through moto)."""
    arn = dynamodb.describe_table(TableName="orders")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    return {
        "Records": [{**r, "eventSource": "aws:dynamodb", "eventSourceARN": arn} for r in records]
    }


if __name__ == "__main__":
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        streams = boto3.client(  # moto serves DynamoDB Streams on the regional endpoint only
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
        )
        sqs = boto3.client("sqs", region_name=REGION)
        create_orders_table(dynamodb)
        queue = sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true"})[
            "QueueUrl"
        ]
        outbox = Outbox("orders", client=dynamodb)
        target = SqsTarget(queue, client=sqs)

        place_order(outbox, "1", 30, version=1)
        place_order(outbox, "2", 45, version=1)
        try:
            place_order(outbox, "1", 99, version=1)  # a second writer with a stale version
        except TransactionConditionFailedError as error:
            print("refused, nothing written:", error)

        # The stream relay (deployed as a Lambda on the table's stream).
        handler = relay_handler(outbox, target)
        print("relay answered:", handler(stream_event(dynamodb, streams), FakeLambdaContext()))

        # The sweeper (a scheduled Lambda) finds what the stream missed; here: nothing.
        print("sweep:", OutboxSweeper(outbox, target, grace_s=0).run().summary())

        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        for message in messages:
            body = json.loads(message["Body"])
            print(
                f"  {body['type']} {body['aggregate_id']} #{body['sequence']} id={body['event_id']}"
            )
        assert len(messages) == 2

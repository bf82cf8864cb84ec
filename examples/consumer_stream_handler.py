"""A Lambda consumer of a DynamoDB stream: a shipment's history, in order, with no change skipped.

``RecordShipmentHistoryFunction`` in ``examples/template.yaml``, on the shipments table's stream
with ``ReportBatchItemFailures``. Every change of a shipment's status (made by
``consumer_sqs_handler.py`` and ``consumer_kinesis_handler.py``) becomes a row of the
shipment-history table, keyed by the stream record's sequence number: a record handed over
twice writes the same row again. ``BatchProcessor`` reads the stream's order into the answer:

* when a record fails, it and every record after it in the batch are reported, and none after
  it runs, so the history never has a later status without the earlier one; Lambda retries
  from the failed record, up to ``MaximumRetryAttempts``, then sends the batch's description to
  the stream-failures queue (``resilient_aws.redrive.redrive_stream_pointers`` reads the records
  back while the stream keeps them, 24 hours);
* each write is retried through the retry core within the invocation's deadline;
* images arrive as plain Python values (``record.dynamodb.new_image["status"]``).

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/consumer_stream_handler.py

Two shipments move along; the history table is down for the first invocation (every record
comes back, none is lost) and back for Lambda's retry of the same batch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from resilient_aws.consumer import BatchProcessor, DynamoDBStreamRecord
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=2.0)
HISTORY_TABLE = os.environ.get("HISTORY_TABLE", "shipment-history")
STATUSES = ("created", "picked", "in_transit", "delivered", "returned")


def record_change(dynamodb: Any, record: DynamoDBStreamRecord) -> None:
    """One history row per change of status; other changes (and deletions) write nothing."""
    new, old = record.dynamodb.new_image or {}, record.dynamodb.old_image or {}
    status = new.get("status")
    if record["eventName"] == "REMOVE" or status == old.get("status"):
        return
    if status not in STATUSES:  # a newer writer's status: stop here rather than skip it
        raise ValueError("unknown shipment status")
    dynamodb.put_item(
        TableName=HISTORY_TABLE,
        Item={
            "order_id": {"S": str(new["order_id"])},
            # sorts as the stream does: sequence numbers grow within a key
            "sequence": {"S": record.dynamodb.sequence_number.zfill(40)},
            "status": {"S": status},
            "at": {"S": str(new.get("updated_at", ""))},
        },
    )


@dataclass(frozen=True)
class Consumer:
    dynamodb: Any
    handle: Callable[[dict[str, Any], Any], dict[str, Any]]


@functools.cache
def app() -> Consumer:
    """Built on the first invocation and reused while the Lambda container lives."""
    dynamodb = boto3.client("dynamodb", config=POLICY.botocore_config())
    processor = BatchProcessor(policy=POLICY, margin_s=2.0, records="light")

    @processor.handler
    def history(record: DynamoDBStreamRecord) -> None:
        record_change(dynamodb, record)

    return Consumer(dynamodb, history)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream batch in, ``{"batchItemFailures": [...]}`` out."""
    return app().handle(event, context)


# -- running it locally ---------------------------------------------------------------------------


def create_history_table(dynamodb: Any, name: str = "shipment-history") -> None:
    """``ShipmentHistoryTable`` of template.yaml: a shipment's status changes, in stream order."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "order_id", "KeyType": "HASH"},
            {"AttributeName": "sequence", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "order_id", "AttributeType": "S"},
            {"AttributeName": "sequence", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def stream_event(dynamodb: Any, table: str) -> dict[str, Any]:
    """The table's stream records, from the start, as Lambda hands them to the function."""
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


def set_status(dynamodb: Any, table: str, order_id: str, status: str, at: str) -> None:
    dynamodb.put_item(
        TableName=table,
        Item={"order_id": {"S": order_id}, "status": {"S": status}, "updated_at": {"S": at}},
    )


if __name__ == "__main__":
    from consumer_sqs_handler import create_shipments_table
    from moto import mock_aws

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    POLICY = FakeClock().policy(POLICY)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_shipments_table(dynamodb)
        create_history_table(dynamodb)
        moves = [("1", "created"), ("2", "created"), ("1", "picked"), ("1", "in_transit")]
        moves += [("2", "picked"), ("1", "delivered")]
        for n, (order_id, status) in enumerate(moves):
            set_status(dynamodb, "shipments", order_id, status, f"2024-05-01T0{n}:00:00Z")
        event = stream_event(dynamodb, "shipments")
        context = FakeLambdaContext(timeout_s=60)

        # The history table refuses every write: the first record fails after its retries,
        # and the whole batch comes back (none after it ran).
        with chaos(app().dynamodb, throttle=1.0, seed=7, operations={"PutItem"}):
            response = handler(event, context)
        print(f"history table down: {len(response['batchItemFailures'])} records handed back")
        assert len(response["batchItemFailures"]) == len(moves)

        # Lambda retries the batch; the table is back (and still throttles 30 % of writes).
        with chaos(app().dynamodb, throttle=0.3, seed=8):
            response = handler(event, context)
        print(f"retry: {response}")
        assert response == {"batchItemFailures": []}

        rows = dynamodb.query(
            TableName="shipment-history",
            KeyConditionExpression="order_id = :o",
            ExpressionAttributeValues={":o": {"S": "1"}},
        )["Items"]
        print("shipment 1:", " -> ".join(row["status"]["S"] for row in rows))
        assert [row["status"]["S"] for row in rows] == [
            "created",
            "picked",
            "in_transit",
            "delivered",
        ]

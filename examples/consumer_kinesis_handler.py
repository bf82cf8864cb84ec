"""A Lambda consumer of a Kinesis stream: it stops at the first failure, so a shard keeps its order.

``TrackShipmentsFunction`` in ``examples/template.yaml``, on the tracking stream with
``ReportBatchItemFailures``. Carriers put one record per scan of a parcel (partition key: the
order), and the handler moves the shipment's status along. Kinesis keeps a shard's records in
order, and ``BatchProcessor`` keeps that order through failures:

* when a record fails, it and every record after it in the batch are reported, and none after
  it runs: Lambda retries the shard from that record, and a shipment never jumps from
  ``picked`` to ``delivered`` past an ``in_transit`` that failed — Powertools'
  ``BatchProcessor`` reports the failed record and goes on with the later ones;
* each write is retried through the retry core within the invocation's deadline, and records
  are not started when the invocation is about to end (they are reported untouched);
* a record that keeps failing (a scan for an order that has no shipment) blocks its shard until
  the event source mapping gives up (``MaximumRetryAttempts``) and sends the batch's description
  to the stream-failures queue, from where ``resilient_aws.redrive.redrive_stream_pointers``
  reads the records back while the stream still holds them.

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/consumer_kinesis_handler.py

Six scans reach the stream, the fourth for an order that was never shipped; the table throttles.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from resilient_aws.consumer import BatchProcessor, KinesisStreamRecord
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=2.0)
SHIPMENTS_TABLE = os.environ.get("SHIPMENTS_TABLE", "shipments")
STATUSES = ("created", "picked", "in_transit", "delivered", "returned")


def track(dynamodb: Any, scan: dict[str, Any]) -> None:
    """Set the shipment's status from a carrier's scan (``{"order_id", "status", "at"}``);
    a scan for an order without a shipment fails (ConditionalCheckFailedException)."""
    if scan.get("status") not in STATUSES:
        raise ValueError("unknown shipment status")
    dynamodb.update_item(
        TableName=SHIPMENTS_TABLE,
        Key={"order_id": {"S": str(scan["order_id"])}},
        UpdateExpression="SET #status = :status, updated_at = :at",
        ConditionExpression="attribute_exists(order_id)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":status": {"S": scan["status"]}, ":at": {"S": scan["at"]}},
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
    def apply_scan(record: KinesisStreamRecord) -> None:
        track(dynamodb, record.kinesis.data_as_json())

    return Consumer(dynamodb, apply_scan)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Kinesis batch in, ``{"batchItemFailures": [...]}`` out: the first failure and the rest."""
    return app().handle(event, context)


# -- running it locally ---------------------------------------------------------------------------


def put_scan(kinesis: Any, stream: str, order_id: str, status: str, at: str) -> None:
    data = json.dumps({"order_id": order_id, "status": status, "at": at}).encode()
    kinesis.put_record(StreamName=stream, Data=data, PartitionKey=order_id)


def kinesis_event(kinesis: Any, stream: str) -> dict[str, Any]:
    """The stream's records (one shard, from its start) as Lambda hands them to the function."""
    description = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    arn, region = description["StreamARN"], description["StreamARN"].split(":")[3]
    records = []
    for shard in description["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard['ShardId']}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            for r in kinesis.get_records(ShardIterator=iterator)["Records"]
        ]
    return {"Records": records}


if __name__ == "__main__":
    from consumer_sqs_handler import create_shipments_table
    from moto import mock_aws

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    POLICY = FakeClock().policy(POLICY)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb, kinesis = boto3.client("dynamodb"), boto3.client("kinesis")
        create_shipments_table(dynamodb)
        for order_id in ("1", "2"):
            dynamodb.put_item(
                TableName="shipments",
                Item={"order_id": {"S": order_id}, "status": {"S": "created"}},
            )
        kinesis.create_stream(StreamName="tracking", ShardCount=1)
        scans = [("1", "picked"), ("2", "picked"), ("1", "in_transit"), ("9", "picked")]
        scans += [("1", "delivered"), ("2", "in_transit")]
        for n, (order_id, status) in enumerate(scans):
            put_scan(kinesis, "tracking", order_id, status, f"2024-05-01T0{n}:00:00Z")

        event = kinesis_event(kinesis, "tracking")
        with chaos(app().dynamodb, throttle=0.3, seed=6):
            response = handler(event, FakeLambdaContext(timeout_s=60))
        sequence = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        print(f"{len(sequence)} scans; reported from #{sequence.index(reported[0]) + 1} on")
        assert reported == sequence[3:]  # the unknown order's scan and every later one

        status = {
            item["order_id"]["S"]: item["status"]["S"]
            for item in dynamodb.scan(TableName="shipments")["Items"]
        }
        print("shipments:", status)
        assert status == {"1": "in_transit", "2": "picked"}  # nothing after the failure ran

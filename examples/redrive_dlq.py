"""Drain a dead-letter queue back to its source queue, and replay a stream pointer.

Runs against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/redrive_dlq.py
"""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from resilient_aws.redrive import DlqMessage, redrive_sqs, redrive_stream_pointers
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import chaos

policy = RetryPolicy(max_attempts=14, base_delay=0.01, max_delay=0.5)

with mock_aws():
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    orders = sqs.create_queue(
        QueueName="orders",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
        },
    )["QueueUrl"]

    # 120 orders that the consumer failed on (the payment service was down): SQS dead-letters
    # each one the next time it is received past maxReceiveCount.
    for i in range(120):
        sqs.send_message(
            QueueUrl=orders,
            MessageBody=json.dumps({"order_id": i, "total": 10 + i}),
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "test" if i % 10 == 0 else "real"}
            },
        )
    while sqs.receive_message(QueueUrl=orders, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages"
    ):
        pass  # never deleted: each receive past maxReceiveCount moves some to the DLQ

    # 1. Look before moving: what would a filter select? Nothing moves, nothing stays hidden.
    preview = redrive_sqs(dlq, client=sqs, dry_run=True, filter="messageAttributes.kind == 'real'")
    print("dry run:", preview)

    # 2. Move the real orders back to the source queue (found from the DLQ's redrive policy),
    #    while AWS throttles and fails entries. Only messages whose copy was acknowledged are
    #    deleted from the DLQ; attributes travel with them.
    def real_orders(message: DlqMessage) -> bool:
        return message.attribute("kind") == "real"

    with chaos(sqs, partial=0.3, throttle=0.05, seed=1) as faults:
        report = redrive_sqs(dlq, client=sqs, policy=policy, filter=real_orders, rate=500)
    print("redrive:", report)
    print(f"  chaos withheld {faults.stats.withheld_entries} entries; every one was re-sent")
    print("  JSON report:", json.dumps(report.to_dict())[:100], "...")
    assert report.ok, report.failed
    assert (report.moved, report.skipped) == (108, 12)

    # 3. A Kinesis event source mapping gave up on a batch: its on-failure destination got a
    #    pointer, not the records. Read them back from the stream (before the retention ends)
    #    and hand them to a function in the shape Lambda would have.
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName="clicks", ShardCount=1)
    for i in range(5):
        kinesis.put_record(
            StreamName="clicks", Data=json.dumps({"click": i}).encode(), PartitionKey="u"
        )
    shard = kinesis.list_shards(StreamName="clicks")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="clicks", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    sequences = [
        r["SequenceNumber"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]
    ]
    failures = sqs.create_queue(QueueName="clicks-failures")["QueueUrl"]
    sqs.send_message(
        QueueUrl=failures,
        MessageBody=json.dumps(
            {
                "requestContext": {
                    "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
                    "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:clicks",
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": 1,
                },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                },
                "version": "1.0",
                "timestamp": "2019-11-14T00:38:06.021Z",
                "KinesisBatchInfo": {
                    "shardId": shard,
                    "startSequenceNumber": sequences[1],
                    "endSequenceNumber": sequences[3],
                    "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                    "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                    "batchSize": 3,
                    "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks",
                },
            }
        ),
    )

    def handler(records: list[dict], pointer: object) -> None:  # your function's code
        print("  replayed", [r["kinesis"]["sequenceNumber"] for r in records], "from", pointer)

    pointers = redrive_stream_pointers(
        failures, deliver=handler, client=sqs, kinesis_client=kinesis
    )
    print("stream pointers:", pointers)
    assert pointers.ok, pointers.failed
    assert pointers.records == 3

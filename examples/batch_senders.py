"""The five batch senders on one engine: every entry sent or reported, answers mapped back.

Runs against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/batch_senders.py
"""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from resilient_aws.batch import EventBridgePutter, KinesisPutter, SnsPublisher, SqsSender
from resilient_aws.errors import EntryValidationError
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import chaos

policy = RetryPolicy(max_attempts=14, base_delay=0.01, max_delay=0.5)

with mock_aws():
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="orders")["QueueUrl"]

    # AWS under load: 30 % of entries come back failed, 5 % of requests are throttled.
    with (
        chaos(sqs, partial=0.3, throttle=0.05, seed=1) as faults,
        SqsSender(queue, client=sqs, policy=policy, concurrency=4, keep_answers=True) as sender,
    ):
        for i in range(250):
            sender.send_message(json.dumps({"order": i}), id=f"order-{i}")
        try:
            sender.send_message("")  # refused before anything is sent; the rest is unaffected
        except EntryValidationError as error:
            print("refused:", error)
    print("SQS:", sender.result)
    print(f"  chaos withheld {faults.stats.withheld_entries} entries; all were re-sent")
    print(
        "  order-0 is message",
        next(a.response["MessageId"] for a in sender.result.answers if a.entry_id == "order-0"),
    )

    # FIFO: per-group order survives retries (at most one message of a group per request).
    fifo = sqs.create_queue(
        QueueName="payments.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    with chaos(sqs, partial=0.4, seed=2), SqsSender(fifo, client=sqs, policy=policy) as ordered:
        for i in range(30):
            ordered.send_message(f"{i}", group_id=f"account-{i % 3}")
    print("SQS FIFO:", ordered.result)

    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    with SnsPublisher(topic, client=sns, policy=policy) as publisher:
        for i in range(25):
            publisher.publish(f"alert {i}", subject="disk")
    print("SNS:", publisher.result)

    events = boto3.client("events", region_name="us-east-1")
    with EventBridgePutter(client=events, policy=policy) as putter:
        for i in range(25):
            putter.put(
                {"order_id": i, "total": 9.5}, source="shop.orders", detail_type="OrderPlaced"
            )
    print("EventBridge:", putter.result)

    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    # moto's Kinesis is not thread-safe: one request at a time against it
    with KinesisPutter(
        "clicks", client=kinesis, policy=policy, concurrency=1, ordered=True
    ) as records:
        for i in range(600):
            records.put(json.dumps({"click": i}), partition_key=f"user-{i % 20}")
    print("Kinesis:", records.result)

"""The far ends of the batch senders, and how to count what arrived there (tests only)."""

from __future__ import annotations

import json
from typing import Any


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def dlq_with_source(sqs: Any, name: str, *, fifo: bool = False) -> tuple[str, str]:
    """A source queue whose RedrivePolicy sends to a DLQ: (dlq url, source url)."""
    suffix = ".fifo" if fifo else ""
    fifo_attributes = {"FifoQueue": "true"} if fifo else {}
    dlq, dlq_arn = make_queue(sqs, f"{name}-dlq{suffix}", **fifo_attributes)
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    source, _ = make_queue(sqs, f"{name}{suffix}", RedrivePolicy=policy, **fifo_attributes)
    return dlq, source


def depth(sqs: Any, url: str) -> int:
    """Messages in the queue, visible or not."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def take_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of a (small) queue, received with all attributes and deleted."""
    taken: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", []):
        taken += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return taken


def drain(sqs: Any, url: str) -> list[str]:
    """Every body in the queue, in the order received (keep queues small: moto scans them all)."""
    bodies: list[str] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in batch]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return bodies


def stream_records(kinesis: Any, stream: str) -> list[tuple[str, bytes]]:
    """(partition key, data) of every record, shard by shard, in shard order."""
    records: list[tuple[str, bytes]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            records += [(r["PartitionKey"], r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def eventbridge_to_queue(events: Any, sqs: Any, name: str) -> str:
    url, arn = make_queue(sqs, name)
    events.put_rule(Name=name, EventPattern=json.dumps({"source": ["test"]}))
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    return url


def sns_to_queue(sns: Any, sqs: Any, name: str, *, fifo: bool = False) -> tuple[str, str]:
    dedupe = {"ContentBasedDeduplication": "true"} if fifo else {}
    topic_attributes = {"FifoTopic": "true", **dedupe} if fifo else {}
    topic = sns.create_topic(Name=f"{name}.fifo" if fifo else name, Attributes=topic_attributes)[
        "TopicArn"
    ]
    queue_attributes = {"FifoQueue": "true", **dedupe} if fifo else {}
    url, arn = make_queue(sqs, f"{name}.fifo" if fifo else name, **queue_attributes)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return topic, url


def firehose_to_bucket(firehose: Any, s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name)
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{name}",
        },
    )


def bucket_lines(s3: Any, bucket: str) -> list[bytes]:
    lines: list[bytes] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            lines += s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().split(b"\n")
    return [line for line in lines if line]

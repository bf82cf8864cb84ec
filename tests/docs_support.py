"""Shared by tests/functional/test_docs_examples.py: the resources the docs' pages say exist, and
the Lambda events their handlers are called with."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import boto3

from tests import batch_targets
from tests.batch_targets import make_queue
from tests.dynamo_tables import create_table
from tests.sqs_events import lambda_event


def table(name: str = "orders", **options: Any) -> str:
    return create_table(boto3.client("dynamodb"), name, **options)


def idempotency_table() -> str:
    return table("idempotency", hash_key=("id", "S"))


def queue(name: str, **attributes: str) -> str:
    url, _ = make_queue(boto3.client("sqs"), name, **attributes)
    return url


def queue_arn(url: str) -> str:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


def dlq_with_source(name: str) -> str:
    """A dead-letter queue ``{name}-dlq`` and the queue ``name`` whose redrive policy names it."""
    dlq, _ = batch_targets.dlq_with_source(boto3.client("sqs"), name)
    return dlq


def bucket(name: str) -> str:
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def kms_alias(alias: str) -> str:
    kms = boto3.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    return alias


def zipped(name: str, source: str) -> bytes:
    """A Lambda deployment package of one file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, source)
    return buffer.getvalue()


def sqs_event(url: str) -> dict[str, Any]:
    """The SQS event Lambda would hand a function for every message now in the queue."""
    sqs, arn, messages = boto3.client("sqs"), queue_arn(url), []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages += batch
    return lambda_event(messages, arn)


def sqs_event_of(bodies: list[Any]) -> dict[str, Any]:
    """An SQS event of these JSON bodies, from a queue that is not there."""
    return {
        "Records": [
            {
                "messageId": f"m-{n}",
                "receiptHandle": f"r-{n}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
                "awsRegion": "us-east-1",
            }
            for n, body in enumerate(bodies)
        ]
    }


def kinesis_event(payloads: list[Any]) -> dict[str, Any]:
    """A Kinesis event of these JSON payloads."""
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{n}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks",
                "awsRegion": "us-east-1",
                "kinesis": {
                    "sequenceNumber": str(49_000 + n),
                    "partitionKey": "k",
                    "data": base64.b64encode(json.dumps(payload).encode()).decode(),
                    "approximateArrivalTimestamp": 1_700_000_000.0,
                },
            }
            for n, payload in enumerate(payloads)
        ]
    }

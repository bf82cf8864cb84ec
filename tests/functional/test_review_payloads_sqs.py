"""Review of issue 17's SQS and SNS senders: a body that already is an extended client's pointer
(a message forwarded as it is) would be read by a consumer as a pointer to someone else's
object; with ``payloads=`` it is offloaded, so what is read back is what was sent."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from resilient_aws.batch import SnsPublisher, SqsSender
from resilient_aws.payloads import POINTER_CLASS, PayloadConfig, PayloadStore, resolve

REGION = "us-east-1"
BUCKET = "payloads"
FORWARDED = json.dumps([POINTER_CLASS, {"s3BucketName": "other", "s3Key": "their/key"}])


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def read_back(sqs: Any, url: str, store: PayloadStore) -> list[str]:
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    return sorted(str(resolve(m, store)["Body"]) for m in messages)


def test_review_an_sqs_body_that_is_a_pointer_is_offloaded_and_reads_back(s3: Any) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    store = PayloadStore(PayloadConfig(bucket=BUCKET), client=s3)
    with SqsSender(url, client=sqs, payloads=store) as sender:
        sender.send_message(FORWARDED, id="forwarded")
        sender.send_message("plain", id="plain")
    assert read_back(sqs, url, store) == sorted([FORWARDED, "plain"])
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1  # only the pointer-like body


def test_review_an_sns_message_that_is_a_pointer_is_offloaded_and_reads_back(s3: Any) -> None:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="t")["TopicArn"]
    url = sqs.create_queue(QueueName="sub")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    store = PayloadStore(PayloadConfig(bucket=BUCKET), client=s3)
    with SnsPublisher(topic, client=sns, payloads=store) as publisher:
        publisher.publish(FORWARDED, id="forwarded")
        publisher.publish("plain", id="plain")
    assert read_back(sqs, url, store) == sorted([FORWARDED, "plain"])
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1

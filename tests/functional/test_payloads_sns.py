"""SNS without raw message delivery: the SQS body is SNS's JSON envelope, its ``Message`` the
pointer and its ``MessageAttributes`` the size attribute (``{"Type", "Value"}``). The consumer
resolves it on moto (S3, SNS, SQS); a malformed envelope fails its record only."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from resilient_aws.batch import SnsPublisher
from resilient_aws.consumer import BatchProcessor, SQSRecord
from resilient_aws.payloads import (
    LEGACY_POINTER_CLASS,
    InvalidPointerError,
    PayloadConfig,
    PayloadStore,
    pointer_of,
    resolve,
)
from resilient_aws.testing import FakeClock
from tests.batch_targets import make_queue

REGION = "us-east-1"
BUCKET = "payloads"


@pytest.fixture
def clients(aws: None) -> dict[str, Any]:
    made: dict[str, Any] = {
        name: boto3.client(name, region_name=REGION) for name in ("s3", "sqs", "sns")
    }
    made["s3"].create_bucket(Bucket=BUCKET)
    return made


def objects(s3: Any) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def subscribed_queue(sns: Any, sqs: Any, name: str) -> tuple[str, str]:
    """A topic and a queue subscribed to it without raw message delivery: (topic, queue url)."""
    topic = sns.create_topic(Name=name)["TopicArn"]
    url, arn = make_queue(sqs, name)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300
    ).get("Messages", []):
        got.extend(batch)
    return got


def sqs_event(bodies: list[tuple[str, str]]) -> dict[str, Any]:
    """Lambda's SQS event for (message id, body) pairs."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            }
            for message_id, body in bodies
        ]
    }


def envelope(message: Any, attributes: Any = None, **extra: Any) -> str:
    """An SNS notification as SNS writes it into an SQS body (raw message delivery off)."""
    document: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "f4b4bc95-6c53-5d8c-9d2d-6a3f3b0e2c11",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Message": message,
        "Timestamp": "2026-01-29T10:00:00.000Z",
        "SignatureVersion": "1",
        **extra,
    }
    if attributes is not None:
        document["MessageAttributes"] = attributes
    return json.dumps(document, indent=2)


def test_published_pointers_resolve_through_a_subscription_without_raw_delivery(
    clients: dict[str, Any],
) -> None:
    s3, sqs, sns = clients["s3"], clients["sqs"], clients["sns"]
    topic, url = subscribed_queue(sns, sqs, "orders")
    store = PayloadStore(BUCKET, client=s3)
    sent = [json.dumps({"n": n, "pad": "x" * (300_000 if n % 2 else 10)}) for n in range(6)]
    kind = {"kind": {"DataType": "String", "StringValue": "order"}}
    with SnsPublisher(topic, client=sns, policy=FakeClock().policy(), payloads=store) as sender:
        for message in sent:
            sender.publish(message, attributes=kind)
    assert len(objects(s3)) == 3
    messages = received(sqs, url)
    assert len(messages) == 6
    seen: dict[int, tuple[str, dict[str, Any]]] = {}

    def record_function(record: SQSRecord) -> None:
        notification = record.json_body
        assert notification["Type"] == "Notification" and notification["TopicArn"] == topic
        seen[json.loads(notification["Message"])["n"]] = (
            notification["Message"],
            notification["MessageAttributes"],
        )

    bodies = [(m["MessageId"], m["Body"]) for m in messages]
    batch = BatchProcessor(payloads=store).process(sqs_event(bodies), record_function)
    assert batch.succeeded == 6 and not batch.failed
    assert [seen[n][0] for n in range(6)] == sent
    # the size attribute is gone from the notification, the caller's own stays
    assert all(
        attributes == {"kind": {"Type": "String", "Value": "order"}}
        for _, attributes in seen.values()
    )


def test_an_envelope_in_the_extended_clients_format_is_resolved(
    clients: dict[str, Any],
) -> None:
    """Built by hand from what the SNS Extended Client Library (Python) publishes: the pointer
    as ``json.dumps`` writes it (with spaces), here with the legacy class and attribute; its
    only attribute removed, the notification has no ``MessageAttributes`` left, as SNS writes
    one for a message published without attributes."""
    s3 = clients["s3"]
    s3.put_object(Bucket=BUCKET, Key="java-key", Body="héllo".encode())
    pointer = json.dumps([LEGACY_POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": "java-key"}])
    body = envelope(pointer, {"SQSLargePayloadSize": {"Type": "Number", "Value": "6"}})
    message = {"MessageId": "m1", "ReceiptHandle": "r", "Body": body}
    store = PayloadStore(BUCKET, client=s3)
    assert pointer_of(message) is not None
    resolved = resolve(message, store)
    notification = json.loads(resolved["Body"])
    assert notification["Message"] == "héllo"
    assert "MessageAttributes" not in notification
    assert notification["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:orders"
    assert "héllo" in resolved["Body"]  # written as text, not escaped
    assert json.loads(message["Body"])["Message"] == pointer  # the caller's message unchanged


def test_malformed_envelopes_fail_their_record_only_naming_the_message(
    clients: dict[str, Any],
) -> None:
    s3 = clients["s3"]
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"payload")
    size = {"ExtendedPayloadSize": {"Type": "Number", "Value": "7"}}
    good = json.dumps(
        [
            "software.amazon.payloadoffloading.PayloadS3Pointer",
            {"s3BucketName": BUCKET, "s3Key": "k"},
        ]
    )
    bodies = [
        ("no-pointer", envelope("plain text", size)),
        ("no-message", envelope(None, size)),
        ("not-json", envelope(good, size)[:-5]),
        ("fine", envelope(good, size)),
        ("plain", envelope("hello")),
        ("mentions", json.dumps({"note": "ExtendedPayloadSize is a name", "Type": "Other"})),
        # SNS writes the attributes into every notification: none, no pointer to resolve
        ("no-attribute", envelope(good)),
    ]
    seen: dict[str, str] = {}

    def record_function(record: SQSRecord) -> None:
        seen[record.message_id] = record.json_body.get("Message", "")

    batch = BatchProcessor(payloads=PayloadStore(BUCKET, client=s3)).process(
        sqs_event(bodies), record_function
    )
    assert batch.total == 7
    failed = {f.item_identifier: f for f in batch.failed}
    assert set(failed) == {"no-pointer", "no-message", "not-json"}
    assert all(f.code == "InvalidPointerError" for f in failed.values())
    assert all(repr(name) in str(f.error) for name, f in failed.items())
    assert all("payload" not in str(f.error).split(":", 1)[1] for f in failed.values())
    assert seen == {"fine": "payload", "plain": "hello", "mentions": "", "no-attribute": good}


def test_delete_after_deletes_objects_behind_envelopes_once_settled(
    clients: dict[str, Any],
) -> None:
    s3, sqs, sns = clients["s3"], clients["sqs"], clients["sns"]
    topic, url = subscribed_queue(sns, sqs, "settled")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, always=True, delete_after=True), client=s3)
    with SnsPublisher(topic, client=sns, policy=FakeClock().policy(), payloads=store) as sender:
        for n in range(4):
            sender.publish(json.dumps({"n": n}))
    assert len(objects(s3)) == 4

    def record_function(record: SQSRecord) -> None:
        if json.loads(record.json_body["Message"])["n"] == 2:
            raise ValueError("poison")

    bodies = [(m["MessageId"], m["Body"]) for m in received(sqs, url)]
    batch = BatchProcessor(payloads=store).process(sqs_event(bodies), record_function)
    assert batch.succeeded == 3 and len(batch.failed) == 1
    (left,) = objects(s3)  # the failed record's object stays for its next delivery
    failed_body = next(body for mid, body in bodies if mid == batch.failed[0].item_identifier)
    assert left in failed_body


def test_invalid_json_that_is_no_notification_passes_untouched(clients: dict[str, Any]) -> None:
    body = '{"ExtendedPayloadSize": 3, broken'
    message = {"messageId": "m", "body": body}
    assert resolve(message, PayloadStore(BUCKET, client=clients["s3"])) is message
    with pytest.raises(InvalidPointerError, match="'m'"):
        pointer_of({"messageId": "m", "body": '{"Type": "Notification", "ExtendedPayloadSize": ['})

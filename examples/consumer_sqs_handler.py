"""A Lambda consumer of a standard SQS queue: only the failed messages come back, later and later.

``CreateShipmentsFunction`` in ``examples/template.yaml``, on the shipment-requests queue with
``ReportBatchItemFailures``. Each message asks for the shipment of a paid order; the handler is
``resilient_aws.consumer.BatchProcessor`` around one record function:

* every message either succeeds or is named in ``batchItemFailures``: a malformed request comes
  back alone, the rest of the batch is deleted;
* each write to the shipments table is retried through the retry core (throttles, 5xx) within
  the invocation's deadline, and no message is started when the invocation is about to end;
* a failed message backs off by its receive count (``VisibilityBackoff``: about 15-30 s after
  the first receive, then 30-60 s, 1-2 minutes...) instead of the queue's fixed timeout, and
  reaches the queue's DLQ after ``maxReceiveCount`` receives;
* a request delivered twice finds its shipment there (a conditional put) and succeeds.

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/consumer_sqs_handler.py

It sends six requests (one of them twice, one without an address), hands the batch to the
handler while the shipments table throttles 30 % of the writes, and plays Lambda's poller.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from resilient_aws.consumer import BatchProcessor, SQSRecord, VisibilityBackoff
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=2.0)
SHIPMENTS_TABLE = os.environ.get("SHIPMENTS_TABLE", "shipments")


def create_shipment(dynamodb: Any, request: dict[str, Any]) -> bool:
    """Put the shipment of ``request`` (status ``created``); False if it was already there."""
    order_id, address = str(request["order_id"]), request.get("address")
    if not isinstance(address, str) or not address:
        raise ValueError("a shipment request needs an address")
    try:
        dynamodb.put_item(
            TableName=SHIPMENTS_TABLE,
            Item={
                "order_id": {"S": order_id},
                "status": {"S": "created"},
                "address": {"S": address},
                "updated_at": {"S": dt.datetime.now(dt.timezone.utc).isoformat()},
            },
            ConditionExpression="attribute_not_exists(order_id)",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise  # retried by the core if retryable, else the message is reported
        return False  # delivered again: the shipment exists, its status may have moved on
    return True


@dataclass(frozen=True)
class Consumer:
    dynamodb: Any
    handle: Callable[[dict[str, Any], Any], dict[str, Any]]


@functools.cache
def app() -> Consumer:
    """Built on the first invocation and reused while the Lambda container lives."""
    config = POLICY.botocore_config()
    dynamodb = boto3.client("dynamodb", config=config)
    processor = BatchProcessor(
        policy=POLICY,  # each record: throttles and 5xx retried, within the deadline
        margin_s=2.0,  # no record starts in the invocation's last 2 s
        visibility=VisibilityBackoff(
            base_s=30, max_s=900, client=boto3.client("sqs", config=config), policy=POLICY
        ),
        records="light",  # this function does not use Powertools' data classes
    )

    @processor.handler
    def create(record: SQSRecord) -> None:
        create_shipment(dynamodb, record.json_body)

    return Consumer(dynamodb, create)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch in, ``{"batchItemFailures": [...]}`` out: only the failed messages."""
    return app().handle(event, context)


# -- running it locally ---------------------------------------------------------------------------


def create_shipments_table(dynamodb: Any, name: str = "shipments") -> None:
    """``ShipmentsTable`` of template.yaml: key ``order_id``, a stream with both images (read by
    ``consumer_stream_handler.py``)."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def receive_event(sqs: Any, queue_url: str, max_messages: int = 10) -> dict[str, Any]:
    """Receive a batch the way Lambda's poller does (with every attribute) and build its event."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    arn = arn["Attributes"]["QueueArn"]
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=max_messages, AttributeNames=["All"]
    ).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": arn.split(":")[3],
            }
            for m in messages
        ]
    }


def delete_succeeded(sqs: Any, queue_url: str, event: dict[str, Any], response: Any) -> int:
    """What Lambda does with the response: delete every message it does not name."""
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    done = [
        {"Id": str(n), "ReceiptHandle": r["receiptHandle"]}
        for n, r in enumerate(event["Records"])
        if r["messageId"] not in failed
    ]
    for start in range(0, len(done), 10):
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done[start : start + 10])
    return len(done)


def shipment_request(order_id: str, address: str | None = "1 Main St") -> str:
    return json.dumps({"order_id": order_id, "address": address})


if __name__ == "__main__":
    import logging
    import sys

    from idempotent_sqs_handler import create_queue_with_dlq
    from moto import mock_aws

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="  log: %(message)s")
    POLICY = FakeClock().policy(POLICY)  # the retries' sleeps on a fake clock: no waiting
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        create_shipments_table(dynamodb)
        queue, dlq = create_queue_with_dlq(sqs, "shipment-requests", max_receive_count=3)
        bodies = [shipment_request(str(n)) for n in range(1, 5)]
        bodies += [shipment_request("2"), shipment_request("5", address=None)]
        for body in bodies:
            sqs.send_message(QueueUrl=queue, MessageBody=body)

        event = receive_event(sqs, queue)
        with chaos(
            app().dynamodb, throttle=0.3, seed=3
        ) as faults:  # the table throttles: the core retries
            response = handler(event, FakeLambdaContext(timeout_s=30))
        bad = json.loads(bodies[-1])
        failed = [r for r in event["Records"] if json.loads(r["body"]) == bad]
        print(f"batch of {len(event['Records'])}: {response}")
        print(f"the table throttled {faults.stats.throttled} writes: retried, none lost")
        assert response == {"batchItemFailures": [{"itemIdentifier": failed[0]["messageId"]}]}
        print(f"deleted {delete_succeeded(sqs, queue, event, response)} messages")

        # The failed request is invisible for 15-30 s now (not the queue's 30 s each time).
        assert receive_event(sqs, queue)["Records"] == []
        shipments = dynamodb.scan(TableName="shipments")["Items"]
        print("shipments:", sorted(item["order_id"]["S"] for item in shipments))
        assert len(shipments) == 4  # order 2 once, though it was requested twice

"""A Lambda consumer of a FIFO queue: a failure holds back its own group, the others go on.

``RecordStockCountsFunction`` in ``examples/template.yaml``, on the stock-counts FIFO queue with
``ReportBatchItemFailures``. Each message is a stock count of one SKU from a warehouse; the
message group is the SKU, so the counts of a SKU arrive in the order they were taken, and the
handler must apply them in that order: an older count applied after a newer one would put the
stock back in the past. ``BatchProcessor`` sees the queue is FIFO from the records and:

* when a count fails, reports it with every later message **of its group** in the batch, which
  never run (they come back after it, still in order); the other SKUs of the batch go on —
  Powertools' ``SqsFifoPartialProcessor`` stops the whole batch instead;
* retries each write through the retry core, and backs the failed group off by receive count
  (the skipped messages take the failed one's visibility timeout, as SQS holds the group until
  all of them are visible again);
* a count delivered twice is written twice with the same values: harmless, in order.

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/consumer_fifo_handler.py

Two SKUs are counted three times each; the second count of one of them is malformed: that SKU
stops at its first count, the other reaches its last.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from resilient_aws.consumer import BatchProcessor, SQSRecord, VisibilityBackoff
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=2.0)
STOCK_TABLE = os.environ.get("STOCK_TABLE", "stock")


def record_count(dynamodb: Any, count: dict[str, Any]) -> None:
    """Set the SKU's stock to the count's (``{"sku", "on_hand", "counted_at"}``)."""
    on_hand = count["on_hand"]
    if not isinstance(on_hand, int) or isinstance(on_hand, bool) or on_hand < 0:
        raise ValueError("a stock count is a whole number >= 0")
    dynamodb.update_item(
        TableName=STOCK_TABLE,
        Key={"sku": {"S": str(count["sku"])}},
        UpdateExpression="SET on_hand = :n, counted_at = :t",
        ExpressionAttributeValues={":n": {"N": str(on_hand)}, ":t": {"S": count["counted_at"]}},
    )


@dataclass(frozen=True)
class Consumer:
    dynamodb: Any
    handle: Callable[[dict[str, Any], Any], dict[str, Any]]


@functools.cache
def app() -> Consumer:
    """Built on the first invocation and reused while the Lambda container lives."""
    config = POLICY.botocore_config()
    dynamodb = boto3.client("dynamodb", config=config)
    # The same processor as for a standard queue: a record's MessageGroupId makes it FIFO.
    processor = BatchProcessor(
        policy=POLICY,
        visibility=VisibilityBackoff(
            base_s=10, max_s=300, client=boto3.client("sqs", config=config), policy=POLICY
        ),
        records="light",
    )

    @processor.handler
    def record(message: SQSRecord) -> None:
        record_count(dynamodb, message.json_body)

    return Consumer(dynamodb, record)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """FIFO batch in, ``{"batchItemFailures": [...]}`` out: the failed groups' rest."""
    return app().handle(event, context)


# -- running it locally ---------------------------------------------------------------------------


def create_stock_table(dynamodb: Any, name: str = "stock") -> None:
    """``StockTable`` of template.yaml: key ``sku``."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "sku", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "sku", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_fifo_queue_with_dlq(sqs: Any, name: str, max_receive_count: int = 5) -> tuple[str, str]:
    """``<name>.fifo`` (content-based deduplication), moving a message to ``<name>-dlq.fifo``
    after ``max_receive_count`` receives: a FIFO queue's DLQ is FIFO too."""
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    dlq = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": max_receive_count}
    attributes = {**fifo, "RedrivePolicy": json.dumps(policy)}
    queue = sqs.create_queue(QueueName=f"{name}.fifo", Attributes=attributes)["QueueUrl"]
    return queue, dlq


def send_count(sqs: Any, queue_url: str, sku: str, on_hand: Any, counted_at: str) -> None:
    body = json.dumps({"sku": sku, "on_hand": on_hand, "counted_at": counted_at})
    sqs.send_message(QueueUrl=queue_url, MessageBody=body, MessageGroupId=sku)


if __name__ == "__main__":
    from consumer_sqs_handler import delete_succeeded, receive_event
    from moto import mock_aws

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    POLICY = FakeClock().policy(POLICY)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        create_stock_table(dynamodb)
        queue, _ = create_fifo_queue_with_dlq(sqs, "stock-counts")
        counts = {"sku-a": [12, "eleven", 10], "sku-b": [5, 4, 3]}  # sku-a's second is malformed
        for n in range(3):
            for sku, values in counts.items():
                send_count(sqs, queue, sku, values[n], f"2024-05-0{n + 1}T08:00:00Z")

        event = receive_event(sqs, queue)
        with chaos(app().dynamodb, throttle=0.3, seed=5):
            response = handler(event, FakeLambdaContext(timeout_s=30))
        for r in event["Records"]:
            body = json.loads(r["body"])
            reported = {"itemIdentifier": r["messageId"]} in response["batchItemFailures"]
            print(f"  {body['sku']} {body['on_hand']!r:>8}: {'reported' if reported else 'ok'}")
        assert len(response["batchItemFailures"]) == 2  # sku-a's second count and its third
        delete_succeeded(sqs, queue, event, response)

        stock = {
            item["sku"]["S"]: int(item["on_hand"]["N"])
            for item in dynamodb.scan(TableName="stock")["Items"]
        }
        print("stock:", stock)
        assert stock == {"sku-a": 12, "sku-b": 3}  # sku-a waits for its second count

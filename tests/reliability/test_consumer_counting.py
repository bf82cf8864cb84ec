"""Every record accounted for: the consumer under chaos, batch after batch, until the queue drains.

A poller plays Lambda's event source mapping on moto SQS (a FIFO queue and a standard one):
receive up to 10, invoke, delete what the response does not name, let the rest come back after
the visibility the processor set. Record functions write to a DynamoDB table that ``chaos``
throttles, fails and resets; some records are poison; the visibility changes are partly
withheld. At the end every message is in the table (processed) or in the DLQ (poison), none
both, none missing; no record the response named had succeeded, no FIFO group ran out of order.
"""

from __future__ import annotations

import json
import random
from typing import Any

import boto3
import pytest

from resilient_aws.consumer import BatchProcessor, SQSRecord, VisibilityBackoff
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from resilient_aws.testing._moto_sqs import speed_up_moto_sqs

REGION = "us-east-1"
MESSAGES = 120
MAX_RECEIVES = 4


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_every_record_is_processed_or_dead_lettered_under_chaos(aws: None, fifo: bool) -> None:
    clock = FakeClock(seed=11)
    undo = speed_up_moto_sqs(clock.monotonic)
    try:
        _run(clock, fifo)
    finally:
        undo()


def _run(clock: FakeClock, fifo: bool) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)  # the record function's, faulted
    check = boto3.client("dynamodb", region_name=REGION)  # the test's own, never faulted
    dynamodb.create_table(
        TableName="processed",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    suffix = ".fifo" if fifo else ""
    extra = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    dlq = sqs.create_queue(QueueName=f"dead{suffix}", Attributes=extra)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": MAX_RECEIVES,
    }
    url = sqs.create_queue(
        QueueName=f"orders{suffix}",
        Attributes={**extra, "VisibilityTimeout": "30", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn = arn["Attributes"]["QueueArn"]

    rng = random.Random(5)
    poison = set(rng.sample(range(MESSAGES), 6))
    flaky = {n: 1 for n in rng.sample(range(MESSAGES), 15)}  # fail once, then succeed
    for n in range(MESSAGES):
        options: dict[str, Any] = {"MessageGroupId": f"g{n % 7}"} if fifo else {}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}), **options)

    ran: list[tuple[str, int]] = []  # (group, n) of the current batch, in the order run

    def record_function(record: SQSRecord) -> None:
        n = record.json_body["n"]
        if n in poison:
            raise ValueError("poison")
        if flaky.get(n):
            flaky[n] -= 1
            raise RuntimeError("flaky")
        dynamodb.put_item(TableName="processed", Item={"id": {"S": str(n)}})
        ran.append((record.attributes.message_group_id or "", n))  # once it succeeded

    processor = BatchProcessor(
        policy=clock.policy(max_attempts=12),
        visibility=VisibilityBackoff(base_s=10, max_s=120, client=sqs, rng=random.Random(2)),
        clock=clock.monotonic,
        records="light",
    )
    reported_after_success: list[int] = []
    invocations = 0
    with (
        chaos(dynamodb, throttle=0.1, error5xx=0.05, reset=0.03, seed=1),
        chaos(sqs, partial=0.3, seed=2, operations={"ChangeMessageVisibilityBatch"}),
    ):
        for _ in range(400):
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                if not _anything_in_flight(sqs, url):
                    break
                clock.advance(15)
                continue
            invocations += 1
            event = {"Records": [_record(m, arn) for m in messages]}
            before = _processed(check)
            ran.clear()
            response = processor.handler(record_function)(
                event, FakeLambdaContext(clock=clock.monotonic)
            )
            named = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            done = [m for m in messages if m["MessageId"] not in named]
            if fifo:
                _check_fifo_batch(messages, named, ran)
            for m in messages:
                n = json.loads(m["Body"])["n"]
                if m["MessageId"] in named and str(n) in _processed(check) - before:
                    reported_after_success.append(n)
            if done:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
        else:
            raise AssertionError("the queue never drained")

    in_table = {int(n) for n in _processed(check)}
    dead = set()
    while True:
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        for m in got:
            dead.add(json.loads(m["Body"])["n"])
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
    assert in_table | dead == set(range(MESSAGES))  # none lost
    assert not in_table & dead  # none both processed and dead-lettered
    if fifo:
        # a poison message holds back its group: the rest of it comes after the message dies
        assert poison <= dead
    else:
        assert dead == poison
    assert reported_after_success == []
    assert invocations > MESSAGES // 10


def _check_fifo_batch(
    messages: list[dict[str, Any]], named: set[str], ran: list[tuple[str, int]]
) -> None:
    """Within the batch, each group ran in order and stopped at its first reported record.

    (Across batches the order is the queue's: moto hands out a group's later message before an
    earlier one that became visible in the same instant, which SQS does not.)"""
    for group in {m["Attributes"]["MessageGroupId"] for m in messages}:
        in_group = [m for m in messages if m["Attributes"]["MessageGroupId"] == group]
        ok_prefix = []
        for m in in_group:
            if m["MessageId"] in named:
                break
            ok_prefix.append(json.loads(m["Body"])["n"])
        assert [n for g, n in ran if g == group][: len(ok_prefix)] == ok_prefix, group
        after_failure = in_group[len(ok_prefix) + 1 :]
        assert all(m["MessageId"] in named for m in after_failure), group


def _processed(dynamodb: Any) -> set[str]:
    items = dynamodb.scan(TableName="processed", ConsistentRead=True)["Items"]
    return {item["id"]["S"] for item in items}


def _anything_in_flight(sqs: Any, url: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return any(int(v) for v in attributes.values())


def _record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }

"""Every entry handed to the retry core is stored or reported, under every fault chaos can inject."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.retry import FailedEntry, RetryPolicy, classify_entry
from resilient_aws.testing import FakeClock, chaos

REGION = "us-east-1"
ALL_FAULTS = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _write_all(dynamodb: Any, policy: RetryPolicy, keys: list[str]) -> list[FailedEntry[str]]:
    def send(batch: list[str]) -> list[FailedEntry[str]]:
        response = dynamodb.batch_write_item(
            RequestItems={"t": [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in batch]}
        )
        code = classify_entry("dynamodb", "Unprocessed")
        return [
            FailedEntry(
                r["PutRequest"]["Item"]["pk"]["S"],
                r["PutRequest"]["Item"]["pk"]["S"],
                code.code,
                retryable=True,
            )
            for r in response.get("UnprocessedItems", {}).get("t", [])
        ]

    failed: list[FailedEntry[str]] = []
    for start in range(0, len(keys), 25):
        failed += policy.run_partial(
            send, keys[start : start + 25], entry_id=str, operation="BatchWriteItem"
        ).failed
    return failed


def _scan_keys(dynamodb: Any) -> list[str]:
    keys: list[str] = []
    kwargs: dict[str, Any] = {"TableName": "t"}
    while True:
        page = dynamodb.scan(**kwargs)
        keys += [item["pk"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return keys
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
def table(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dynamodb_writes_under_every_fault_lose_nothing(table: Any, seed: int) -> None:
    clock = FakeClock(seed=seed)
    keys = [f"k{i:05d}" for i in range(1500)]
    with chaos(table, lost_response=0.01, seed=seed, **ALL_FAULTS) as injected:
        failed = _write_all(table, clock.policy(max_attempts=25, max_delay=1.0), keys)
    stored = _scan_keys(table)
    assert len(stored) == len(set(stored))
    assert set(stored) <= set(keys), "nothing invented"
    assert set(stored) | {f.entry_id for f in failed} == set(keys), "nothing lost"
    assert failed == []
    assert injected.stats.withheld_entries > 300
    assert injected.stats.throttled > 0
    # withheld entries ride in full requests now: ~220 requests, where a 1% reset rate may draw
    # none; some whole-request fault besides throttling must have been met
    assert injected.stats.resets + injected.stats.errors_5xx + injected.stats.lost_responses > 0


def test_a_deadline_reports_what_it_left_undone(table: Any) -> None:
    clock = FakeClock(seed=4)
    keys = [f"k{i:04d}" for i in range(500)]
    policy = clock.policy(max_attempts=50, base_delay=0.1, max_delay=0.5).with_deadline(3.0)
    with chaos(table, partial=0.5, seed=4):
        failed = _write_all(table, policy, keys)
    stored = set(_scan_keys(table))
    reported = {f.entry_id for f in failed}
    assert failed, "the deadline should have cut the run short"
    assert all(f.gave_up == "deadline" for f in failed)
    assert stored | reported == set(keys)
    assert not stored & reported
    assert clock.now - 1000.0 <= 3.0


def _send_messages(
    sqs: Any, url: str, policy: RetryPolicy, bodies: list[str]
) -> list[FailedEntry[dict[str, str]]]:
    def send(batch: list[dict[str, str]]) -> list[FailedEntry[dict[str, str]]]:
        response = sqs.send_message_batch(QueueUrl=url, Entries=batch)
        by_id = {e["Id"]: e for e in batch}
        return [
            FailedEntry(
                by_id[f["Id"]],
                f["Id"],
                f["Code"],
                retryable=classify_entry("sqs", f["Code"], sender_fault=f["SenderFault"]).retryable,
            )
            for f in response.get("Failed", [])
        ]

    entries = [{"Id": f"m{i}", "MessageBody": body} for i, body in enumerate(bodies)]
    failed: list[FailedEntry[dict[str, str]]] = []
    for start in range(0, len(entries), 10):
        failed += policy.run_partial(
            send,
            entries[start : start + 10],
            entry_id=lambda e: e["Id"],
            operation="SendMessageBatch",
        ).failed
    return failed


def _drain(sqs: Any, url: str) -> list[str]:
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


def test_sqs_sends_under_faults_arrive_exactly_once(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    bodies = [f"body-{i}" for i in range(200)]
    clock = FakeClock(seed=5)
    with chaos(sqs, seed=5, **ALL_FAULTS) as injected:
        failed = _send_messages(sqs, url, clock.policy(max_attempts=25), bodies)
    assert failed == []
    assert injected.stats.withheld_entries > 20
    assert sorted(_drain(sqs, url)) == sorted(bodies)


def test_sqs_lost_responses_can_duplicate_but_never_lose(aws: None) -> None:
    # A send whose response is lost was applied; retrying it is the only way not to lose it,
    # and SQS standard queues are at-least-once anyway: consumers de-duplicate (see idempotency).
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    bodies = [f"body-{i}" for i in range(100)]
    with chaos(sqs, lost_response=0.2, seed=1) as injected:
        failed = _send_messages(sqs, url, FakeClock(seed=6).policy(max_attempts=25), bodies)
    arrived = _drain(sqs, url)
    assert failed == []
    assert set(arrived) == set(bodies)
    # each lost response was a whole batch of 10 applied once more than asked
    assert len(arrived) - len(bodies) == injected.stats.lost_responses * 10 > 0


def test_kinesis_records_under_faults_are_all_in_the_stream(aws: None) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=2)
    records = [{"Data": f"r{i}".encode(), "PartitionKey": f"p{i % 7}"} for i in range(1000)]

    def send(batch: list[dict[str, Any]]) -> list[FailedEntry[dict[str, Any]]]:
        answers = kinesis.put_records(StreamName="s", Records=batch)["Records"]
        return [
            FailedEntry(
                record,
                record["Data"].decode(),
                a["ErrorCode"],
                retryable=classify_entry("kinesis", a["ErrorCode"]).retryable,
            )
            for record, a in zip(batch, answers, strict=False)
            if "ErrorCode" in a
        ]

    policy = FakeClock(seed=7).policy(max_attempts=25)
    with chaos(kinesis, seed=7, **ALL_FAULTS):
        failed = [
            f
            for start in range(0, 1000, 500)
            for f in policy.run_partial(
                send,
                records[start : start + 500],
                entry_id=lambda r: r["Data"].decode(),
                operation="PutRecords",
            ).failed
        ]
    assert failed == []
    stored: list[bytes] = []
    for shard in kinesis.list_shards(StreamName="s")["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName="s", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        stored += [
            r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]
        ]
    assert sorted(stored) == sorted(r["Data"] for r in records)

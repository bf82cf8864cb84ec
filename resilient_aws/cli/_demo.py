"""``resilient-aws demo``: AWS under load, simulated, and nothing lost."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from resilient_aws.retry import FailedEntry, RetryEvent, RetryPolicy, classify_entry
from resilient_aws.testing import MotoServer, chaos
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

TABLE = "resilient-aws-demo-orders"
QUEUE = "resilient-aws-demo-events"
FAULTS: dict[str, Any] = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01}


def run_demo(*, items: int, messages: int, seed: int, endpoint_url: str | None) -> int:
    """Run the demo; return the process exit code (0 when nothing was lost)."""
    import boto3

    with _endpoint(endpoint_url) as url:
        options: dict[str, Any] = {**DUMMY_CREDENTIALS, "endpoint_url": url}
        dynamodb = boto3.client("dynamodb", **options)
        sqs = boto3.client("sqs", **options)
        events: Counter[str] = Counter()

        def count(event: RetryEvent) -> None:
            events[event.kind] += 1
            events["entries re-sent" if event.kind == "retry" else "_"] += event.entries

        policy = RetryPolicy(max_attempts=12, base_delay=0.005, max_delay=0.2, listeners=(count,))
        print(f"resilient-aws demo against {url}")
        print(f"faults injected on every call: {FAULTS}, seed {seed}\n")

        _create_table(dynamodb, policy)
        queue_url = policy.call(sqs.create_queue, QueueName=QUEUE)["QueueUrl"]

        started = time.perf_counter()
        with chaos(dynamodb, seed=seed, **FAULTS) as dynamo_chaos:
            failed = _write_items(dynamodb, policy, items)
            stored = _scan_ids(dynamodb, policy)
        print(
            f"DynamoDB: wrote {items} items in {len(range(0, items, 25))} BatchWriteItem batches "
            f"({time.perf_counter() - started:.1f}s); chaos injected {dynamo_chaos.stats.faults} "
            f"faults, withheld {dynamo_chaos.stats.withheld_entries} entries"
        )

        with chaos(sqs, seed=seed, **FAULTS) as sqs_chaos:
            failed += _send_messages(sqs, policy, queue_url, messages)
        depth = int(
            policy.call(
                sqs.get_queue_attributes,
                QueueUrl=queue_url,
                AttributeNames=["ApproximateNumberOfMessages"],
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        print(
            f"SQS: sent {messages} messages in SendMessageBatch calls; chaos injected "
            f"{sqs_chaos.stats.faults} faults, withheld {sqs_chaos.stats.withheld_entries} entries"
        )
        print(
            f"retry core: {events['retry']} retries, {events['entries re-sent']} entries re-sent, "
            f"{events['give_up']} gave up"
        )

        expected = set(_order_ids(items))
        missing = expected - stored
        invented = stored - expected
        print(f"\nread back: {len(stored)} of {items} items, {depth} of {messages} messages")
        if failed:
            print(
                f"reported as failed (not lost): {len(failed)}: {[f.entry_id for f in failed][:10]}"
            )
        lost = len(missing) + (messages - depth) - len(failed)
        if missing or invented or depth != messages:
            print(f"MISMATCH: {len(missing)} missing, {len(invented)} invented, queue {depth}")
            return 1 if lost or invented else 0
        print("nothing lost, nothing invented.")
        return 0


@contextlib.contextmanager
def _endpoint(endpoint_url: str | None) -> Iterator[str]:
    if endpoint_url:
        yield endpoint_url
        return
    try:
        server = MotoServer()
    except ImportError:
        raise SystemExit(
            "the demo needs moto: pip install 'resilient-aws[demo]' (or pass --endpoint-url)"
        ) from None
    with server:
        yield server.endpoint_url


def _create_table(dynamodb: Any, policy: RetryPolicy) -> None:
    existing = policy.call(dynamodb.list_tables)["TableNames"]
    if TABLE in existing:
        policy.call(dynamodb.delete_table, TableName=TABLE)
    policy.call(
        dynamodb.create_table,
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _order_ids(items: int) -> list[str]:
    return [f"order-{i:06d}" for i in range(items)]


def _write_items(dynamodb: Any, policy: RetryPolicy, items: int) -> list[FailedEntry[Any]]:
    requests = [
        {"PutRequest": {"Item": {"pk": {"S": pk}, "amount": {"N": str(i % 97)}}}}
        for i, pk in enumerate(_order_ids(items))
    ]

    def send(batch: list[dict[str, Any]]) -> list[FailedEntry[dict[str, Any]]]:
        response = dynamodb.batch_write_item(RequestItems={TABLE: batch})
        unprocessed = response.get("UnprocessedItems", {}).get(TABLE, [])
        by_key = {r["PutRequest"]["Item"]["pk"]["S"]: r for r in batch}
        verdict = classify_entry("dynamodb", "Unprocessed")
        return [
            FailedEntry(
                entry=by_key[r["PutRequest"]["Item"]["pk"]["S"]],
                entry_id=r["PutRequest"]["Item"]["pk"]["S"],
                code=verdict.code,
                retryable=verdict.retryable,
            )
            for r in unprocessed
        ]

    failed: list[FailedEntry[Any]] = []
    for start in range(0, len(requests), 25):
        outcome = policy.run_partial(
            send,
            requests[start : start + 25],
            entry_id=lambda r: str(r["PutRequest"]["Item"]["pk"]["S"]),
            operation="BatchWriteItem",
        )
        failed.extend(outcome.failed)
    return failed


def _scan_ids(dynamodb: Any, policy: RetryPolicy) -> set[str]:
    ids: set[str] = set()
    start_key: dict[str, Any] | None = None
    while True:
        kwargs: dict[str, Any] = {"TableName": TABLE, "Limit": 500}
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        page = policy.call(dynamodb.scan, **kwargs)
        ids.update(item["pk"]["S"] for item in page["Items"])
        start_key = page.get("LastEvaluatedKey")
        if not start_key:
            return ids


def _send_messages(
    sqs: Any, policy: RetryPolicy, queue_url: str, messages: int
) -> list[FailedEntry[Any]]:
    entries = [{"Id": f"m{i}", "MessageBody": f'{{"n": {i}}}'} for i in range(messages)]

    def send(batch: list[dict[str, Any]]) -> list[FailedEntry[dict[str, Any]]]:
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
        by_id = {e["Id"]: e for e in batch}
        failures = []
        for failed in response.get("Failed", []):
            verdict = classify_entry("sqs", failed["Code"], sender_fault=failed["SenderFault"])
            failures.append(
                FailedEntry(
                    entry=by_id[failed["Id"]],
                    entry_id=failed["Id"],
                    code=verdict.code,
                    message=failed.get("Message", ""),
                    retryable=verdict.retryable,
                )
            )
        return failures

    failed: list[FailedEntry[Any]] = []
    for start in range(0, len(entries), 10):
        outcome = policy.run_partial(
            send,
            entries[start : start + 10],
            entry_id=lambda e: str(e["Id"]),
            operation="SendMessageBatch",
        )
        failed.extend(outcome.failed)
    return failed

"""``resilient-aws demo``: AWS under load, simulated, and nothing lost."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from resilient_aws.batch import SqsSender
from resilient_aws.cli._demo_more import (
    create_table,
    demo_idempotency,
    demo_outbox,
    demo_redrive,
)
from resilient_aws.dynamodb import BatchWriter, batch_get, scan
from resilient_aws.results import BatchResult
from resilient_aws.retry import RetryEvent, RetryPolicy
from resilient_aws.testing import MotoServer, chaos
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

TABLE = "resilient-aws-demo-orders"
QUEUE = "resilient-aws-demo-events"
FAULTS: dict[str, Any] = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01}


def run_demo(
    *, items: int, messages: int, seed: int, endpoint_url: str | None, orders: int = 100
) -> int:
    """Run the demo; return the process exit code (0 when nothing was lost)."""
    import boto3

    with _endpoint(endpoint_url) as url:
        options: dict[str, Any] = {**DUMMY_CREDENTIALS, "endpoint_url": url}
        dynamodb = boto3.client("dynamodb", **options)
        sqs = boto3.client("sqs", **options)
        events: Counter[str] = Counter()

        def count(event: RetryEvent) -> None:
            events[event.kind] += 1

        policy = RetryPolicy(max_attempts=12, base_delay=0.005, max_delay=0.2, listeners=(count,))
        print(f"resilient-aws demo against {url}")
        print(f"faults injected on every call: {FAULTS}, seed {seed}\n")

        create_table(dynamodb, policy, TABLE, [("pk", "S")])
        queue_url = policy.call(sqs.create_queue, QueueName=QUEUE)["QueueUrl"]
        order_ids = _order_ids(items)

        started = time.perf_counter()
        with chaos(dynamodb, seed=seed, **FAULTS) as dynamo_chaos:
            written = _write_items(dynamodb, policy, order_ids)
            stored = {item["pk"] for item in scan(TABLE, client=dynamodb, policy=policy)}
            fetched = batch_get(
                TABLE,
                [{"pk": pk} for pk in order_ids],
                client=dynamodb,
                policy=policy,
                concurrency=4,
                raise_on_failure=False,
            )
        print(
            f"DynamoDB: BatchWriter wrote {written.succeeded}/{items} items in "
            f"{written.requests} requests ({written.resent} entries re-sent); scan read "
            f"{len(stored)}, batch_get found {len(fetched.items)} "
            f"({time.perf_counter() - started:.1f}s)\n"
            f"          chaos injected {dynamo_chaos.stats.faults} faults, withheld "
            f"{dynamo_chaos.stats.withheld_entries} entries"
        )

        with chaos(sqs, seed=seed, **FAULTS) as sqs_chaos:
            sent = _send_messages(sqs, policy, queue_url, messages)
        unsent = sent.failed
        depth = int(
            policy.call(
                sqs.get_queue_attributes,
                QueueUrl=queue_url,
                AttributeNames=["ApproximateNumberOfMessages"],
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        print(
            f"SQS: SqsSender sent {sent.succeeded}/{messages} messages in {sent.requests} requests "
            f"({sent.resent} entries re-sent); chaos injected {sqs_chaos.stats.faults} faults, "
            f"withheld {sqs_chaos.stats.withheld_entries} entries"
        )

        acts_ok = demo_idempotency(dynamodb, policy, orders=orders, seed=seed)
        acts_ok &= demo_outbox(dynamodb, sqs, policy, orders=orders, seed=seed)
        acts_ok &= demo_redrive(sqs, policy, messages=messages, seed=seed)
        print(
            f"retry core: {events['retry']} retries, {events['recovered']} recovered, "
            f"{events['give_up']} gave up"
        )

        failed = [*written.failed, *fetched.failed, *unsent]
        if failed:
            shown = ", ".join(f"{f.entry_id} ({f.code})" for f in failed[:10])
            print(f"reported as failed, with their errors: {len(failed)}: {shown}")
        reported = {f.entry["pk"] for f in written.failed}
        unreported = set(order_ids) - stored - reported
        invented = stored - set(order_ids)
        print(f"\nread back: {len(stored)} of {items} items, {depth} of {messages} messages")
        if unreported or invented or depth + len(unsent) < messages:
            print(
                f"LOST: {len(unreported)} items neither stored nor reported, {len(invented)} invented"
            )
            return 1
        if not acts_ok:
            print("LOST or DOUBLED: see the idempotency, outbox and redrive lines above")
            return 1
        print("nothing lost, nothing invented" + (": every failure reported." if failed else "."))
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


def _order_ids(items: int) -> list[str]:
    return [f"order-{i:06d}" for i in range(items)]


def _write_items(dynamodb: Any, policy: RetryPolicy, order_ids: list[str]) -> BatchResult[Any]:
    writer = BatchWriter(
        TABLE, client=dynamodb, policy=policy, concurrency=4, raise_on_failure=False
    )
    with writer:
        for i, pk in enumerate(order_ids):
            writer.put({"pk": pk, "amount": i % 97 / 4, "currency": "EUR"})
    return writer.result


def _send_messages(
    sqs: Any, policy: RetryPolicy, queue_url: str, messages: int
) -> BatchResult[Any]:
    sender = SqsSender(queue_url, client=sqs, policy=policy, concurrency=4, raise_on_failure=False)
    with sender:
        for i in range(messages):
            sender.send_message(f'{{"n": {i}}}', id=f"message-{i}")
    return sender.result

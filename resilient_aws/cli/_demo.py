"""``resilient-aws demo``: AWS under load, simulated, and nothing lost."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from resilient_aws.batch import SqsSender
from resilient_aws.cli._demo_more import (
    DemoNames,
    clean_up,
    create_table,
    demo_idempotency,
    demo_outbox,
    demo_redrive,
    drain,
)
from resilient_aws.cli._exit import USAGE
from resilient_aws.dynamodb import BatchWriter, batch_get, scan
from resilient_aws.results import BatchResult
from resilient_aws.retry import RetryEvent, RetryPolicy
from resilient_aws.testing import MotoServer, chaos
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

FAULTS: dict[str, Any] = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01}


class _MotoMissingError(Exception):
    """moto is not installed and no --endpoint-url was given."""


def run_demo(
    *, items: int, messages: int, seed: int, endpoint_url: str | None, orders: int = 100
) -> int:
    """Run the demo; return the process exit code: 0 when nothing was lost nor invented, 1 when
    the verdict is false, 2 when it cannot run (moto missing and no ``--endpoint-url``)."""
    try:
        with _endpoint(endpoint_url) as url:
            return _run(url, items=items, messages=messages, seed=seed, orders=orders)
    except _MotoMissingError as missing:
        sys.stderr.write(f"resilient-aws demo: error: {missing}\n")
        return USAGE


def _run(url: str, *, items: int, messages: int, seed: int, orders: int) -> int:
    import boto3

    options: dict[str, Any] = {**DUMMY_CREDENTIALS, "endpoint_url": url}
    dynamodb = boto3.client("dynamodb", **options)
    sqs = boto3.client("sqs", **options)
    events: Counter[str] = Counter()

    def count(event: RetryEvent) -> None:
        events[event.kind] += 1

    policy = RetryPolicy(max_attempts=12, base_delay=0.005, max_delay=0.2, listeners=(count,))
    names = DemoNames.fresh()  # this run's own tables and queues: nothing of an earlier run
    print(f"resilient-aws demo against {url} (run {names.run})")
    print(f"faults injected on every call: {FAULTS}, seed {seed}\n")
    try:
        return _acts(dynamodb, sqs, policy, names, events, items, messages, seed, orders)
    finally:
        clean_up(dynamodb, sqs, names)


def _acts(
    dynamodb: Any,
    sqs: Any,
    policy: RetryPolicy,
    names: DemoNames,
    events: Counter[str],
    items: int,
    messages: int,
    seed: int,
    orders: int,
) -> int:
    create_table(dynamodb, policy, names.table, [("pk", "S")])
    queue_url = policy.call(sqs.create_queue, QueueName=names.queue)["QueueUrl"]
    order_ids = _order_ids(items)

    started = time.perf_counter()
    with chaos(dynamodb, seed=seed, **FAULTS) as dynamo_chaos:
        written = _write_items(dynamodb, policy, names.table, order_ids)
        stored = [item["pk"] for item in scan(names.table, client=dynamodb, policy=policy)]
        fetched = batch_get(
            names.table,
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
    print(
        f"SQS: SqsSender sent {sent.succeeded}/{messages} messages in {sent.requests} requests "
        f"({sent.resent} entries re-sent); chaos injected {sqs_chaos.stats.faults} faults, "
        f"withheld {sqs_chaos.stats.withheld_entries} entries"
    )
    # What the queue holds, read back and counted both ways: none missing, none extra.
    received = [json.loads(body).get("n") for body in drain(sqs, queue_url, policy)]

    acts_ok = demo_idempotency(dynamodb, policy, names, orders=orders, seed=seed)
    acts_ok &= demo_outbox(dynamodb, sqs, policy, names, orders=orders, seed=seed)
    acts_ok &= demo_redrive(sqs, policy, names, messages=messages, seed=seed)
    print(
        f"retry core: {events['retry']} retries, {events['recovered']} recovered, "
        f"{events['give_up']} gave up"
    )

    failed = [*written.failed, *fetched.failed, *sent.failed]
    if failed:
        shown = ", ".join(f"{f.entry_id} ({f.code})" for f in failed[:10])
        print(f"reported as failed, with their errors: {len(failed)}: {shown}")
    items_lost, items_extra = _compare(
        order_ids, stored, reported={f.entry["pk"] for f in written.failed}
    )
    messages_lost, messages_extra = _compare(
        list(range(messages)), received, reported={_message_number(f) for f in sent.failed}
    )
    print(f"\nread back: {len(stored)} of {items} items, {len(received)} of {messages} messages")
    if items_lost or items_extra or messages_lost or messages_extra:
        print(
            f"LOST: {items_lost} items and {messages_lost} messages neither stored nor reported; "
            f"INVENTED or DOUBLED: {items_extra} items and {messages_extra} messages"
        )
        return 1
    if not acts_ok:
        print("LOST or DOUBLED: see the idempotency, outbox and redrive lines above")
        return 1
    print("nothing lost, nothing invented" + (": every failure reported." if failed else "."))
    return 0


def _compare(expected: list[Any], found: list[Any], *, reported: set[Any]) -> tuple[int, int]:
    """How many expected values are missing without having been reported as failed, and how
    many values were found that were never sent, or found more than once."""
    wanted = set(expected)
    counts = Counter(found)
    missing = len(wanted - set(counts) - reported)
    extra = sum(n for value, n in counts.items() if value not in wanted)
    extra += sum(n - 1 for value, n in counts.items() if value in wanted and n > 1)
    return missing, extra


def _message_number(failure: Any) -> Any:
    entry_id = str(failure.entry_id or "")
    number = entry_id.rpartition("-")[2]
    return int(number) if number.isdigit() else entry_id


@contextlib.contextmanager
def _endpoint(endpoint_url: str | None) -> Iterator[str]:
    if endpoint_url:
        yield endpoint_url
        return
    try:
        server = MotoServer()
    except ImportError:
        raise _MotoMissingError(
            "the demo needs moto: pip install 'resilient-aws[demo]' (or pass --endpoint-url)"
        ) from None
    with server:
        yield server.endpoint_url


def _order_ids(items: int) -> list[str]:
    return [f"order-{i:06d}" for i in range(items)]


def _write_items(
    dynamodb: Any, policy: RetryPolicy, table: str, order_ids: list[str]
) -> BatchResult[Any]:
    writer = BatchWriter(
        table, client=dynamodb, policy=policy, concurrency=4, raise_on_failure=False
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

"""The demo's later acts: idempotency, the transactional outbox and a DLQ redrive, each under
the same injected faults, each counting that nothing was lost, doubled or invented."""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import chaos


@dataclass(frozen=True)
class DemoNames:
    """The tables and queues of one run: fresh names, so that a second run against the same
    server counts only what it wrote itself (an earlier run's messages are not its own)."""

    run: str
    table: str
    queue: str
    idempotency_table: str
    outbox_table: str
    events_queue: str
    work_queue: str
    dlq: str

    @classmethod
    def fresh(cls) -> DemoNames:
        run = secrets.token_hex(4)
        prefix = "resilient-aws-demo"
        return cls(
            run=run,
            table=f"{prefix}-orders-{run}",
            queue=f"{prefix}-events-{run}",
            idempotency_table=f"{prefix}-idempotency-{run}",
            outbox_table=f"{prefix}-outbox-{run}",
            events_queue=f"{prefix}-order-events-{run}.fifo",
            work_queue=f"{prefix}-work-{run}",
            dlq=f"{prefix}-work-dlq-{run}",
        )

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, self.idempotency_table, self.outbox_table)

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.queue, self.events_queue, self.work_queue, self.dlq)


def clean_up(dynamodb: Any, sqs: Any, names: DemoNames) -> None:
    """Delete the run's tables and queues (best effort: a server shared by runs stays small)."""
    for table in names.tables:
        with contextlib.suppress(Exception):  # never created, or the server is gone
            dynamodb.delete_table(TableName=table)
    for queue in names.queues:
        with contextlib.suppress(Exception):
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"])


# No "partial" here: these acts make single calls (and their own batches go through the
# batch engine, already shown); whole-call faults are what they must survive.
CALL_FAULTS: dict[str, Any] = {"throttle": 0.1, "error5xx": 0.03, "reset": 0.02}


def demo_idempotency(
    dynamodb: Any, policy: RetryPolicy, names: DemoNames, *, orders: int, seed: int
) -> bool:
    """Every order delivered three times; each charged once."""
    from resilient_aws.idempotency import IdempotencyStore, idempotent

    create_table(dynamodb, policy, names.idempotency_table, [("id", "S")])
    charged: list[str] = []

    @idempotent(
        IdempotencyStore(names.idempotency_table, client=dynamodb, policy=policy),
        key="id",
        key_prefix="demo-charge",
    )
    def charge(order: dict[str, Any]) -> dict[str, Any]:
        charged.append(order["id"])
        return {"charged": order["id"], "amount": order["amount"]}

    deliveries = [{"id": f"order-{i:04d}", "amount": i} for i in range(orders)] * 3
    with chaos(dynamodb, seed=seed, **CALL_FAULTS) as faults:
        answers = [charge(order) for order in deliveries]
    doubled = len(charged) - len(set(charged))
    consistent = all(
        a == {"charged": d["id"], "amount": d["amount"]}
        for a, d in zip(answers, deliveries, strict=True)
    )
    print(
        f"idempotency: {len(deliveries)} deliveries of {orders} orders -> {len(charged)} charges, "
        f"{doubled} doubled; chaos injected {faults.stats.faults} faults"
    )
    return len(set(charged)) == orders and doubled == 0 and consistent


def demo_outbox(
    dynamodb: Any, sqs: Any, policy: RetryPolicy, names: DemoNames, *, orders: int, seed: int
) -> bool:
    """Orders and their events in one transaction each; a sweep publishes them, in order."""
    from resilient_aws.dynamodb import scan
    from resilient_aws.errors import ResilientAWSError
    from resilient_aws.outbox import Outbox, OutboxEvent, OutboxSweeper, Put, SqsTarget

    _create_outbox_table(dynamodb, policy, names.outbox_table)
    queue = policy.call(
        sqs.create_queue,
        QueueName=names.events_queue,
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    outbox = Outbox(names.outbox_table, client=dynamodb, policy=policy)
    refused = 0
    with chaos(dynamodb, seed=seed, **CALL_FAULTS) as faults:
        for i in range(orders):
            aggregate = f"customer-{i % 10}"
            try:
                outbox.write(
                    puts=[Put({"pk": f"order#{i:04d}", "sk": "order", "customer": aggregate})],
                    events=[OutboxEvent("OrderPlaced", aggregate, {"order": i}, sequence=i)],
                )
            except ResilientAWSError:
                refused += 1  # reported to the caller: no order, no event
        report = OutboxSweeper(outbox, SqsTarget(queue, client=sqs, policy=policy), grace_s=0).run()
    received = [json.loads(body) for body in drain(sqs, queue, policy)]
    sequences: dict[str, list[int]] = {}
    for event in received:
        sequences.setdefault(event["aggregate_id"], []).append(event["sequence"])
    in_order = all(s == sorted(s) for s in sequences.values())
    # Ground truth is the table: a write whose response was lost may have committed all the
    # same, and then its order and its event are both there.
    items = list(scan(names.outbox_table, client=dynamodb, policy=policy))
    orders_stored = sum(item["sk"] == "order" for item in items)
    events_stored = {item["outbox_event_id"] for item in items if "outbox_event_id" in item}
    print(
        f"outbox: {orders_stored} orders stored, each with its event in one transaction "
        f"({refused} writes reported as failed); the sweeper published "
        f"{len(report.delivered)}, {len(received)} arrived, in order per customer: {in_order}; "
        f"chaos injected {faults.stats.faults} faults"
    )
    return (
        {event["event_id"] for event in received} == events_stored
        and len(received) == len(events_stored)  # none twice
        and len(events_stored) == orders_stored
        and in_order
    )


def demo_redrive(
    sqs: Any, policy: RetryPolicy, names: DemoNames, *, messages: int, seed: int
) -> bool:
    """A DLQ full of messages moved back to its source queue; deleted only once copied."""
    from resilient_aws.redrive import redrive_sqs

    dlq = policy.call(sqs.create_queue, QueueName=names.dlq)["QueueUrl"]
    dlq_arn = policy.call(sqs.get_queue_attributes, QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive_policy = {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": 3,
    }
    work = policy.call(
        sqs.create_queue,
        QueueName=names.work_queue,
        Attributes={"RedrivePolicy": json.dumps(redrive_policy)},
    )["QueueUrl"]
    for start in range(0, messages, 10):
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"job": start + n})}
            for n in range(min(10, messages - start))
        ]
        policy.call(sqs.send_message_batch, QueueUrl=dlq, Entries=entries)
    with chaos(sqs, seed=seed, partial=0.3, **CALL_FAULTS) as faults:
        report = redrive_sqs(dlq, client=sqs, policy=policy, visibility_timeout=30)
    jobs = [json.loads(body)["job"] for body in drain(sqs, work, policy)]
    back = set(jobs)
    left = len(drain(sqs, dlq, policy))
    print(
        f"redrive: {report}; {len(back)} of {messages} jobs back in the work queue, {left} left "
        f"in the DLQ; chaos injected {faults.stats.faults} faults, withheld "
        f"{faults.stats.withheld_entries} entries"
    )
    # both directions: every job back, none twice, none that was never in the DLQ
    return back == set(range(messages)) and len(jobs) == messages and (left == 0 or not report.ok)


def drain(sqs: Any, queue: str, policy: RetryPolicy) -> list[str]:
    """Receive and delete every message of the queue; their bodies."""
    bodies: list[str] = []
    while True:
        messages = policy.call(
            sqs.receive_message, QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]
        policy.call(
            sqs.delete_message_batch,
            QueueUrl=queue,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
            ],
        )


def create_table(
    dynamodb: Any, policy: RetryPolicy, name: str, keys: list[tuple[str, str]], **extra: Any
) -> None:
    """A fresh on-demand table (an earlier run's is deleted first): hash key, then range key."""
    if name in policy.call(dynamodb.list_tables)["TableNames"]:
        policy.call(dynamodb.delete_table, TableName=name)
    definitions = {name: kind for name, kind in keys}
    definitions.update(extra.pop("attributes", {}))
    policy.call(
        dynamodb.create_table,
        TableName=name,
        KeySchema=[
            {"AttributeName": key, "KeyType": "HASH" if n == 0 else "RANGE"}
            for n, (key, _) in enumerate(keys)
        ],
        AttributeDefinitions=[
            {"AttributeName": key, "AttributeType": kind} for key, kind in definitions.items()
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def _create_outbox_table(dynamodb: Any, policy: RetryPolicy, name: str) -> None:
    """The outbox table of docs/outbox.md: the sparse pending index the sweeper reads."""
    create_table(
        dynamodb,
        policy,
        name,
        [("pk", "S"), ("sk", "S")],
        attributes={"outbox_pending_aggregate": "S", "outbox_sequence": "N"},
        GlobalSecondaryIndexes=[
            {
                "IndexName": "outbox-pending",
                "KeySchema": [
                    {"AttributeName": "outbox_pending_aggregate", "KeyType": "HASH"},
                    {"AttributeName": "outbox_sequence", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )

"""The outbox sweeper: a scheduled Lambda function that delivers what the relay did not.

``OutboxSweeperFunction`` in ``examples/template.yaml`` runs every 5 minutes. It finds events
still pending ``SWEEP_GRACE_S`` seconds after they were written — the relay failed on them, the
stream lost them or they outlived its 24 hours — and publishes them in order per order through
``OutboxSweeper.handler``, stopping a second before the invocation's timeout.

An event that failed ``max_attempts`` times is *blocked* (a poison event: it holds back the
later events of its order, and only those). The function logs the blocked events; once the
cause is fixed, invoke it with ``{"unblock": ["order#3"]}`` and it delivers them and what waited
behind them, in order.

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/outbox_sweeper_handler.py
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3

from resilient_aws.outbox import Outbox, OutboxSweeper, SqsTarget
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)


@functools.cache
def app() -> OutboxSweeper:
    """Built on the first invocation and reused while the Lambda container lives."""
    config = POLICY.botocore_config()
    outbox = Outbox(
        os.environ.get("ORDERS_TABLE", "orders"),
        client=boto3.client("dynamodb", config=config),
        policy=POLICY,
    )
    target = SqsTarget(
        os.environ["EVENTS_QUEUE_URL"], client=boto3.client("sqs", config=config), policy=POLICY
    )
    return OutboxSweeper(outbox, target, grace_s=float(os.environ.get("SWEEP_GRACE_S", "300")))


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """A schedule's event (or ``{"unblock": [aggregate ids]}``) in, what became of every event
    found out: delivered, failed, blocked, held, unattempted... (``DeliveryReport.summary``)."""
    sweeper = app()
    unblocked = [
        event_id
        for aggregate in event.get("unblock", [])
        for event_id in sweeper.outbox.unblock(aggregate)
    ]
    summary = sweeper.handler(event, context)
    for stored in sweeper.outbox.blocked():
        print(f"blocked: {stored.event.describe()} after {stored.attempts} attempts")
    return {**summary, "unblocked": len(unblocked)}


if __name__ == "__main__":
    from idempotent_sqs_handler import create_queue_with_dlq
    from moto import mock_aws
    from outbox_api_handler import create_orders_table, http_event
    from outbox_api_handler import handler as orders_api

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    # The demo's retries sleep on a fake clock: the same decisions, without the waiting.
    POLICY = FakeClock().policy(POLICY)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["SWEEP_GRACE_S"] = "0"  # sweep at once; in production, leave the relay its time
    with mock_aws():
        create_orders_table(boto3.client("dynamodb"))
        sqs = boto3.client("sqs")
        queue, _ = create_queue_with_dlq(sqs, "order-events")
        os.environ["EVENTS_QUEUE_URL"] = queue
        context = FakeLambdaContext(timeout_s=300)

        def place(order_id: str) -> None:
            order = {"order_id": order_id, "customer": "ada", "total": 20}
            assert orders_api(http_event("POST /orders", order), context)["statusCode"] == 201

        def sweep(event: dict[str, Any], what: str) -> None:
            summary = handler(event, context)
            print(f"{what}:", {name: count for name, count in summary.items() if count})

        # The stream lost these (no relay ran): the sweeper delivers them.
        place("1")
        place("2")
        sweep({}, "sweep")

        # A poison event: the queue refuses order 3's event on every sweep until it is blocked.
        place("3")
        with chaos(app().target.client, partial=1.0, seed=1):
            for _ in range(app().outbox.max_attempts):
                sweep({}, "sweep, queue refusing")
        assert [s.event.aggregate_id for s in app().outbox.blocked()] == ["order#3"]

        # Fixed: an operator invokes the function with the order to unblock.
        sweep({"unblock": ["order#3"]}, "unblock and sweep")
        delivered = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        print(f"{len(delivered)} events on the queue, {len(app().outbox.pending())} pending")
        assert len(delivered) == 3
        assert app().outbox.pending() == []

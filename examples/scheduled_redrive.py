"""DLQ redrive on a schedule: failed order events get another chance, poison ones stop cycling.

``RedriveFunction`` in ``examples/template.yaml`` runs every hour. It moves the messages of the
order-events DLQ back to the order-events queue with ``redrive_sqs``: received in batches,
re-sent through ``SqsSender``, and deleted from the DLQ only once their copy is acknowledged —
an invocation that dies half-way loses nothing (at worst a message is delivered twice, and the
consumer is ``@idempotent``). Each run moves at most ``REDRIVE_MAX_MESSAGES`` messages at
``REDRIVE_RATE`` per second, so a recovered consumer is not flooded, and only the events written
less than ``REDRIVE_MAX_AGE_H`` hours ago: a poison message goes round DLQ -> queue -> DLQ for a
day at most, then waits in the DLQ (with an alarm on its depth) for someone to look at it and run
``resilient-aws redrive`` by hand. Messages that are not order events stay there too.

Run it against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/scheduled_redrive.py

The idempotency table goes down, the consumer's messages end in the DLQ; the table comes back,
the scheduled redrive moves the recent events back, and every order is charged once.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from typing import Any

import boto3

from resilient_aws.redrive import DlqMessage, redrive_sqs
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)


@functools.cache
def app() -> Any:
    """The SQS client, built on the first invocation and reused while the container lives."""
    return boto3.client("sqs", config=POLICY.botocore_config())


def recent_event(message: DlqMessage, now: dt.datetime, max_age: dt.timedelta) -> bool:
    """Worth another try: an outbox event (its envelope says when it was written) not too old."""
    try:
        written = dt.datetime.fromisoformat(message.json()["created_at"])
    except (ValueError, KeyError, TypeError):
        return False  # not one of our events: a human decides
    return now - written < max_age


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A schedule's event in, the ``RedriveReport`` out (every message received accounted for:
    moved, skipped by the filter, failed or undeleted — the last two stay in the DLQ)."""
    now = dt.datetime.now(dt.timezone.utc)
    max_age = dt.timedelta(hours=float(os.environ.get("REDRIVE_MAX_AGE_H", "24")))
    report = redrive_sqs(
        os.environ["DLQ_URL"],
        target_queue_url=os.environ["TARGET_QUEUE_URL"],
        client=app(),
        policy=POLICY.for_lambda(context, margin_s=5.0),
        filter=lambda message: recent_event(message, now, max_age),
        max_messages=int(os.environ.get("REDRIVE_MAX_MESSAGES", "1000")),
        rate=float(os.environ.get("REDRIVE_RATE", "20")),
    )
    print(report)
    for message_id, reason in {**report.failed, **report.undeleted}.items():
        print(f"  {message_id} still in the DLQ: {reason}")  # ids and reasons, never bodies
    return report.to_dict()


if __name__ == "__main__":
    import json

    import idempotent_sqs_handler as consumer
    from moto import mock_aws

    from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos

    # The demo's retries and pacing sleep on a fake clock: the same decisions, without the waiting.
    clock = FakeClock()
    POLICY = clock.policy(POLICY)
    consumer.POLICY = clock.policy(consumer.POLICY)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sqs = boto3.client("sqs")
        consumer.create_idempotency_table(boto3.client("dynamodb"))
        queue, dlq = consumer.create_queue_with_dlq(sqs, "order-events", max_receive_count=2)
        os.environ.update(DLQ_URL=dlq, TARGET_QUEUE_URL=queue)

        two_days_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).isoformat()
        for body in [
            consumer.order_placed("e-1", "1", 30),
            consumer.order_placed("e-2", "2", 45),
            consumer.order_placed("e-0", "0", 10, created_at=two_days_ago),  # failed for days
            json.dumps({"hello": "not an order event"}),
        ]:
            sqs.send_message(QueueUrl=queue, MessageBody=body)

        # The idempotency table is down: every record fails twice and moves to the DLQ.
        context = FakeLambdaContext(timeout_s=300, clock=clock.monotonic)
        with chaos(consumer.app().idempotency.store.client, throttle=1.0, seed=1):
            consumer.poll(sqs, queue, consumer.handler, context)
        print(f"charged during the outage: {consumer.charged}")

        # The table is back; the next scheduled run moves the recent events back to the queue.
        report = handler({"detail-type": "Scheduled Event"}, context)
        assert report["received"] == 4
        assert report["moved"] == 2
        assert report["skipped"] == 2
        consumer.poll(sqs, queue, consumer.handler, context)
        left = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
        print(f"charged after the redrive: {sorted(consumer.charged)}; {len(left)} left in the DLQ")
        assert sorted(consumer.charged) == ["1", "2"]
        assert len(left) == 2

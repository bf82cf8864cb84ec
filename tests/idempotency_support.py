"""Shared by the idempotency tests: a table, a call counter, a store on a fake clock."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from resilient_aws.idempotency import IdempotencyStore
from resilient_aws.testing import FakeClock

EPOCH = 1_800_000_000.0  # a fixed "now" in epoch seconds for stores on a fake clock


def create_idempotency_table(
    client: Any, name: str = "idempotency", *, sort_key: bool = False
) -> str:
    schema = [{"AttributeName": "id", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "id", "AttributeType": "S"}]
    if sort_key:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    client.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
    )
    # dynalite answers ResourceNotFoundException while a new table is still CREATING
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 100}
    )
    return name


class CallCounter:
    """Counts the DynamoDB operations a client sends (by botocore's before-call event)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1

    def take(self) -> dict[str, int]:
        """The counts since the last ``take`` (and reset)."""
        with self._lock:
            counts = dict(self.counts)
            self.counts.clear()
        return counts


def fake_store(
    client: Any, clock: FakeClock, table: str = "idempotency", **options: Any
) -> IdempotencyStore:
    """A store whose retries sleep on ``clock`` and whose epoch time is ``clock.now``."""
    clock.now = EPOCH
    return IdempotencyStore(
        table, client=client, policy=clock.policy(), clock=clock.monotonic, **options
    )


def real_store(client: Any, table: str = "idempotency", **options: Any) -> IdempotencyStore:
    from resilient_aws.retry import RetryPolicy

    policy = RetryPolicy(max_attempts=10, base_delay=0.005, max_delay=0.05)
    return IdempotencyStore(table, client=client, policy=policy, clock=time.time, **options)

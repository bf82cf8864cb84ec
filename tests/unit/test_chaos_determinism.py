"""chaos decides by seed and content, not by thread interleaving: a seeded run reproduces."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from resilient_aws.dynamodb import BatchWriter
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import chaos


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _write_seeded(dynamodb: Any, seed: int) -> tuple[Counter[str], int, int]:
    """Write 500 items at concurrency 4 under chaos; how often each item was withheld."""
    withheld: Counter[str] = Counter()
    lock = threading.Lock()

    def record(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name != "BatchWriteItem":
            return
        with lock:
            for requests in parsed.get("UnprocessedItems", {}).values():
                withheld.update(r["PutRequest"]["Item"]["pk"]["S"] for r in requests)

    events = dynamodb.meta.events
    # the service-wide event, last: after chaos has put its UnprocessedItems in the answer
    events.register_last("after-call.dynamodb", record, unique_id="record")
    policy = RetryPolicy(max_attempts=30, base_delay=0.0001, max_delay=0.001)
    try:
        with (
            chaos(dynamodb, partial=0.3, seed=seed) as injected,
            BatchWriter("t", client=dynamodb, policy=policy, concurrency=4) as writer,
        ):
            for i in range(500):
                writer.put({"pk": f"item-{i:04d}", "n": i})
    finally:
        events.unregister("after-call.dynamodb", unique_id="record")
    return withheld, injected.stats.withheld_entries, injected.stats.partial_calls


def test_same_seeded_writer_at_concurrency_4_withholds_the_same_entries(dynamodb: Any) -> None:
    runs = [_write_seeded(dynamodb, seed=1) for _ in range(3)]

    assert runs[0][1] > 100  # faults were injected
    assert runs[0][0] == runs[1][0] == runs[2][0]  # on the same entries, as often
    assert runs[0][1] == runs[1][1] == runs[2][1]
    assert _write_seeded(dynamodb, seed=2)[0] != runs[0][0]  # the seed matters


def _throttled_calls(dynamodb: Any, seed: int) -> Counter[str]:
    """put_item for 40 keys, 3 times each, from 4 threads in a shuffled order: how many of
    each key's puts failed."""
    order = [f"k{i}" for i in range(40)] * 3
    random.Random().shuffle(order)  # a different interleaving every run
    faults: Counter[str] = Counter()
    lock = threading.Lock()

    def put(key: str) -> None:
        try:
            dynamodb.put_item(TableName="t", Item={"pk": {"S": key}})
        except ClientError:
            with lock:
                faults[key] += 1

    with chaos(dynamodb, throttle=0.2, error5xx=0.1, seed=seed), ThreadPoolExecutor(4) as pool:
        list(pool.map(put, order))
    return faults


def test_whole_request_faults_follow_the_request_not_the_thread(dynamodb: Any) -> None:
    runs = [_throttled_calls(dynamodb, seed=7) for _ in range(3)]

    assert runs[0]  # faults were injected
    assert runs[0] == runs[1] == runs[2]

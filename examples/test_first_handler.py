"""Testing examples/first_handler.py with moto and ``chaos``: a throttled, partially failing
table, and a retried request — every line stored once, the order imported once.

Run it with pytest (``pip install 'resilient-aws[test]'``); the ``chaos`` fixture comes from
resilient_aws's pytest plugin.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from resilient_aws.testing import Chaos, FakeClock, FakeLambdaContext

sys.path.insert(0, str(Path(__file__).parent))
import first_handler


# --8<-- [start:test]
@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        first_handler.dynamodb.cache_clear()
        first_handler.app.cache_clear()
        first_handler.create_tables(first_handler.dynamodb())
        yield first_handler.dynamodb()
    first_handler.dynamodb.cache_clear()
    first_handler.app.cache_clear()


def test_every_line_is_stored_once_under_faults(
    tables: Any,
    chaos: Callable[..., Chaos],
    fake_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The example's policy on a fake clock: backoff sleeps are instant and deterministic, and
    # the Lambda deadline runs on the same clock.
    monkeypatch.setattr(first_handler, "POLICY", fake_clock.policy(first_handler.POLICY))
    faults = chaos(tables, partial=0.3, throttle=0.05, seed=3)

    def invoke() -> dict[str, Any]:
        context = FakeLambdaContext(timeout_s=30, clock=fake_clock.monotonic)
        return first_handler.handler(first_handler.request("o-7", 120), context)

    first, again = invoke(), invoke()  # the second is a retried request

    assert first["statusCode"] == 201
    assert again == first
    lines = tables.query(
        TableName=first_handler.LINES_TABLE,
        KeyConditionExpression="order_id = :o",
        ExpressionAttributeValues={":o": {"S": "o-7"}},
    )["Items"]
    assert sorted(int(line["line"]["N"]) for line in lines) == list(range(120))
    assert faults.stats.withheld_entries > 0  # the faults really happened
    assert fake_clock.total_slept > 0  # and were retried with backoff
    # --8<-- [end:test]

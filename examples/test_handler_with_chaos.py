"""A moto-backed test of a handler's retry logic under AWS-like faults.

Run it with pytest (``pip install 'resilient-aws[test]'``): the ``chaos`` and ``fake_clock``
fixtures come from resilient_aws's pytest plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.retry import FailedEntry, RetryPolicy, classify_entry
from resilient_aws.testing import Chaos, FakeClock


def publish_all(sqs: Any, queue_url: str, bodies: list[str], policy: RetryPolicy) -> list[str]:
    """The code under test: send every body, return the ids that finally failed."""
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]

    def send(batch: list[dict[str, str]]) -> list[FailedEntry[dict[str, str]]]:
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
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

    failed: list[str] = []
    for start in range(0, len(entries), 10):
        outcome = policy.run_partial(
            send,
            entries[start : start + 10],
            entry_id=lambda e: e["Id"],
            operation="SendMessageBatch",
        )
        failed += [f.entry_id for f in outcome.failed]
    return failed


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_every_message_arrives_despite_faults(
    sqs: Any, chaos: Callable[..., Chaos], fake_clock: FakeClock
) -> None:
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    injected = chaos(sqs, partial=0.3, throttle=0.05, seed=1)

    failed = publish_all(sqs, url, [f"order-{i}" for i in range(50)], fake_clock.policy())

    assert failed == []
    assert injected.stats.withheld_entries > 0  # the faults really happened
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "50"

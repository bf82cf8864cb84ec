"""Documented usage of the retry core and testing helpers; checked with ``mypy --strict``."""

from __future__ import annotations

import asyncio
import dataclasses

import boto3
from tenacity import stop_after_delay, wait_fixed

from resilient_aws.errors import DeadlineExceededError, RetryError
from resilient_aws.retry import (
    Deadline,
    FailedEntry,
    PartialOutcome,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    add_listener,
    classify,
    classify_entry,
    retry,
)
from resilient_aws.testing import FakeClock, chaos

policy = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=5.0, jitter="full")
patient = dataclasses.replace(policy, max_attempts=20, stop=stop_after_delay(30))
fixed = dataclasses.replace(policy, wait=wait_fixed(0.5))
shared = dataclasses.replace(policy, budget=RetryBudget(500))
bounded: RetryPolicy = policy.with_deadline(Deadline.after(10.0))
dynamodb = boto3.client("dynamodb", config=policy.botocore_config(connect_timeout=2))


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def handler(event: dict[str, str], context: Context) -> str:
    p = policy.for_lambda(context, margin_s=1.0)
    try:
        response = p.call(dynamodb.get_item, TableName="orders", Key={"pk": {"S": event["id"]}})
    except DeadlineExceededError:
        return "later"
    except RetryError as error:
        return f"gave up: {error.reason} after {error.attempts}"
    return str(response.get("Item"))


@retry(policy)
def load(key: str) -> int:
    return len(key)


@retry
async def fetch(key: str) -> str:
    return key


def send(batch: list[str]) -> list[FailedEntry[str]]:
    return [
        FailedEntry(e, e, "Throttled", retryable=classify_entry("sns", "Throttled").retryable)
        for e in batch[:1]
    ]


outcome: PartialOutcome[str] = policy.run_partial(
    send, ["a", "b"], entry_id=str, operation="Publish"
)
failed_ids: list[str] = [f.entry_id for f in outcome.failed]
succeeded: int = outcome.succeeded


def on_event(event: RetryEvent) -> None:
    print(event.kind, event.operation, event.attempt, event.delay)


add_listener(on_event)
retryable: bool = classify(ValueError("x")).retryable
length: int = load("abc")
fetched: str = asyncio.run(fetch("k"))

clock = FakeClock()
test_policy: RetryPolicy = clock.policy(max_attempts=3)
with chaos(dynamodb, partial=0.3, throttle=0.05, seed=1) as injected:
    faults: int = injected.stats.faults

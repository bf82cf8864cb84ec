"""The retry core on its own: a throttled call retried, a deadline respected, a batch settled.

Runs anywhere (no AWS needed): ``python examples/retry_basics.py``.
"""

from __future__ import annotations

import dataclasses

from botocore.exceptions import ClientError

from resilient_aws.errors import DeadlineExceededError
from resilient_aws.retry import FailedEntry, RetryPolicy

policy = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.1)

attempts = 0


def get_order(order_id: str) -> dict[str, str]:
    """Throttled twice, then answers, as DynamoDB does under a hot partition."""
    global attempts
    attempts += 1
    if attempts <= 2:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "GetItem",
        )
    return {"id": order_id, "status": "paid"}


print(policy.call(get_order, "o-1"), f"after {attempts} attempts")

try:
    always_throttled = ClientError({"Error": {"Code": "ThrottlingException"}}, "Scan")

    def scan() -> None:
        raise always_throttled

    # attempts to spare, so that the deadline (not the attempt cap) is what stops it
    dataclasses.replace(policy, max_attempts=50).with_deadline(0.05).call(scan)
except DeadlineExceededError as error:
    print(f"stopped before the deadline: {error}")

sent: list[list[str]] = []


def send(batch: list[str]) -> list[FailedEntry[str]]:
    """A batch API that answers 200 but fails the first entry of every batch once."""
    sent.append(batch)
    if len(sent) > 1:
        return []
    return [FailedEntry(batch[0], batch[0], "InternalError", retryable=True)]


outcome = policy.run_partial(send, ["a", "b", "c"], entry_id=str, operation="Publish")
print(f"{outcome.succeeded}/{outcome.total} succeeded, requests: {sent}")
assert outcome.ok

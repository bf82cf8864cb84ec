"""One piece of logic for the sync and the async clients: steps that yield the calls they need.

Looking up a queue, its source queues or a message's source is written once, as steps
(:mod:`resilient_aws._steps`): :func:`run_steps` answers their calls with a boto3 client and
``policy.call``, :func:`arun_steps` with an aiobotocore client and ``policy.acall``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws import _steps
from resilient_aws._steps import Call, Steps

if TYPE_CHECKING:
    from resilient_aws.retry import RetryPolicy

__all__ = ["Call", "Steps", "arun_steps", "run_steps"]

T = TypeVar("T")


def run_steps(client: Any, policy: RetryPolicy, steps: Steps[T]) -> T:
    """Drive ``steps`` with a boto3 client."""
    return _steps.run_steps(lambda: client, policy, steps)


async def arun_steps(client: Any, policy: RetryPolicy, steps: Steps[T]) -> T:
    """Drive ``steps`` with an aiobotocore client."""
    return await _steps.arun_steps(lambda: client, policy, steps)

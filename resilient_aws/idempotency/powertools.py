"""Keep Powertools' ``@idempotent``, give its DynamoDB calls the retry core (``lambda`` extra).

>>> from resilient_aws.idempotency.powertools import ResilientDynamoDBPersistenceLayer
>>> layer = ResilientDynamoDBPersistenceLayer(table_name="idempotency")  # doctest: +SKIP

Powertools' DynamoDB layer calls boto3 once per step and fails the handler on a throttle; this
subclass sends each of its ``PutItem``/``GetItem``/``UpdateItem``/``DeleteItem`` calls through a
:class:`~resilient_aws.retry.RetryPolicy`, bounded by the invocation's remaining time. Records
are unchanged. Importing this module imports ``aws_lambda_powertools``; nothing else in
resilient_aws does.
"""

from __future__ import annotations

import contextvars
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from resilient_aws.retry import DEFAULT_POLICY, Deadline, RetryPolicy

__all__ = ["ResilientDynamoDBPersistenceLayer"]

_RETRIED = frozenset({"put_item", "get_item", "update_item", "delete_item"})

# The invocation's deadline, set when Powertools saves the in-progress record (it passes the
# remaining time then) and read by the calls that follow in the same invocation. A context
# variable, not an attribute: one layer serves many invocations (threads, tasks).
_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "resilient_aws_powertools_deadline", default=None
)


class _RetryingClient:
    """A DynamoDB client whose record operations go through the retry core."""

    def __init__(self, client: Any, policy: RetryPolicy) -> None:
        self._client = client
        self._policy = policy

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in _RETRIED:
            return attribute

        def retried(**params: Any) -> Any:
            policy = self._policy
            deadline = _deadline.get()
            if deadline is not None:
                policy = policy.with_deadline(deadline)
            return policy.call(attribute, **params)

        retried.__name__ = name
        return retried


class ResilientDynamoDBPersistenceLayer(DynamoDBPersistenceLayer):
    """Powertools' ``DynamoDBPersistenceLayer`` with every DynamoDB call retried by ``policy``.

    Takes the same arguments as Powertools' layer, plus ``policy`` and ``margin_s`` (retries
    stop this long before the Lambda timeout).
    """

    def __init__(
        self,
        table_name: str,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        margin_s: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(table_name, **kwargs)
        self.policy = policy
        self.margin_s = margin_s
        self.client = _RetryingClient(self.client, policy)  # type: ignore[assignment]

    def save_inprogress(
        self, data: dict[str, Any], remaining_time_in_millis: int | None = None
    ) -> None:
        if remaining_time_in_millis is not None:
            seconds = max(0.0, remaining_time_in_millis / 1000.0 - self.margin_s)
            _deadline.set(Deadline.after(seconds, clock=self.policy.clock))
        else:
            _deadline.set(None)
        super().save_inprogress(data, remaining_time_in_millis)

"""A token bucket that refuses retries when many calls fail at once."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from resilient_aws.errors import ConfigurationError

__all__ = ["RetryBudget"]

_per_client: weakref.WeakKeyDictionary[Any, RetryBudget] = weakref.WeakKeyDictionary()
_per_client_lock = threading.Lock()


class RetryBudget:
    """A retry quota shared by every call that uses it, like botocore's standard-mode quota.

    Each retry withdraws ``retry_cost`` tokens (``throttle_cost`` for throttling, which is
    cheaper because backing off is exactly the right answer to it); a call that succeeds without
    retrying gives back ``success_refund``, one that succeeds after retrying gives back what its
    last retry withdrew. When the bucket is empty, retries are refused and the failure is
    reported at once instead of multiplying a storm. Thread-safe.

    ``RetryBudget.for_client(client)`` gives the one budget shared by all calls on a client.
    """

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 14,
        throttle_cost: int = 5,
        success_refund: int = 1,
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("retry_cost", retry_cost),
            ("throttle_cost", throttle_cost),
            ("success_refund", success_refund),
        ):
            if value < 0:
                raise ConfigurationError(name, f"must be >= 0, got {value!r}")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.throttle_cost = throttle_cost
        self.success_refund = success_refund
        self._available = capacity
        self._lock = threading.Lock()

    @classmethod
    def for_client(cls, client: Any) -> RetryBudget:
        """The budget shared by every call made with ``client`` (created on first use)."""
        with _per_client_lock:
            budget = _per_client.get(client)
            if budget is None:
                budget = cls()
                _per_client[client] = budget
            return budget

    @property
    def available(self) -> int:
        return self._available

    def cost_of(self, *, throttle: bool) -> int:
        return self.throttle_cost if throttle else self.retry_cost

    def try_acquire(self, amount: int) -> bool:
        """Withdraw ``amount`` tokens if there are that many; say whether it did."""
        with self._lock:
            if amount > self._available:
                return False
            self._available -= amount
            return True

    def release(self, amount: int) -> None:
        """Give tokens back (never above capacity)."""
        with self._lock:
            self._available = min(self.capacity, self._available + amount)

    def __repr__(self) -> str:
        return f"RetryBudget(available={self._available}, capacity={self.capacity})"

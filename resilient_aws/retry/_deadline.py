"""An absolute point in time past which no retry may start sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import field
from typing import Protocol

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import ConfigurationError

__all__ = ["Deadline", "LambdaContextLike"]


class LambdaContextLike(Protocol):
    """The one method of the Lambda context object that a deadline needs."""

    def get_remaining_time_in_millis(self) -> int: ...


@lean_dataclass(frozen=True)
class Deadline:
    """An absolute deadline on a monotonic clock.

    Pass one per call (``policy.with_deadline(...)``): the core never starts a sleep that would
    end past it, it stops and reports what is left undone instead, so a Lambda function is not
    killed by its timeout in the middle of a retry.
    """

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now."""
        if seconds < 0:
            raise ConfigurationError("seconds", f"must be >= 0, got {seconds!r}")
        return cls(at=clock() + seconds, clock=clock)

    @classmethod
    def from_lambda_context(
        cls,
        context: LambdaContextLike,
        *,
        margin_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Deadline:
        """The Lambda invocation's end, less ``margin_s`` to report and return cleanly."""
        if margin_s < 0:
            raise ConfigurationError("margin_s", f"must be >= 0, got {margin_s!r}")
        remaining = context.get_remaining_time_in_millis() / 1000.0
        return cls(at=clock() + max(0.0, remaining - margin_s), clock=clock)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at

    def allows(self, sleep_s: float) -> bool:
        """Whether a sleep of ``sleep_s`` seconds started now ends before the deadline."""
        return self.clock() + sleep_s < self.at

    def earliest(self, other: Deadline | None) -> Deadline:
        """The sooner of two deadlines."""
        if other is None or self.at <= other.at:
            return self
        return other

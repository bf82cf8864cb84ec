"""A clock whose sleeps advance time instantly, for fast and deterministic retry tests."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from resilient_aws.retry import Deadline, RetryPolicy

__all__ = ["FakeClock"]


class FakeClock:
    """Monotonic time that only moves when something sleeps on it (or :meth:`advance`).

    ``clock.policy(max_attempts=5)`` gives a :class:`RetryPolicy` wired to this clock with a
    seeded random generator; ``clock.slept`` lists every sleep in order.
    """

    def __init__(self, start: float = 1000.0, *, seed: int = 0) -> None:
        self.now = start
        self.slept: list[float] = []
        self.seed = seed

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def deadline(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now on this clock."""
        return Deadline.after(seconds, clock=self.monotonic)

    def policy(self, base: RetryPolicy | None = None, **changes: Any) -> RetryPolicy:
        """``base`` (or the default policy) with this clock's sleep, clock and a seeded RNG."""
        wired: dict[str, Any] = dict(
            sleep=self.sleep,
            async_sleep=self.async_sleep,
            clock=self.monotonic,
            rng=random.Random(self.seed),
        )
        wired.update(changes)
        return replace(base or RetryPolicy(), **wired)

    @property
    def total_slept(self) -> float:
        return sum(self.slept)

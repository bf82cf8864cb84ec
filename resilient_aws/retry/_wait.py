"""Backoff with jitter as tenacity wait strategies.

Formulas from the AWS Architecture Blog post "Exponential Backoff And Jitter", with
``n`` the number of attempts made so far (``n = 1`` before the first retry)::

    none          min(cap, base * 2 ** (n - 1))
    full          uniform(0, min(cap, base * 2 ** (n - 1)))
    equal         t / 2 + uniform(0, t / 2)   where t = min(cap, base * 2 ** (n - 1))
    decorrelated  min(cap, uniform(base, previous * 3))   previous starts at base
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Literal

from tenacity.wait import wait_base

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Jitter", "JITTERS", "wait_jittered"]

Jitter = Literal["full", "equal", "decorrelated", "none"]
JITTERS: tuple[Jitter, ...] = ("full", "equal", "decorrelated", "none")

_MAX_EXPONENT = 64


class wait_jittered(wait_base):  # noqa: N801 - tenacity's naming, so that it composes alike
    """Capped exponential backoff with one of the four jitters; composes like any tenacity wait."""

    def __init__(
        self,
        base: float,
        cap: float,
        jitter: Jitter = "full",
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random()

    def ceiling(self, attempt_number: int) -> float:
        """The un-jittered delay after ``attempt_number`` attempts."""
        exponent = min(max(attempt_number - 1, 0), _MAX_EXPONENT)
        return float(min(self.cap, self.base * 2**exponent))

    def __call__(self, retry_state: RetryCallState) -> float:
        if self.jitter == "decorrelated":
            previous = retry_state.upcoming_sleep or self.base
            high = max(self.base, previous * 3)
            return min(self.cap, self.rng.uniform(self.base, high))
        ceiling = self.ceiling(retry_state.attempt_number)
        if self.jitter == "full":
            return self.rng.uniform(0.0, ceiling)
        if self.jitter == "equal":
            return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)
        return ceiling

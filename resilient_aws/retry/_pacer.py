"""The pacer: how fast a batch writer sends while the service withholds entries or throttles.

botocore's adaptive mode paces whole requests by the throttles it sees; it never sees the
entries a ``200`` response withholds (``UnprocessedItems``, ``FailedRecordCount``...), which is
how DynamoDB, Kinesis and the rest say "slow down" to a batch. The pacer applies the same idea
to those, for every writer of the batch engine:

* **Unpaced while healthy.** Until the service withholds an entry or throttles a request, the
  pacer only hands out "go now": a healthy writer pays nothing.
* **Measured rate, multiplicative decrease.** Every ``window`` seconds in which the service
  withheld entries, the send rate becomes ``headroom`` times the entries it completed per
  second in that window: the writer settles just above what the service takes, instead of
  re-sending as fast as the network allows.
* **Gradual increase.** A window with nothing withheld multiplies the rate by ``increase``;
  once the rate no longer binds (the writer sends far slower than allowed) pacing stops.
* **Stalls back off.** A response that completed nothing (every entry withheld, or the whole
  request throttled) is a stall: the next request waits a backoff from the policy (jittered,
  exponential in the stalls in a row; from the throttle base after a throttle), and while
  stalled, requests go one backoff apart: one probe at a time, not every worker at once.

One pacer per writer by default; pass one ``Pacer()`` to several writers (and clients) that hit
the same table or stream, like a :class:`~resilient_aws.retry.RetryBudget`, so that they slow
down together. Thread-safe. The pacer never sleeps: it says how long to wait, and the batch
engine sleeps with the policy's ``sleep``.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from resilient_aws.errors import ConfigurationError
from resilient_aws.retry._wait import wait_jittered

if TYPE_CHECKING:
    from resilient_aws.retry._policy import RetryPolicy

__all__ = ["Pacer"]

# The slowest the measured rate may go, in entries per second: a window that completed a
# single entry must not space requests minutes apart (spacing is also capped at max_delay).
_MIN_RATE = 0.01


class Pacer:
    """Paces the requests of one or more batch writers by what the service completes.

    ``headroom``: while the service withholds entries, send this many times the entries it
    completed per second (2.0: it sees twice what it takes, so a rising capacity is noticed
    and a fixed share of random failures does not starve the writer). ``window``: seconds over
    which completions are counted. ``increase``: factor by which a clean window raises the
    rate. See the module docstring for the whole behaviour.
    """

    def __init__(
        self, *, headroom: float = 2.0, window: float = 0.1, increase: float = 2.0
    ) -> None:
        for name, value, low in (
            ("headroom", headroom, 1.0),
            ("window", window, 0.0),
            ("increase", increase, 1.0),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                raise ConfigurationError(name, f"must be a finite number > {low}, got {value!r}")
        self.headroom = float(headroom)
        self.window = float(window)
        self.increase = float(increase)
        self._lock = threading.Lock()
        self._rate: float | None = None  # entries per second; None: unpaced
        self._next_at = -math.inf  # the earliest start of the next request
        self._stalls = 0
        self._backoff = 0.0
        self._window_start: float | None = None
        self._completed = 0
        self._withheld = 0
        self._sent = 0

    @property
    def rate(self) -> float | None:
        """Entries per second the writers may send now; ``None`` while unpaced."""
        return self._rate

    @property
    def stalls(self) -> int:
        """Responses in a row that completed nothing (0 while the service makes progress)."""
        return self._stalls

    def reserve(self, entries: int, policy: RetryPolicy) -> float:
        """Book the next request of ``entries`` entries: the seconds to wait before sending it."""
        with self._lock:
            now = policy.clock()
            if self._window_start is None:
                self._window_start = now
            start = max(now, self._next_at)
            spacing = 0.0
            if self._rate is not None:
                spacing = min(entries / self._rate, policy.max_delay)
            if self._stalls:
                spacing = max(spacing, self._backoff)
            self._next_at = start + spacing
            return start - now

    def record(
        self, policy: RetryPolicy, *, completed: int, withheld: int, throttled: bool = False
    ) -> bool:
        """Account for one response: ``completed`` entries settled (succeeded or failed for
        good), ``withheld`` returned to be sent again, ``throttled`` if the whole request was.

        Returns whether this response ended a stall (the service completes entries again).
        """
        with self._lock:
            now = policy.clock()
            recovered = False
            if completed:
                if self._stalls:
                    recovered = True
                    self._stalls = 0
                    self._backoff = 0.0
                    self._next_at = min(self._next_at, now)
            elif withheld:
                self._stalls += 1
                self._backoff = backoff(policy, self._stalls, throttle=throttled)
                self._next_at = max(self._next_at, now + self._backoff)
            self._completed += completed
            self._withheld += withheld
            self._sent += completed + withheld
            start = now if self._window_start is None else self._window_start
            elapsed = now - start
            if elapsed >= self.window and elapsed > 0:
                self._close_window(elapsed)
                self._window_start = now
            elif self._window_start is None:
                self._window_start = now
            return recovered

    def _close_window(self, elapsed: float) -> None:
        if self._withheld and self._completed:
            # Only a window that completed something measures the service; one that completed
            # nothing is a stall, which the backoff handles, and keeps the last measured rate.
            self._rate = max(_MIN_RATE, self.headroom * self._completed / elapsed)
        elif not self._withheld and self._rate is not None:
            self._rate *= self.increase
            if self._rate > 4 * self._sent / elapsed:
                self._rate = None  # it no longer binds: the writer is healthy again
        self._completed = self._withheld = self._sent = 0

    def __repr__(self) -> str:
        rate = "unpaced" if self._rate is None else f"{self._rate:.1f} entries/s"
        return f"Pacer({rate}, stalls={self._stalls})"


def backoff(policy: RetryPolicy, stalls: int, *, throttle: bool) -> float:
    """The policy's backoff before the retry that follows ``stalls`` failed attempts in a row.

    A ``wait=`` strategy given to the policy is asked as tenacity would ask it; otherwise the
    policy's jittered exponential backoff, from its throttle base after a throttle.
    """
    from tenacity import RetryCallState

    if policy.wait is not None:
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = stalls
        return float(policy.wait(state))
    base = getattr(policy, "throttle_base_delay", policy.base_delay) if throttle else None
    jittered = policy.wait_strategy()
    if base is not None and base != policy.base_delay and isinstance(jittered, wait_jittered):
        jittered = wait_jittered(base, policy.max_delay, policy.jitter, jittered.rng)
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = stalls
    return float(jittered(state))

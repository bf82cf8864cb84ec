"""The pacer: how fast a batch writer sends while the service withholds entries or throttles.

botocore's adaptive mode paces whole requests by the throttles it sees; it never sees the
entries a ``200`` response withholds (``UnprocessedItems``, ``FailedRecordCount``...), which is
how DynamoDB, Kinesis and the rest say "slow down" to a batch. The pacer applies the same idea
to those, for every writer of the batch engine:

* **Unpaced while healthy.** Until the service withholds an entry or throttles a request, the
  pacer only hands out "go now": a healthy writer pays nothing.
* **Measured rate, multiplicative decrease.** Every ``window`` seconds in which the service
  withheld entries, the send rate becomes a *headroom* times the entries it completed per
  second in that window: the writer settles just above what the service takes, instead of
  re-sending as fast as the network allows.
* **A headroom that learns why entries are withheld.** A capacity limit completes the same
  number of entries whatever the writer sends; random failures complete a fixed share of it.
  Between two windows whose send rates differ, the pacer compares how completions followed
  (their elasticity): when they did not follow, the service is at capacity and the headroom
  shrinks toward 1.05 (almost every entry sent is taken: few requests wasted); when they did,
  slowing down only loses throughput and the headroom grows (up to 4), so a writer facing
  random failures is never starved.
* **Gradual increase.** A window with nothing withheld, in which the rate held a request
  back, multiplies the rate by ``increase``: the writer probes for capacity only while it has
  more to send than the rate allows (a tail or a slow producer proves nothing).
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

if TYPE_CHECKING:
    from resilient_aws.retry._policy import RetryPolicy

__all__ = ["Pacer"]

# The slowest the measured rate may go, in entries per second: a window that completed a
# single entry must not space requests minutes apart (spacing is also capped at max_delay).
_MIN_RATE = 0.01


class Pacer:
    """Paces the requests of one or more batch writers by what the service completes.

    ``headroom``: the starting ratio of entries sent to entries completed while the service
    withholds entries (it then adapts between 1.05 and 4, see the module docstring).
    ``window``: seconds over which completions are counted. ``increase``: factor by which a
    window with nothing withheld raises the rate.
    """

    MIN_HEADROOM = 1.05
    MAX_HEADROOM = 4.0

    def __init__(
        self, *, headroom: float = 2.0, window: float = 0.25, increase: float = 1.25
    ) -> None:
        for name, value, low in (
            ("headroom", headroom, 1.0),
            ("window", window, 0.0),
            ("increase", increase, 1.0),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                raise ConfigurationError(name, f"must be a finite number > {low}, got {value!r}")
        self.window = float(window)
        self.increase = float(increase)
        self._headroom = min(self.MAX_HEADROOM, max(self.MIN_HEADROOM, float(headroom)))
        self._lock = threading.Lock()
        self._rate: float | None = None  # entries per second; None: unpaced
        self._next_at = -math.inf  # the earliest start of the next request
        self._stalls = 0
        self._stalled_since = 0.0
        self._last_stall_at = 0.0
        self._backoff = 0.0
        self._window_start: float | None = None
        self._completed = 0
        self._withheld = 0
        self._sent = 0
        self._bound = False
        self._probes = 0
        # (sent, completed) per second of the last window that withheld entries
        self._previous: tuple[float, float] | None = None
        self._go_now = False  # reserve() answers 0 without the lock or the clock

    @property
    def headroom(self) -> float:
        """Entries sent per entry completed, while the service withholds entries."""
        return self._headroom

    @property
    def rate(self) -> float | None:
        """Entries per second the writers may send now; ``None`` while unpaced."""
        return self._rate

    @property
    def stalls(self) -> int:
        """Responses in a row that completed nothing (0 while the service makes progress)."""
        return self._stalls

    def stalled_for(self, now: float) -> float:
        """Seconds since the first of the responses in a row that completed nothing (0 if none)."""
        return now - self._stalled_since if self._stalls else 0.0

    def reserve(self, entries: int, policy: RetryPolicy) -> float:
        """Book the next request of ``entries`` entries: the seconds to wait before sending it."""
        if self._go_now:
            # Read without the lock: a rate or a stall another thread sets as we read comes
            # after this request, as it would have had this request taken the lock first.
            return 0.0
        with self._lock:
            now = policy.clock()
            if self._window_start is None:
                self._window_start = now
            if self._stalls and now - self._last_stall_at > 2 * policy.max_delay + 1.0:
                # Nobody has asked the service for longer than any backoff lasts (a shared
                # pacer between Lambda invocations, or after every entry was given up): that
                # stall says nothing about the service now.
                self._stalls = 0
                self._backoff = 0.0
            start = max(now, self._next_at)
            if start > now and self._rate is not None:
                self._bound = True  # the rate held a request back in this window
            spacing = 0.0
            if self._rate is not None:
                spacing = min(entries / self._rate, policy.max_delay)
            if self._stalls:
                spacing = max(spacing, self._backoff)
            self._next_at = start + spacing
            # unpaced, not stalled, nothing booked ahead: every request goes now until a
            # response stalls or a window sets a rate (a healthy writer pays nothing)
            self._go_now = self._rate is None and not self._stalls and start == now
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
                self._go_now = False
                if not self._stalls:
                    self._stalled_since = now
                self._stalls += 1
                self._last_stall_at = now
                # One throttled response among others that complete is a pacing signal (the
                # rate deals with it); from the second in a row it is an outage, and backs
                # off from the throttle base, as botocore does.
                self._backoff = backoff(
                    policy, self._stalls, throttle=throttled and self._stalls > 1
                )
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
        sent, completed = self._sent / elapsed, self._completed / elapsed
        if self._withheld and self._completed:
            # Only a window that completed something measures the service; one that completed
            # nothing is a stall, which the backoff handles, and keeps the last measured rate.
            # Only paced windows are compared: an unpaced one also spent the service's burst.
            paced = self._rate is not None
            if paced and self._previous is not None:
                self._adapt(self._previous, sent, completed)
            self._previous = (sent, completed) if paced else None
            self._rate = max(_MIN_RATE, self._headroom * completed)
            self._go_now = False
        elif not self._withheld and self._rate is not None and self._bound:
            # Only a window the rate held back says the service takes more than it was sent:
            # one that sent less (the tail of a batch, a slow producer) says nothing.
            self._rate *= self.increase
        self._completed = self._withheld = self._sent = 0
        self._bound = False

    def _adapt(self, previous: tuple[float, float], sent: float, completed: float) -> None:
        """Shrink the headroom if completions did not follow the send rate, else grow it."""
        sent_before, completed_before = previous
        if min(sent, sent_before, completed, completed_before) <= 0:
            return
        moved = math.log(sent / sent_before)
        if abs(moved) < 0.1:
            # The send rate barely changed, so there is nothing to learn from this pair: probe,
            # and the next window tells whether completions followed. Down three times for each
            # time up: at capacity a probe up wastes requests, a probe down (the headroom at its
            # floor) costs nothing.
            self._probes += 1
            probe = 1.15 if self._probes % 4 == 0 else 0.87
            self._headroom = min(self.MAX_HEADROOM, max(self.MIN_HEADROOM, self._headroom * probe))
            return
        followed = math.log(completed / completed_before) / moved
        if followed < 0.3:  # completions stayed put: the service is at capacity
            self._headroom = max(self.MIN_HEADROOM, self._headroom * 0.8)
        elif followed > 0.7:  # completions followed: slowing down would only lose them
            self._headroom = min(self.MAX_HEADROOM, self._headroom * 1.25)

    def __repr__(self) -> str:
        rate = "unpaced" if self._rate is None else f"{self._rate:.1f} entries/s"
        return f"Pacer({rate}, headroom={self._headroom:.2f}, stalls={self._stalls})"


def backoff(policy: RetryPolicy, stalls: int, *, throttle: bool) -> float:
    """The policy's backoff before the retry that follows ``stalls`` failed attempts in a row.

    A ``wait=`` strategy given to the policy is asked as tenacity would ask it; otherwise the
    policy's jittered exponential backoff, from its throttle base after a throttle.
    """
    from resilient_aws.retry._wait import backoff_delay

    if policy.wait is not None:
        # A strategy of the user's, asked as tenacity would ask it, with the attempt number
        # capped (a long stall must not grow an uncapped exponential without bound) and the
        # policy's own backoff if it cannot answer without an outcome.
        from tenacity import RetryCallState  # a user's tenacity strategy: tenacity is loaded

        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = min(stalls, policy.max_attempts)
        try:
            return float(policy.wait(state))
        except Exception:
            pass
    base = policy.base_delay
    if throttle:  # a throttle never backs off less than any other error would
        base = max(base, policy.throttle_base_delay)
    return backoff_delay(
        max(stalls, 1), base=base, cap=policy.max_delay, jitter=policy.jitter, rng=policy.rng
    )

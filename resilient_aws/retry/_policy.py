"""RetryPolicy: how often, how long and how patiently to retry."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws.errors import ConfigurationError
from resilient_aws.retry._budget import RetryBudget
from resilient_aws.retry._deadline import Deadline, LambdaContextLike
from resilient_aws.retry._events import RetryListener
from resilient_aws.retry._wait import JITTERS, Jitter, wait_jittered

if TYPE_CHECKING:
    from botocore.config import Config
    from tenacity.stop import stop_base
    from tenacity.wait import wait_base

    from resilient_aws.retry._classify import ErrorClass
    from resilient_aws.retry._partial import FailedEntry, PartialOutcome, SendResult

__all__ = ["DEFAULT_POLICY", "RetryPolicy"]

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How to retry: attempts, backoff with jitter, time caps, deadline and shared budget.

    ``max_attempts`` counts attempts on the wire across both layers: a call that botocore already
    retried twice before giving up has used three. ``base_delay``/``max_delay`` shape the
    exponential backoff, ``jitter`` picks the formula (``"full"``, ``"equal"``,
    ``"decorrelated"``, ``"none"``). ``max_elapsed`` caps the time spent on one call, ``deadline``
    is an absolute end (pass it per call with :meth:`with_deadline`), ``budget`` a
    :class:`RetryBudget` shared with other calls.

    tenacity strategies pass through: ``stop`` is OR-ed with the policy's own stops
    (``stop=tenacity.stop_after_delay(3)``) and ``wait`` replaces the jittered backoff.
    ``classifier`` replaces :func:`classify` for whole calls (wrap it to make one more error
    retryable, e.g. an application's own "not ready yet").
    ``sleep``, ``async_sleep`` (default ``asyncio.sleep``), ``clock`` and ``rng`` are seams for
    tests.

    The policy is immutable: derive variants with :func:`dataclasses.replace`.
    """

    max_attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    jitter: Jitter = "full"
    max_elapsed: float | None = None
    deadline: Deadline | None = None
    budget: RetryBudget | None = None
    stop: stop_base | None = None
    wait: wait_base | None = None
    listeners: tuple[RetryListener, ...] = ()
    classifier: Callable[[BaseException], ErrorClass] | None = field(default=None, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise ConfigurationError(
                "max_attempts", f"must be an int >= 1, got {self.max_attempts!r}"
            )
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if not _finite_non_negative(value):
                raise ConfigurationError(name, f"must be a finite number >= 0, got {value!r}")
        if self.max_delay < self.base_delay:
            raise ConfigurationError(
                "max_delay", f"must be >= base_delay ({self.base_delay!r}), got {self.max_delay!r}"
            )
        if self.jitter not in JITTERS:
            raise ConfigurationError("jitter", f"must be one of {JITTERS}, got {self.jitter!r}")
        if self.max_elapsed is not None and not (
            _finite_non_negative(self.max_elapsed) and self.max_elapsed > 0
        ):
            raise ConfigurationError("max_elapsed", f"must be > 0, got {self.max_elapsed!r}")
        if self.deadline is not None and not isinstance(self.deadline, Deadline):
            raise ConfigurationError(
                "deadline", f"must be a Deadline, got {type(self.deadline).__name__}"
            )
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise ConfigurationError(
                "budget", f"must be a RetryBudget, got {type(self.budget).__name__}"
            )

    # -- variants -------------------------------------------------------------------------------

    def with_deadline(self, deadline: Deadline | float) -> RetryPolicy:
        """A copy bounded by ``deadline`` (a :class:`Deadline` or seconds from now).

        If the policy already has a deadline, the sooner one wins.
        """
        if not isinstance(deadline, Deadline):
            deadline = Deadline.after(float(deadline), clock=self.clock)
        return dataclasses.replace(self, deadline=deadline.earliest(self.deadline))

    def for_lambda(self, context: LambdaContextLike, *, margin_s: float = 1.0) -> RetryPolicy:
        """A copy that stops retrying ``margin_s`` before the Lambda invocation times out."""
        return self.with_deadline(
            Deadline.from_lambda_context(context, margin_s=margin_s, clock=self.clock)
        )

    def wait_strategy(self) -> wait_base:
        """The tenacity wait this policy uses (``wait`` if given, else jittered backoff)."""
        if self.wait is not None:
            return self.wait
        return self._jittered

    @functools.cached_property
    def _jittered(self) -> wait_jittered:
        return wait_jittered(self.base_delay, self.max_delay, self.jitter, self.rng)

    def botocore_config(self, *, max_attempts: int = 3, **config: Any) -> Config:
        """A botocore ``Config`` whose own retries fit under this policy.

        botocore retries whole requests on the wire (standard mode); the core counts those
        attempts in ``max_attempts`` and owns per-entry partial failures, which botocore never
        sees. ``max_attempts`` here is botocore's share; it cannot exceed the policy's.
        """
        from botocore.config import Config

        share = min(max_attempts, self.max_attempts)
        return Config(retries={"mode": "standard", "max_attempts": share}, **config)

    # -- running calls --------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)``, retrying what :func:`classify` calls retryable."""
        return _run.call(self, fn, args, kwargs)

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)``, retrying what :func:`classify` calls retryable."""
        return await _run.acall(self, fn, args, kwargs)

    def run_partial(
        self,
        send: Callable[[list[E]], Sequence[FailedEntry[E]] | SendResult[E]],
        entries: Sequence[E],
        *,
        entry_id: Callable[[E], str],
        operation: str,
    ) -> PartialOutcome[E]:
        """Send ``entries`` and re-send only the retryable failures until all are settled.

        See :func:`resilient_aws.retry.run_partial`.
        """
        return _partial.run_partial(self, send, entries, entry_id=entry_id, operation=operation)


def _finite_non_negative(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


DEFAULT_POLICY = RetryPolicy()

# The engine needs the policy type and the policy runs the engine: bind the modules late.
from resilient_aws.retry import _partial, _run  # noqa: E402

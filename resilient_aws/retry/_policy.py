"""RetryPolicy: how often, how long and how patiently to retry."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import ConfigurationError
from resilient_aws.retry._budget import RetryBudget
from resilient_aws.retry._deadline import Deadline, LambdaContextLike
from resilient_aws.retry._events import RetryListener
from resilient_aws.retry._wait import JITTERS, Jitter

if TYPE_CHECKING:
    from botocore.config import Config
    from tenacity.stop import stop_base
    from tenacity.wait import wait_base

    from resilient_aws.retry._classify import ErrorClass
    from resilient_aws.retry._pacer import Pacer
    from resilient_aws.retry._partial import FailedEntry, PartialOutcome, SendResult
    from resilient_aws.retry._wait import wait_jittered

__all__ = ["DEFAULT_POLICY", "RetryPolicy"]

T = TypeVar("T")
E = TypeVar("E")


@lean_dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How to retry: attempts, backoff with jitter, time caps, deadline and shared budget.

    ``max_attempts`` counts requests on the wire. On a client built with
    :meth:`botocore_config` botocore retries nothing, so a call makes at most ``max_attempts``
    requests; on any other client, the retries botocore made before giving up
    (``ResponseMetadata.RetryAttempts``) count too. ``base_delay``/``max_delay`` shape the
    exponential backoff; ``throttle_base_delay`` replaces ``base_delay`` after a throttle (1 s,
    as in botocore's standard mode: a throttled service needs time, not a quick second try;
    never less than ``base_delay``), and an ``x-amz-retry-after`` header is honoured up to five
    seconds past the backoff.
    ``jitter`` picks the formula (``"full"``, ``"equal"``, ``"decorrelated"``, ``"none"``).
    ``max_stalled`` is for batch writers: an entry the service keeps refusing is given up
    after ``max_attempts`` requests that completed nothing *and* ``max_stalled`` seconds
    (20 s) without progress, so that a run of bad luck at the tail of a batch is not mistaken
    for a service that stopped taking work (``0``: ``max_attempts`` alone).
    ``pacer`` is a :class:`Pacer` shared by every batch writer given this policy (each
    writer makes its own otherwise), like ``budget`` for retries.
    ``max_elapsed`` caps the time spent on one call, ``deadline`` is an absolute end (pass it
    per call with :meth:`with_deadline`), ``budget`` a :class:`RetryBudget` shared with other
    calls.

    tenacity strategies pass through: ``stop`` is OR-ed with the policy's own stops
    (``stop=tenacity.stop_after_delay(3)``) and ``wait`` replaces the jittered backoff, throttle
    base and ``x-amz-retry-after`` included.
    ``classifier`` replaces :func:`classify` for whole calls (wrap it to make one more error
    retryable, e.g. an application's own "not ready yet").
    ``sleep``, ``async_sleep`` (default ``asyncio.sleep``), ``clock`` and ``rng`` are seams for
    tests.

    The policy is immutable: derive variants with :func:`dataclasses.replace`.
    """

    max_attempts: int = 8
    base_delay: float = 0.05
    throttle_base_delay: float = 1.0
    max_delay: float = 5.0
    jitter: Jitter = "full"
    max_elapsed: float | None = None
    max_stalled: float = 20.0
    deadline: Deadline | None = None
    budget: RetryBudget | None = None
    pacer: Pacer | None = field(default=None, compare=False)
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
        # throttle_base_delay may exceed max_delay: the cap applies, as it does to base_delay * 2**n
        for name in ("base_delay", "throttle_base_delay", "max_delay"):
            value = getattr(self, name)
            if not _finite_non_negative(value):
                raise ConfigurationError(name, f"must be a finite number >= 0, got {value!r}")
        if self.max_delay < self.base_delay:
            raise ConfigurationError(
                "max_delay", f"must be >= base_delay ({self.base_delay!r}), got {self.max_delay!r}"
            )
        if self.jitter not in JITTERS:
            raise ConfigurationError("jitter", f"must be one of {JITTERS}, got {self.jitter!r}")
        if not _finite_non_negative(self.max_stalled):
            raise ConfigurationError(
                "max_stalled", f"must be a finite number >= 0, got {self.max_stalled!r}"
            )
        if self.max_elapsed is not None and not (
            _finite_non_negative(self.max_elapsed) and self.max_elapsed > 0
        ):
            raise ConfigurationError("max_elapsed", f"must be > 0, got {self.max_elapsed!r}")
        if self.deadline is not None and not isinstance(self.deadline, Deadline):
            raise ConfigurationError(
                "deadline", f"must be a Deadline, got {type(self.deadline).__name__}"
            )
        if self.pacer is not None and not _is_pacer(self.pacer):
            raise ConfigurationError("pacer", f"must be a Pacer, got {type(self.pacer).__name__}")
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
        """The tenacity wait this policy uses (``wait`` if given, else jittered backoff from
        ``base_delay``, from ``throttle_base_delay`` after a throttle)."""
        if self.wait is not None:
            return self.wait
        return self._jittered

    @functools.cached_property
    def _jittered(self) -> wait_jittered:
        # asked for when a call is retried: the first use makes the tenacity class
        return _wait.wait_jittered(
            self.base_delay,
            self.max_delay,
            self.jitter,
            self.rng,
            # a throttle never backs off less than any other error would
            throttle_base=max(self.base_delay, self.throttle_base_delay),
            classifier=self.classifier,
        )

    def botocore_config(self, *, max_attempts: int | None = None, **config: Any) -> Config:
        """A botocore ``Config`` under which botocore retries nothing: the core makes every retry.

        ``boto3.client("dynamodb", config=policy.botocore_config())`` gives a client on which a
        call through :meth:`call` puts at most the policy's ``max_attempts`` requests on the
        wire (exactly that many if every one fails), every backoff stays inside the policy's
        deadline, every retry is charged to its budget, and throttles back off from
        ``throttle_base_delay``. Other keyword arguments
        go to ``Config`` (``connect_timeout=2``, ``read_timeout=5``...).

        ``max_attempts`` is deprecated: it hands botocore a share again, up to that many
        attempts (its standard mode) inside each of the core's, never more than the policy's.
        The core still counts them in its ``max_attempts``, but cannot keep botocore's sleeps
        within a deadline nor charge its retries to a budget. The default is 1 (no retry).
        """
        from botocore.config import Config

        if "retries" in config:
            raise ConfigurationError(
                "retries", "botocore_config sets botocore's retries itself; build a Config instead"
            )
        share = 1
        if max_attempts is not None:
            if (
                not isinstance(max_attempts, int)
                or isinstance(max_attempts, bool)
                or max_attempts < 1
            ):
                raise ConfigurationError(
                    "max_attempts", f"must be an int >= 1, got {max_attempts!r}"
                )
            if max_attempts != 1:
                warnings.warn(
                    "botocore_config(max_attempts=...) is deprecated: the core makes every retry "
                    "(RetryPolicy.max_attempts), botocore's retries escape the deadline and the "
                    "budget",
                    DeprecationWarning,
                    stacklevel=2,
                )
            share = min(max_attempts, self.max_attempts)
        # total_max_attempts, not max_attempts: botocore reads the legacy key as *retries*.
        # With no retry of botocore's, legacy mode: standard mode checks a DynamoDB response's
        # x-amz-crc32 only to retry it, and would hand back a corrupted response; legacy mode
        # raises ChecksumError, which the core retries.
        if share == 1:
            return Config(retries={"mode": "legacy", "total_max_attempts": 1}, **config)
        return Config(retries={"mode": "standard", "total_max_attempts": share}, **config)

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
        from resilient_aws.retry import _partial  # the batch engine, loaded by its first user

        return _partial.run_partial(self, send, entries, entry_id=entry_id, operation=operation)


def _is_pacer(value: object) -> bool:
    # a Pacer given to a policy was made, so its module is loaded; a policy without one never
    # loads it
    from resilient_aws.retry._pacer import Pacer

    return isinstance(value, Pacer)


def _finite_non_negative(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


# annotated: mypy may check a module using it before this one (the package is one import cycle)
DEFAULT_POLICY: RetryPolicy = RetryPolicy()

# The engine needs the policy type and the policy runs the engine: bind the module late. (The
# per-entry engine, ``_partial``, is imported by ``run_partial`` on first use.)
from resilient_aws.retry import _run, _wait  # noqa: E402

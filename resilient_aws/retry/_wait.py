"""Backoff with jitter: one formula (:func:`backoff_delay`), and tenacity wait strategies on it.

Formulas from the AWS Architecture Blog post "Exponential Backoff And Jitter", with
``n`` the number of attempts made so far (``n = 1`` before the first retry)::

    none          min(cap, base * 2 ** (n - 1))
    full          uniform(0, min(cap, base * 2 ** (n - 1)))
    equal         t / 2 + uniform(0, t / 2)   where t = min(cap, base * 2 ** (n - 1))
    decorrelated  min(cap, uniform(base, previous * 3))   previous starts at base

As in botocore's standard retry mode, ``base`` is the throttle base after a throttle, and a
service that answers with ``x-amz-retry-after`` (milliseconds) lengthens the delay ``t`` to
``max(t, min(retry_after, t + 5))``: honoured, but never more than five seconds past the
backoff, so that a wrong header cannot park a caller.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from resilient_aws.errors import ConfigurationError
from resilient_aws.retry._classify import ErrorClass, classify

if TYPE_CHECKING:
    from tenacity import RetryCallState
    from tenacity.wait import wait_base

__all__ = [
    "Jitter",
    "JITTERS",
    "RETRY_AFTER_HEADER",
    "RETRY_AFTER_MAX_EXTRA",
    "backoff_delay",
    "retry_after",
    "wait_jittered",
]

Jitter = Literal["full", "equal", "decorrelated", "none"]
JITTERS: tuple[Jitter, ...] = ("full", "equal", "decorrelated", "none")

RETRY_AFTER_HEADER = "x-amz-retry-after"
RETRY_AFTER_MAX_EXTRA = 5.0  # seconds; botocore's _RETRY_AFTER_MAX_ADDITIONAL

_MAX_EXPONENT = 64


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
    previous: float = 0.0,
) -> float:
    """Seconds to wait after ``attempt`` failed attempts: capped exponential backoff, jittered.

    The formula of every backoff of the retry core (see the module), without tenacity:
    ``min(cap, base * 2 ** (attempt - 1))`` with ``"full"``, ``"equal"`` or no (``"none"``)
    jitter, or ``"decorrelated"``: ``min(cap, uniform(base, previous * 3))``, ``previous``
    being the last delay (``0``, the default, for the first: it then starts at ``base``).
    ``base`` may exceed ``cap`` (the cap applies). ``rng`` defaults to the :mod:`random`
    module's generator; pass a seeded :class:`random.Random` for reproducible delays.

    >>> import random
    >>> from resilient_aws.retry import backoff_delay
    >>> backoff_delay(3, base=0.1, cap=5.0, jitter="none")
    0.4
    >>> 0.2 <= backoff_delay(3, base=0.1, cap=5.0, jitter="equal", rng=random.Random(7)) <= 0.4
    True

    Raises :class:`~resilient_aws.errors.ConfigurationError` (a ``ValueError``) for an
    ``attempt`` under 1, a negative or non-finite ``base``, ``cap`` or ``previous``, or an
    unknown ``jitter``.
    """
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise ConfigurationError("attempt", f"must be an int >= 1, got {attempt!r}")
    for name, value in (("base", base), ("cap", cap), ("previous", previous)):
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigurationError(name, f"must be a finite number >= 0, got {value!r}")
    if jitter not in JITTERS:
        raise ConfigurationError("jitter", f"must be one of {JITTERS}, got {jitter!r}")
    uniform = rng.uniform if rng is not None else random.uniform
    return _backoff(attempt, float(base), float(cap), jitter, uniform, float(previous))


def _ceiling(attempt: int, base: float, cap: float) -> float:
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    return float(min(cap, base * 2**exponent))


def _backoff(
    attempt: int,
    base: float,
    cap: float,
    jitter: Jitter,
    uniform: Callable[[float, float], float],
    previous: float,
) -> float:
    # The one implementation of the jittered exponential formula: backoff_delay checks its
    # arguments and calls this; wait_jittered (each policy's backoff) calls it unchecked.
    if jitter == "decorrelated":
        high = max(base, (previous or base) * 3)
        return float(min(cap, uniform(base, high)))
    ceiling = _ceiling(attempt, base, cap)
    if jitter == "full":
        return uniform(0.0, ceiling)
    if jitter == "equal":
        return ceiling / 2 + uniform(0.0, ceiling / 2)
    return ceiling


class _Jittered:
    """The backoff arithmetic of :class:`wait_jittered`, without tenacity: tenacity is imported
    only when a call first fails (a call that succeeds never needs it), and ``wait_jittered``,
    a tenacity ``wait_base``, is made from this class on first use (see ``__getattr__``)."""

    def __init__(
        self,
        base: float,
        cap: float,
        jitter: Jitter = "full",
        rng: random.Random | None = None,
        *,
        throttle_base: float | None = None,
        classifier: Callable[[BaseException], ErrorClass] | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random()
        self.throttle_base = base if throttle_base is None else throttle_base
        self.classifier = classifier

    def ceiling(self, attempt_number: int, *, throttle: bool = False) -> float:
        """The un-jittered delay after ``attempt_number`` attempts."""
        return _ceiling(attempt_number, self.throttle_base if throttle else self.base, self.cap)

    def delay(
        self,
        attempt_number: int,
        *,
        throttle: bool = False,
        previous: float = 0.0,
        retry_after: float | None = None,
    ) -> float:
        """The delay after ``attempt_number`` attempts, the last of which failed with a throttle
        (or not), slept ``previous`` seconds before it, and was answered with ``retry_after``."""
        base = self.throttle_base if throttle else self.base
        delay = _backoff(attempt_number, base, self.cap, self.jitter, self.rng.uniform, previous)
        if retry_after is not None:
            delay = max(delay, min(retry_after, delay + RETRY_AFTER_MAX_EXTRA))
        return delay

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = getattr(retry_state, "outcome", None)  # a hand-made state may carry none
        error = outcome.exception() if outcome is not None and outcome.failed else None
        throttle = (
            error is not None
            and self.throttle_base != self.base
            and (self.classifier or classify)(error).is_throttle
        )
        return self.delay(
            retry_state.attempt_number,
            throttle=throttle,
            previous=retry_state.upcoming_sleep,
            retry_after=retry_after(error),
        )


_WAIT_JITTERED_DOC = """Capped exponential backoff with one of the four jitters; composes like any tenacity wait.

    ``throttle_base`` (default: ``base``) replaces ``base`` when the error that ended the last
    attempt is a throttle, as judged by ``classifier`` (default :func:`classify`); an
    ``x-amz-retry-after`` header on that error is honoured within bounds (see the module).
    """

if TYPE_CHECKING:

    class wait_jittered(_Jittered, wait_base):  # noqa: N801 - tenacity's naming, so that it composes alike
        """Capped exponential backoff with one of the four jitters; composes like any tenacity wait.

        ``throttle_base`` (default: ``base``) replaces ``base`` when the error that ended the last
        attempt is a throttle, as judged by ``classifier`` (default :func:`classify`); an
        ``x-amz-retry-after`` header on that error is honoured within bounds (see the module).
        """

else:

    def __getattr__(name: str) -> Any:
        # PEP 562: ``wait_jittered`` subclasses tenacity's ``wait_base``, so the class is made
        # when it is first asked for; from then on it is a plain attribute of the module.
        if name == "wait_jittered":
            return _make_wait_jittered()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_make_lock = threading.Lock()


def _make_wait_jittered() -> type[_Jittered]:
    with _make_lock:
        made: type[_Jittered] | None = globals().get("wait_jittered")
        if made is None:
            from tenacity.wait import wait_base

            class wait_jittered(_Jittered, wait_base):  # noqa: N801
                __doc__ = _WAIT_JITTERED_DOC

            wait_jittered.__qualname__ = "wait_jittered"
            made = globals()["wait_jittered"] = wait_jittered
        return made


def retry_after(error: BaseException | None) -> float | None:
    """Seconds the service asked the caller to wait before retrying, if it did.

    Read from the ``x-amz-retry-after`` response header (milliseconds) of a botocore
    ``ClientError``; a value that is not a whole non-negative number is ignored, as botocore
    ignores it.
    """
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return None
    metadata = response.get("ResponseMetadata")
    headers = metadata.get("HTTPHeaders") if isinstance(metadata, Mapping) else None
    if not isinstance(headers, Mapping):
        return None
    raw = headers.get(RETRY_AFTER_HEADER)
    if raw is None:
        # botocore lowercases header names; an error built by hand may not have
        raw = next((v for k, v in headers.items() if str(k).lower() == RETRY_AFTER_HEADER), None)
    if raw is None:
        return None
    try:
        seconds = int(raw) / 1000.0
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if seconds >= 0 else None

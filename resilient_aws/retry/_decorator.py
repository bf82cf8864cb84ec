"""``@retry``: the retry core as a decorator for sync and ``async def`` functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

from resilient_aws.retry._policy import DEFAULT_POLICY, RetryPolicy
from resilient_aws.retry._run import acall, call

__all__ = ["retry"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def retry(fn: F, /) -> F: ...


@overload
def retry(policy: RetryPolicy | None = None, /) -> Callable[[F], F]: ...


def retry(arg: Any = None, /) -> Any:
    """Retry a function through the core: ``@retry``, ``@retry()`` or ``@retry(policy)``.

    Works on plain functions and on ``async def`` coroutines alike. What is retried is what
    :func:`classify` calls retryable; the policy's deadline, if any, bounds every call, so for a
    per-invocation deadline call ``policy.with_deadline(...).call(fn, ...)`` instead.
    """
    if callable(arg) and not isinstance(arg, RetryPolicy):
        return _wrap(arg, DEFAULT_POLICY)
    policy = arg if arg is not None else DEFAULT_POLICY

    def decorate(fn: F) -> F:
        return _wrap(fn, policy)

    return decorate


def _wrap(fn: F, policy: RetryPolicy) -> F:
    if inspect.iscoroutinefunction(fn):
        async_fn = cast(Callable[..., Awaitable[Any]], fn)

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await acall(policy, async_fn, args, kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(policy, fn, args, kwargs)

    return cast(F, wrapper)

"""The one retry loop of the library: tenacity, driven by a RetryPolicy.

A call that succeeds at once never builds a :class:`Run`; tenacity is imported when the first
call fails (``_tenacity()``), so that a cold start pays nothing for it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws import tracing
from resilient_aws.errors import (
    AttemptsExhaustedError,
    DeadlineExceededError,
    ElapsedTimeExceededError,
    RetryBudgetExhaustedError,
    RetryError,
)
from resilient_aws.retry._classify import ErrorClass, classify
from resilient_aws.retry._events import RetryEvent, emit
from resilient_aws.retry._wait import retry_after

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState, Retrying
    from tenacity.retry import retry_base
    from tenacity.stop import stop_base

    from resilient_aws.retry._policy import RetryPolicy

T = TypeVar("T")

_GIVE_UP: dict[str, type[RetryError]] = {
    "attempts": AttemptsExhaustedError,
    "elapsed": ElapsedTimeExceededError,
    "deadline": DeadlineExceededError,
    "budget": RetryBudgetExhaustedError,
    "stop": RetryError,
}


class Run:
    """The state of one retried call; never shared between calls, never stored on the policy."""

    def __init__(
        self,
        policy: RetryPolicy,
        operation: str,
        classifier: Callable[[BaseException], ErrorClass] = classify,
        pending_count: Callable[[], int] = lambda: 0,
        started: float | None = None,
    ) -> None:
        self.policy = policy
        self.operation = operation
        self.classifier = classifier
        self.pending_count = pending_count
        self.started = policy.clock() if started is None else started
        self.wire_attempts = 0
        self.retries = 0
        self.reason: str | None = None
        self.last_error: BaseException | None = None
        self.last_class: ErrorClass | None = None
        self.tokens_held = 0

    # tenacity strategies bound to this run
    def is_retryable(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        assert error is not None
        verdict = self.classifier(error)
        self.last_error, self.last_class = error, verdict
        self.wire_attempts += 1 + _botocore_retries(error)
        return verdict.retryable

    def should_stop(self, state: RetryCallState) -> bool:
        policy, upcoming = self.policy, state.upcoming_sleep
        reason: str | None = None
        if policy.stop is not None and policy.stop(state):
            reason = "stop"
        elif self.wire_attempts >= policy.max_attempts:
            reason = "attempts"
        elif policy.max_elapsed is not None and (
            policy.clock() - self.started + upcoming > policy.max_elapsed
        ):
            reason = "elapsed"
        elif policy.deadline is not None and not policy.deadline.allows(upcoming):
            reason = "deadline"
        elif policy.budget is not None:
            cost = policy.budget.cost_of(
                throttle=bool(self.last_class and self.last_class.is_throttle)
            )
            if policy.budget.try_acquire(cost):
                self.tokens_held = cost
            else:
                reason = "budget"
                self._emit("budget_refused", reason=reason)
        if reason is None:
            return False
        self.reason = reason
        self._emit("give_up", reason=reason)
        return True

    def wait(self, state: RetryCallState) -> float:
        """The backoff before the next attempt: from the throttle base after a throttle (as the
        run classified it, so that a partial failure counts as one), longer if the service
        said ``x-amz-retry-after``; the policy's ``wait`` replaces all of it."""
        policy = self.policy
        if policy.wait is not None:
            return float(policy.wait(state))
        return policy._jittered.delay(
            state.attempt_number,
            throttle=bool(self.last_class and self.last_class.is_throttle),
            previous=state.upcoming_sleep,
            retry_after=retry_after(self.last_error),
        )

    def before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        self._emit("retry", delay=state.upcoming_sleep)

    def succeeded(self) -> None:
        budget = self.policy.budget
        if budget is not None:
            budget.release(self.tokens_held if self.retries else budget.success_refund)
        if self.retries:
            self._emit("recovered")

    def give_up_error(self, error: BaseException) -> BaseException:
        """What to raise when ``error`` ends the run: a RetryError if we stopped retrying it."""
        if self.reason is None or error is not self.last_error:
            return error
        give_up = _GIVE_UP[self.reason](self.operation, max(self.wire_attempts, 1), error)
        give_up.__cause__ = error
        return give_up

    def retrying(self) -> Retrying:
        retrying, _, stop, retry = _tenacity()
        return retrying(
            sleep=self.policy.sleep,
            wait=self.wait,
            stop=stop(self),
            retry=retry(self),
            before_sleep=self.before_sleep,
            reraise=True,
        )

    def async_retrying(self) -> AsyncRetrying:
        _, async_retrying, stop, retry = _tenacity()
        return async_retrying(
            sleep=self.policy.async_sleep or _asyncio_sleep,
            wait=self.wait,
            stop=stop(self),
            retry=retry(self),
            before_sleep=self.before_sleep,
            reraise=True,
        )

    def partial_failure(self, code: str, entries: int, *, retryable: bool, attempt: int) -> None:
        """Report that a batch response failed ``entries`` entries with ``code``."""
        emit(
            RetryEvent(
                kind="partial_failure",
                operation=self.operation,
                attempt=attempt,
                error_code=code,
                entries=entries,
                retryable=retryable,
            ),
            self.policy.listeners,
        )

    def _emit(self, kind: Any, *, delay: float = 0.0, reason: str | None = None) -> None:
        emit(
            RetryEvent(
                kind=kind,
                operation=self.operation,
                # a recovery is reported with the attempt that succeeded
                attempt=self.wire_attempts + (1 if kind == "recovered" else 0),
                delay=delay,
                error_code=self.last_class.code if self.last_class else None,
                reason=reason,
                entries=self.pending_count(),
            ),
            self.policy.listeners,
        )


@functools.cache
def _tenacity() -> tuple[
    type[Retrying], type[AsyncRetrying], Callable[[Run], stop_base], Callable[[Run], retry_base]
]:
    """tenacity's loops, and the stop and retry strategies that ask a :class:`Run`, made on
    first use."""
    from tenacity import AsyncRetrying, Retrying
    from tenacity.retry import retry_base
    from tenacity.stop import stop_base

    class _Stop(stop_base):
        def __init__(self, run: Run) -> None:
            self.run = run

        def __call__(self, retry_state: RetryCallState) -> bool:
            return self.run.should_stop(retry_state)

    class _Retry(retry_base):
        def __init__(self, run: Run) -> None:
            self.run = run

        def __call__(self, retry_state: RetryCallState) -> bool:
            return self.run.is_retryable(retry_state)

    return Retrying, AsyncRetrying, _Stop, _Retry


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # only async callers pay for importing asyncio

    await asyncio.sleep(seconds)


def _botocore_retries(error: BaseException) -> int:
    """How many times botocore already retried the request that raised ``error``: none on a
    client from ``botocore_config()``, up to its own max_attempts - 1 on any other client."""
    counted = getattr(error, "botocore_retries", None)
    if isinstance(counted, int):
        return counted
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        attempts = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if isinstance(attempts, int) and attempts > 0:
            return attempts
    return 0


def operation_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def classifier_for(
    policy: RetryPolicy, fn: Callable[..., Any]
) -> Callable[[BaseException], ErrorClass]:
    """The policy's classifier; by default :func:`classify`, told the service model when ``fn``
    is a method of a boto3 client or resource, so that the errors that service models as
    retryable are retried as botocore would have (it retries nothing on our clients)."""
    if policy.classifier is not None:
        return policy.classifier
    service_model = _service_model(fn)
    if service_model is None:
        return classify
    return functools.partial(classify, service_model=service_model)


def _service_model(fn: Callable[..., Any]) -> Any:
    meta = getattr(getattr(fn, "__self__", None), "meta", None)
    client = getattr(meta, "client", None)  # a boto3 resource (Table.put_item) holds a client
    if client is not None:
        meta = getattr(client, "meta", None)
    model = getattr(meta, "service_model", None)
    return model if hasattr(model, "operation_model") else None


def call(
    policy: RetryPolicy,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempt: Callable[..., T] | None = None,
) -> T:
    """``fn(*args, **kwargs)`` retried by ``policy``; each attempt calls ``attempt`` instead
    when given (``fn`` still names and classifies the call)."""
    if attempt is None:
        if tracing._active() is not None:
            return _traced_call(policy, fn, args, kwargs)
        attempt = fn
    started = policy.clock()
    try:
        result = attempt(*args, **kwargs)
    except BaseException as error:
        classifier = classifier_for(policy, fn)
        if not classifier(error).retryable:
            raise
        first_error = error
    else:
        # The common case: no tenacity machinery at all, so a healthy call costs nothing extra.
        if policy.budget is not None:
            policy.budget.release(policy.budget.success_refund)
        return result
    run = Run(policy, operation_name(fn), classifier, started=started)
    try:
        result = run.retrying()(_replaying(first_error, attempt), *args, **kwargs)
    except BaseException as error:
        replacement = run.give_up_error(error)
        if replacement is error:
            raise
        raise replacement from error
    run.succeeded()
    return result


async def acall(
    policy: RetryPolicy,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempt: Callable[..., Awaitable[T]] | None = None,
) -> T:
    """:func:`call` for an ``async def fn``."""
    if attempt is None:
        if tracing._active() is not None:
            return await _traced_acall(policy, fn, args, kwargs)
        attempt = fn
    started = policy.clock()
    try:
        result = await attempt(*args, **kwargs)
    except BaseException as error:
        classifier = classifier_for(policy, fn)
        if not classifier(error).retryable:
            raise
        first_error = error
    else:
        if policy.budget is not None:
            policy.budget.release(policy.budget.success_refund)
        return result
    run = Run(policy, operation_name(fn), classifier, started=started)
    try:
        result = await run.async_retrying()(_areplaying(first_error, attempt), *args, **kwargs)
    except BaseException as error:
        replacement = run.give_up_error(error)
        if replacement is error:
            raise
        raise replacement from error
    run.succeeded()
    return result


# -- spans (tracing on only) -------------------------------------------------------------------
#
# A call is one span, "DynamoDB.PutItem". Once an attempt fails, each attempt is a child span,
# "DynamoDB.PutItem attempt" (the first recorded after the fact, from its start), with its
# outcome (error.type=ThrottlingException...); the gaps between them are the backoff, and why
# each gap is there ("retry": delay, code) and how the call ended ("recovered", "give_up":
# reason) are events of the call's span, made by emit() from the RetryEvents the logs and
# metrics get. A healthy call, the common case, stays one span. Spans are INTERNAL: the
# botocore instrumentation, if on, adds the CLIENT span of each HTTP request inside.


def span_identity(fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """The span name and attributes of a call of ``fn``: ``"DynamoDB.PutItem"`` and the RPC
    attributes for a boto3 client (or resource) method, the function's name otherwise."""
    name = operation_name(fn)
    owner = getattr(fn, "__self__", None)
    meta = getattr(owner, "meta", None)
    client = getattr(meta, "client", None)  # a boto3 resource holds a client
    if client is not None:
        meta = getattr(client, "meta", None)
    mapping = getattr(meta, "method_to_api_mapping", None)
    model = getattr(meta, "service_model", None)
    service = getattr(model, "service_id", None)
    if isinstance(mapping, dict) and service is not None and name in mapping:
        operation = str(mapping[name])
        return f"{service}.{operation}", {
            tracing.OPERATION: operation,
            **tracing.rpc_attributes(str(service), operation),
        }
    return name, {tracing.OPERATION: name}


class Attempts:
    """Counts the attempts of one traced call and gives each a span from the first failure
    on (see above)."""

    __slots__ = ("attributes", "count", "name")

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = f"{name} attempt"
        self.attributes = attributes
        self.count = 0

    def numbered(self) -> dict[str, Any]:
        return {**self.attributes, tracing.ATTEMPT: self.count}

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        def attempt(*args: Any, **kwargs: Any) -> T:
            self.count += 1
            if self.count == 1:
                start = time.time_ns()
                try:
                    return fn(*args, **kwargs)
                except BaseException as error:
                    tracing.span_since(self.name, self.numbered(), start, error=error)
                    raise
            with tracing.span(self.name, self.numbered()):
                return fn(*args, **kwargs)

        return attempt

    def awrap(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def attempt(*args: Any, **kwargs: Any) -> T:
            self.count += 1
            if self.count == 1:
                start = time.time_ns()
                try:
                    return await fn(*args, **kwargs)
                except BaseException as error:
                    tracing.span_since(self.name, self.numbered(), start, error=error)
                    raise
            with tracing.span(self.name, self.numbered()):
                return await fn(*args, **kwargs)

        return attempt


def _traced_call(
    policy: RetryPolicy, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    name, attributes = span_identity(fn)
    attempts = Attempts(name, attributes)
    with tracing.span(name, attributes) as span:
        try:
            return call(policy, fn, args, kwargs, attempts.wrap(fn))
        finally:
            span.set_attribute(tracing.ATTEMPTS, attempts.count)


async def _traced_acall(
    policy: RetryPolicy,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    name, attributes = span_identity(fn)
    attempts = Attempts(name, attributes)
    with tracing.span(name, attributes) as span:
        try:
            return await acall(policy, fn, args, kwargs, attempts.awrap(fn))
        finally:
            span.set_attribute(tracing.ATTEMPTS, attempts.count)


def _replaying(first_error: BaseException, fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, except that its first call re-raises the error the fast path already saw."""
    pending = [first_error]

    def attempt(*args: Any, **kwargs: Any) -> T:
        if pending:
            raise pending.pop()
        return fn(*args, **kwargs)

    return attempt


def _areplaying(
    first_error: BaseException, fn: Callable[..., Awaitable[T]]
) -> Callable[..., Awaitable[T]]:
    pending = [first_error]

    async def attempt(*args: Any, **kwargs: Any) -> T:
        if pending:
            raise pending.pop()
        return await fn(*args, **kwargs)

    return attempt

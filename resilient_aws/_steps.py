"""Operations written once for the sync and the async clients: steps that yield what they need.

An operation is a generator of steps. It yields a :class:`Call` (a client method and its
arguments, sent through the retry core) and gets back the answer, or, thrown in, the error the
retry core finally raised; what may block on other I/O (S3 or KMS on boto3) it yields as a
:class:`Blocking` call. What it returns is the operation's result. :func:`run_steps` answers the
calls with a boto3 client and ``policy.call`` and runs the blocking ones where they stand;
:func:`arun_steps` with an aiobotocore client and ``policy.acall``, the blocking ones in a worker
thread. Requests, conditions, pagination and the reading of answers and errors are written once,
in the steps; the drivers only decide how a request is made.

Every error a step's request raises, ``BaseException`` s included, is thrown into the steps, so
that an operation interrupted mid-request can account for what it may have left (an object
uploaded before the request that would have pointed to it).

The redrive and the idempotency store drive their steps here. The retry core is only named in
annotations: importing this module imports neither it nor tenacity.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws._dataclass import lean_dataclass

if TYPE_CHECKING:
    from resilient_aws.retry import RetryPolicy

__all__ = ["Blocking", "Call", "Steps", "arun_steps", "run_steps"]

T = TypeVar("T")


@lean_dataclass(frozen=True)
class Call:
    """One request a step needs: ``client.<method>(**params)`` through the retry core.

    With ``attempts``, the error of each attempt is appended to it, so that after the core gives
    up the step knows whether any attempt may have been applied."""

    method: str
    params: dict[str, Any]
    attempts: list[BaseException] | None = None


class Blocking:
    """A step that calls ``fn(*args)``, which may block on other I/O: run where it stands by
    :func:`run_steps`, in a worker thread by :func:`arun_steps`."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> None:
        self.fn = fn
        self.args = args


Steps = Generator[Call | Blocking, Any, T]

Errors = Callable[[Exception], BaseException | None]
"""What the error a :class:`Call`'s request raised (the retry core's last) means to the caller:
the error thrown into the steps instead (raised from it), or ``None`` for the error itself."""


def run_steps(
    client: Callable[[], Any], policy: RetryPolicy, steps: Steps[T], *, errors: Errors | None = None
) -> T:
    """Drive ``steps`` with the boto3 client ``client()`` returns (asked at each request: a
    default client follows the environment), every request through ``policy.call``."""
    run = _Run(steps, errors)
    while (step := run.step) is not None:
        if isinstance(step, Blocking):
            run.settle(step.fn, *step.args)
        else:
            run.settle(_request, policy.call, client, step, _Attempts)
    return run.value  # type: ignore[no-any-return]


async def arun_steps(
    client: Callable[[], Any], policy: RetryPolicy, steps: Steps[T], *, errors: Errors | None = None
) -> T:
    """Drive ``steps`` with the aiobotocore client ``client()`` returns, every request through
    ``policy.acall``; :class:`Blocking` steps in a worker thread."""
    import asyncio

    run = _Run(steps, errors)
    while (step := run.step) is not None:
        try:
            if isinstance(step, Blocking):
                answer = await asyncio.to_thread(step.fn, *step.args)
            else:
                answer = await _request(policy.acall, client, step, _AsyncAttempts)
        except BaseException as error:
            run.fail(error)
        else:
            run.reply(answer)
    return run.value  # type: ignore[no-any-return]


class _Run:
    """Where a run of steps stands: the step it waits on, or (``step`` None) what it returned."""

    __slots__ = ("errors", "step", "steps", "value")

    def __init__(self, steps: Steps[Any], errors: Errors | None) -> None:
        self.steps = steps
        self.errors = errors
        self.step: Call | Blocking | None = None
        self.value: Any = None
        self.reply(None)

    def settle(self, fn: Callable[..., Any], *args: Any) -> None:
        """Answer the step with what ``fn(*args)`` returns, or with the error it raises."""
        try:
            answer = fn(*args)
        except BaseException as error:
            self.fail(error)
        else:
            self.reply(answer)

    def reply(self, answer: Any) -> None:
        try:
            self.step = self.steps.send(answer)
        except StopIteration as done:
            self.step, self.value = None, done.value

    def fail(self, error: BaseException) -> None:
        meant = None
        if self.errors is not None and isinstance(self.step, Call) and isinstance(error, Exception):
            meant = self.errors(error)
        if meant is not None:
            # as ``raise meant from error`` in the handler of ``error``
            meant.__cause__ = meant.__context__ = error
            error = meant
        try:
            self.step = self.steps.throw(error)
        except StopIteration as done:
            self.step, self.value = None, done.value


def _request(
    send: Callable[..., Any], client: Callable[[], Any], call: Call, attempts: type[_Attempts]
) -> Any:
    """``send`` (the retry core's call or acall) with the client's method ``call`` names."""
    return send(_method(client(), call, attempts), **call.params)


def _method(client: Any, call: Call, attempts: type[_Attempts]) -> Any:
    method = getattr(client, call.method)
    return method if call.attempts is None else attempts(method, call.method, call.attempts)


class _Attempts:
    """A client method that keeps the error of each attempt the retry core makes with it. It
    passes for the method (``__self__``, ``__name__``): the core still classifies by the
    client's model."""

    def __init__(self, method: Callable[..., Any], name: str, errors: list[BaseException]) -> None:
        self._method = method
        self.__self__ = getattr(method, "__self__", None)
        self.__name__ = str(getattr(method, "__name__", name))
        self.errors = errors

    def __call__(self, **params: Any) -> Any:
        try:
            return self._method(**params)
        except BaseException as error:
            self.errors.append(error)
            raise


class _AsyncAttempts(_Attempts):
    """:class:`_Attempts` for an aiobotocore client's method."""

    async def __call__(self, **params: Any) -> Any:
        try:
            return await self._method(**params)
        except BaseException as error:
            self.errors.append(error)
            raise

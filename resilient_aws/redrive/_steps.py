"""One piece of logic for the sync and the async clients: steps that yield the calls they need.

A step is a generator that yields :class:`Call` s (a client method and its arguments) and gets
back each answer (or, thrown in, each error the retry core finally raised); what it returns is
the step's result. :func:`run_steps` answers the calls with a boto3 client and
``policy.call``, :func:`arun_steps` with an aiobotocore client and ``policy.acall``: looking up
a queue, its source queues or a message's source is written once for both.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.retry import RetryPolicy

__all__ = ["Call", "Steps", "arun_steps", "run_steps"]

T = TypeVar("T")


@lean_dataclass(frozen=True)
class Call:
    """One request a step needs: ``client.<method>(**params)`` through the retry core."""

    method: str
    params: dict[str, Any]


Steps = Generator[Call, Any, T]


class _Stepper:
    """Where a run of steps stands: the call it waits on, or the value it returned."""

    __slots__ = ("call", "steps", "value")

    def __init__(self, steps: Steps[Any]) -> None:
        self.steps = steps
        self.call: Call | None = None
        self.value: Any = None
        self._go(lambda: next(steps))

    def _go(self, advance: Any) -> None:
        try:
            self.call = advance()
        except StopIteration as done:
            self.call, self.value = None, done.value

    def method(self, client: Any) -> Any:
        assert self.call is not None
        return getattr(client, self.call.method)

    def reply(self, answer: Any) -> None:
        self._go(lambda: self.steps.send(answer))

    def fail(self, error: Exception) -> None:
        self._go(lambda: self.steps.throw(error))

    def settle(self, request: Any) -> None:
        """Answer the call with what ``request()`` returns, or with the error it raises."""
        try:
            answer = request()
        except Exception as error:
            self.fail(error)
        else:
            self.reply(answer)


def run_steps(client: Any, policy: RetryPolicy, steps: Steps[T]) -> T:
    """Drive ``steps`` with a boto3 client."""
    run = _Stepper(steps)
    while run.call is not None:
        run.settle(lambda call=run.call: policy.call(run.method(client), **call.params))
    return run.value  # type: ignore[no-any-return]


async def arun_steps(client: Any, policy: RetryPolicy, steps: Steps[T]) -> T:
    """Drive ``steps`` with an aiobotocore client."""
    run = _Stepper(steps)
    while run.call is not None:
        try:
            answer = await policy.acall(run.method(client), **run.call.params)
        except Exception as error:
            run.fail(error)
        else:
            run.reply(answer)
    return run.value  # type: ignore[no-any-return]

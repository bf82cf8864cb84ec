"""``async def`` record functions: bounded concurrency, order kept per FIFO group and stream.

asyncio is imported here, by the first async batch, never by ``import resilient_aws.consumer``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws.consumer._processor import (
    NOT_PROCESSED,
    PRECEDING_RECORD_FAILED,
    FailedRecord,
    error_code,
    is_async,
)

if TYPE_CHECKING:
    from resilient_aws.consumer._processor import BatchProcessor
    from resilient_aws.consumer._records import CheckedBatch
    from resilient_aws.retry import Deadline, RetryPolicy

__all__ = ["awaitable_function", "process_async", "run_on_loop"]

T = TypeVar("T")

_local = threading.local()


class _ThreadLoop:
    """The event loop kept for one thread, closed when the thread ends (its thread-local goes):
    left to the collector, an open loop is a ResourceWarning in every process that runs
    record functions from worker threads."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_running():
            self.loop.close()


def run_on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code, on an event loop kept for the
    thread: a Lambda container reuses it across invocations, so that clients bound to a loop
    (an aiohttp session made at import) keep working after a freeze and thaw, which
    ``asyncio.run`` (a new loop each time, closed after) would break."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coroutine.close()
        raise RuntimeError(
            "an async record function in a running event loop: await processor.aprocess(...)"
        )
    kept: _ThreadLoop | None = getattr(_local, "kept", None)
    if kept is None or kept.loop.is_closed():
        kept = _local.kept = _ThreadLoop()
    return kept.loop.run_until_complete(coroutine)


class _Interrupted(Exception):  # noqa: N818  # carries a BaseException out of a lane
    """A lane's ``KeyboardInterrupt``, ``SystemExit``... on its way to :func:`process_async`,
    which stops the other lanes before letting it through. Raised as is from inside a task,
    asyncio would throw it out of the loop at once and leave the other lanes (and the batch's
    own task) pending on the loop kept for the thread: the next invocation would run them and
    receive the interrupt."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _being_cancelled() -> bool:
    """Whether the running task itself was asked to stop (the invocation is being cancelled),
    as opposed to a record function awaiting something that was cancelled. Without
    ``Task.cancelling`` (Python 3.10) it cannot tell, and says yes: the invocation fails."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def awaitable_function(fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``fn`` as an ``async def``: an ``async def`` itself, or a plain function whose result
    is awaited when it is awaitable (``lambda r: send(r)``), inside the policy, so that its
    failure is the record's and its retries count."""
    if is_async(fn):
        return fn

    async def function(*args: Any) -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    # the retry core names its logs, events and spans after the function it calls
    function.__name__ = getattr(fn, "__name__", type(fn).__name__)
    return function


async def process_async(
    processor: BatchProcessor,
    batch: CheckedBatch,
    wrap: Callable[[dict[str, Any]], Any],
    fn: Callable[..., Any],
    passes_context: bool,
    context: Any,
    deadline: Deadline | None,
    policy: RetryPolicy | None,
) -> list[FailedRecord]:
    """Run every lane at once, each lane in order, at most ``processor.concurrency`` records
    at a time. A lane is a FIFO group or a stream (in order, stopped by a failure), or one
    record of a standard queue.

    No record of the batch runs after this returns or raises: a ``BaseException`` in one lane
    (``KeyboardInterrupt``, the invocation cancelled) cancels the others and waits for them
    before it goes on."""
    records, ids = batch.records, batch.ids
    lanes: list[list[int]]
    if batch.lanes is None:
        lanes = [[i] for i in range(len(records))]
    else:
        by_key: dict[str, list[int]] = {}
        for index, key in enumerate(batch.lanes):
            by_key.setdefault(key, []).append(index)
        lanes = list(by_key.values())
    failed: list[FailedRecord] = []
    gate = asyncio.Semaphore(processor.concurrency)
    clock = processor.clock
    end = deadline.at if deadline is not None else None
    state = {"slowest": 0.0, "cut": False}
    function = awaitable_function(fn)

    async def attempt(record: Any) -> None:
        args = (record, context) if passes_context else (record,)
        if policy is not None:
            await policy.acall(function, *args)
        else:
            await function(*args)

    def fail(position: int, lane: list[int], error: BaseException) -> None:
        index = lane[position]
        failed.append(FailedRecord(index, ids[index], error_code(error), error))
        failed.extend(
            FailedRecord(i, ids[i], PRECEDING_RECORD_FAILED) for i in lane[position + 1 :]
        )

    async def run_lane(lane: list[int]) -> None:
        for position, index in enumerate(lane):
            async with gate:
                started = clock()
                if not state["cut"] and end is not None:
                    # not enough time left for the slowest record so far: stop taking records
                    state["cut"] = started + state["slowest"] >= end
                if state["cut"]:
                    failed.extend(FailedRecord(i, ids[i], NOT_PROCESSED) for i in lane[position:])
                    return
                try:
                    await attempt(wrap(records[index]))
                except Exception as error:
                    fail(position, lane, error)
                    return
                except asyncio.CancelledError as error:
                    if _being_cancelled():
                        raise  # the invocation is being cancelled, not this record
                    # the record function awaited something that was cancelled: its failure
                    fail(position, lane, error)
                    return
                except GeneratorExit:
                    raise  # the coroutine is being closed: let it close
                except BaseException as error:
                    raise _Interrupted(error) from None
                finally:
                    took = clock() - started
                    if took > state["slowest"]:
                        state["slowest"] = took

    tasks = [asyncio.ensure_future(run_lane(lane)) for lane in lanes]
    try:
        await asyncio.gather(*tasks)
    except BaseException as error:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(error, _Interrupted):
            raise error.error from None
        raise
    return failed

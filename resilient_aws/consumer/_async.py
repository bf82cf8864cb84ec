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
)

if TYPE_CHECKING:
    from resilient_aws.consumer._processor import BatchProcessor
    from resilient_aws.consumer._records import CheckedBatch
    from resilient_aws.retry import Deadline, RetryPolicy

__all__ = ["process_async", "run_on_loop"]

T = TypeVar("T")

_local = threading.local()


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
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


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
    record of a standard queue."""
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
    is_async = inspect.iscoroutinefunction(fn)

    async def attempt(record: Any) -> None:
        args = (record, context) if passes_context else (record,)
        if policy is not None:
            if is_async:
                await policy.acall(fn, *args)
            else:
                policy.call(fn, *args)
        elif is_async:
            await fn(*args)
        else:
            fn(*args)

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
                    failed.append(FailedRecord(index, ids[index], error_code(error), error))
                    failed.extend(
                        FailedRecord(i, ids[i], PRECEDING_RECORD_FAILED)
                        for i in lane[position + 1 :]
                    )
                    return
                finally:
                    took = clock() - started
                    if took > state["slowest"]:
                        state["slowest"] = took

    await asyncio.gather(*(run_lane(lane) for lane in lanes))
    return failed

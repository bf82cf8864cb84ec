"""The event loop an async record function runs on is kept per thread (a Lambda container reuses
it across invocations); a thread that ends must not leave it open for the collector to warn
about."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

from resilient_aws.consumer._async import run_on_loop


async def _answer() -> int:
    return 42


def test_the_loop_is_reused_by_the_thread_that_made_it() -> None:
    first: list[asyncio.AbstractEventLoop] = []

    async def loop_of() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def twice() -> None:
        first.append(run_on_loop(loop_of()))
        first.append(run_on_loop(loop_of()))

    thread = threading.Thread(target=twice)
    thread.start()
    thread.join()
    assert first[0] is first[1]
    assert first[0].is_closed()  # the thread ended: its loop was closed with it


def test_a_thread_that_ends_closes_its_loop_without_a_warning() -> None:
    results: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=lambda: results.append(run_on_loop(_answer())))
        thread.start()
        thread.join()
        del thread
        gc.collect()
    assert results == [42]
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []

"""The batch engine's asyncio driver: the same buffer, pacer, retries and accounting as the
sync one (:class:`~resilient_aws._batching.BatchEngine`), with requests made by tasks on the
running event loop instead of threads.

Only the waiting differs: ``add()`` buffers (it never sends), then the caller awaits
:meth:`AsyncBatchEngine.pump`, which starts a task per full request, up to ``concurrency`` in
flight. What a request means for its entries (pacing, retries, splits, give-ups, the result)
is decided by the phases both drivers share.

Cancellation never loses an entry: a request cancelled while it waits for the pacer reports
its entries ``NotSent``, one cancelled in flight ``OutcomeUnknown``; entries still buffered
when a cancelled ``aclose()`` ends are reported ``NotSent``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Hashable
from typing import Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws import tracing
from resilient_aws._batching import BatchEngine, Entry, Sent, _Closed
from resilient_aws.errors import ConfigurationError
from resilient_aws.results import BatchResult

__all__ = ["AsyncAdapter", "AsyncBatchEngine"]

logger = logging.getLogger("resilient_aws.batch")

S = TypeVar("S")

# What a request task cancelled before its first step is reported with (``NotSent``).
_NEVER_STARTED = asyncio.CancelledError()


class AsyncAdapter(Protocol[S]):
    """How to make one request with an async client (aiobotocore) and read its answers."""

    operation: str

    async def asend_request(self, batch: list[Entry[S]]) -> Sent[S]:
        """Make one request; raise for whole-request errors, report per-entry failures."""
        ...


class AsyncBatchEngine(BatchEngine[S]):
    """:class:`~resilient_aws._batching.BatchEngine` driven from an event loop.

    ``add()`` only buffers; await :meth:`pump` after it (full requests go out as tasks), and
    :meth:`aflush` / :meth:`aclose` instead of ``flush()`` / ``close()``. The adapter is an
    :class:`AsyncAdapter`. ``flush_interval`` is not supported: call :meth:`aflush` on a
    timer of your own.
    """

    stages = False  # BatchEngine.send_staged makes the request on the caller's thread

    def __init__(self, adapter: Any, **options: Any) -> None:
        if options.get("flush_interval") is not None:
            raise ConfigurationError(
                "flush_interval", "not supported by the async writers: await flush() instead"
            )
        super().__init__(adapter, **options)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- feeding --------------------------------------------------------------------------------

    def _send_full_chunks(self) -> None:
        """``add()`` only buffers here: the caller awaits :meth:`pump` next."""

    async def pump(self) -> None:
        """Start a request for every full chunk buffered, waiting for a free slot when
        ``concurrency`` requests are in flight."""
        while True:
            with self._lock:
                if not self._full():
                    return
            if not await self._send_one_chunk_async():
                await self._await_any()

    async def aflush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled."""
        while True:
            if self._pending:
                if not await self._send_one_chunk_async():
                    await self._await_any()
                continue
            await self._await_all()
            if not self._pending:
                return

    async def aclose(self) -> BatchResult[S]:
        """Flush, then return the result; raise if entries finally failed.

        If the flush raises, the requests still in flight are waited for (a bug) or cancelled
        (the close was cancelled: their entries are ``OutcomeUnknown``), and whatever is still
        buffered is reported ``NotSent``, before the exception goes on.
        """
        if not self.closed:
            cancelled = False
            try:
                await self.aflush()
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                self.closed = True
                try:
                    await self._settle_tasks(cancel=cancelled)
                finally:
                    self._fail_unsent()
                self.adapter = _Closed(self.adapter.operation, self.limits)
        if self.result.failed and self.raise_on_failure:
            raise self.error(self.result)
        return self.result

    async def aabandon(self) -> None:
        """Stop without flushing (a read its caller no longer waits for): cancel the requests
        in flight (their entries ``OutcomeUnknown``) and report what is buffered ``NotSent``."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._settle_tasks(cancel=True)
        finally:
            self._fail_unsent()
            self.adapter = _Closed(self.adapter.operation, self.limits)

    async def aexit(self, error: BaseException | None, owner: str) -> None:
        """Leave an ``async with`` block: :meth:`BatchEngine.exit`'s rules, awaited."""
        if error is None:
            await self.aclose()
            return
        raise_on_failure, self.raise_on_failure = self.raise_on_failure, False
        try:
            await self.aclose()
        finally:
            self.raise_on_failure = raise_on_failure
        if self.result.failed:
            logger.warning("%s closed by an exception with failed entries: %s", owner, self.result)

    def close(self) -> BatchResult[S]:
        raise ConfigurationError("close", "an async writer is closed with `await aclose()`")

    def flush(self) -> None:
        raise ConfigurationError("flush", "an async writer is flushed with `await aflush()`")

    # -- requests as tasks ----------------------------------------------------------------------

    async def _send_one_chunk_async(self) -> bool:
        """Start one request as a task; False when every pending entry waits for a group."""
        # Wait for a free slot before a chunk leaves the buffer: a cancellation or a task's
        # error surfacing here must not take entries with it.
        while len(self._tasks) >= self.concurrency:
            await self._await_any()
        with self._lock:
            chunk, groups = self._take_chunk()
            if not chunk:
                return not self._pending
            self._requests_in_flight += 1
        started: list[bool] = []
        try:
            task = asyncio.get_running_loop().create_task(
                self._settle_async(chunk, groups, started)
            )
        except BaseException as error:
            self._settled_without_sending(chunk, groups, error)
            raise
        # A task cancelled before its first step never runs a line of its coroutine (its
        # `finally` included): a close cancelled in the loop iteration a producer started a
        # request in, or a loop shutting down. Its done callback accounts for the chunk then.
        task.add_done_callback(functools.partial(self._if_never_started, chunk, groups, started))
        self._tasks.add(task)
        return True

    def _if_never_started(
        self,
        chunk: list[Entry[S]],
        groups: set[Hashable],
        started: list[bool],
        task: asyncio.Task[None],
    ) -> None:
        if not started:
            self._settled_without_sending(chunk, groups, _NEVER_STARTED)

    async def _settle_async(
        self, chunk: list[Entry[S]], groups: set[Hashable], started: list[bool]
    ) -> None:
        started.append(True)
        try:
            await self._send_async(chunk)
        finally:
            with self._lock:
                if groups:
                    self._in_flight_groups -= groups
                self._requests_in_flight -= 1

    async def _send_async(self, chunk: list[Entry[S]]) -> None:
        """:meth:`BatchEngine._send`, awaiting the pacer and the adapter."""
        try:
            chunk, delay = self._paced(chunk)
            if not chunk:
                return
            if delay > 0:
                await (self.policy.async_sleep or asyncio.sleep)(delay)
            self._sending(chunk)
            scope = self._request_span(chunk)
        except BaseException as error:  # a cancellation or an interrupt before it left
            self._not_sent(chunk, error)
            raise
        with scope as span:
            try:
                sent = await self.adapter.asend_request(chunk)  # type: ignore[attr-defined]
            except (ClientError, BotoCoreError) as error:
                tracing.mark_failed(span, error)
                halves = self._failed_request(chunk, error)
            except BaseException as error:
                self._unknown(chunk, error)
                raise
            else:
                self._answer(chunk, sent)
                if sent.failed:
                    span.set_attribute(tracing.FAILED, len(sent.failed))
                return
        if halves is not None:
            first, second = halves
            try:
                await self._send_async(first)
            except BaseException as interrupt:  # the first half accounted for itself
                self._not_sent(second, interrupt)
                raise
            await self._send_async(second)

    async def _await_any(self) -> None:
        if not self._tasks:
            return
        done, _ = await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        self._collect_tasks(done)

    async def _await_all(self) -> None:
        while self._tasks:
            done, _ = await asyncio.wait(set(self._tasks))
            self._collect_tasks(done)

    def _collect_tasks(self, done: set[asyncio.Task[None]]) -> None:
        for task in done:
            if task not in self._tasks:
                continue  # another waiter collected it: its error surfaces once
            self._tasks.discard(task)
            task.result()  # a bug in a request surfaces here, once; the others stay to collect

    async def _settle_tasks(self, *, cancel: bool) -> None:
        """At close: let the requests in flight settle, or ``cancel`` them (each accounts for
        its entries either way), and log the errors nobody raised. Cancelled meanwhile: cancel
        them, then wait."""
        tasks = set(self._tasks)
        if not tasks:
            return
        if cancel:
            for task in tasks:
                task.cancel()
        try:
            await asyncio.wait(tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            raise
        finally:
            self._tasks.clear()
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error(
                        "%s request failed while another error was raised",
                        self.adapter.operation,
                        exc_info=task.exception(),
                    )

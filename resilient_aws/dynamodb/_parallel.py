"""parallel_scan: TotalSegments fan-out on a thread pool, items yielded as they arrive.

Memory is bounded in bytes, not in pages: a worker reserves room for the page it is about to
read before it sends the request (twice the page's expected size while the response is parsed,
the page's own size once it is read), and the room is given back when the consumer has finished
with the page. Pages read, queued and in the consumer's hands together stay under
``max_buffer_bytes`` (give or take one page's estimate), however large the table; when pages are
large, fewer segments are read at once.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from resilient_aws.dynamodb._client import dynamodb_client
from resilient_aws.dynamodb._read import Page, Read, ReadSummary, scan
from resilient_aws.errors import ConfigurationError

__all__ = ["DEFAULT_SCAN_BUFFER_BYTES", "ParallelScan", "parallel_scan"]

_DONE = object()
_MiB = 1024 * 1024
# Pages in flight, queued and being consumed: 8 segments of a table read in a 128 MB Lambda
# function, next to the runtime and boto3 (~50-80 MB), with room to spare.
DEFAULT_SCAN_BUFFER_BYTES = 32 * _MiB
# What a page read before any other was (1 MB of DynamoDB JSON is about 3-4 MB of Python items),
# and what reading one costs on top of its items while the response is parsed (botocore's dicts
# of typed values are about twice the plain items).
_FIRST_PAGE_GUESS = 4 * _MiB
_PARSE_FACTOR = 2
_MIN_PAGE_BYTES = 16 * 1024
_SAMPLE = 16


class ParallelScan:
    """A scan split into ``segments`` read by ``workers`` threads; iterate for items.

    With an async (aiobotocore) ``client=``, ``async for item in parallel_scan(...)`` reads the
    segments with ``workers`` tasks on the running loop instead, under the same byte budget.

    Items arrive in no particular order, as pages come back. :attr:`cursors` maps each segment
    to where it would resume (``None`` once finished); pass it back as
    ``parallel_scan(table, segments=N, cursors=...)`` to resume every segment where it stopped.
    A segment's cursor moves once its page has been consumed, so stopping early re-delivers at
    most the pages in hand, never skips one.

    ``max_buffer_bytes`` bounds the memory of the pages being read, waiting and being consumed
    (estimated from the items, default 32 MiB): workers wait for room before reading the next
    page, so large pages mean fewer segments in flight, never more memory.
    """

    def __init__(
        self,
        table: str,
        *,
        segments: int,
        workers: int | None = None,
        cursors: Mapping[int, str | None] | None = None,
        client: Any = None,
        session: Any = None,
        max_buffer_bytes: int = DEFAULT_SCAN_BUFFER_BYTES,
        **options: Any,
    ) -> None:
        if segments < 1:
            raise ConfigurationError("segments", f"must be >= 1, got {segments!r}")
        if type(max_buffer_bytes) is not int or max_buffer_bytes < 1:
            raise ConfigurationError(
                "max_buffer_bytes", f"must be an int >= 1, got {max_buffer_bytes!r}"
            )
        workers = min(segments, 8) if workers is None else workers
        if workers < 1:
            raise ConfigurationError("workers", f"must be >= 1, got {workers!r}")
        self.table = table
        self.segments = segments
        self.workers = workers
        self.max_buffer_bytes = max_buffer_bytes
        self.client = dynamodb_client(client, session)
        self.options = options
        self.cursors: dict[int, str | None] = {}
        given = dict(cursors or {})
        self._todo = [s for s in range(segments) if not (s in given and given[s] is None)]
        self._start = {s: given.get(s) for s in self._todo}
        for segment in range(segments):
            if segment not in self._todo:
                self.cursors[segment] = None
        self.summary = ReadSummary()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, page in self.pages():
            yield from page.items

    def pages(self) -> Iterator[tuple[int, Page]]:
        """``(segment, page)`` pairs as they arrive."""
        # Bounded by the budget in bytes, not by a count of pages.
        results: queue.Queue[Any] = queue.Queue()
        budget = _Budget(self.max_buffer_bytes)
        stop = threading.Event()
        todo: queue.Queue[int] = queue.Queue()
        for segment in self._todo:
            todo.put(segment)

        def work() -> None:
            while not stop.is_set():
                try:
                    segment = todo.get_nowait()
                except queue.Empty:
                    break
                try:
                    if not self._read_segment(segment, budget, results):
                        return  # the consumer stopped
                except BaseException as error:  # handed to the consumer, who raises it
                    results.put(error)
                    return
                results.put((segment, _DONE, 0))

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="resilient-aws-scan")
        for _ in range(self.workers):
            pool.submit(work)
        finished = 0
        try:
            while finished < len(self._todo):
                got = results.get()
                if isinstance(got, BaseException):
                    raise got
                segment, page, size = got
                if page is _DONE:
                    finished += 1
                    self.cursors[segment] = None
                    continue
                self._count(segment, page)
                yield segment, page
                self.cursors[segment] = page.cursor
                del got, page  # nothing here keeps it alive past its release
                budget.release(size)  # the consumer is done with it
        finally:
            stop.set()
            budget.close()  # workers waiting for room stop at once
            pool.shutdown(wait=True)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._aitems()

    async def _aitems(self) -> AsyncIterator[dict[str, Any]]:
        async for _, page in self.apages():
            for item in page.items:
                yield item

    async def apages(self) -> AsyncIterator[tuple[int, Page]]:
        """:meth:`pages` with an async (aiobotocore) ``client=``: up to ``workers`` segments
        read by tasks on the running loop, under the same byte budget."""
        import asyncio

        results: asyncio.Queue[Any] = asyncio.Queue()
        budget = _Budget(self.max_buffer_bytes)
        room = asyncio.Event()
        todo = list(reversed(self._todo))

        async def work() -> None:
            while todo:
                segment = todo.pop()
                try:
                    if not await self._aread_segment(segment, budget, room, results):
                        return  # the consumer stopped
                except BaseException as error:  # handed to the consumer, who raises it
                    results.put_nowait(error)
                    return
                results.put_nowait((segment, _DONE, 0))

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(work()) for _ in range(min(self.workers, len(todo)))]
        finished = 0
        try:
            while finished < len(self._todo):
                got = await results.get()
                if isinstance(got, BaseException):
                    raise got
                segment, page, size = got
                if page is _DONE:
                    finished += 1
                    self.cursors[segment] = None
                    continue
                self._count(segment, page)
                yield segment, page
                self.cursors[segment] = page.cursor
                del got, page
                budget.used -= size  # the consumer is done with it
                room.set()
        finally:
            budget.closed = True
            room.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _aread_segment(self, segment: int, budget: _Budget, room: Any, results: Any) -> bool:
        """:meth:`_read_segment` on the loop: one read per page, from the previous cursor."""
        options = dict(self.options)
        remaining: int | None = options.pop("max_items", None)
        cursor = self._start.get(segment)
        while remaining is None or remaining > 0:
            reserved = await budget.areserve(room)
            if reserved is None:
                return False
            try:
                read = self._segment_read(segment, cursor, remaining, options)
                pages = read.apages()
                page = await anext(pages, None)
                await pages.aclose()
            except BaseException:
                budget.used -= reserved
                room.set()
                raise
            if page is None:
                budget.used -= reserved
                room.set()
                break
            size = budget.settle_unlocked(reserved, page_bytes(page.items))
            room.set()
            cursor = page.cursor
            if remaining is not None:
                remaining -= len(page.items)
            results.put_nowait((segment, page, size))
            del page
            if cursor is None:
                break
        return True

    def _segment_read(
        self, segment: int, cursor: str | None, remaining: int | None, options: dict[str, Any]
    ) -> Read:
        return scan(
            self.table,
            client=self.client,
            segment=segment,
            total_segments=self.segments,
            cursor=cursor,
            max_items=remaining,
            **options,
        )

    def _read_segment(self, segment: int, budget: _Budget, results: queue.Queue[Any]) -> bool:
        """Read one segment page by page into ``results``; False if the consumer stopped.

        Each page is read by a read of its own, from the previous page's cursor, closed as soon
        as it has handed its page over: a read paused between pages would keep its last
        response (the parsed wire format, about twice the page) alive while this worker waits
        for room and reads the next one.
        """
        options = dict(self.options)
        remaining: int | None = options.pop("max_items", None)
        cursor = self._start.get(segment)
        summary = ReadSummary()
        last: Read | None = None
        while remaining is None or remaining > 0:
            reserved = budget.reserve()  # room for the page before asking for it
            if reserved is None:
                return False
            try:
                read = self._segment_read(segment, cursor, remaining, options)
                pages = read.pages()
                page = next(pages, None)
                close = getattr(pages, "close", None)  # a generator: frees its frame now
                if close is not None:
                    close()
            except BaseException:
                budget.release(reserved)
                raise
            if page is None:
                budget.release(reserved)
                break
            _add(summary, read.summary)
            last = read
            size = budget.settle(reserved, page_bytes(page.items))
            cursor = page.cursor
            if remaining is not None:
                remaining -= len(page.items)
            results.put((segment, page, size))
            del page  # the consumer's now: never kept alive past its release
            if cursor is None:
                break
        if last is not None:  # the segment's filter warning, as one read would give it
            last.summary = summary
            last._warn_about_filter()
        return True

    @property
    def done(self) -> bool:
        return len(self.cursors) == self.segments and all(c is None for c in self.cursors.values())

    def _count(self, segment: int, page: Page) -> None:
        self.summary.pages += 1
        self.summary.scanned += page.scanned_count
        self.summary.returned += len(page.items)
        self.summary.by_segment[segment] = self.summary.by_segment.get(segment, 0) + len(page.items)


def _add(total: ReadSummary, page: ReadSummary) -> None:
    total.pages += page.pages
    total.scanned += page.scanned
    total.returned += page.returned
    total.capacity_units += page.capacity_units


class _Budget:
    """Bytes of pages being read, queued or consumed; a reservation waits for room.

    A reservation is admitted when it fits or when nothing else is held, so one page always
    moves however small the budget. Before any page was read, a page is expected to be
    ``_FIRST_PAGE_GUESS``; then as large as the largest page read so far.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.expected: int | None = None
        self.closed = False
        self.cond = threading.Condition()

    def reserve(self) -> int | None:
        """Room for reading one page (its parse included); ``None`` once closed."""
        with self.cond:
            want = self._want()
            while self._waits(want):
                self.cond.wait()
            return self._admit(want)

    async def areserve(self, changed: Any) -> int | None:
        """:meth:`reserve` on an event loop: ``changed`` is an ``asyncio.Event`` set whenever
        room is given back (the budget is then used by one loop only: no lock is taken)."""
        want = self._want()
        while self._waits(want):
            changed.clear()
            await changed.wait()
        return self._admit(want)

    def _want(self) -> int:
        expected = _FIRST_PAGE_GUESS if self.expected is None else self.expected
        return expected * _PARSE_FACTOR

    def _waits(self, want: int) -> bool:
        return not self.closed and self.used > 0 and self.used + want > self.limit

    def _admit(self, want: int) -> int | None:
        if self.closed:
            return None
        self._hold(want)
        return want

    def settle(self, reserved: int, size: int) -> int:
        """The page is read: hold its ``size`` instead of the reservation."""
        with self.cond:
            self.settle_unlocked(reserved, size)
            self.cond.notify_all()
        return size

    def settle_unlocked(self, reserved: int, size: int) -> int:
        self.expected = size if self.expected is None else max(self.expected, size)
        self.used -= reserved
        self._hold(size)
        return size

    def release(self, size: int) -> None:
        with self.cond:
            self.used -= size
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _hold(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)


def page_bytes(items: list[dict[str, Any]]) -> int:
    """About how much memory ``items`` take: the size of up to 16 items spread over the page,
    times the number of items (items of a table are alike; a page is at most 1 MB of them)."""
    count = len(items)
    if not count:
        return _MIN_PAGE_BYTES
    step = max(1, count // _SAMPLE)
    sample = items[::step]
    sampled = sum(_size_of(item) for item in sample)
    return max(_MIN_PAGE_BYTES, sys.getsizeof(items) + sampled * count // len(sample))


def _size_of(value: Any, depth: int = 0) -> int:
    size = sys.getsizeof(value)
    if depth > 32:
        return size
    if isinstance(value, dict):
        return size + sum(sys.getsizeof(k) + _size_of(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return size + sum(_size_of(v, depth + 1) for v in value)
    if isinstance(value, (str, bytes, int, float, bool, Decimal)) or value is None:
        return size
    inner = getattr(value, "value", None)  # boto3's Binary
    return size + (sys.getsizeof(inner) if inner is not None else 0)


def parallel_scan(
    table: str,
    *,
    segments: int,
    workers: int | None = None,
    cursors: Mapping[int, str | None] | None = None,
    client: Any = None,
    session: Any = None,
    max_buffer_bytes: int = DEFAULT_SCAN_BUFFER_BYTES,
    **options: Any,
) -> ParallelScan:
    """Scan ``table`` in ``segments`` on ``workers`` threads (default: ``min(segments, 8)``).

    ``options`` are those of :func:`scan` (``policy``, ``numbers``, ``page_size``,
    ``FilterExpression``...). Each segment is a :func:`scan_segment`; a run that outgrows one
    machine fans segments out across Lambda invocations or a Step Functions Distributed Map.
    ``max_buffer_bytes`` (default 32 MiB) bounds the memory of the pages read ahead of the
    consumer, in bytes of items: the default fits 8 segments in a 128 MB Lambda function.
    """
    return ParallelScan(
        table,
        segments=segments,
        workers=workers,
        cursors=cursors,
        client=client,
        session=session,
        max_buffer_bytes=max_buffer_bytes,
        **options,
    )

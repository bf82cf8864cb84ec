"""parallel_scan: TotalSegments fan-out on a thread pool, items yielded as they arrive."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resilient_aws.dynamodb._client import dynamodb_client
from resilient_aws.dynamodb._read import Page, ReadSummary, scan
from resilient_aws.errors import ConfigurationError

__all__ = ["ParallelScan", "parallel_scan"]

_DONE = object()


class ParallelScan:
    """A scan split into ``segments`` read by ``workers`` threads; iterate for items.

    Items arrive in no particular order, as pages come back. :attr:`cursors` maps each segment
    to where it would resume (``None`` once finished); pass it back as
    ``parallel_scan(table, segments=N, cursors=...)`` to resume every segment where it stopped.
    A segment's cursor moves once its page has been consumed, so stopping early re-delivers at
    most the pages in hand, never skips one.
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
        **options: Any,
    ) -> None:
        if segments < 1:
            raise ConfigurationError("segments", f"must be >= 1, got {segments!r}")
        workers = min(segments, 8) if workers is None else workers
        if workers < 1:
            raise ConfigurationError("workers", f"must be >= 1, got {workers!r}")
        self.table = table
        self.segments = segments
        self.workers = workers
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
        results: queue.Queue[Any] = queue.Queue(maxsize=self.workers * 2)
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
                    read = scan(
                        self.table,
                        client=self.client,
                        segment=segment,
                        total_segments=self.segments,
                        cursor=self._start.get(segment),
                        **self.options,
                    )
                    for page in read.pages():
                        if not _put(results, (segment, page), stop):
                            return
                except BaseException as error:  # handed to the consumer, who raises it
                    _put(results, error, stop)
                    return
                _put(results, (segment, _DONE), stop)

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="resilient-aws-scan")
        for _ in range(self.workers):
            pool.submit(work)
        finished = 0
        try:
            while finished < len(self._todo):
                got = results.get()
                if isinstance(got, BaseException):
                    raise got
                segment, page = got
                if page is _DONE:
                    finished += 1
                    self.cursors[segment] = None
                    continue
                self._count(segment, page)
                yield segment, page
                self.cursors[segment] = page.cursor
        finally:
            stop.set()  # workers notice within one put timeout, even on a full queue
            pool.shutdown(wait=True)

    @property
    def done(self) -> bool:
        return len(self.cursors) == self.segments and all(c is None for c in self.cursors.values())

    def _count(self, segment: int, page: Page) -> None:
        self.summary.pages += 1
        self.summary.scanned += page.scanned_count
        self.summary.returned += len(page.items)
        self.summary.by_segment[segment] = self.summary.by_segment.get(segment, 0) + len(page.items)


def _put(results: queue.Queue[Any], value: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            results.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def parallel_scan(
    table: str,
    *,
    segments: int,
    workers: int | None = None,
    cursors: Mapping[int, str | None] | None = None,
    client: Any = None,
    session: Any = None,
    **options: Any,
) -> ParallelScan:
    """Scan ``table`` in ``segments`` on ``workers`` threads (default: ``min(segments, 8)``).

    ``options`` are those of :func:`scan` (``policy``, ``numbers``, ``page_size``,
    ``FilterExpression``...). Each segment is a :func:`scan_segment`; a run that outgrows one
    machine fans segments out across Lambda invocations or a Step Functions Distributed Map.
    """
    return ParallelScan(
        table,
        segments=segments,
        workers=workers,
        cursors=cursors,
        client=client,
        session=session,
        **options,
    )

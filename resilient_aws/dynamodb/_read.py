"""scan and query that always follow LastEvaluatedKey, with resumable cursors."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import field
from typing import Any, Literal

from botocore.exceptions import ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.dynamodb._client import dynamodb_client, missing_table, table_name
from resilient_aws.dynamodb._cursor import decode_cursor, encode_cursor
from resilient_aws.dynamodb._expressions import prepare_expressions
from resilient_aws.dynamodb._schema import _atable_keys, _positions, position_attributes
from resilient_aws.dynamodb._serialize import Numbers, deserialize_item
from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["Page", "Read", "ReadSummary", "query", "scan", "scan_segment"]

logger = logging.getLogger("resilient_aws.dynamodb")

Operation = Literal["Scan", "Query"]


@lean_dataclass(frozen=True)
class Page:
    """One response: its ``items`` (plain values), DynamoDB's counts, and where to resume.

    ``cursor`` resumes the read after this page; ``None`` on the last page.
    """

    items: list[dict[str, Any]]
    count: int
    scanned_count: int
    consumed_capacity: Any = None
    cursor: str | None = None


@lean_dataclass
class ReadSummary:
    """What a read cost: pages, items scanned by DynamoDB, items returned after the filter."""

    pages: int = 0
    scanned: int = 0
    returned: int = 0
    capacity_units: float = 0.0
    by_segment: dict[int, int] = field(default_factory=dict)

    @property
    def filter_ratio(self) -> float:
        """Returned / scanned (1.0 without a filter)."""
        return self.returned / self.scanned if self.scanned else 1.0


def _is_async(client: Any, call: Any) -> bool:
    """Whether ``client`` is an async one (aiobotocore's methods are plain functions that make
    a coroutine: its ``_make_api_call`` says so; a fake's methods are ``async def``)."""
    make = getattr(type(client), "_make_api_call", None)
    return inspect.iscoroutinefunction(make if make is not None else call)


def _at(names: tuple[str, ...], wire_item: Mapping[str, Any]) -> dict[str, Any]:
    """The position of ``wire_item`` in a read: its ``names`` attributes."""
    return {name: wire_item[name] for name in names if name in wire_item}


class Read:
    """A scan or query, not yet sent: iterate it for items, or call :meth:`pages`.

    With an async (aiobotocore) ``client=``, ``async for item in scan(...)`` and
    :meth:`apages` read the same pages on the event loop (``client=`` is required then).

    Every page is followed (``LastEvaluatedKey``), every request goes through the retry core
    (a throttled page is retried, not the read restarted), and :attr:`cursor` says where a new
    read would resume: pass it as ``scan(table, cursor=...)``. It moves when a page has been
    consumed completely, so a reader that stops in the middle of a page gets that page again
    on resume (at least once, never skipped). :attr:`summary` counts pages, items scanned and
    items returned; a filter that discards most of a large read is logged as a warning.
    """

    def __init__(
        self,
        operation: Operation,
        table: str,
        *,
        client: Any = None,
        session: Any = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        cursor: str | None = None,
        page_size: int | None = None,
        max_items: int | None = None,
        numbers: Numbers = "decimal",
        segment: int | None = None,
        total_segments: int | None = None,
        filter_warning_ratio: float = 0.1,
        filter_warning_min_scanned: int = 1000,
        **params: Any,
    ) -> None:
        for name in ("TableName", "ExclusiveStartKey", "Limit", "Segment", "TotalSegments"):
            if name in params:
                raise ConfigurationError(
                    name, "is managed by resilient_aws: use the keyword arguments"
                )
        if page_size is not None and page_size < 1:
            raise ConfigurationError("page_size", f"must be >= 1, got {page_size!r}")
        if max_items is not None and max_items < 0:
            raise ConfigurationError("max_items", f"must be >= 0, got {max_items!r}")
        if numbers not in ("decimal", "native"):
            raise ConfigurationError("numbers", f"must be 'decimal' or 'native', got {numbers!r}")
        if (segment is None) != (total_segments is None):
            raise ConfigurationError("segment", "segment and total_segments go together")
        if total_segments is not None and segment is not None and not 0 <= segment < total_segments:
            raise ConfigurationError("segment", f"must be in [0, {total_segments}), got {segment}")
        self.operation = operation
        self.table = table_name(table)
        self.client = dynamodb_client(client, session)
        self.policy = policy
        self.page_size = page_size
        self.max_items = max_items
        self.numbers = numbers
        self.segment = segment
        self.total_segments = total_segments
        self.params = prepare_expressions(params)
        self.filter_warning_ratio = filter_warning_ratio
        self.filter_warning_min_scanned = filter_warning_min_scanned
        self.scope: dict[str, Any] = {"op": operation, "t": table}
        if "IndexName" in params:
            self.scope["i"] = params["IndexName"]
        if segment is not None:
            self.scope.update(s=segment, n=total_segments)
        self._start_key = decode_cursor(cursor, self.scope) if cursor else None
        self.cursor: str | None = cursor
        self.done = False
        self.summary = ReadSummary()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page.items

    def first(self) -> dict[str, Any] | None:
        """The first matching item, following pages until one matches (or ``None``)."""
        for page in self.pages():
            if page.items:
                return page.items[0]
        return None

    def pages(self) -> Iterator[Page]:
        """Every page, in order; stops after ``max_items`` items if set."""
        start_key = self._start_key
        remaining = self.max_items
        call = self.client.scan if self.operation == "Scan" else self.client.query
        while remaining is None or remaining > 0:
            try:
                response = self.policy.call(call, **self._request(start_key))
            except ClientError as error:
                raise missing_table(error, self.table) from error
            page, start_key, remaining = self._read_page(response, remaining, self._position_of)
            yield page
            # Only now has the consumer finished the page: a resume may skip it.
            self.cursor = page.cursor
            if not start_key:
                break
        self._finished()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._aitems()

    async def _aitems(self) -> AsyncIterator[dict[str, Any]]:
        async for page in self.apages():
            for item in page.items:
                yield item

    async def apages(self) -> AsyncGenerator[Page, None]:
        """:meth:`pages` with an async (aiobotocore) ``client=``: ``async for page in ...``."""
        start_key = self._start_key
        remaining = self.max_items
        call = self.client.scan if self.operation == "Scan" else self.client.query
        if not _is_async(self.client, call):
            raise ConfigurationError(
                "client", "async iteration needs an async (aiobotocore) client: pass client="
            )
        names: tuple[str, ...] | None = None
        while remaining is None or remaining > 0:
            try:
                response = await self.policy.acall(call, **self._request(start_key))
            except ClientError as error:
                raise missing_table(error, self.table) from error
            if (
                names is None
                and remaining is not None
                and len(response.get("Items", ())) > remaining
            ):
                # where to resume in a page cut short: asked only then, as the sync read does
                keys = await _atable_keys(self.client, self.table, self.policy)
                names = _positions(keys, self.table, self.params.get("IndexName"))
            page, start_key, remaining = self._read_page(
                response, remaining, functools.partial(_at, names or ())
            )
            yield page
            self.cursor = page.cursor
            if not start_key:
                break
        self._finished()

    def _request(self, start_key: Any) -> dict[str, Any]:
        request = dict(self.params, TableName=self.table)
        if self.segment is not None:
            request.update(Segment=self.segment, TotalSegments=self.total_segments)
        if start_key:
            request["ExclusiveStartKey"] = start_key
        if self.page_size is not None:
            request["Limit"] = self.page_size
        return request

    def _read_page(
        self,
        response: Mapping[str, Any],
        remaining: int | None,
        position_of: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> tuple[Page, Any, int | None]:
        """The page of ``response``, where the next one starts, and how many items remain."""
        wire_items = response.get("Items", [])
        start_key = response.get("LastEvaluatedKey")
        if remaining is not None and len(wire_items) > remaining:
            # Stop mid-page: resume right after the last item handed out.
            wire_items = wire_items[:remaining]
            start_key = position_of(wire_items[-1])
        page = self._page(response, wire_items, start_key)
        if remaining is not None:
            remaining -= len(page.items)
        return page, start_key, remaining

    def _finished(self) -> None:
        self.done = not self.cursor
        self._warn_about_filter()

    def count(self) -> int:
        """How many items match, without fetching them (``Select=COUNT`` over every page)."""
        counted = Read(
            self.operation,
            self.table,
            client=self.client,
            policy=self.policy,
            cursor=self.cursor,
            page_size=self.page_size,
            segment=self.segment,
            total_segments=self.total_segments,
            **dict(self.params, Select="COUNT"),
        )
        total = sum(page.count for page in counted.pages())
        self.summary.scanned += counted.summary.scanned
        return total

    def _page(self, response: Mapping[str, Any], wire_items: list[Any], start_key: Any) -> Page:
        items = [deserialize_item(item, self.numbers) for item in wire_items]
        scanned = int(response.get("ScannedCount", len(wire_items)))
        self.summary.pages += 1
        self.summary.scanned += scanned
        self.summary.returned += len(items)
        capacity = response.get("ConsumedCapacity")
        if isinstance(capacity, Mapping):
            self.summary.capacity_units += float(capacity.get("CapacityUnits", 0.0))
        if self.segment is not None:
            self.summary.by_segment[self.segment] = self.summary.by_segment.get(
                self.segment, 0
            ) + len(items)
        return Page(
            items=items,
            count=int(response.get("Count", len(items))),
            scanned_count=scanned,
            consumed_capacity=capacity,
            cursor=encode_cursor(self.scope, start_key) if start_key else None,
        )

    def _position_of(self, wire_item: Mapping[str, Any]) -> dict[str, Any]:
        names = position_attributes(
            self.client, self.table, self.params.get("IndexName"), self.policy
        )
        return _at(names, wire_item)

    def _warn_about_filter(self) -> None:
        summary = self.summary
        if (
            "FilterExpression" in self.params
            and summary.scanned >= self.filter_warning_min_scanned
            and summary.filter_ratio < self.filter_warning_ratio
        ):
            logger.warning(
                "%s of %s read %d items to return %d (%.1f%%): a filter does not reduce what is "
                "read and billed; query an index that selects these items instead",
                self.operation,
                self.table,
                summary.scanned,
                summary.returned,
                100 * summary.filter_ratio,
            )


def scan(
    table: str,
    *,
    client: Any = None,
    session: Any = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    cursor: str | None = None,
    page_size: int | None = None,
    max_items: int | None = None,
    numbers: Numbers = "decimal",
    segment: int | None = None,
    total_segments: int | None = None,
    **params: Any,
) -> Read:
    """Scan ``table``, following every page; iterate for items (plain Python values).

    ``params`` are the ``Scan`` API's own (``FilterExpression``, ``ExpressionAttributeValues``,
    ``IndexName``, ``ProjectionExpression``, ``ConsistentRead``...). ``FilterExpression`` may be
    a boto3 condition (``Attr("city").eq("Milan")``) and attribute values plain Python
    (``{":c": "Milan"}``) or wire format (``{":c": {"S": "Milan"}}``). ``page_size``
    sets ``Limit`` per request; ``max_items`` caps the items across pages. ``cursor`` resumes
    a previous read (from ``Read.cursor`` or ``Page.cursor``).
    """
    return Read(
        "Scan",
        table,
        client=client,
        session=session,
        policy=policy,
        cursor=cursor,
        page_size=page_size,
        max_items=max_items,
        numbers=numbers,
        segment=segment,
        total_segments=total_segments,
        **params,
    )


def query(
    table: str,
    *,
    client: Any = None,
    session: Any = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    cursor: str | None = None,
    page_size: int | None = None,
    max_items: int | None = None,
    numbers: Numbers = "decimal",
    **params: Any,
) -> Read:
    """Query ``table`` (``KeyConditionExpression`` in ``params``), following every page.

    ``KeyConditionExpression`` and ``FilterExpression`` may be boto3 conditions
    (``Key("pk").eq("o-1")``), attribute values plain Python or wire format, as for :func:`scan`.
    """
    if "KeyConditionExpression" not in params and "KeyConditions" not in params:
        raise ConfigurationError("KeyConditionExpression", "a query needs a key condition")
    return Read(
        "Query",
        table,
        client=client,
        session=session,
        policy=policy,
        cursor=cursor,
        page_size=page_size,
        max_items=max_items,
        numbers=numbers,
        **params,
    )


def scan_segment(
    table: str, segment: int, total_segments: int, cursor: str | None = None, **options: Any
) -> Read:
    """One segment of a parallel scan, on its own: fan segments out across Lambda invocations
    or a Step Functions Distributed Map, each resuming from its own cursor."""
    return scan(table, segment=segment, total_segments=total_segments, cursor=cursor, **options)

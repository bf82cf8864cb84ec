"""BatchWriter: BatchWriteItem that never loses an entry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

from resilient_aws.dynamodb._client import dynamodb_client
from resilient_aws.dynamodb._schema import ItemKey, KeySchema, describe_key_schema
from resilient_aws.dynamodb._serialize import item_size, serialize_item, to_python
from resilient_aws.errors import (
    BatchWriteError,
    ConfigurationError,
    EntryTooLargeError,
    EntryValidationError,
)
from resilient_aws.limits import DYNAMODB_BATCH_WRITE, BatchLimits
from resilient_aws.results import BatchResult
from resilient_aws.retry import DEFAULT_POLICY, Deadline, FailedEntry, RetryPolicy, classify_entry

__all__ = ["BatchWriter"]

logger = logging.getLogger("resilient_aws.dynamodb")

# JSON framing of one request in the body: braces, "PutRequest", "Item", commas.
_REQUEST_OVERHEAD = 32
_UNPROCESSED = classify_entry("dynamodb", "Unprocessed")


@dataclass(frozen=True)
class _Write:
    table: str
    key: ItemKey
    request: dict[str, Any]
    entry_id: str
    size: int
    source: Any


KeySpec = KeySchema | str | Sequence[str]


class BatchWriter:
    """Buffered ``BatchWriteItem`` for one or several tables that accounts for every entry.

    ::

        with BatchWriter("orders", policy=policy, concurrency=4) as writer:
            for order in orders:
                writer.put(order)           # dicts, dataclasses, pydantic models; floats welcome
        # leaving the block flushes; entries that finally failed raise BatchWriteError(result)

    * Chunks of 25 requests and 16 MB; an item over 400 KB is refused with
      :class:`~resilient_aws.errors.EntryTooLargeError` before anything is sent.
    * Two writes of one key in a batch are a ``ValidationException`` in DynamoDB: the later
      write replaces the earlier one (last write wins), and a key is never in two requests in
      flight at once, so retries cannot reorder writes of one key.
    * ``UnprocessedItems`` are re-sent through the retry core with jittered backoff, within the
      policy's attempts, elapsed time, deadline and budget.
    * ``concurrency=N`` keeps up to N requests in flight on a thread pool.
    * A batch rejected as a whole with ``ValidationException`` is split until the bad entry is
      isolated, so one bad item does not fail the other 24.
    * The key schema comes from ``DescribeTable`` (once per client and table) unless given:
      ``keys="pk"``, ``keys=("pk", "sk")`` or ``keys={"orders": ("pk", "sk"), "users": "id"}``.

    ``on_invalid="raise"`` (default) raises a typed error from ``put``/``delete`` for an entry
    that can never be written; ``"report"`` records it as a failed entry instead, so that a
    loop is not interrupted. At the end :attr:`result` accounts for every entry; ``close()``
    raises :class:`~resilient_aws.errors.BatchWriteError` if any finally failed, unless
    ``raise_on_failure=False``. A writer is fed from one thread; requests go out on its pool.
    """

    def __init__(
        self,
        table: str | None = None,
        *,
        client: Any = None,
        session: Any = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        deadline: Deadline | float | None = None,
        concurrency: int = 1,
        keys: KeySpec | Mapping[str, KeySpec] | None = None,
        raise_on_failure: bool = True,
        on_invalid: Literal["raise", "report"] = "raise",
        limits: BatchLimits = DYNAMODB_BATCH_WRITE,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency", f"must be >= 1, got {concurrency!r}")
        if on_invalid not in ("raise", "report"):
            raise ConfigurationError(
                "on_invalid", f"must be 'raise' or 'report', got {on_invalid!r}"
            )
        self.table = table
        self.client = dynamodb_client(client, session)
        self.policy = policy.with_deadline(deadline) if deadline is not None else policy
        self.concurrency = concurrency
        self.raise_on_failure = raise_on_failure
        self.on_invalid = on_invalid
        self.limits = limits
        self.result: BatchResult[Any] = BatchResult()
        self._schemas: dict[str, KeySchema] = {}
        if isinstance(keys, Mapping):
            for name, spec in keys.items():
                self._schemas[name] = KeySchema.of(name, spec)
        elif keys is not None:
            if table is None:
                raise ConfigurationError("keys", "a key without a table: pass keys={table: key}")
            self._schemas[table] = KeySchema.of(table, keys)
        self._buffer: dict[tuple[str, ItemKey], _Write] = {}
        self._buffer_bytes = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[tuple[str, ItemKey], Future[None]] = {}
        self._futures: set[Future[None]] = set()
        self._closed = False

    # -- feeding --------------------------------------------------------------------------------

    def put(self, item: Any, *, table: str | None = None) -> None:
        """Buffer a ``PutRequest`` for ``item`` (a dict, dataclass or pydantic model)."""
        name = self._table(table)
        schema = self._schema(name)
        self._accept(name, schema, item, put=True)

    def delete(self, key: Any, *, table: str | None = None) -> None:
        """Buffer a ``DeleteRequest`` for ``key`` (the key attributes, as for ``put``)."""
        name = self._table(table)
        schema = self._schema(name)
        self._accept(name, schema, key, put=False)

    def put_many(self, items: Any, *, table: str | None = None) -> None:
        """``put`` each item of an iterable."""
        for item in items:
            self.put(item, table=table)

    def flush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled."""
        while self._buffer:
            self._send_next_chunk()
        self._wait_all()

    def close(self) -> BatchResult[Any]:
        """Flush, stop the pool and return the result (or raise ``BatchWriteError``)."""
        if not self._closed:
            try:
                self.flush()
            finally:
                self._closed = True
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
        if self.result.failed and self.raise_on_failure:
            raise BatchWriteError(self.result)
        return self.result

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # The block failed: still write what it buffered, and let its exception through.
        raise_on_failure, self.raise_on_failure = self.raise_on_failure, False
        try:
            self.close()
        finally:
            self.raise_on_failure = raise_on_failure
        if self.result.failed:
            logger.warning(
                "BatchWriter closed by an exception with failed entries: %s", self.result
            )

    # -- internals ------------------------------------------------------------------------------

    def _table(self, table: str | None) -> str:
        name = table or self.table
        if not name:
            raise ConfigurationError(
                "table", "no table: pass table= to the writer or to put/delete"
            )
        if self._closed:
            raise ConfigurationError("table", "the writer is closed")
        return name

    def _schema(self, table: str) -> KeySchema:
        schema = self._schemas.get(table)
        if schema is None:
            schema = describe_key_schema(self.client, table, self.policy)
            self._schemas[table] = schema
        return schema

    def _accept(self, table: str, schema: KeySchema, source: Any, *, put: bool) -> None:
        self.result.submitted += 1
        try:
            write = self._prepare(table, schema, source, put=put)
        except EntryValidationError as invalid:
            if self.on_invalid == "raise":
                self.result.submitted -= 1
                raise
            self.result.failed.append(
                FailedEntry(source, invalid.entry_id, type(invalid).__name__, invalid.reason)
            )
            return
        slot = (table, write.key)
        replaced = self._buffer.pop(slot, None)
        if replaced is not None:
            self.result.deduplicated += 1
            self._buffer_bytes -= replaced.size
        elif self._buffer_bytes + write.size > self.limits.max_request_bytes:
            self._send_next_chunk()
        self._buffer[slot] = write
        self._buffer_bytes += write.size
        if len(self._buffer) >= self.limits.max_entries:
            self._send_next_chunk()

    def _prepare(self, table: str, schema: KeySchema, source: Any, *, put: bool) -> _Write:
        provisional_id = f"{table}[{_describe_source(source, schema)}]"
        wire = serialize_item(source, provisional_id)
        if not put:
            wire = {name: wire[name] for name in schema.attributes if name in wire}
        key = schema.key_of(wire, provisional_id)
        entry_id = schema.describe(wire)
        size = item_size(wire)
        if put and self.limits.max_entry_bytes is not None and size > self.limits.max_entry_bytes:
            raise EntryTooLargeError(entry_id, size, self.limits.max_entry_bytes)
        request = {"PutRequest": {"Item": wire}} if put else {"DeleteRequest": {"Key": wire}}
        return _Write(table, key, request, entry_id, size + _REQUEST_OVERHEAD, source)

    def _send_next_chunk(self) -> None:
        chunk: list[_Write] = []
        size = 0
        for slot in list(self._buffer):
            write = self._buffer[slot]
            if chunk and (
                len(chunk) >= self.limits.max_entries
                or size + write.size > self.limits.max_request_bytes
            ):
                break
            chunk.append(self._buffer.pop(slot))
            size += write.size
        self._buffer_bytes -= size
        if self.concurrency == 1:
            self._send(chunk)
            return
        self._submit(chunk)

    def _submit(self, chunk: list[_Write]) -> None:
        # A key already in flight must settle first, or a retry could overwrite a newer write.
        with self._lock:
            earlier = {
                self._in_flight[s] for w in chunk if (s := (w.table, w.key)) in self._in_flight
            }
        if earlier:
            wait(earlier)
        while len(self._futures) >= self.concurrency:
            done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
            self._collect(done)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="resilient-aws-writer"
            )
        future = self._pool.submit(self._send, chunk)
        slots = [(w.table, w.key) for w in chunk]
        with self._lock:
            for slot in slots:
                self._in_flight[slot] = future
        self._futures.add(future)

        def forget(done: Future[None]) -> None:
            with self._lock:
                for slot in slots:
                    if self._in_flight.get(slot) is done:
                        del self._in_flight[slot]

        future.add_done_callback(forget)

    def _wait_all(self) -> None:
        if self._futures:
            done, _ = wait(self._futures)
            self._collect(done)

    def _collect(self, done: set[Future[None]]) -> None:
        for future in done:
            self._futures.discard(future)
            future.result()  # a bug in a worker surfaces here, not silently

    def _send(self, chunk: list[_Write]) -> None:
        outcome = self.policy.run_partial(
            self._request, chunk, entry_id=lambda w: w.entry_id, operation="BatchWriteItem"
        )
        rejected = [f for f in outcome.failed if f.code == "ValidationException"]
        with self._lock:
            self.result.resent += outcome.resent
            self.result.succeeded += outcome.succeeded
            self.result.failed.extend(
                replace(f, entry=f.entry.source)
                for f in outcome.failed
                if f.code != "ValidationException"
            )
        if len(rejected) > 1:
            # DynamoDB rejects a whole batch for one bad entry: halve until it stands alone.
            half = len(rejected) // 2
            self._send([f.entry for f in rejected[:half]])
            self._send([f.entry for f in rejected[half:]])
        elif rejected:
            with self._lock:
                self.result.failed.append(replace(rejected[0], entry=rejected[0].entry.source))

    def _request(self, batch: list[_Write]) -> list[FailedEntry[_Write]]:
        request_items: dict[str, list[dict[str, Any]]] = {}
        for write in batch:
            request_items.setdefault(write.table, []).append(write.request)
        with self._lock:
            self.result.requests += 1
        response = self.client.batch_write_item(RequestItems=request_items)
        unprocessed = response.get("UnprocessedItems") or {}
        if not unprocessed:
            return []
        by_slot = {(w.table, w.key): w for w in batch}
        failures: list[FailedEntry[_Write]] = []
        for table, requests in unprocessed.items():
            schema = self._schemas[table]
            for request in requests:
                wire = (
                    request["PutRequest"]["Item"]
                    if "PutRequest" in request
                    else request["DeleteRequest"]["Key"]
                )
                sent = by_slot.get((table, schema.key_of(wire, table)))
                if sent is None:
                    logger.warning(
                        "UnprocessedItems names an entry that was not sent: %s",
                        schema.describe(wire),
                    )
                    continue
                failures.append(
                    FailedEntry(
                        sent,
                        sent.entry_id,
                        _UNPROCESSED.code,
                        "returned in UnprocessedItems",
                        retryable=_UNPROCESSED.retryable,
                    )
                )
        return failures


def _describe_source(source: Any, schema: KeySchema) -> str:
    """Name an entry by its key before it is serialized (never by its payload)."""
    try:
        plain = to_python(source)
    except EntryValidationError:
        return f"<{type(source).__name__}>"
    return ",".join(f"{name}={plain.get(name)!s}" for name in schema.attributes)

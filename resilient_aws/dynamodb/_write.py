"""BatchWriter: BatchWriteItem that never loses an entry, on the shared batch engine."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

from resilient_aws._batching import BatchEngine, Entry, Sent, botocore_retries
from resilient_aws.dynamodb._client import dynamodb_client, table_name
from resilient_aws.dynamodb._schema import KeySchema, describe_key_schema
from resilient_aws.dynamodb._serialize import item_size, serialize_sized, to_python
from resilient_aws.errors import ConfigurationError, EntryTooLargeError, EntryValidationError
from resilient_aws.limits import DYNAMODB_BATCH_WRITE, BatchLimits
from resilient_aws.results import BatchResult
from resilient_aws.retry import (
    DEFAULT_POLICY,
    Deadline,
    FailedEntry,
    Pacer,
    RetryPolicy,
    classify_entry,
)

__all__ = ["BatchWriter"]

logger = logging.getLogger("resilient_aws.dynamodb")

# JSON framing of one request in the body: braces, "PutRequest", "Item", commas.
_REQUEST_OVERHEAD = 32
_UNPROCESSED = classify_entry("dynamodb", "Unprocessed")

KeySpec = KeySchema | str | Sequence[str]


class _BatchWriteItem:
    """One ``BatchWriteItem`` request; ``UnprocessedItems`` mapped back to the entries sent."""

    operation = "BatchWriteItem"

    def __init__(self, client: Any, schemas: dict[str, KeySchema], limits: BatchLimits) -> None:
        self.client = client
        self.schemas = schemas
        self.limits = limits

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        return self._read(batch, self.client.batch_write_item(RequestItems=_request_items(batch)))

    async def asend_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        """:meth:`send_request` with an async (aiobotocore) client."""
        response = await self.client.batch_write_item(RequestItems=_request_items(batch))
        return self._read(batch, response)

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        """``UnprocessedItems`` mapped back to the entries of ``batch``."""
        unprocessed = response.get("UnprocessedItems") or {}
        retries = botocore_retries(response)
        if not unprocessed:
            return Sent([(e, None) for e in batch], [], retries)
        by_slot = {e.dedupe: e for e in batch}
        failed: list[FailedEntry[Entry[Any]]] = []
        for table, requests in unprocessed.items():
            schema = self.schemas[table]
            for request in requests:
                wire = (
                    request["PutRequest"]["Item"]
                    if "PutRequest" in request
                    else request["DeleteRequest"]["Key"]
                )
                sent = by_slot.get((table, schema.key_of(wire, table)))
                if sent is None:
                    logger.warning(
                        "UnprocessedItems names an entry not sent: %s", schema.describe(wire)
                    )
                    continue
                failed.append(
                    FailedEntry(
                        sent,
                        sent.entry_id,
                        _UNPROCESSED.code,
                        "returned in UnprocessedItems",
                        retryable=_UNPROCESSED.retryable,
                    )
                )
        failed_ids = {id(f.entry) for f in failed}
        return Sent([(e, None) for e in batch if id(e) not in failed_ids], failed, retries)


def _request_items(batch: list[Entry[Any]]) -> dict[str, list[dict[str, Any]]]:
    request_items: dict[str, list[dict[str, Any]]] = {}
    for entry in batch:
        table, request = entry.payload
        request_items.setdefault(table, []).append(request)
    return request_items


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
    * ``UnprocessedItems`` go back to the front of the writer's buffer and ride in the next
      full request; the writer's :class:`~resilient_aws.retry.Pacer` (pass ``pacer=`` to share
      one between writers of a table) slows the whole writer to what the table completes. An
      item is given up only at the policy's deadline or ``max_elapsed``, or after
      ``max_attempts`` requests that completed nothing: never while the table keeps writing.
    * ``concurrency=N`` keeps up to N requests in flight on a thread pool.
    * A batch rejected as a whole with ``ValidationException`` is split until the bad entry is
      isolated, so one bad item does not fail the other 24.
    * The key schema comes from ``DescribeTable`` (once per client and table) unless given:
      ``keys="pk"``, ``keys=("pk", "sk")`` or ``keys={"orders": ("pk", "sk"), "users": "id"}``.

    ``on_invalid="raise"`` (default) raises a typed error from ``put``/``delete`` for an entry
    that can never be written; ``"report"`` records it as a failed entry instead, so that a
    loop is not interrupted. At the end :attr:`result` accounts for every entry; ``close()``
    raises :class:`~resilient_aws.errors.BatchWriteError` if any finally failed, unless
    ``raise_on_failure=False``. ``flush_interval`` (seconds) also sends a partly filled batch
    that has waited that long, for long-running producers.
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
        flush_interval: float | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        if on_invalid not in ("raise", "report"):
            raise ConfigurationError(
                "on_invalid", f"must be 'raise' or 'report', got {on_invalid!r}"
            )
        self.table = table_name(table) if table is not None else None
        self.policy = policy.with_deadline(deadline) if deadline is not None else policy
        self.client = self._make_client(client, session)
        self.on_invalid = on_invalid
        self.limits = limits
        self._schemas: dict[str, KeySchema] = {}
        if isinstance(keys, Mapping):
            for name, spec in keys.items():
                self._schemas[name] = KeySchema.of(name, spec)
        elif keys is not None:
            if table is None:
                raise ConfigurationError("keys", "a key without a table: pass keys={table: key}")
            self._schemas[table] = KeySchema.of(table, keys)
        self._engine: BatchEngine[Any] = self._engine_type(
            _BatchWriteItem(self.client, self._schemas, limits),
            policy=self.policy,
            concurrency=concurrency,
            ordered=True,  # one request per key in flight: retries never reorder writes of a key
            on_group_failure="continue",  # a later write of a key is still wanted (last wins)
            split_codes=frozenset({"ValidationException", "ParamValidationError"}),
            raise_on_failure=raise_on_failure,
            keep_answers=False,
            flush_interval=flush_interval,
            pacer=pacer,
        )

    _engine_type: type[BatchEngine[Any]] = BatchEngine

    def _make_client(self, client: Any, session: Any) -> Any:
        return dynamodb_client(client, session)

    @property
    def result(self) -> BatchResult[Any]:
        """Every entry so far: ``submitted == succeeded + len(failed) + deduplicated`` when done."""
        return self._engine.result

    # -- feeding --------------------------------------------------------------------------------

    def put(self, item: Any, *, table: str | None = None) -> None:
        """Buffer a ``PutRequest`` for ``item`` (a dict, dataclass or pydantic model)."""
        self._accept(self._table(table), item, put=True)

    def delete(self, key: Any, *, table: str | None = None) -> None:
        """Buffer a ``DeleteRequest`` for ``key`` (the key attributes, as for ``put``)."""
        self._accept(self._table(table), key, put=False)

    def put_many(self, items: Any, *, table: str | None = None) -> None:
        """``put`` each item of an iterable."""
        for item in items:
            self.put(item, table=table)

    def flush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled."""
        self._engine.flush()

    def close(self) -> BatchResult[Any]:
        """Flush, stop the pool and return the result (or raise ``BatchWriteError``)."""
        return self._engine.close()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine.exit(exc, "BatchWriter")

    # -- internals ------------------------------------------------------------------------------

    def _table(self, table: str | None) -> str:
        name = table if table is not None else self.table
        if name is None:
            raise ConfigurationError(
                "table", "no table: pass table= to the writer or to put/delete"
            )
        name = table_name(name)
        if self._engine.closed:
            raise ConfigurationError("table", "the writer is closed")
        return name

    def _schema(self, table: str) -> KeySchema:
        schema = self._schemas.get(table)
        if schema is None:
            schema = describe_key_schema(self.client, table, self.policy)
            self._schemas[table] = schema
        return schema

    def _accept(self, table: str, source: Any, *, put: bool) -> None:
        self._accept_with(self._schema(table), table, source, put=put)

    def _accept_with(self, schema: KeySchema, table: str, source: Any, *, put: bool) -> None:
        try:
            entry = self._prepare(table, schema, source, put=put)
        except EntryValidationError as invalid:
            if self.on_invalid == "raise":
                raise
            self._engine.reject(source, invalid)
            return
        self._engine.add(entry)

    def _prepare(self, table: str, schema: KeySchema, source: Any, *, put: bool) -> Entry[Any]:
        try:
            wire, size = serialize_sized(source, "")
            if not put:
                wire = {name: wire[name] for name in schema.attributes if name in wire}
                size = item_size(wire)
            slot = (table, schema.key_of(wire, ""))
        except EntryValidationError:
            # Bad input is rare: only then is the entry named from its key before serializing,
            # and the checks run again to raise the error under that name.
            provisional_id = f"{table}[{_describe_source(source, schema)}]"
            wire, size = serialize_sized(source, provisional_id)
            if not put:
                wire = {name: wire[name] for name in schema.attributes if name in wire}
                size = item_size(wire)
            slot = (table, schema.key_of(wire, provisional_id))
        entry_id = schema.describe(wire)
        if put and self.limits.max_entry_bytes is not None and size > self.limits.max_entry_bytes:
            raise EntryTooLargeError(entry_id, size, self.limits.max_entry_bytes)
        request = {"PutRequest": {"Item": wire}} if put else {"DeleteRequest": {"Key": wire}}
        return Entry(
            source,
            entry_id,
            (table, request),
            size + _REQUEST_OVERHEAD,
            group=slot,
            dedupe=slot,
        )


def _describe_source(source: Any, schema: KeySchema) -> str:
    """Name an entry by its key before it is serialized (never by its payload)."""
    try:
        plain = to_python(source)
    except EntryValidationError:
        return f"<{type(source).__name__}>"
    return ",".join(f"{name}={plain.get(name)!s}" for name in schema.attributes)

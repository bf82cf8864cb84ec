"""``AsyncBatchWriter`` and ``abatch_get``: :class:`BatchWriter` and :func:`batch_get` on
asyncio (aiobotocore), on the same engine."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any

from resilient_aws._abatching import AsyncBatchEngine
from resilient_aws._aioclient import AsyncWriting
from resilient_aws.dynamodb._client import table_name
from resilient_aws.dynamodb._get import BatchGetResult, _Read
from resilient_aws.dynamodb._schema import KeySchema, adescribe_key_schema
from resilient_aws.dynamodb._serialize import Numbers
from resilient_aws.dynamodb._write import BatchWriter
from resilient_aws.errors import ConfigurationError
from resilient_aws.limits import DYNAMODB_BATCH_GET, BatchLimits
from resilient_aws.retry import DEFAULT_POLICY, Pacer, RetryPolicy

__all__ = ["AsyncBatchWriter", "abatch_get"]


class AsyncBatchWriter(AsyncWriting, BatchWriter):  # type: ignore[misc]
    """:class:`~resilient_aws.dynamodb.BatchWriter` with ``await``: the same checks, last-write-
    wins per key, pacing, per-item retries and result, with up to ``concurrency`` requests in
    flight as tasks on the running event loop::

        async with AsyncBatchWriter("orders", concurrency=8) as writer:
            async for order in orders():
                await writer.put(order)
        print(writer.result)

    Without ``client=``, the block opens an aiobotocore DynamoDB client and closes it at the
    end. A cancelled producer loses nothing: what it buffered is still written when the block
    exits, and a cancelled exit reports what it could not settle (``NotSent``,
    ``OutcomeUnknown``). ``flush_interval`` is not supported: await :meth:`flush`.
    """

    client_name = "dynamodb"
    _engine_type = AsyncBatchEngine
    _engine: AsyncBatchEngine[Any]

    def _make_client(self, client: Any, session: Any) -> Any:
        return self._keep_client(client, session)

    async def put(self, item: Any, *, table: str | None = None) -> None:  # type: ignore[override]
        """Buffer a ``PutRequest`` for ``item``, then await the requests that became full."""
        await self._aaccept(table, item, put=True)

    async def delete(self, key: Any, *, table: str | None = None) -> None:  # type: ignore[override]
        """Buffer a ``DeleteRequest`` for ``key``, then await the requests that became full."""
        await self._aaccept(table, key, put=False)

    async def put_many(  # type: ignore[override]
        self, items: Iterable[Any] | AsyncIterable[Any], *, table: str | None = None
    ) -> None:
        """``put`` each item of an iterable or an async iterable."""
        if isinstance(items, AsyncIterable):
            async for item in items:
                await self.put(item, table=table)
        else:
            for item in items:
                await self.put(item, table=table)

    def _client_opened(self) -> None:
        self._engine.adapter.client = self.client  # type: ignore[attr-defined]

    async def _aaccept(self, table: str | None, source: Any, *, put: bool) -> None:
        self._ready()
        name = self._table(table)
        self._accept_with(await self._aschema(name), name, source, put=put)
        await self._engine.pump()

    async def _aschema(self, table: str) -> KeySchema:
        schema = self._schemas.get(table)
        if schema is None:
            schema = await adescribe_key_schema(self.client, table, self.policy)
            self._schemas[table] = schema
        return schema


async def abatch_get(
    table: str,
    keys: Iterable[Any] | AsyncIterable[Any],
    *,
    client: Any,
    policy: RetryPolicy = DEFAULT_POLICY,
    key: KeySchema | str | Sequence[str] | None = None,
    consistent_read: bool = False,
    projection: Sequence[str] | None = None,
    keep_order: bool = False,
    concurrency: int = 1,
    numbers: Numbers = "decimal",
    raise_on_failure: bool = True,
    limits: BatchLimits = DYNAMODB_BATCH_GET,
    pacer: Pacer | None = None,
) -> BatchGetResult:
    """:func:`~resilient_aws.dynamodb.batch_get` with ``await``, on an async (aiobotocore)
    ``client=``: the same deduplication, ``UnprocessedKeys`` retries, pacing and result, with
    up to ``concurrency`` requests in flight as tasks on the running event loop::

        async with get_session().create_client("dynamodb") as client:
            found = await abatch_get("orders", [{"pk": "o-1"}, {"pk": "o-2"}], client=client)

    ``keys`` may be an async iterable. Cancelled, it raises ``CancelledError`` once every
    request it started has settled or been cancelled; nothing is half-read into the result.
    """
    if concurrency < 1:
        raise ConfigurationError("concurrency", f"must be >= 1, got {concurrency!r}")
    if client is None:
        raise ConfigurationError("client", "abatch_get needs an async (aiobotocore) client=")
    table = table_name(table)
    schema = (
        KeySchema.of(table, key)
        if key is not None
        else await adescribe_key_schema(client, table, policy)
    )
    read = _Read(table, schema, consistent_read, projection)
    if isinstance(keys, AsyncIterable):
        async for source in keys:
            read.want(source)
    else:
        for source in keys:
            read.want(source)
    engine: AsyncBatchEngine[Any] = AsyncBatchEngine(
        read.adapter(client, limits), **read.engine_options(policy, concurrency, pacer)
    )
    try:
        for entry in read.entries():
            engine.add(entry)
            await engine.pump()
    except BaseException:
        await engine.aabandon()
        raise
    return read.finish(await engine.aclose(), keep_order, numbers, raise_on_failure)

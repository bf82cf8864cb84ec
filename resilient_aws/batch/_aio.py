"""The senders on asyncio (aiobotocore): same checks, engine and result as the sync ones.

Each async sender is its sync sender with the engine's async driver: a call like
``await sender.send_message(body)`` checks and buffers the message exactly as
``SqsSender.send_message`` does, then awaits the requests that became full. Use them in an
``async with`` block; without ``client=``, the block opens an aiobotocore client (configured by
the policy, as the sync default clients are) and closes it at the end::

    async with AsyncSqsSender(queue_url) as sender:
        for order in orders:
            await sender.send_message(json.dumps(order))
    print(sender.result)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from resilient_aws._abatching import AsyncBatchEngine
from resilient_aws._aioclient import AsyncWriting
from resilient_aws.batch._eventbridge import EventBridgePutter
from resilient_aws.batch._firehose import FirehosePutter
from resilient_aws.batch._kinesis import KinesisPutter
from resilient_aws.batch._sns import SnsPublisher
from resilient_aws.batch._sqs import SqsDeleter, SqsSender, SqsVisibilityChanger
from resilient_aws.errors import ConfigurationError

if TYPE_CHECKING:
    from resilient_aws._batching import Entry, Sent

__all__ = [
    "AsyncEventBridgePutter",
    "AsyncFirehosePutter",
    "AsyncKinesisPutter",
    "AsyncSending",
    "AsyncSnsPublisher",
    "AsyncSqsDeleter",
    "AsyncSqsSender",
    "AsyncSqsVisibilityChanger",
]


class AsyncSending(AsyncWriting):
    """What the async senders share: the client's life, the async driver, flush and close."""

    _engine_type = AsyncBatchEngine
    _engine: AsyncBatchEngine[Any]
    method: str
    payloads: Any = None

    def _make_client(self, client: Any, session: Any) -> Any:
        if getattr(self, "payloads", None) is not None:
            raise ConfigurationError(
                "payloads", "not supported by the async senders yet: offload with the sync ones"
            )
        return self._keep_client(client, session)

    async def asend_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        """One request of ``batch`` through the async client (the engine's AsyncAdapter)."""
        response = await getattr(self.client, self.method)(**self._request(batch))  # type: ignore[attr-defined]
        return self._read(batch, response)  # type: ignore[attr-defined,no-any-return]


class AsyncSqsSender(AsyncSending, SqsSender):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.SqsSender` on asyncio: ``await send_message(...)``."""

    async def send_message(self, body: str, **options: Any) -> None:  # type: ignore[override]
        """Check and buffer one message (:meth:`SqsSender.send_message`'s options), then await
        the requests that became full."""
        self._ready()
        SqsSender.send_message(self, body, **options)
        await self._engine.pump()

    async def send_many(self, bodies: Iterable[str], **options: Any) -> None:  # type: ignore[override]
        """``send_message`` each body of an iterable, with the same options."""
        for body in bodies:
            await self.send_message(body, **options)


class AsyncSqsDeleter(AsyncSending, SqsDeleter):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.SqsDeleter` on asyncio: ``await delete(receipt_handle)``."""

    async def delete(self, receipt_handle: str, *, id: str | None = None) -> None:  # type: ignore[override]
        """Buffer the deletion of one received message, then await full requests."""
        self._ready()
        SqsDeleter.delete(self, receipt_handle, id=id)
        await self._engine.pump()


class AsyncSqsVisibilityChanger(AsyncSending, SqsVisibilityChanger):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.SqsVisibilityChanger` on asyncio."""

    async def change(  # type: ignore[override]
        self, receipt_handle: str, timeout_s: int, *, id: str | None = None
    ) -> None:
        """Buffer a visibility change of one received message, then await full requests."""
        self._ready()
        SqsVisibilityChanger.change(self, receipt_handle, timeout_s, id=id)
        await self._engine.pump()


class AsyncSnsPublisher(AsyncSending, SnsPublisher):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.SnsPublisher` on asyncio: ``await publish(...)``."""

    async def publish(self, message: str, **options: Any) -> None:  # type: ignore[override]
        """Check and buffer one message (:meth:`SnsPublisher.publish`'s options), then await
        the requests that became full."""
        self._ready()
        SnsPublisher.publish(self, message, **options)
        await self._engine.pump()


class AsyncFirehosePutter(AsyncSending, FirehosePutter):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.FirehosePutter` on asyncio: ``await put(data)``."""

    async def put(self, data: bytes | str, *, id: str | None = None) -> None:  # type: ignore[override]
        """Buffer one record, then await the requests that became full."""
        self._ready()
        FirehosePutter.put(self, data, id=id)
        await self._engine.pump()


class AsyncEventBridgePutter(AsyncSending, EventBridgePutter):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.EventBridgePutter` on asyncio: ``await put(detail, ...)``."""

    async def put(self, detail: Any, **options: Any) -> None:  # type: ignore[override]
        """Check and buffer one event (:meth:`EventBridgePutter.put`'s options), then await the
        requests that became full."""
        self._ready()
        EventBridgePutter.put(self, detail, **options)
        await self._engine.pump()


class AsyncKinesisPutter(AsyncSending, KinesisPutter):  # type: ignore[misc]
    """:class:`~resilient_aws.batch.KinesisPutter` on asyncio: ``await put(data, key)``."""

    async def put(  # type: ignore[override]
        self, data: bytes | str, partition_key: str, **options: Any
    ) -> None:
        """Check and buffer one record, then await the requests that became full."""
        self._ready()
        KinesisPutter.put(self, data, partition_key, **options)
        await self._engine.pump()

"""The life of an aiobotocore client an async writer opens itself (``async with``)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from resilient_aws.errors import ConfigurationError

if TYPE_CHECKING:
    from resilient_aws._abatching import AsyncBatchEngine
    from resilient_aws.results import BatchResult

__all__ = ["AsyncClientOwner", "AsyncWriting"]

SelfT = TypeVar("SelfT", bound="AsyncWriting")


class AsyncClientOwner:
    """A writer or sender that uses the aiobotocore ``client=`` it is given, or opens one of
    ``client_name`` when its ``async with`` block starts (configured by its policy, as the
    sync default clients are: botocore's own retries off) and closes it when the block ends.
    A client it was given is never closed."""

    client: Any
    client_name: str
    policy: Any

    def _keep_client(self, client: Any, session: Any) -> Any:
        self._session = session
        self._client_context: Any = None
        return client  # None: opened by `async with`

    def _ready(self) -> None:
        """Refuse an entry before it is buffered when there is no client to send it with."""
        if self.client is None:
            raise ConfigurationError(
                "client", "pass an aiobotocore client= or use the writer in `async with`"
            )

    async def _open_client(self) -> None:
        if self.client is not None:
            return
        from aiobotocore.session import get_session

        session = self._session if self._session is not None else get_session()
        self._client_context = session.create_client(
            self.client_name, config=self.policy.botocore_config()
        )
        self.client = await self._client_context.__aenter__()

    async def _close_client(self) -> None:
        context, self._client_context = self._client_context, None
        if context is not None:
            await context.__aexit__(None, None, None)

    def __enter__(self) -> Any:
        raise ConfigurationError("with", "an async writer is used with `async with`")


class AsyncWriting(AsyncClientOwner):
    """What every async writer and sender shares around its engine: ``async with``, flush,
    close and the result."""

    _engine: AsyncBatchEngine[Any]

    @property
    def result(self) -> BatchResult[Any]:
        """Every entry so far, and the service's answers for those that succeeded."""
        return self._engine.result

    async def flush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled."""
        await self._engine.aflush()

    async def close(self) -> BatchResult[Any]:
        """Flush and return the result; raise ``BatchWriteError`` if entries finally failed.
        Closes the client the writer opened, never one it was given."""
        try:
            return await self._engine.aclose()
        finally:
            await self._close_client()

    async def __aenter__(self: SelfT) -> SelfT:
        await self._open_client()
        self._client_opened()
        return self

    def _client_opened(self) -> None:
        """Hand the client to whatever else needs it (an adapter of its own)."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._engine.aexit(exc, type(self).__name__)
        finally:
            await self._close_client()

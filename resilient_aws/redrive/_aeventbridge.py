"""EventBridge target dead-letter queue -> the event bus again, on asyncio (aiobotocore).

The same run as :func:`~resilient_aws.redrive.redrive_eventbridge`: the same checks, options,
entries (:meth:`EventBridgeDelivery.by_region`), drain decisions and report; the events go
through :class:`~resilient_aws.batch.AsyncEventBridgePutter` and the drain is awaited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilient_aws.batch import AsyncEventBridgePutter
from resilient_aws.redrive._adrain import accounted, arun_source, asend
from resilient_aws.redrive._drain import DEFAULT_REMEMBER_MOVED, SETTLER_OPTIONS, Outcome
from resilient_aws.redrive._eventbridge import EventBridgeDelivery, bus_steps, eventbridge_run
from resilient_aws.redrive._message import DlqMessage, Filter
from resilient_aws.redrive._queues import QueueInfo
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.redrive._steps import arun_steps
from resilient_aws.redrive._targets import CLIENT_ERRORS, AsyncClients
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["AsyncEventBridgeDelivery", "aredrive_eventbridge"]


class AsyncEventBridgeDelivery(EventBridgeDelivery):
    """:class:`~resilient_aws.redrive._eventbridge.EventBridgeDelivery` with
    :class:`~resilient_aws.batch.AsyncEventBridgePutter`: the same entries, awaited."""

    async def adeliver(
        self, messages: list[DlqMessage], policy: RetryPolicy, outcome: Outcome
    ) -> None:
        with accounted(messages, outcome) as given:
            for region, entries in self.by_region(messages, outcome).items():
                try:
                    client = await self.clients.get("events", region)
                except CLIENT_ERRORS as error:
                    if region is None:
                        raise  # the run's own configuration, not a message's
                    self.unreachable(region, entries, error, outcome)
                    continue
                putter = AsyncEventBridgePutter(client=client, policy=policy, **SETTLER_OPTIONS)
                await asend(putter, putter.put, entries, given, outcome)


async def aredrive_eventbridge(
    source_queue_url: str,
    *,
    bus_name: str | None = None,
    keep_time: bool = True,
    client: Any = None,
    events_client: Any = None,
    session: Any = None,
    policy: RetryPolicy | None = None,
    max_messages: int | None = None,
    rate: float | None = None,
    filter: Filter | None = None,
    dry_run: bool = False,
    visibility_timeout: int = 120,
    wait_time_s: int = 1,
    run_id: str | None = None,
    concurrency: int = 4,
    progress: Callable[[RedriveReport], None] | None = None,
    remember_moved: int = DEFAULT_REMEMBER_MOVED,
) -> RedriveReport:
    """:func:`~resilient_aws.redrive.redrive_eventbridge` on asyncio: the same options,
    guarantees and :class:`RedriveReport`, with aiobotocore clients: ``client`` (SQS, for the
    DLQ) and ``events_client`` (for every region), or clients opened from ``session`` (an
    aiobotocore session) for the run — an events client per region of the rules — and
    closed after it.

    ``concurrency`` tasks each receive a batch, put its events with
    :class:`~resilient_aws.batch.AsyncEventBridgePutter` and delete the messages whose event
    was accepted. Cancelled at any await, the run settles what it holds into the report as
    :func:`~resilient_aws.redrive.aredrive_sqs` does: a message not yet put, or whose put's
    outcome is unknown, is ``failed`` and stays in the DLQ; nothing is deleted before its
    event was accepted.
    """
    policy = policy or DEFAULT_POLICY
    arguments = locals()
    clients = AsyncClients(session, policy, sqs=client, events=events_client)

    async def prepare(sqs: Any, source: QueueInfo) -> tuple[Any, RedriveReport, Any]:
        if bus_name is not None:
            await arun_steps(await clients.get("events"), policy, bus_steps(bus_name))
        return eventbridge_run(clients, source, AsyncEventBridgeDelivery, arguments)

    return await arun_source(clients, source_queue_url, policy, prepare)

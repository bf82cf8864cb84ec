"""SQS dead-letter queue -> its source queue(s), on asyncio (aiobotocore).

The same run as :func:`~resilient_aws.redrive.redrive_sqs`: the same checks of the queues
(written once as steps, :mod:`._steps`), the same options, deliveries, decisions and report
(:class:`~resilient_aws.redrive._drain.DrainCore`); only the requests are awaited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilient_aws._aioclient import AsyncClientOwner
from resilient_aws.batch import AsyncSqsSender
from resilient_aws.errors import ConfigurationError
from resilient_aws.redrive._adrain import accounted, adrain, asend
from resilient_aws.redrive._drain import DEFAULT_REMEMBER_MOVED, Outcome
from resilient_aws.redrive._message import DlqMessage, Filter
from resilient_aws.redrive._queues import describe_queue_steps
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.redrive._routes import RoutedDelivery
from resilient_aws.redrive._sqs import SqsDelivery, sqs_run, targets_steps
from resilient_aws.redrive._steps import arun_steps
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["AsyncSqsDelivery", "aredrive_sqs"]


class AsyncSqsDelivery(SqsDelivery):
    """:class:`~resilient_aws.redrive._sqs.SqsDelivery` with
    :class:`~resilient_aws.batch.AsyncSqsSender`: the same entries, awaited."""

    async def adeliver(
        self, messages: list[DlqMessage], policy: RetryPolicy, outcome: Outcome
    ) -> None:
        sender = AsyncSqsSender(self.queue_url, policy=policy, **self.sender_options())
        entries = ({"body": body, **options} for body, options in self.entries(messages, outcome))
        with accounted(messages, outcome) as given:
            await asend(sender, sender.send_message, entries, given, outcome)


class _SqsClient(AsyncClientOwner):
    """The aiobotocore SQS client given, else one opened for the run and closed after it."""

    client_name = "sqs"

    def __init__(self, client: Any, session: Any, policy: RetryPolicy) -> None:
        self.policy = policy
        self.client = self._keep_client(client, session)


async def aredrive_sqs(
    source_queue_url: str,
    *,
    target_queue_url: str | None = None,
    client: Any = None,
    session: Any = None,
    policy: RetryPolicy | None = None,
    max_messages: int | None = None,
    rate: float | None = None,
    filter: Filter | None = None,
    dry_run: bool = False,
    visibility_timeout: int = 120,
    wait_time_s: int = 1,
    preserve_dedup_id: bool = False,
    run_id: str | None = None,
    concurrency: int = 4,
    native: bool = False,
    progress: Callable[[RedriveReport], None] | None = None,
    remember_moved: int = DEFAULT_REMEMBER_MOVED,
) -> RedriveReport:
    """:func:`~resilient_aws.redrive.redrive_sqs` on asyncio: the same options, guarantees
    and :class:`RedriveReport`, with an aiobotocore SQS ``client`` (default: one opened from
    ``session``, an aiobotocore session, for the run and closed after it).

    ``concurrency`` tasks each receive, deliver (:class:`~resilient_aws.batch.AsyncSqsSender`)
    and delete (:class:`~resilient_aws.batch.AsyncSqsDeleter`) one batch at a time; a
    message is deleted only after its copy was accepted by the target. Cancelled at any
    await, the run settles the messages in hand into the report, calls ``progress`` with it
    and lets the ``CancelledError`` go on: a message not yet sent, or whose copy's outcome is
    unknown (``OutcomeUnknown``: the target may hold it), is ``failed`` and stays in the DLQ;
    one whose copy was confirmed but not deleted is ``undeleted``. Messages it held become
    visible again when their visibility timeout ends. ``native`` (SQS's own move task) is
    not available here: use :func:`~resilient_aws.redrive.redrive_sqs`.
    """
    if native:
        raise ConfigurationError(
            "native", "StartMessageMoveTask is not available on asyncio: use redrive_sqs"
        )
    policy = policy or DEFAULT_POLICY
    owner = _SqsClient(client, session, policy)
    await owner._open_client()
    try:
        sqs = owner.client
        source = await arun_steps(
            sqs, policy, describe_queue_steps(source_queue_url, "source queue")
        )
        targets = await arun_steps(sqs, policy, targets_steps(source, target_queue_url))
        delivery, report, options = sqs_run(sqs, source, targets, AsyncSqsDelivery, locals())

        async def route(message: DlqMessage, policy: RetryPolicy) -> tuple[str | None, str]:
            assert isinstance(delivery, RoutedDelivery)
            return await arun_steps(sqs, policy, delivery.router.route_steps(message))

        return await adrain(sqs, source.url, delivery, report, options, policy, route)
    finally:
        await owner._close_client()

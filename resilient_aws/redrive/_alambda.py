"""Lambda asynchronous invocation failures -> the function again (or a queue), on asyncio.

The same run as :func:`~resilient_aws.redrive.redrive_lambda`: the same checks, options,
parsing of the records (:meth:`LambdaDelivery.parse`, :meth:`LambdaDelivery.invocations`),
``Invoke`` request and reading of its answer (:func:`._targets.invoke_steps`), drain decisions
and report; the requests are awaited on aiobotocore clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilient_aws.batch import AsyncSqsSender
from resilient_aws.redrive._adrain import OUTCOME_UNKNOWN, accounted, arun_source, asend
from resilient_aws.redrive._drain import DEFAULT_REMEMBER_MOVED, SETTLER_OPTIONS, Outcome
from resilient_aws.redrive._lambda import (
    LambdaDelivery,
    check_lambda_target,
    lambda_run,
    region_of,
)
from resilient_aws.redrive._message import DlqMessage, Filter
from resilient_aws.redrive._queues import QueueInfo
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.redrive._sqs import targets_steps
from resilient_aws.redrive._steps import arun_steps
from resilient_aws.redrive._targets import (
    CLIENT_ERRORS,
    AsyncClients,
    function_steps,
    invoke_steps,
    queue_entries,
    unreachable,
)
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["AsyncLambdaDelivery", "aredrive_lambda"]


class AsyncLambdaDelivery(LambdaDelivery):
    """:class:`~resilient_aws.redrive._lambda.LambdaDelivery` on aiobotocore clients: the same
    invocations (or queue entries, through :class:`~resilient_aws.batch.AsyncSqsSender`),
    awaited."""

    async def adeliver(
        self, messages: list[DlqMessage], policy: RetryPolicy, outcome: Outcome
    ) -> None:
        parsed = self.parse(messages, outcome)
        with accounted(messages, outcome) as given:
            if self.queue_url is not None:
                sender = AsyncSqsSender(
                    self.queue_url,
                    client=await self.clients.get("sqs"),
                    policy=policy,
                    ordered=self.queue_fifo,
                    **SETTLER_OPTIONS,
                )
                entries = queue_entries(self.queue_items(parsed), self.queue_fifo)
                await asend(sender, sender.send_message, entries, given, outcome)
                return
            for message_id, function, payload in self.invocations(parsed, outcome):
                region = region_of(function)
                try:
                    client = await self.clients.get("lambda", region)
                except CLIENT_ERRORS as error:
                    if region is None:
                        raise  # the run's own configuration, not a message's
                    outcome.failed[message_id] = unreachable("lambda", region, error)
                    continue
                given.add(message_id)
                try:
                    problem = await arun_steps(
                        client, policy, invoke_steps(function, payload, "Event")
                    )
                except BaseException:
                    outcome.failed[message_id] = OUTCOME_UNKNOWN  # Lambda may have queued it
                    raise
                if problem is not None:
                    outcome.failed[message_id] = problem


async def aredrive_lambda(
    source_queue_url: str,
    *,
    function_name: str | None = None,
    target_queue_url: str | None = None,
    client: Any = None,
    lambda_client: Any = None,
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
    """:func:`~resilient_aws.redrive.redrive_lambda` on asyncio: the same options, guarantees
    and :class:`RedriveReport`, with aiobotocore clients: ``client`` (SQS: the failures queue
    and a target queue) and ``lambda_client`` (for every region), or clients opened from
    ``session`` (an aiobotocore session) for the run — a Lambda client per region of the
    functions — and closed after it.

    ``concurrency`` tasks each receive a batch, re-invoke its events one by one
    (``InvocationType=Event``; or send them to ``target_queue_url`` with
    :class:`~resilient_aws.batch.AsyncSqsSender`) and delete the messages Lambda (or the
    queue) accepted. Cancelled at any await, the run settles what it holds into the report as
    :func:`~resilient_aws.redrive.aredrive_sqs` does: a message not yet invoked is ``failed``
    (``Cancelled``), one whose invocation was in flight ``failed`` as ``OutcomeUnknown``
    (Lambda may have queued it); both stay in the queue.
    """
    check_lambda_target(function_name, target_queue_url)
    policy = policy or DEFAULT_POLICY
    arguments = locals()
    clients = AsyncClients(session, policy, sqs=client, **{"lambda": lambda_client})

    async def prepare(sqs: Any, source: QueueInfo) -> tuple[Any, RedriveReport, Any]:
        target = None
        if target_queue_url is not None:
            [target] = await arun_steps(sqs, policy, targets_steps(source, target_queue_url))
        elif function_name is not None:
            lam = await clients.get("lambda", region_of(function_name))
            await arun_steps(lam, policy, function_steps(function_name, "target function"))
        return lambda_run(clients, source, target, AsyncLambdaDelivery, arguments)

    return await arun_source(clients, source_queue_url, policy, prepare)

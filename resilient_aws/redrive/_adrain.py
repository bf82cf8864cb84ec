"""The drain on asyncio: :class:`~resilient_aws.redrive._drain.DrainCore` driven by tasks.

Every decision (what to receive, what moves, what to delete with which receipt, what the
report says, which held messages need more time) is the core's, as for the sync driver; this
module only awaits: receives on an aiobotocore client, deliveries that ``await``
(``adeliver``), deletes with :class:`~resilient_aws.batch.AsyncSqsDeleter` and visibility
changes with :class:`~resilient_aws.batch.AsyncSqsVisibilityChanger`.

Cancellation, at any await, settles the batches in hand into the report before the
``CancelledError`` goes on (``progress`` sees it): a message not yet sent, or whose copy's
outcome is unknown, is ``failed`` and stays in the source; one whose copy was confirmed but
not deleted is ``undeleted``. Nothing is deleted whose copy was not confirmed, and nothing
more is received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any, Protocol

from resilient_aws.batch import AsyncSqsDeleter, AsyncSqsVisibilityChanger
from resilient_aws.redrive._drain import (
    NOT_DELETED,
    NOT_SENT,
    SETTLER_OPTIONS,
    Batch,
    DrainCore,
    DrainOptions,
    Outcome,
    _AbortedError,
    failures,
    log_visibility_failures,
)
from resilient_aws.redrive._message import DlqMessage
from resilient_aws.redrive._queues import QueueInfo, describe_queue_steps
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.redrive._sqs import read_result
from resilient_aws.redrive._steps import arun_steps
from resilient_aws.retry import RetryPolicy

__all__ = ["OUTCOME_UNKNOWN", "AsyncDelivery", "adrain", "accounted", "arun_source", "asend"]

logger = logging.getLogger("resilient_aws.redrive")

Prepare = Callable[[Any, QueueInfo], Coroutine[Any, Any, tuple[Any, RedriveReport, Any]]]
"""What a redrive makes of the source queue, its checks done: the delivery, the empty report
and the drain options (given the SQS client and the source)."""

Route = Callable[[DlqMessage, RetryPolicy], Awaitable[tuple[str | None, str]]]


class AsyncDelivery(Protocol):
    """Delivers messages with an async client; never raises for one message's failure.

    Fills ``outcome`` (every message not named there was delivered). Cancelled, it still
    names there every message whose copy it cannot confirm before the ``CancelledError``
    goes on.
    """

    async def adeliver(
        self, messages: list[DlqMessage], policy: RetryPolicy, outcome: Outcome
    ) -> None: ...


OUTCOME_UNKNOWN = (
    "OutcomeUnknown: the run was cancelled while its copy was being delivered (the target may "
    "hold it); the message stays in the source"
)


async def asend(
    sender: Any,
    send: Callable[..., Awaitable[None]],
    entries: Iterable[dict[str, Any]],
    given: set[str],
    outcome: Outcome,
) -> None:
    """Give each entry (``send``'s keyword arguments; ``id``, its message id, goes into
    ``given``) to the async ``sender`` in its ``async with`` block, then add the sender's
    failures to ``outcome``. Cancelled, the sender's exit still accounts for every entry
    given (``NotSent``, or ``OutcomeUnknown`` for those in flight)."""
    try:
        async with sender:
            for entry in entries:
                given.add(entry["id"])
                await send(**entry)
    finally:
        read_result(sender.result, outcome)


@contextlib.contextmanager
def accounted(messages: list[DlqMessage], outcome: Outcome) -> Iterator[set[str]]:
    """The ids of the messages a delivery gives to a target, to be filled as it goes; when it
    ends (cancelled, or failed), every message not given (nor failed already) fails as not
    sent."""
    given: set[str] = set()
    try:
        yield given
    finally:
        for message in messages:
            if message.message_id not in given:
                outcome.failed.setdefault(message.message_id, NOT_SENT)


async def arun_source(
    clients: Any, source_queue_url: str, policy: RetryPolicy, prepare: Prepare
) -> RedriveReport:
    """Drain ``source_queue_url`` on asyncio with what ``prepare(sqs, source)`` makes of it
    (its checks done: the delivery, the empty report and the options); every client
    ``clients`` opened is closed at the end, also when the run is cancelled or fails."""
    try:
        sqs = await clients.get("sqs")
        source = await arun_steps(
            sqs, policy, describe_queue_steps(source_queue_url, "source queue")
        )
        delivery, report, options = await prepare(sqs, source)
        return await adrain(sqs, source.url, delivery, report, options, policy)
    finally:
        await clients.aclose()


async def adrain(
    client: Any,
    queue_url: str,
    delivery: AsyncDelivery,
    report: RedriveReport,
    options: DrainOptions,
    policy: RetryPolicy,
    route: Route | None = None,
) -> RedriveReport:
    """:func:`~resilient_aws.redrive._drain.drain` on an aiobotocore ``client``; ``route``
    is the async form of ``options.route`` (which then only says that messages are routed)."""
    return await _AsyncDrain(client, queue_url, delivery, report, options, policy, route).run()


class _AsyncDrain:
    def __init__(
        self,
        client: Any,
        queue_url: str,
        delivery: AsyncDelivery,
        report: RedriveReport,
        options: DrainOptions,
        policy: RetryPolicy,
        route: Route | None,
    ) -> None:
        self.core = DrainCore(queue_url, report, options, policy)
        self.core.on_change = self._wake
        self.client = client
        self.delivery = delivery
        self.route = route
        self.base_policy = policy
        self.policy, self.delete_policy, self.visibility_policy = self.core.policies(
            async_sleep=self._sleep
        )
        self.changed = asyncio.Event()
        self.extending = False

    def _wake(self) -> None:
        """The core's state changed: wake every worker waiting on it."""
        self.changed.set()
        self.changed = asyncio.Event()

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> RedriveReport:
        loop = asyncio.get_running_loop()
        workers = [loop.create_task(self._work()) for _ in range(self.core.options.concurrency)]
        timer = loop.create_task(self._keep_visible())
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            errors = [t.exception() for t in done if t.exception() is not None]
            if errors:
                self.core.stop()  # the others settle the batch in hand, then stop
                await asyncio.wait(workers)
                errors += [t.exception() for t in workers if t not in done and t.exception()]
                for later in errors[1:]:
                    logger.error("a redrive worker failed as well", exc_info=later)
                raise errors[0]  # type: ignore[misc]
        except asyncio.CancelledError:
            self.core.stop()
            for worker in workers:
                worker.cancel()  # each settles its batch in hand into the report
            await asyncio.wait(workers)
            raise
        finally:
            timer.cancel()
            await asyncio.wait([timer])
        await self._change_visibility(self.core.parked_receipts(), 0, "release")
        return self.core.report

    async def _keep_visible(self) -> None:
        # Wall-clock ticks, as the sync timer's: a request may hang without the retry core
        # sleeping, and a fake clock must not spin here.
        tick = min(5.0, self.core.visibility / 4)
        while True:
            await asyncio.sleep(tick)
            try:
                await self._extend_due()
            except Exception:  # the workers' own checks still run; never kill the timer
                logger.exception("extending the visibility of held messages failed")

    # -- one worker -----------------------------------------------------------------------------

    async def _work(self) -> None:
        with contextlib.suppress(_AbortedError):
            await self._receive_until_done()

    async def _receive_until_done(self) -> None:
        core = self.core
        while True:
            while (want := core.reserve()) is None:
                await self.changed.wait()
            if not want:
                return
            try:
                params = core.receive_params(want)
                response = await self.policy.acall(self.client.receive_message, **params)
            except BaseException:
                core.unreserve(want)
                raise
            batch, generation = core.admit(response, want)
            while generation is not None and not core.waited_enough(generation):
                await self.changed.wait()
            if batch is not None:
                try:
                    await self._process(batch)
                finally:
                    core.done(batch)

    async def _process(self, batch: Batch) -> None:
        core = self.core
        stage = "route"
        undeleted: dict[str, str] = {}
        try:
            for message in core.select(batch):
                assert self.route is not None
                batch.route(message, *await self.route(message, self.policy))
            deliver = core.to_deliver(batch)
            if deliver:
                for chunk in core.rate_delay(len(deliver)):
                    await self._sleep(chunk)
                core.check_abort()
                await self._extend_due()
                stage = "deliver"
                await self.delivery.adeliver(deliver, self.policy, batch.outcome)
            core.check_abort()
            await self._extend_due()
            stage = "delete"
            await self._delete(core.to_delete(batch), undeleted)
        except asyncio.CancelledError:
            core.cancelled(batch, stage, undeleted)
            raise
        core.settle(batch, undeleted)

    async def _delete(self, receipts: dict[str, str], undeleted: dict[str, str]) -> None:
        """Delete ``receipts``; fill ``undeleted`` with every one not confirmed deleted (when
        cancelled too)."""
        if not receipts:
            return
        deleter = AsyncSqsDeleter(
            self.core.url, client=self.client, policy=self.delete_policy, **SETTLER_OPTIONS
        )
        waiting = list(receipts)
        try:
            async with deleter:  # cancelled, its exit still accounts for every entry given
                while waiting:
                    await deleter.delete(receipts[waiting[0]], id=waiting.pop(0))
        finally:
            undeleted.update(failures(deleter.result))
            undeleted.update(dict.fromkeys(waiting, NOT_DELETED))

    # -- visibility -----------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """The retry core's sleep, with the visibility of held messages extended first."""
        await self._extend_due(horizon=seconds)
        await (self.base_policy.async_sleep or asyncio.sleep)(seconds)

    async def _extend_due(self, horizon: float = 0.0) -> None:
        if self.extending:
            return  # another task is extending right now
        self.extending = True
        try:
            await self._change_visibility(self.core.due(horizon), self.core.visibility, "extend")
        finally:
            self.extending = False

    async def _change_visibility(self, receipts: dict[str, str], timeout: int, why: str) -> None:
        if not receipts:
            return
        # The changer retries on the caller's own policy: its sleeps must not call back here.
        changer = AsyncSqsVisibilityChanger(
            self.core.url, client=self.client, policy=self.visibility_policy, **SETTLER_OPTIONS
        )
        async with changer:
            for message_id, receipt in receipts.items():
                await changer.change(receipt, timeout, id=message_id)
        log_visibility_failures(changer.result, why)

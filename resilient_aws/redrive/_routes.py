"""Each message of a DLQ fed by several queues back to its own source queue.

SQS stamps a message it moves to a dead-letter queue with the system attribute
``DeadLetterQueueSourceArn``. The queues ``ListDeadLetterSourceQueues`` lists are checked before
anything moves; an ARN outside that list (a source in another account, which the list does not
show) is looked up once with ``GetQueueUrl`` (name and owner account from the ARN) and accepted
only if its ``RedrivePolicy`` names this DLQ and its type matches.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws.errors import RetryError
from resilient_aws.redrive._drain import NOT_SENT, Delivery, Outcome
from resilient_aws.redrive._message import DlqMessage
from resilient_aws.redrive._queues import QueueInfo, is_missing_queue
from resilient_aws.redrive._steps import Call, Steps, run_steps
from resilient_aws.redrive._targets import error_text
from resilient_aws.retry import RetryPolicy

__all__ = ["SOURCE_ARN", "RoutedDelivery", "SourceRouter"]

SOURCE_ARN = "DeadLetterQueueSourceArn"


class SourceRouter:
    """Maps a message's ``DeadLetterQueueSourceArn`` to the URL of that source queue."""

    def __init__(self, client: Any, dlq: QueueInfo, sources: list[QueueInfo]) -> None:
        self.client = client
        self.dlq = dlq
        self.urls: dict[str, str] = {source.arn: source.url for source in sources}
        # Definitive refusals only: a transient failure is looked up again by the next message.
        self.refused: dict[str, str] = {}
        self.lock = threading.Lock()

    def route(self, message: DlqMessage, policy: RetryPolicy) -> tuple[str | None, str]:
        """(target URL, ``""``), or (``None``, ``"Code: why"``) when it has no known source."""
        return run_steps(self.client, policy, self.route_steps(message))

    def known(self, message: DlqMessage) -> tuple[str | None, str]:
        """:meth:`route` of a message whose source was looked up already."""
        with self.lock:
            url = self.urls.get(message.attributes.get(SOURCE_ARN, ""))
        return (url, "") if url is not None else (None, "NotRouted: its source is not known")

    def route_steps(self, message: DlqMessage) -> Steps[tuple[str | None, str]]:
        """:meth:`route` for either kind of client (:mod:`._steps`)."""
        arn = message.attributes.get(SOURCE_ARN)
        if not arn:
            return None, (
                f"NoSourceQueue: the message has no {SOURCE_ARN} attribute; pass a target "
                "queue to move it"
            )
        with self.lock:
            url = self.urls.get(arn)
            refused = self.refused.get(arn)
        if url is not None:
            return url, ""
        if refused is not None:
            return None, refused
        return (yield from self._look_up(arn))

    def _look_up(self, arn: str) -> Steps[tuple[str | None, str]]:
        parts = arn.split(":")
        own = self.dlq.arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs" or not parts[4] or not parts[5]:
            return self._refuse(arn, f"NotASourceQueue: {arn} is not an SQS queue ARN")
        if len(own) == 6 and (parts[1], parts[3]) != (own[1], own[3]):
            return self._refuse(arn, f"NotASourceQueue: {arn} is in another region than the DLQ")
        try:
            url = (
                yield Call(
                    "get_queue_url", {"QueueName": parts[5], "QueueOwnerAWSAccountId": parts[4]}
                )
            )["QueueUrl"]
            answer = yield Call(
                "get_queue_attributes",
                {"QueueUrl": url, "AttributeNames": ["QueueArn", "FifoQueue", "RedrivePolicy"]},
            )
            attributes = answer.get("Attributes", {})
        except ClientError as error:
            if is_missing_queue(error):
                return self._refuse(arn, f"SourceQueueNotFound: {arn} does not exist")
            return None, error_text(error)
        except (BotoCoreError, RetryError) as error:
            return None, error_text(error)
        try:
            named = json.loads(attributes.get("RedrivePolicy") or "{}").get("deadLetterTargetArn")
        except (ValueError, AttributeError):
            named = None
        if named != self.dlq.arn:
            return self._refuse(
                arn, f"NotASourceQueue: {arn} is not a source queue of this dead-letter queue"
            )
        fifo = str(attributes.get("FifoQueue", "false")).lower() == "true"
        if fifo != self.dlq.fifo:
            return self._refuse(
                arn, f"TargetTypeMismatch: {arn} and the DLQ are not of the same type"
            )
        with self.lock:
            self.urls[arn] = str(url)
        return str(url), ""

    def _refuse(self, arn: str, reason: str) -> tuple[None, str]:
        with self.lock:
            self.refused[arn] = reason
        return None, reason


class RoutedDelivery:
    """Sends each message to its own source queue: one delivery (one ``SqsSender``) per target
    and batch; a message without a known source fails, the rest of the batch goes on."""

    def __init__(self, router: SourceRouter, make: Callable[[str], Delivery]) -> None:
        self.router = router
        self.make = make
        self.deliveries: dict[str, Delivery] = {}
        self.lock = threading.Lock()

    def deliver(self, messages: list[DlqMessage], policy: RetryPolicy) -> Outcome:
        outcome = Outcome()
        by_target = self._split(messages, outcome, lambda m: self.router.route(m, policy))
        for url, batch in by_target.items():
            part = self._delivery(url).deliver(batch, policy)
            outcome.failed.update(part.failed)
            outcome.resent += part.resent
        return outcome

    async def adeliver(
        self, messages: list[DlqMessage], policy: RetryPolicy, outcome: Outcome
    ) -> None:
        """:meth:`deliver` with async deliveries, filling ``outcome`` (cancelled: a message
        not named there was delivered)."""
        # The drain routed every message it delivers: their sources are known, no lookup.
        by_target = self._split(messages, outcome, self.router.known)
        waiting = list(by_target)
        try:
            while waiting:
                url = waiting[0]
                await self._delivery(url).adeliver(by_target[url], policy, outcome)
                waiting.pop(0)
        finally:
            for url in waiting[1:]:
                for message in by_target[url]:
                    outcome.failed.setdefault(message.message_id, NOT_SENT)

    @staticmethod
    def _split(
        messages: list[DlqMessage],
        outcome: Outcome,
        route: Callable[[DlqMessage], tuple[str | None, str]],
    ) -> dict[str, list[DlqMessage]]:
        by_target: dict[str, list[DlqMessage]] = {}
        for message in messages:
            url, reason = route(message)
            if url is None:
                outcome.failed[message.message_id] = reason
            else:
                by_target.setdefault(url, []).append(message)
        return by_target

    def _delivery(self, url: str) -> Any:
        with self.lock:
            if url not in self.deliveries:
                self.deliveries[url] = self.make(url)
            return self.deliveries[url]

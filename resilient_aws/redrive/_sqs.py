"""SQS dead-letter queue -> its source queue(s) (or any queue of the same type)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from resilient_aws.batch import SqsSender
from resilient_aws.errors import AmbiguousTargetError, RedriveTargetError, TargetTypeMismatchError
from resilient_aws.redrive._drain import (
    DEFAULT_REMEMBER_MOVED,
    DrainOptions,
    Outcome,
    drain,
    failures,
)
from resilient_aws.redrive._message import DlqMessage, Filter, compile_filter, message_attributes
from resilient_aws.redrive._queues import (
    QueueInfo,
    describe_queue,
    describe_queue_steps,
    source_queues_steps,
    sqs_client,
)
from resilient_aws.redrive._report import RedriveReport, start_report
from resilient_aws.redrive._routes import RoutedDelivery, SourceRouter
from resilient_aws.redrive._steps import Steps, run_steps
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = [
    "SqsDelivery",
    "read_result",
    "sqs_run",
    "fresh_deduplication_id",
    "redrive_sqs",
    "resolve_target",
    "resolve_targets",
]


def fresh_deduplication_id(run_id: str, message_id: str) -> str:
    """The deduplication id a redrive gives a message on a FIFO target: new for each run (so the
    original's 5-minute deduplication window cannot swallow the copy), the same for every
    attempt of one run (so SQS drops a copy that a retried request already delivered)."""
    return hashlib.sha256(f"{run_id}:{message_id}".encode()).hexdigest()


class SqsDelivery:
    """Sends messages to a queue with :class:`SqsSender`: body, message attributes, the X-Ray
    trace header, and on FIFO queues the group id and a deduplication id (fresh, or the
    original one with ``preserve_dedup_id``)."""

    def __init__(
        self,
        queue_url: str,
        *,
        client: Any,
        fifo: bool,
        run_id: str,
        preserve_dedup_id: bool = False,
        body: Callable[[DlqMessage], str] | None = None,
        attributes: bool = True,
    ) -> None:
        self.queue_url = queue_url
        self.client = client
        self.fifo = fifo
        self.run_id = run_id
        self.preserve_dedup_id = preserve_dedup_id
        self.body = body
        self.attributes = attributes

    def sender_options(self) -> dict[str, Any]:
        """How the delivery's sender (sync or async) is made: failures read from its result."""
        return dict(
            client=self.client,
            concurrency=1,
            ordered=self.fifo,
            raise_on_failure=False,
            on_invalid="report",
            keep_answers=False,
        )

    def entries(
        self, messages: list[DlqMessage], outcome: Outcome
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(body, send_message options)`` of each message; one whose body cannot be made
        fails in ``outcome`` and is not sent."""
        for message in messages:
            try:
                body = self.body(message) if self.body is not None else message.body
            except (TypeError, ValueError, KeyError) as error:
                outcome.failed[message.message_id] = f"{type(error).__name__}: {error}"
                continue
            trace = message.attributes.get("AWSTraceHeader")
            yield (
                body,
                dict(
                    id=message.message_id,
                    attributes=message_attributes(message) if self.attributes else None,
                    system_attributes=(
                        {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
                        if trace
                        else None
                    ),
                    group_id=message.group_id if self.fifo else None,
                    deduplication_id=self._deduplication_id(message) if self.fifo else None,
                ),
            )

    def deliver(self, messages: list[DlqMessage], policy: RetryPolicy) -> Outcome:
        outcome = Outcome()
        sender = SqsSender(self.queue_url, policy=policy, **self.sender_options())
        for body, options in self.entries(messages, outcome):
            sender.send_message(body, **options)
        return read_result(sender.close(), outcome)

    def _deduplication_id(self, message: DlqMessage) -> str:
        original = message.deduplication_id
        if self.preserve_dedup_id and original:
            return original
        return fresh_deduplication_id(self.run_id, message.message_id)


def resolve_target(
    client: Any, source: QueueInfo, target_url: str | None, policy: RetryPolicy
) -> QueueInfo:
    """The target queue, checked: it exists, is not the source, and has the source's type."""
    return run_steps(client, policy, _target_steps(source, target_url))


def _target_steps(source: QueueInfo, target_url: str | None) -> Steps[QueueInfo]:
    if target_url is None:
        candidates = yield from source_queues_steps(source.url)
        if len(candidates) != 1:
            what = "no source queue" if not candidates else f"{len(candidates)} source queues"
            raise AmbiguousTargetError(
                f"{source.url!r} has {what} (ListDeadLetterSourceQueues); pass the target queue",
                candidates,
            )
        target_url = candidates[0]
    target = yield from describe_queue_steps(target_url, "target queue")
    if (target.arn and target.arn == source.arn) or target.url == source.url:
        raise RedriveTargetError(f"the target {target_url!r} is the source queue itself")
    if target.fifo != source.fifo:
        kinds = ("FIFO", "standard") if source.fifo else ("standard", "FIFO")
        raise TargetTypeMismatchError(
            f"the source {source.url!r} is a {kinds[0]} queue and the target {target_url!r} a "
            f"{kinds[1]} queue: redrive between queues of the same type"
        )
    return target


def resolve_targets(
    client: Any, source: QueueInfo, target_url: str | None, policy: RetryPolicy
) -> list[QueueInfo]:
    """The given target, else every source queue of the DLQ, each checked as
    :func:`resolve_target` checks it; :class:`AmbiguousTargetError` if it has none."""
    return run_steps(client, policy, targets_steps(source, target_url))


def targets_steps(source: QueueInfo, target_url: str | None) -> Steps[list[QueueInfo]]:
    """:func:`resolve_targets` for either kind of client (:mod:`._steps`)."""
    if target_url is not None:
        return [(yield from _target_steps(source, target_url))]
    candidates = yield from source_queues_steps(source.url)
    if not candidates:
        raise AmbiguousTargetError(
            f"{source.url!r} has no source queue (ListDeadLetterSourceQueues); pass the target "
            "queue",
            candidates,
        )
    targets = []
    for url in candidates:
        targets.append((yield from _target_steps(source, url)))
    return targets


def read_result(result: Any, outcome: Outcome) -> Outcome:
    """Add a sender's final failures and re-sent count to ``outcome``."""
    outcome.failed.update(failures(result))
    outcome.resent += result.resent
    return outcome


def redrive_sqs(
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
    poll_interval: float = 5.0,
    progress: Callable[[RedriveReport], None] | None = None,
    remember_moved: int = DEFAULT_REMEMBER_MOVED,
) -> RedriveReport:
    """Move the messages of an SQS dead-letter queue back to its source queue (or any queue).

    Never deletes a message before its copy is acknowledged: messages are received in batches
    of 10, sent with :class:`~resilient_aws.batch.SqsSender` (per-message retries through the
    retry core), and only the messages whose send succeeded are deleted, each delete checked.
    Message attributes and the X-Ray trace header are kept; on FIFO queues, the group id too.

    - ``target_queue_url``: default, the DLQ's source queue (``ListDeadLetterSourceQueues``);
      :class:`~resilient_aws.errors.AmbiguousTargetError` if it has none. With several, each
      message goes back to the queue named by its ``DeadLetterQueueSourceArn`` attribute; a
      message without it, or naming a queue that is not a source of the DLQ, stays there
      (``failed``); ``report.targets`` counts the messages per queue. A missing queue raises
      :class:`~resilient_aws.errors.QueueNotFoundError`, a FIFO/standard mismatch
      :class:`~resilient_aws.errors.TargetTypeMismatchError`: both before anything moves.
    - ``filter``: a JMESPath expression over ``{messageId, body, attributes,
      messageAttributes}`` (``body`` parsed when it is JSON) or a function of a
      :class:`DlqMessage`; messages it does not select stay in the DLQ (``skipped``).
    - ``max_messages``: receive at most this many messages in this run.
    - ``rate``: at most this many messages per second (paced on the policy's clock).
    - ``dry_run``: receive and filter, move nothing; ``report.would_move`` lists what would
      (and with several sources, ``report.routes`` where each message would go).
    - ``visibility_timeout``: how long a received message stays invisible; it is extended
      while a batch is being worked on, and messages that do not move are made visible again
      when the run ends. An interrupted run leaves the messages it held invisible until then.
    - ``preserve_dedup_id`` (FIFO): send with the original ``MessageDeduplicationId``. The
      default is a fresh id per message and run (``run_id`` + message id): copies of one run
      deduplicate, and a copy is never dropped as a duplicate of the original message sent
      less than 5 minutes earlier — which the original id risks.
    - ``run_id``: names the run (default random). A restarted run given the same ``run_id``
      within 5 minutes sends the same fresh ids, so a FIFO target drops what was delivered.
    - ``concurrency``: receive workers, each with one batch in flight.
    - ``native``: use SQS's own ``StartMessageMoveTask`` (DLQs fed by SQS queues) and follow
      it with ``ListMessageMoveTasks`` every ``poll_interval`` seconds; ``rate`` becomes
      ``MaxNumberOfMessagesPerSecond``; filters, dry runs and limits are not available there.
    - ``progress``: called with the report after every batch (and every poll of a native
      task); an exception it raises stops the run like an interruption.
    - ``remember_moved``: how many moved message ids the run remembers (the newest; about 100
      bytes each, ~10 MB at the default 100,000) so that a copy SQS delivers again is deleted
      instead of delivered twice. What else the run keeps is what it still owes: the messages
      it holds, and the receipt handles of those it leaves in the source (skipped, failed, dry
      run) and of those delivered but not deleted. A copy of a message moved longer ago than the
      window is delivered again and counted again.
    """
    policy = policy or DEFAULT_POLICY
    client = sqs_client(client, session)
    source = describe_queue(client, source_queue_url, policy, "source queue")
    if native:
        from resilient_aws.redrive._native import redrive_native

        if filter is not None or dry_run or max_messages is not None or preserve_dedup_id:
            raise _native_refuses(filter, dry_run, max_messages, preserve_dedup_id)
        target_info = (
            resolve_target(client, source, target_queue_url, policy)
            if target_queue_url is not None
            else None
        )
        return redrive_native(
            client,
            source,
            target_info,
            rate=rate,
            policy=policy,
            poll_interval=poll_interval,
            progress=progress,
        )
    targets = resolve_targets(client, source, target_queue_url, policy)
    delivery, report, options = sqs_run(client, source, targets, SqsDelivery, locals())
    return drain(client, source.url, delivery, report, options, policy)


_DRAIN_KNOBS = (
    "max_messages",
    "rate",
    "dry_run",
    "visibility_timeout",
    "wait_time_s",
    "concurrency",
    "progress",
    "remember_moved",
)


def sqs_run(
    client: Any,
    source: QueueInfo,
    targets: list[QueueInfo],
    delivery_type: type[SqsDelivery],
    arguments: dict[str, Any],
) -> tuple[Any, RedriveReport, DrainOptions]:
    """The delivery, the empty report and the options of a drain of ``source`` into
    ``targets`` (each message to its own source queue when there are several), for a sync or
    an async driver; ``arguments`` are those :func:`redrive_sqs` was called with (its
    ``locals()``: one list of options for both entry points)."""
    run_id = arguments["run_id"] or uuid.uuid4().hex
    preserve_dedup_id = arguments["preserve_dedup_id"]

    def to_queue(url: str) -> SqsDelivery:
        return delivery_type(
            url,
            client=client,
            fifo=source.fifo,  # every target was checked to be of the DLQ's type
            run_id=run_id,
            preserve_dedup_id=preserve_dedup_id,
        )

    router = SourceRouter(client, source, targets) if len(targets) > 1 else None
    options = DrainOptions(
        filter=compile_filter(arguments["filter"]),
        fifo=source.fifo,
        route=router.route if router is not None else None,
        **{name: arguments[name] for name in _DRAIN_KNOBS},
    )
    report = start_report(
        source,
        kind="sqs",
        target=targets[0].url if router is None else None,
        run_id=run_id,
        dry_run=options.dry_run,
        max_messages=options.max_messages,
    )
    delivery = to_queue(targets[0].url) if router is None else RoutedDelivery(router, to_queue)
    return delivery, report, options


def _native_refuses(
    filter: Filter | None, dry_run: bool, max_messages: int | None, preserve: bool
) -> Exception:
    from resilient_aws.errors import ConfigurationError

    given = [
        name
        for name, value in (
            ("filter", filter is not None),
            ("dry_run", dry_run),
            ("max_messages", max_messages is not None),
            ("preserve_dedup_id", preserve),
        )
        if value
    ]
    return ConfigurationError(
        "native",
        f"StartMessageMoveTask moves every message as is: {', '.join(given)} not available",
    )

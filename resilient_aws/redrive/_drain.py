"""The drain loop every redrive source shares: receive, deliver, delete only what was delivered.

Workers (``concurrency`` threads) each receive a batch of up to 10 messages, pick the ones the
filter selects, hand them to a :class:`Delivery` (an SQS queue, a Lambda function, an event bus,
a stream-pointer resolver) and then delete from the source exactly the messages it delivered,
checking every per-entry delete result. Messages of a batch stay invisible while they are worked
on: their visibility is extended before half of it has run out, checked before every sleep of
the retry core (so a long backoff cannot outlast it) and on a timer. Messages that do not move
(skipped, failed, dry run) stay invisible for the rest of the run, so that one run looks at each
message once, and are made visible again when the run ends.

What a run remembers is bounded by what it still owes, not by the size of the queue: each
message it holds (``concurrency`` batches), each it leaves in the source (skipped, failed, dry
run: their receipt handles, to release them at the end) and each it delivered but could not
delete. A message it moved is forgotten but for its id, kept in a window of the last
``remember_moved`` moved ids (about 100 bytes each) so that a copy SQS delivers again is
deleted rather than delivered twice; a copy of a message that left the window is delivered
again (the target sees a duplicate, as SQS's at-least-once delivery allows) and counted again.

A run that is interrupted (an exception from a callback, a hook, Ctrl-C) stops its workers at
their next step, deletes nothing it has not delivered and leaves the messages it held to become
visible again when their visibility timeout ends, as a killed process would.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import field
from typing import Any, Protocol

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.batch import SqsDeleter, SqsVisibilityChanger
from resilient_aws.errors import ConfigurationError
from resilient_aws.redrive._message import DlqMessage
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.retry import Pacer, RetryPolicy

__all__ = [
    "NOT_DELETED",
    "NOT_SENT",
    "Batch",
    "Delivery",
    "DrainCore",
    "DrainOptions",
    "Outcome",
    "drain",
]

logger = logging.getLogger("resilient_aws.redrive")

_ACTIVE, _MOVED, _UNDELETED, _PARKED = "active", "moved", "undeleted", "parked"
_MAX_BATCH = 10
_QUIET_RECEIVES = 2
_MAX_VISIBILITY = 43_200
_SIGNAL_CHECK_S = 0.2
# Moved message ids remembered to recognise a copy delivered again: ~10 MB at most.
DEFAULT_REMEMBER_MOVED = 100_000


@lean_dataclass
class Outcome:
    """What a delivery did with one batch: every message not named here was delivered.

    ``failed``: not delivered (message id -> ``"Code: message"``); ``expired``: can never be
    delivered (stream data gone). ``resolved``/``records``: stream pointers resolved and records
    delivered; ``resent``: entries a batch sender sent again.
    """

    failed: dict[str, str] = field(default_factory=dict)
    expired: dict[str, str] = field(default_factory=dict)
    resolved: int = 0
    records: int = 0
    resent: int = 0


class Delivery(Protocol):
    """Delivers messages of the source somewhere; never raises for one message's failure."""

    def deliver(self, messages: list[DlqMessage], policy: RetryPolicy) -> Outcome: ...


@lean_dataclass(frozen=True, kw_only=True)
class DrainOptions:
    """The knobs of a drain run, validated when they are made."""

    max_messages: int | None = None
    rate: float | None = None
    filter: Callable[[DlqMessage], bool] | None = None
    dry_run: bool = False
    visibility_timeout: int = 120
    wait_time_s: int = 1
    concurrency: int = 4
    fifo: bool = False
    delete_expired: bool = False
    progress: Callable[[RedriveReport], None] | None = None
    # Where each message goes when the target depends on the message: (queue URL, "") or
    # (None, "Code: why it cannot go anywhere").
    route: Callable[[DlqMessage, RetryPolicy], tuple[str | None, str]] | None = None
    # How many moved message ids the run remembers to delete a copy delivered again instead
    # of delivering it twice (the newest ones; about 100 bytes each).
    remember_moved: int = DEFAULT_REMEMBER_MOVED

    def __post_init__(self) -> None:
        if self.max_messages is not None and (
            not isinstance(self.max_messages, int) or self.max_messages < 1
        ):
            raise ConfigurationError("max_messages", f"must be >= 1, got {self.max_messages!r}")
        if self.rate is not None and not self.rate > 0:
            raise ConfigurationError("rate", f"must be > 0 messages/s, got {self.rate!r}")
        if not 1 <= self.visibility_timeout <= _MAX_VISIBILITY:
            raise ConfigurationError(
                "visibility_timeout",
                f"must be 1..{_MAX_VISIBILITY}, got {self.visibility_timeout!r}",
            )
        if not 0 <= self.wait_time_s <= 20:
            raise ConfigurationError("wait_time_s", f"must be 0..20, got {self.wait_time_s!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigurationError("concurrency", f"must be >= 1, got {self.concurrency!r}")
        if (
            not isinstance(self.remember_moved, int)
            or isinstance(self.remember_moved, bool)
            or self.remember_moved < 0
        ):
            raise ConfigurationError(
                "remember_moved", f"must be an int >= 0, got {self.remember_moved!r}"
            )


class _AbortedError(Exception):
    """Another worker failed or the run was interrupted: stop at this step."""


class _Seen:
    """A message the run still owes something: held, left in the source, or undeleted."""

    __slots__ = ("receipt", "state", "target")

    def __init__(self, state: str, receipt: str, target: str | None = None) -> None:
        self.state = state
        self.receipt = receipt
        self.target = target


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _MovedIds:
    """The last ``capacity`` moved message ids, each with the queue it went to.

    SQS message ids are lowercase UUIDs: kept as 128-bit ints (44 bytes instead of 85 for the
    string), any other id as it is. The int of a canonical UUID names exactly one string, so
    nothing is ever mistaken for another message.
    """

    __slots__ = ("capacity", "order", "targets")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.targets: dict[Hashable, str | None] = {}
        self.order: deque[Hashable] = deque()

    @staticmethod
    def _key(message_id: str) -> Hashable:
        if len(message_id) == 36 and _UUID.fullmatch(message_id):
            return int(message_id.replace("-", ""), 16)
        return message_id

    def __contains__(self, message_id: str) -> bool:
        return self._key(message_id) in self.targets

    def target(self, message_id: str) -> str | None:
        return self.targets.get(self._key(message_id))

    def add(self, message_id: str, target: str | None) -> None:
        if not self.capacity:
            return
        key = self._key(message_id)
        if key in self.targets:
            self.targets[key] = target
            return
        self.targets[key] = target
        self.order.append(key)
        if len(self.order) > self.capacity:
            del self.targets[self.order.popleft()]

    def __len__(self) -> int:
        return len(self.targets)


@lean_dataclass
class _Held:
    ids: list[str]
    extend_at: float


class _RateLimit:
    """At most ``rate`` messages per second on average: how long a batch waits for its turn."""

    def __init__(self, rate: float, clock: Callable[[], float]):
        self.rate = rate
        self.clock = clock
        self.next: float | None = None
        self.lock = threading.Lock()

    def delay(self, count: int) -> float:
        with self.lock:
            now = self.clock()
            start = now if self.next is None else max(now, self.next)
            self.next = start + count / self.rate
            return start - now


def sleep_chunks(delay: float, max_chunk: float) -> list[float]:
    """``delay`` cut into sleeps of at most ``max_chunk`` (visibility is checked between)."""
    chunks: list[float] = []
    while delay > 0:
        chunks.append(min(delay, max_chunk))
        delay -= chunks[-1]
    return chunks


class Batch:
    """The messages one receive brought, and what the run decided for each of them."""

    __slots__ = (
        "again",
        "deliver",
        "id",
        "new",
        "outcome",
        "parked",
        "routed",
        "routes",
        "would",
    )

    def __init__(
        self, batch_id: int, new: list[DlqMessage], again: list[tuple[DlqMessage, str]]
    ) -> None:
        self.id = batch_id
        self.new = new
        self.again = again
        self.deliver: list[DlqMessage] = []
        self.routed: list[DlqMessage] = []
        self.parked: dict[str, str] = {}
        self.routes: dict[str, str] = {}
        self.would: list[str] = []
        self.outcome = Outcome()

    def route(self, message: DlqMessage, target: str | None, reason: str) -> None:
        """Where the route sends ``message`` (``None``: it stays, for ``reason``)."""
        if target is None:
            self.parked[message.message_id] = reason
        else:
            self.routes[message.message_id] = target
            self.routed.append(message)


_CANCELLED = "Cancelled: the run was cancelled before {}; the message stays in the source"
NOT_SENT = _CANCELLED.format("its copy was sent")
NOT_DELETED = _CANCELLED.format("it was deleted")


class DrainCore:
    """Every decision of a drain run, for a sync or an async driver that does the requests.

    What to receive, which messages are new, which move (filter, FIFO group order, route, dry
    run), at what rate, what to delete with which receipt, what goes into the report, which
    held messages need their visibility extended and which to release at the end. Its state is
    guarded by ``cond``; ``on_change`` is called (under it) when a waiting worker may go on.
    """

    def __init__(
        self,
        queue_url: str,
        report: RedriveReport,
        options: DrainOptions,
        policy: RetryPolicy,
    ) -> None:
        self.url = queue_url
        self.report = report
        self.options = options
        self.base_policy = policy
        self.clock = policy.clock
        self.visibility = options.visibility_timeout
        self.batch = _MAX_BATCH
        if options.rate is not None:
            self.batch = max(1, min(_MAX_BATCH, int(options.rate)))
        self.rate_limit = _RateLimit(options.rate, self.clock) if options.rate is not None else None
        self.cond = threading.Condition()
        self.on_change: Callable[[], None] = self.cond.notify_all
        # What the run still owes (held, left in the source, undeleted), and the window of
        # the ids it moved: never every message of the queue.
        self.seen: dict[str, _Seen] = {}
        self.moved = _MovedIds(options.remember_moved)
        self.target_names: dict[str, str] = {}
        self.held: dict[int, _Held] = {}
        self.batch_ids = itertools.count()
        self.blocked_groups: set[str] = set()
        self.remaining = options.max_messages
        self.reserved = 0
        self.in_flight = 0
        self.settled = 0
        self.quiet = 0
        self.drained = False
        self.abort = False

    def policies(self, **hooks: Any) -> tuple[RetryPolicy, RetryPolicy, RetryPolicy]:
        """The policies of deliveries, deletes and visibility changes: ``hooks`` (the sleeps
        that extend visibility first) on the first two, one pacer for each kind of request so
        that what the service said carries from one batch to the next (a target that stopped
        taking messages is not rediscovered batch by batch)."""
        policy = self.base_policy
        deliver = dataclasses.replace(policy, pacer=policy.pacer or Pacer(), **hooks)
        return (
            deliver,
            dataclasses.replace(deliver, pacer=Pacer()),
            dataclasses.replace(policy, pacer=Pacer()),
        )

    def stop(self) -> None:
        with self.cond:
            self.abort = True
            self.on_change()

    def check_abort(self) -> None:
        if self.abort:
            raise _AbortedError

    # -- receiving ------------------------------------------------------------------------------

    def reserve(self) -> int | None:
        """How many messages the next receive asks for (0: stop), ``None``: wait for a change."""
        with self.cond:
            if self.abort or self.drained:
                return 0
            deadline = self.base_policy.deadline
            if deadline is not None and deadline.expired:
                return 0  # a Lambda about to end takes no new batch; the rest waits
            want = self.batch
            if self.remaining is not None:
                want = min(want, self.remaining - self.reserved)
                if want <= 0:
                    if self.reserved == 0:
                        self.drained = True
                        self.on_change()
                        return 0
                    return None
            self.reserved += want
            self.in_flight += 1
            return want

    def unreserve(self, want: int) -> None:
        """The receive of a reservation raised."""
        with self.cond:
            self.reserved -= want
            self.in_flight -= 1
            self.on_change()

    def receive_params(self, want: int) -> dict[str, Any]:
        self.check_abort()
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": want,
            "VisibilityTimeout": self.visibility,
            "WaitTimeSeconds": self.options.wait_time_s,
            "MessageAttributeNames": ["All"],
        }
        if self.options.route is not None:
            # DeadLetterQueueSourceArn is a message system attribute: the legacy AttributeNames
            # parameter does not name it.
            params["MessageSystemAttributeNames"] = ["All"]
        else:
            params["AttributeNames"] = ["All"]
        if self.options.fifo:
            # A retried receive with the same attempt id gets the same messages back instead
            # of leaving the first answer's messages invisible (FIFO queues only).
            params["ReceiveRequestAttemptId"] = uuid.uuid4().hex
        return params

    def admit(self, response: dict[str, Any], want: int) -> tuple[Batch | None, int | None]:
        """The batch a receive brought (``None``: nothing to do), and when it brought nothing
        new while other workers hold messages, the ``settled`` count to wait past first."""
        messages = [DlqMessage.from_sqs(m) for m in response.get("Messages", [])]
        new: list[DlqMessage] = []
        again: list[tuple[DlqMessage, str]] = []
        with self.cond:
            for message in messages:
                seen = self.seen.get(message.message_id)
                if seen is not None:
                    seen.receipt = message.receipt_handle  # the newest one deletes for sure
                    again.append((message, seen.state))
                elif message.message_id in self.moved:
                    again.append((message, _MOVED))  # deleted with its own, newest receipt
                else:
                    self.seen[message.message_id] = _Seen(_ACTIVE, message.receipt_handle)
                    new.append(message)
            self.reserved -= want
            if self.remaining is not None:
                self.remaining -= len(new)
            self.report.received += len(new)
            wait = None
            if not new:
                wait = self._nothing_new()
                if not again:
                    return None, wait
            else:
                self.quiet = 0
            batch = Batch(next(self.batch_ids), new, again)
            self.held[batch.id] = _Held(
                [m.message_id for m in new], self.clock() + self.visibility / 2
            )
            return batch, wait

    def _nothing_new(self) -> int | None:
        """Under the lock: a receive brought no message this run had not seen."""
        self.in_flight -= 1
        self.settled += 1
        if self.in_flight > 0:
            # Another worker holds messages: on a FIFO queue they lock their groups, so an
            # empty answer proves nothing until that worker has settled its batch.
            return self.settled
        self.quiet += 1
        # A long poll asks every SQS server: one empty answer is the truth. A short poll asks a
        # sample of them, so it takes two in a row.
        if self.quiet >= (1 if self.options.wait_time_s > 0 else _QUIET_RECEIVES):
            self.drained = True
        self.on_change()
        return None

    def waited_enough(self, generation: int) -> bool:
        """Another worker settled a batch since ``generation`` (or the run ends)."""
        return self.settled != generation or self.abort or self.drained

    def done(self, batch: Batch) -> None:
        """The batch is settled (or given up): its messages are no longer held."""
        with self.cond:
            self.held.pop(batch.id, None)
            if batch.new:
                self.in_flight -= 1
                self.settled += 1
            self.on_change()

    # -- deciding -------------------------------------------------------------------------------

    def select(self, batch: Batch) -> list[DlqMessage]:
        """Sort the new messages into delivered or parked; return those that still need a
        route (the driver calls ``batch.route`` for each), none without a router."""
        for message in batch.new:
            verdict = self._select(message)
            if verdict is None:
                batch.deliver.append(message)
            else:
                batch.parked[message.message_id] = verdict
        return batch.deliver if self.options.route is not None else []

    def to_deliver(self, batch: Batch) -> list[DlqMessage]:
        """After routing: what the delivery gets (nothing in a dry run)."""
        if self.options.route is not None:
            batch.deliver = batch.routed
        if self.options.dry_run:
            batch.would = [m.message_id for m in batch.deliver]
            batch.deliver = []
        return batch.deliver

    def rate_delay(self, count: int) -> list[float]:
        """The sleeps before ``count`` messages may be delivered under ``rate``."""
        if self.rate_limit is None or not count:
            return []
        return sleep_chunks(self.rate_limit.delay(count), self.visibility / 4)

    def _select(self, message: DlqMessage) -> str | None:
        """``None`` if the message should be delivered, else why it stays (a failure reason,
        or ``"skipped"``)."""
        group = message.group_id
        if self.options.fifo and group is not None and group in self.blocked_groups:
            return (
                "HeldBehindFailure: an earlier message of its group was not moved; moving this "
                "one would break the group's order"
            )
        selected = self.options.filter
        if selected is None:
            return None
        try:
            return None if selected(message) else "skipped"
        except Exception as error:  # a filter that raises fails its message, not the run
            return f"FilterError: {type(error).__name__}: {error}"

    def to_delete(self, batch: Batch) -> dict[str, str]:
        """Message id -> the newest receipt handle, of every message of the batch to delete:
        those delivered, expired ones when asked, and copies of ones already delivered."""
        outcome = batch.outcome
        gone = [
            m
            for m in batch.deliver
            if m.message_id not in outcome.failed and m.message_id not in outcome.expired
        ]
        if self.options.delete_expired:
            gone += [m for m in batch.deliver if m.message_id in outcome.expired]
        gone += [m for m, state in batch.again if state in (_MOVED, _UNDELETED)]
        with self.cond:
            return {m.message_id: self._receipt_of(m) for m in gone}

    def cancelled(self, batch: Batch, stage: str, undeleted: dict[str, str]) -> None:
        """The run was cancelled with ``batch`` in hand: settle it as far as it got. At stage
        ``"route"`` nothing was sent; at ``"deliver"`` the outcome names every message whose
        copy is not confirmed (not sent, failed or unknown), and none is deleted; at
        ``"delete"``, ``undeleted`` names every message not confirmed deleted."""
        if stage == "route":
            # Routing may have stopped half way: a message it refused is parked already.
            batch.deliver = [m for m in batch.deliver if m.message_id not in batch.parked]
            for message in batch.deliver:
                batch.outcome.failed[message.message_id] = NOT_SENT
        if stage != "delete":
            for message_id in self.to_delete(batch):
                undeleted.setdefault(message_id, NOT_DELETED)
        self.settle(batch, undeleted)

    def _receipt_of(self, message: DlqMessage) -> str:
        """Under the lock: the newest receipt handle of ``message``."""
        seen = self.seen.get(message.message_id)
        return message.receipt_handle if seen is None else seen.receipt

    def _moved(self, message_id: str, target: str | None) -> None:
        """Under the lock: ``message_id`` is delivered and deleted; the run owes it nothing
        but recognising a copy delivered again (within the window)."""
        self.seen.pop(message_id, None)
        if target is not None:
            target = self.target_names.setdefault(target, target)  # one string per queue
        self.moved.add(message_id, target)

    def settle(self, batch: Batch, undeleted: dict[str, str]) -> None:
        """Account for every message of ``batch`` in the report, given the deletes that
        failed (message id -> reason)."""
        report = self.report
        outcome = batch.outcome
        routes = batch.routes
        new = batch.new
        with self.cond:
            for message_id, reason in batch.parked.items():
                self.seen[message_id].state = _PARKED
                if reason == "skipped":
                    report.skipped += 1
                else:
                    report.failed[message_id] = reason
                    self._block_group_of(message_id, new)
            for message_id in batch.would:
                self.seen[message_id].state = _PARKED
                if message_id in routes:
                    report.routes[message_id] = routes[message_id]
                    self._count_target(routes[message_id], 1)
            report.would_move += batch.would
            for message in batch.deliver:
                message_id = message.message_id
                if message_id in outcome.failed:
                    self.seen[message_id].state = _PARKED
                    report.failed[message_id] = outcome.failed[message_id]
                    self._block_group_of(message_id, new)
                elif message_id in outcome.expired:
                    report.expired[message_id] = outcome.expired[message_id]
                    if self.options.delete_expired and message_id not in undeleted:
                        self._moved(message_id, None)
                    else:
                        self.seen[message_id].state = _PARKED
                elif message_id in undeleted:
                    seen = self.seen[message_id]
                    seen.state = _UNDELETED
                    seen.target = routes.get(message_id)
                    report.undeleted[message_id] = (
                        f"delivered, but not deleted from the source ({undeleted[message_id]}); "
                        "a later run delivers it again"
                    )
                else:
                    self._moved(message_id, routes.get(message_id))
                    report.moved += 1
                    self._count_target(routes.get(message_id), 1)
            for message, state in batch.again:
                message_id = message.message_id
                if state not in (_MOVED, _UNDELETED):
                    continue
                if message_id in undeleted:
                    if state == _MOVED and message_id not in self.seen:
                        # our first delete did not take: it is still there
                        target = self.moved.target(message_id)
                        report.moved -= 1
                        self._count_target(target, -1)
                        report.undeleted[message_id] = (
                            f"delivered, but not deleted from the source "
                            f"({undeleted[message_id]}); a later run delivers it again"
                        )
                        self.seen[message_id] = _Seen(_UNDELETED, message.receipt_handle, target)
                    continue
                if state == _UNDELETED:
                    owed = self.seen.get(message_id)
                    if owed is None or owed.state != _UNDELETED:
                        report.duplicates += 1  # another copy of it settled it already
                        continue
                    report.undeleted.pop(message_id, None)
                    report.moved += 1
                    self._count_target(owed.target, 1)
                    self._moved(message_id, owed.target)
                else:
                    report.duplicates += 1
            report.resolved += outcome.resolved
            report.records += outcome.records
            report.resent += outcome.resent
            if self.options.progress is not None:
                self.options.progress(report)

    def _count_target(self, target: str | None, change: int) -> None:
        """Under the lock: one more (or one fewer) message moved to ``target``."""
        if target is None:
            return
        count = self.report.targets.get(target, 0) + change
        if count:
            self.report.targets[target] = count
        else:
            self.report.targets.pop(target, None)

    def _block_group_of(self, message_id: str, batch: list[DlqMessage]) -> None:
        if not self.options.fifo:
            return
        for message in batch:
            if message.message_id == message_id and message.group_id is not None:
                self.blocked_groups.add(message.group_id)

    # -- visibility -----------------------------------------------------------------------------

    def due(self, horizon: float = 0.0) -> dict[str, str]:
        """Message id -> receipt of every held message whose batch's visibility is half spent
        (or will be after ``horizon`` seconds); their next check is pushed back."""
        now = self.clock()
        receipts: dict[str, str] = {}
        with self.cond:
            for held in self.held.values():
                if held.extend_at > now + horizon:
                    continue
                held.extend_at = now + self.visibility / 2
                for message_id in held.ids:
                    seen = self.seen.get(message_id)  # a moved one is forgotten
                    if seen is not None and seen.state == _ACTIVE:
                        receipts[message_id] = seen.receipt
        return receipts

    def parked_receipts(self) -> dict[str, str]:
        """The messages that stayed (skipped, failed, dry run), to make visible again."""
        with self.cond:
            return {
                message_id: seen.receipt
                for message_id, seen in self.seen.items()
                if seen.state == _PARKED
            }


SETTLER_OPTIONS: dict[str, Any] = dict(
    concurrency=1, raise_on_failure=False, on_invalid="report", keep_answers=False
)
"""A deleter or visibility changer on the source queue whose failures the drain reads from its
result, entry by entry, instead of an exception."""


def failures(result: Any) -> dict[str, str]:
    """Entry id -> ``"Code: message"`` of every entry of a batch result that finally failed."""
    return {f.entry_id: f"{f.code}: {f.message}" for f in result.failed}


def log_visibility_failures(result: Any, why: str) -> None:
    for failed in result.failed:
        logger.warning(
            "could not %s the visibility of message %s: %s %s",
            why,
            failed.entry_id,
            failed.code,
            failed.message,
        )


def drain(
    client: Any,
    queue_url: str,
    delivery: Delivery,
    report: RedriveReport,
    options: DrainOptions,
    policy: RetryPolicy,
) -> RedriveReport:
    """Move what ``delivery`` accepts out of ``queue_url``; fill and return ``report``."""
    return _Drain(client, queue_url, delivery, report, options, policy).run()


class _Drain:
    """The sync driver of :class:`DrainCore`: worker threads and a visibility timer."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        delivery: Delivery,
        report: RedriveReport,
        options: DrainOptions,
        policy: RetryPolicy,
    ) -> None:
        self.core = DrainCore(queue_url, report, options, policy)
        self.client = client
        self.delivery = delivery
        self.options = options
        self.base_policy = policy
        self.policy, self.delete_policy, self.visibility_policy = self.core.policies(
            sleep=self._sleep
        )
        self.error: BaseException | None = None
        self.extending = threading.Lock()

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> RedriveReport:
        workers = self.options.concurrency
        # A timer keeps held messages invisible even while a request hangs without sleeping.
        done = threading.Event()
        timer = threading.Thread(
            target=self._keep_visible, args=(done,), name="resilient-aws-redrive-visibility"
        )
        timer.daemon = True
        timer.start()
        try:
            if workers == 1:
                self._guarded()  # in the caller's thread: its signal handlers run at once
            else:
                pool = ThreadPoolExecutor(workers, thread_name_prefix="resilient-aws-redrive")
                try:
                    futures = [pool.submit(self._guarded) for _ in range(workers)]
                    # Short waits: Python runs signal handlers (Ctrl-C) in this thread only.
                    while wait(futures, timeout=_SIGNAL_CHECK_S).not_done:
                        pass
                except BaseException:
                    self.core.stop()
                    raise
                finally:
                    pool.shutdown(wait=True)
        finally:
            done.set()
        if self.error is not None:
            raise self.error
        self._change_visibility(self.core.parked_receipts(), 0, "release")
        return self.core.report

    def _keep_visible(self, done: threading.Event) -> None:
        tick = min(5.0, self.core.visibility / 4)
        while not done.wait(tick):
            try:
                self._extend_due()
            except Exception:  # the workers' own checks still run; never kill the timer
                logger.exception("extending the visibility of held messages failed")

    def _guarded(self) -> None:
        try:
            self._work()
        except _AbortedError:
            pass
        except BaseException as error:
            with self.core.cond:
                if self.error is None:
                    self.error = error
            self.core.stop()

    # -- one worker -----------------------------------------------------------------------------

    def _work(self) -> None:
        core = self.core
        while True:
            with core.cond:
                while (want := core.reserve()) is None:
                    core.cond.wait()
            if not want:
                return
            try:
                params = core.receive_params(want)
                response = self.policy.call(self.client.receive_message, **params)
            except BaseException:
                core.unreserve(want)
                raise
            batch, generation = core.admit(response, want)
            if generation is not None:
                with core.cond:
                    core.cond.wait_for(functools.partial(core.waited_enough, generation))
            if batch is not None:
                try:
                    self._process(batch)
                finally:
                    core.done(batch)

    def _process(self, batch: Batch) -> None:
        core = self.core
        route = self.options.route
        for message in core.select(batch):
            assert route is not None
            batch.route(message, *route(message, self.policy))
        deliver = core.to_deliver(batch)
        if deliver:
            for chunk in core.rate_delay(len(deliver)):
                self._sleep(chunk)
            core.check_abort()
            self._extend_due()
            batch.outcome = self.delivery.deliver(deliver, self.policy)
        core.check_abort()
        self._extend_due()
        core.settle(batch, self._delete(core.to_delete(batch)))

    def _delete(self, receipts: dict[str, str]) -> dict[str, str]:
        if not receipts:
            return {}
        deleter = SqsDeleter(
            self.core.url, client=self.client, policy=self.delete_policy, **SETTLER_OPTIONS
        )
        for message_id, receipt in receipts.items():
            deleter.delete(receipt, id=message_id)
        return failures(deleter.close())

    # -- visibility -----------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        """The retry core's sleep, with the visibility of held messages extended first."""
        self._extend_due(horizon=seconds)
        self.base_policy.sleep(seconds)

    def _extend_due(self, horizon: float = 0.0) -> None:
        if not self.extending.acquire(blocking=False):
            return  # another thread is extending right now
        try:
            self._change_visibility(self.core.due(horizon), self.core.visibility, "extend")
        finally:
            self.extending.release()

    def _change_visibility(self, receipts: dict[str, str], timeout: int, why: str) -> None:
        if not receipts:
            return
        # The changer retries on the caller's own policy: its sleeps must not call back here.
        changer = SqsVisibilityChanger(
            self.core.url, client=self.client, policy=self.visibility_policy, **SETTLER_OPTIONS
        )
        for message_id, receipt in receipts.items():
            changer.change(receipt, timeout, id=message_id)
        log_visibility_failures(changer.close(), why)

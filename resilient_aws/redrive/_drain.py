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
import itertools
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import field
from typing import Any, Protocol, TypeVar

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.batch import SqsDeleter, SqsVisibilityChanger
from resilient_aws.errors import ConfigurationError
from resilient_aws.redrive._message import DlqMessage
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.retry import Pacer, RetryPolicy

__all__ = ["Delivery", "DrainOptions", "Outcome", "drain"]

logger = logging.getLogger("resilient_aws.redrive")

SenderT = TypeVar("SenderT", SqsDeleter, SqsVisibilityChanger)

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
    """At most ``rate`` messages per second on average, sleeping through the retry core."""

    def __init__(self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.next: float | None = None
        self.lock = threading.Lock()

    def acquire(self, count: int, max_chunk: float) -> None:
        with self.lock:
            now = self.clock()
            start = now if self.next is None else max(now, self.next)
            self.next = start + count / self.rate
            delay = start - now
        while delay > 0:
            chunk = min(delay, max_chunk)
            self.sleep(chunk)
            delay -= chunk


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
    def __init__(
        self,
        client: Any,
        queue_url: str,
        delivery: Delivery,
        report: RedriveReport,
        options: DrainOptions,
        policy: RetryPolicy,
    ) -> None:
        self.client = client
        self.url = queue_url
        self.delivery = delivery
        self.report = report
        self.options = options
        self.base_policy = policy
        # Every batch is delivered, deleted and released by writers of its own; one pacer for
        # each kind of request carries what the service said from one batch to the next (a
        # target that stopped taking messages is not rediscovered batch by batch).
        self.policy = dataclasses.replace(policy, sleep=self._sleep, pacer=policy.pacer or Pacer())
        self.delete_policy = dataclasses.replace(self.policy, pacer=Pacer())
        self.visibility_policy = dataclasses.replace(policy, pacer=Pacer())
        self.clock = policy.clock
        self.visibility = options.visibility_timeout
        self.batch = _MAX_BATCH
        if options.rate is not None:
            self.batch = max(1, min(_MAX_BATCH, int(options.rate)))
        self.rate_limit = (
            _RateLimit(options.rate, self.clock, self._sleep) if options.rate is not None else None
        )
        self.cond = threading.Condition()
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
                    self._stop()
                    raise
                finally:
                    pool.shutdown(wait=True)
        finally:
            done.set()
        if self.error is not None:
            raise self.error
        self._release_parked()
        return self.report

    def _keep_visible(self, done: threading.Event) -> None:
        tick = min(5.0, self.visibility / 4)
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
            with self.cond:
                if self.error is None:
                    self.error = error
            self._stop()

    def _stop(self) -> None:
        with self.cond:
            self.abort = True
            self.cond.notify_all()

    def _check_abort(self) -> None:
        if self.abort:
            raise _AbortedError

    # -- one worker -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            want = self._reserve()
            if not want:
                return
            try:
                raw = self._receive(want)
            except BaseException:
                with self.cond:
                    self.reserved -= want
                    self.in_flight -= 1
                    self.cond.notify_all()
                raise
            self._handle(raw, want)

    def _reserve(self) -> int:
        with self.cond:
            while True:
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
                            self.cond.notify_all()
                            return 0
                        self.cond.wait()
                        continue
                self.reserved += want
                self.in_flight += 1
                return want

    def _receive(self, want: int) -> list[dict[str, Any]]:
        self._check_abort()
        options: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": want,
            "VisibilityTimeout": self.visibility,
            "WaitTimeSeconds": self.options.wait_time_s,
            "MessageAttributeNames": ["All"],
        }
        if self.options.route is not None:
            # DeadLetterQueueSourceArn is a message system attribute: the legacy AttributeNames
            # parameter does not name it.
            options["MessageSystemAttributeNames"] = ["All"]
        else:
            options["AttributeNames"] = ["All"]
        if self.options.fifo:
            # A retried receive with the same attempt id gets the same messages back instead
            # of leaving the first answer's messages invisible (FIFO queues only).
            options["ReceiveRequestAttemptId"] = uuid.uuid4().hex
        response = self.policy.call(self.client.receive_message, **options)
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _handle(self, raw: list[dict[str, Any]], want: int) -> None:
        messages = [DlqMessage.from_sqs(m) for m in raw]
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
            if not new:
                self._nothing_new()
                if not again:
                    return
            else:
                self.quiet = 0
            batch_id = next(self.batch_ids)
            self.held[batch_id] = _Held(
                [m.message_id for m in new], self.clock() + self.visibility / 2
            )
        try:
            self._process(batch_id, new, again)
        finally:
            with self.cond:
                self.held.pop(batch_id, None)
                if new:
                    self.in_flight -= 1
                    self.settled += 1
                self.cond.notify_all()

    def _nothing_new(self) -> None:
        """Under the lock: a receive brought no message this run had not seen."""
        self.in_flight -= 1
        self.settled += 1
        if self.in_flight > 0:
            # Another worker holds messages: on a FIFO queue they lock their groups, so an
            # empty answer proves nothing until that worker has settled its batch.
            generation = self.settled
            self.cond.wait_for(lambda: self.settled != generation or self.abort or self.drained)
            return
        self.quiet += 1
        # A long poll asks every SQS server: one empty answer is the truth. A short poll asks a
        # sample of them, so it takes two in a row.
        if self.quiet >= (1 if self.options.wait_time_s > 0 else _QUIET_RECEIVES):
            self.drained = True
        self.cond.notify_all()

    def _process(
        self, batch_id: int, new: list[DlqMessage], again: list[tuple[DlqMessage, str]]
    ) -> None:
        outcome = Outcome()
        deliver: list[DlqMessage] = []
        parked: dict[str, str] = {}
        for message in new:
            verdict = self._select(message)
            if verdict is None:
                deliver.append(message)
            else:
                parked[message.message_id] = verdict
        routes: dict[str, str] = {}
        if self.options.route is not None:
            routable: list[DlqMessage] = []
            for message in deliver:
                target, reason = self.options.route(message, self.policy)
                if target is None:
                    parked[message.message_id] = reason
                else:
                    routes[message.message_id] = target
                    routable.append(message)
            deliver = routable
        if self.options.dry_run:
            would = [m.message_id for m in deliver]
            deliver = []
        else:
            would = []
        if deliver:
            if self.rate_limit is not None:
                self.rate_limit.acquire(len(deliver), max_chunk=self.visibility / 4)
            self._check_abort()
            self._extend_due()
            outcome = self.delivery.deliver(deliver, self.policy)
        delivered = [
            m
            for m in deliver
            if m.message_id not in outcome.failed and m.message_id not in outcome.expired
        ]
        expired_deleted = (
            [m for m in deliver if m.message_id in outcome.expired]
            if self.options.delete_expired
            else []
        )
        redelete = [m for m, state in again if state in (_MOVED, _UNDELETED)]
        self._check_abort()
        self._extend_due()
        undeleted = self._delete(delivered + expired_deleted + redelete)
        self._settle(new, again, deliver, delivered, parked, would, outcome, undeleted, routes)

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

    def _delete(self, messages: list[DlqMessage]) -> dict[str, str]:
        if not messages:
            return {}
        with self.cond:
            receipts = [(m.message_id, self._receipt_of(m)) for m in messages]
        deleter = self._settler(SqsDeleter, self.delete_policy)
        for message_id, receipt in receipts:
            deleter.delete(receipt, id=message_id)
        result = deleter.close()
        return {f.entry_id: f"{f.code}: {f.message}" for f in result.failed}

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

    def _settle(
        self,
        new: list[DlqMessage],
        again: list[tuple[DlqMessage, str]],
        deliver: list[DlqMessage],
        delivered: list[DlqMessage],
        parked: dict[str, str],
        would: list[str],
        outcome: Outcome,
        undeleted: dict[str, str],
        routes: dict[str, str],
    ) -> None:
        report = self.report
        with self.cond:
            for message_id, reason in parked.items():
                self.seen[message_id].state = _PARKED
                if reason == "skipped":
                    report.skipped += 1
                else:
                    report.failed[message_id] = reason
                    self._block_group_of(message_id, new)
            for message_id in would:
                self.seen[message_id].state = _PARKED
                if message_id in routes:
                    report.routes[message_id] = routes[message_id]
                    self._count_target(routes[message_id], 1)
            report.would_move += would
            for message in deliver:
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
            for message in delivered:
                message_id = message.message_id
                if message_id in undeleted:
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
            for message, state in again:
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

    def _sleep(self, seconds: float) -> None:
        """The retry core's sleep, with the visibility of held messages extended first."""
        self._extend_due(horizon=seconds)
        self.base_policy.sleep(seconds)

    def _extend_due(self, horizon: float = 0.0) -> None:
        """Extend every held batch whose visibility is half spent (or will be after
        ``horizon`` seconds)."""
        if not self.extending.acquire(blocking=False):
            return  # another thread is extending right now
        try:
            now = self.clock()
            with self.cond:
                receipts: dict[str, str] = {}
                for held in self.held.values():
                    if held.extend_at > now + horizon:
                        continue
                    held.extend_at = now + self.visibility / 2
                    for message_id in held.ids:
                        seen = self.seen.get(message_id)  # a moved one is forgotten
                        if seen is not None and seen.state == _ACTIVE:
                            receipts[message_id] = seen.receipt
            if receipts:
                self._change_visibility(receipts, self.visibility, "extend")
        finally:
            self.extending.release()

    def _settler(self, sender: type[SenderT], policy: RetryPolicy) -> SenderT:
        """A deleter or visibility changer on the source queue whose failures the drain reads
        from its result, entry by entry, instead of an exception."""
        return sender(
            self.url,
            client=self.client,
            policy=policy,
            concurrency=1,
            raise_on_failure=False,
            on_invalid="report",
            keep_answers=False,
        )

    def _change_visibility(self, receipts: dict[str, str], timeout: int, why: str) -> None:
        # The changer retries on the caller's own policy: its sleeps must not call back here.
        changer = self._settler(SqsVisibilityChanger, self.visibility_policy)
        for message_id, receipt in receipts.items():
            changer.change(receipt, timeout, id=message_id)
        result = changer.close()
        for failed in result.failed:
            logger.warning(
                "could not %s the visibility of message %s: %s %s",
                why,
                failed.entry_id,
                failed.code,
                failed.message,
            )

    def _release_parked(self) -> None:
        """Make the messages that stayed (skipped, failed, dry run) visible again."""
        with self.cond:
            receipts = {
                message_id: seen.receipt
                for message_id, seen in self.seen.items()
                if seen.state == _PARKED
            }
        if receipts:
            self._change_visibility(receipts, 0, "release")

"""The one batch engine behind every batch writer: buffer, chunk, send, retry per entry, account.

Service adapters (DynamoDB ``BatchWriteItem``, SQS, SNS, EventBridge, Kinesis, Firehose) only
say how to send one request and how to read its per-entry answers; everything else lives here:
chunking by the service's entry and byte limits, de-duplication, per-group ordering,
concurrency, per-entry retries through the retry core, splitting of batches rejected whole,
and a result that accounts for every entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from resilient_aws.errors import BatchWriteError, ConfigurationError, EntryValidationError
from resilient_aws.limits import BatchLimits
from resilient_aws.results import Answer, BatchResult
from resilient_aws.retry import FailedEntry, RetryPolicy, SendResult

__all__ = ["Adapter", "BatchEngine", "Entry", "Sent", "botocore_retries"]

logger = logging.getLogger("resilient_aws.batch")

S = TypeVar("S")

GroupFailure = Literal["continue", "fail"]


@dataclass(eq=False, slots=True)
class Entry(Generic[S]):
    """One entry ready to send: the caller's ``source``, its wire ``payload`` and bookkeeping.

    ``group`` orders entries (at most one per group per request, never two requests of a group
    in flight); ``dedupe`` replaces an earlier pending entry with the same value. Read-only by
    convention: one is built per entry on the hot path, and a frozen dataclass costs three
    times as much to build (``object.__setattr__`` per field).
    """

    source: S
    entry_id: str
    payload: Any
    size: int
    group: Hashable | None = None
    dedupe: Hashable | None = None


@dataclass(frozen=True)
class Sent(Generic[S]):
    """What one request did: the entries that succeeded (with the service's answer) and failed."""

    succeeded: list[tuple[Entry[S], Any]]
    failed: list[FailedEntry[Entry[S]]]
    botocore_retries: int = 0


class Adapter(Protocol[S]):
    """How to send one request of a batch API and read its per-entry answers."""

    operation: str
    limits: BatchLimits

    def send_request(self, batch: list[Entry[S]]) -> Sent[S]:
        """Make one request; raise for whole-request errors, report per-entry failures."""
        ...


class BatchEngine(Generic[S]):
    """Buffers entries and sends them through an :class:`Adapter`; see the module docstring.

    ``ordered`` sends at most one entry of a ``group`` per request and never has two requests
    of one group in flight, so a retried entry cannot be overtaken by a later one of its group.
    When an entry finally fails, ``on_group_failure="fail"`` fails the later entries of its group
    (code ``PrecedingEntryFailed``) instead of sending them out of order; ``"continue"`` sends
    them. ``split_codes``: whole-request error codes for which a rejected batch is halved until
    the bad entry stands alone.
    """

    def __init__(
        self,
        adapter: Adapter[S],
        *,
        policy: RetryPolicy,
        concurrency: int = 1,
        ordered: bool = False,
        on_group_failure: GroupFailure = "continue",
        split_codes: frozenset[str] = frozenset(),
        raise_on_failure: bool = True,
        error: Callable[[BatchResult[Any]], Exception] = BatchWriteError,
        keep_answers: bool = True,
        flush_interval: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency", f"must be >= 1, got {concurrency!r}")
        if flush_interval is not None and flush_interval <= 0:
            raise ConfigurationError("flush_interval", f"must be > 0, got {flush_interval!r}")
        self.adapter = adapter
        self.limits = adapter.limits
        self.policy = policy
        self.concurrency = concurrency
        self.ordered = ordered
        self.on_group_failure = on_group_failure
        self.split_codes = split_codes
        self.raise_on_failure = raise_on_failure
        self.error = error
        self.keep_answers = keep_answers
        self.flush_interval = flush_interval
        self.result: BatchResult[S] = BatchResult()
        self._pending: dict[Hashable, Entry[S]] = {}
        self._pending_bytes = 0
        self._oldest: float | None = None
        self._serial = 0
        self._lock = threading.RLock()
        # notified whenever a request settles: flush() waits on it for requests it did not
        # start itself (the interval flusher's), instead of spinning
        self._settled = threading.Condition(self._lock)
        self._requests_in_flight = 0
        self._background_error: BaseException | None = None
        self._in_flight_groups: set[Hashable] = set()
        self._blocked_groups: set[Hashable] = set()
        self._futures: set[Future[None]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self.closed = False

    # -- feeding --------------------------------------------------------------------------------

    def add(self, entry: Entry[S]) -> None:
        """Buffer a prepared entry; sends full chunks as they form."""
        with self._lock:
            if self.closed:
                raise ConfigurationError("closed", "the writer is closed")
            self.result.submitted += 1
            group = entry.group
            if group is not None and group in self._blocked_groups:
                self._fail_blocked(entry)
                return
            slot: Hashable
            pending = self._pending
            if entry.dedupe is not None:
                slot = ("dedupe", entry.dedupe)
                replaced = pending.pop(slot, None)
                if replaced is not None:
                    self.result.deduplicated += 1
                    self._pending_bytes -= replaced.size
            else:
                self._serial += 1
                slot = self._serial
            pending[slot] = entry
            self._pending_bytes += entry.size
            if self._oldest is None:
                self._oldest = time.monotonic()
                self._start_flusher()
            limits = self.limits
            full = (
                len(pending) >= limits.max_entries
                or self._pending_bytes >= limits.max_request_bytes
            )
        if full:
            self._send_full_chunks()

    def reject(self, source: S, invalid: EntryValidationError) -> None:
        """Account for an entry refused before sending (``on_invalid="report"``)."""
        with self._lock:
            self.result.submitted += 1
            self.result.failed.append(
                FailedEntry(source, invalid.entry_id, type(invalid).__name__, invalid.reason)
            )

    def flush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled."""
        while True:
            with self._lock:
                if not self._pending:
                    break
            if not self._send_one_chunk():
                self._wait_any()
        self._wait_all()
        self._raise_background_error()

    def close(self) -> BatchResult[S]:
        """Flush, stop the threads, return the result; raise if entries finally failed.

        If the flush itself raises (an interrupt, a bug), whatever it could not send is
        recorded as failed (``NotSent``) before the exception goes on: never left behind.
        """
        if not self.closed:
            self._stop.set()
            try:
                if self._flusher is not None:
                    self._flusher.join()  # its request settles before ours; none starts after
                self.flush()
            finally:
                self.closed = True
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._fail_unsent()
        if self.result.failed and self.raise_on_failure:
            raise self.error(self.result)
        return self.result

    def exit(self, error: BaseException | None, owner: str) -> None:
        """Leave a ``with`` block: close, or when the block raised, still send what it buffered
        and let its exception through (failed entries are then logged and kept in ``result``)."""
        if error is None:
            self.close()
            return
        raise_on_failure, self.raise_on_failure = self.raise_on_failure, False
        try:
            self.close()
        finally:
            self.raise_on_failure = raise_on_failure
        if self.result.failed:
            logger.warning("%s closed by an exception with failed entries: %s", owner, self.result)

    # -- chunking -------------------------------------------------------------------------------

    def _full(self) -> bool:
        return (
            len(self._pending) >= self.limits.max_entries
            or self._pending_bytes >= self.limits.max_request_bytes
        )

    def _send_full_chunks(self) -> None:
        while True:
            with self._lock:
                if not self._full():
                    return
            if not self._send_one_chunk():
                self._wait_any()

    def _take_chunk(self) -> tuple[list[Entry[S]], set[Hashable]]:
        """Cut the next request from the buffer (under the lock): its entries and groups."""
        chunk: list[Entry[S]] = []
        size = 0
        groups: set[Hashable] = set()
        pending = self._pending
        max_entries, max_bytes = self.limits.max_entries, self.limits.max_request_bytes
        blocked, in_flight, ordered = self._blocked_groups, self._in_flight_groups, self.ordered
        if (
            not ordered
            and not blocked
            and len(pending) <= max_entries
            and self._pending_bytes <= max_bytes
        ):
            # Everything buffered fits in one request and no group can hold an entry back (in
            # flight groups only matter when ordered): the loop below would take it all.
            chunk = list(pending.values())
            pending.clear()
            self._pending_bytes = 0
            self._oldest = None
            return chunk, groups
        taken: list[Hashable] = []
        for slot, entry in pending.items():
            if len(chunk) >= max_entries:
                break
            if chunk and size + entry.size > max_bytes:
                break
            group = entry.group
            if group is not None:
                if group in blocked:
                    taken.append(slot)
                    self._fail_blocked(entry)
                    continue
                if ordered and (group in groups or group in in_flight):
                    continue
                groups.add(group)
            taken.append(slot)
            chunk.append(entry)
            size += entry.size
        for slot in taken:
            self._pending_bytes -= pending.pop(slot).size
        in_flight |= groups
        if not pending:
            self._oldest = None
        return chunk, groups

    def _send_one_chunk(self) -> bool:
        """Send (or submit) one chunk; False when every pending entry must wait for a group."""
        pool = None
        if self.concurrency > 1:
            # Wait for a free slot before a chunk leaves the buffer: an interrupt or a worker's
            # error surfacing here must not take entries with it.
            while len(self._futures) >= self.concurrency:
                self._wait_any()
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.concurrency, thread_name_prefix="resilient-aws-batch"
                    )
                pool = self._pool
        with self._lock:
            chunk, groups = self._take_chunk()
            if not chunk:
                return not self._pending
            self._requests_in_flight += 1
        settling = False
        try:
            if pool is None:
                settling = True
                self._settle(chunk, groups)
                return True
            future = pool.submit(self._settle, chunk, groups)
        except BaseException as error:
            if not settling:  # the chunk never reached _settle, which accounts for it
                self._settled_without_sending(chunk, groups, error)
            raise
        with self._lock:
            self._futures.add(future)
        return True

    def _wait_any(self) -> None:
        with self._lock:
            futures = set(self._futures)
            if not futures:
                # Only another thread's request (the interval flusher's) can hold us up.
                if self._flusher_busy():
                    self._settled.wait(0.05)
                return
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        self._collect(done)

    def _wait_all(self) -> None:
        with self._lock:
            futures = set(self._futures)
        if futures:
            done, _ = wait(futures)
            self._collect(done)
        with self._lock:
            while self._flusher_busy():
                self._settled.wait(0.05)

    def _flusher_busy(self) -> bool:
        """Under the lock: a request started by the interval flusher has not settled yet.

        Only that thread can have a request in flight that this one did not start and cannot
        wait for through a future; once it has ended, no count can keep anyone waiting.
        """
        flusher = self._flusher
        return self._requests_in_flight > 0 and flusher is not None and flusher.is_alive()

    def _raise_background_error(self) -> None:
        with self._lock:
            error, self._background_error = self._background_error, None
        if error is not None:
            raise error

    def _collect(self, done: set[Future[None]]) -> None:
        for future in done:
            with self._lock:
                mine = future in self._futures  # the flusher may be collecting the same one
                self._futures.discard(future)
            if mine:
                future.result()  # a bug in a worker surfaces here, once, not silently

    # -- sending --------------------------------------------------------------------------------

    def _settle(self, chunk: list[Entry[S]], groups: set[Hashable]) -> None:
        try:
            self._send_with_retries(chunk)
        finally:
            with self._lock:
                self._in_flight_groups -= groups
                self._requests_in_flight -= 1
                self._settled.notify_all()

    def _settled_without_sending(
        self, chunk: list[Entry[S]], groups: set[Hashable], error: BaseException
    ) -> None:
        with self._lock:
            for entry in chunk:
                self._record_failure(_not_sent(entry, error))
            self._in_flight_groups -= groups
            self._requests_in_flight -= 1
            self._settled.notify_all()

    def _send_with_retries(self, chunk: list[Entry[S]]) -> None:
        # What the service took, request by request: read only if the run ends in an exception.
        taken: list[list[tuple[Entry[S], Any]]] = []

        def request(
            batch: list[Entry[S]],
        ) -> list[FailedEntry[Entry[S]]] | SendResult[Entry[S]]:
            with self._lock:
                self.result.requests += 1
            sent = self.adapter.send_request(batch)
            if sent.succeeded:
                taken.append(sent.succeeded)
                if self.keep_answers:
                    answers = [Answer(e.source, e.entry_id, answer) for e, answer in sent.succeeded]
                    with self._lock:
                        self.result.answers += answers
            if sent.botocore_retries:
                return SendResult(sent.failed, sent.botocore_retries)
            return sent.failed

        try:
            outcome = self.policy.run_partial(
                request, chunk, entry_id=_entry_id, operation=self.adapter.operation
            )
        except BaseException as error:
            # A bug in an adapter, or an interrupt, ended the request mid-way: account for the
            # chunk (what the service took succeeded, the rest has an unknown outcome), then let
            # the exception go on.
            succeeded = {id(entry) for answers in taken for entry, _ in answers}
            with self._lock:
                self.result.succeeded += len(succeeded)
                for entry in chunk:
                    if id(entry) not in succeeded:
                        self._record_failure(_outcome_unknown(entry, error))
            raise
        if not outcome.failed:
            with self._lock:
                self.result.resent += outcome.resent
                self.result.succeeded += outcome.total
            return
        rejected = [f for f in outcome.failed if f.code in self.split_codes]
        final = [f for f in outcome.failed if f.code not in self.split_codes]
        if len(rejected) == 1:
            final += rejected
        with self._lock:
            self.result.resent += outcome.resent
            self.result.succeeded += outcome.succeeded
            for failure in final:
                self._record_failure(failure)
        deadline = self.policy.deadline
        if len(rejected) > 1 and deadline is not None and deadline.expired:
            with self._lock:
                for failure in rejected:
                    self._record_failure(replace(failure, gave_up="deadline"))
            return
        if len(rejected) > 1:
            # The service refused the whole request for one entry: halve until it stands alone.
            half = len(rejected) // 2
            second = [f.entry for f in rejected[half:]]
            try:
                self._send_with_retries([f.entry for f in rejected[:half]])
            except BaseException as error:  # the first half accounted for itself; not this one
                with self._lock:
                    for entry in second:
                        self._record_failure(_not_sent(entry, error))
                raise
            self._send_with_retries(second)

    def _record_failure(self, failure: FailedEntry[Entry[S]]) -> None:
        entry = failure.entry
        self.result.failed.append(replace(failure, entry=entry.source))  # type: ignore[arg-type]
        if entry.group is not None and self.on_group_failure == "fail":
            self._blocked_groups.add(entry.group)

    def _fail_unsent(self) -> None:
        with self._lock:
            unsent = list(self._pending.values())
            self._pending.clear()
            self._pending_bytes = 0
            for entry in unsent:
                self.result.failed.append(
                    FailedEntry(
                        entry.source,
                        entry.entry_id,
                        "NotSent",
                        "not sent: the writer was closed by an error before sending it",
                    )
                )

    def _fail_blocked(self, entry: Entry[S]) -> None:
        self.result.failed.append(
            FailedEntry(
                entry.source,
                entry.entry_id,
                "PrecedingEntryFailed",
                "not sent: an earlier entry of its group failed, sending it would break the order",
            )
        )

    # -- time-based flushing --------------------------------------------------------------------

    def _start_flusher(self) -> None:
        if self.flush_interval is None or self._flusher is not None:
            return
        self._flusher = threading.Thread(
            target=self._flush_periodically, name="resilient-aws-flusher", daemon=True
        )
        self._flusher.start()

    def _flush_periodically(self) -> None:
        assert self.flush_interval is not None
        while not self._stop.wait(self.flush_interval / 4):
            with self._lock:
                due = (
                    self._oldest is not None
                    and time.monotonic() - self._oldest >= self.flush_interval
                )
            if due:
                try:
                    while self._send_one_chunk():
                        with self._lock:
                            if not self._pending:
                                break
                except Exception as error:  # raised again by the next flush() or close()
                    logger.exception("background flush failed")
                    with self._lock:
                        if self._background_error is None:
                            self._background_error = error
                    # and keep flushing on time: one bad request must not stall the rest


def _entry_id(entry: Entry[Any]) -> str:
    return entry.entry_id


def _not_sent(entry: Entry[S], error: BaseException) -> FailedEntry[Entry[S]]:
    return FailedEntry(
        entry, entry.entry_id, "NotSent", f"not sent: {type(error).__name__} before sending it"
    )


def _outcome_unknown(entry: Entry[S], error: BaseException) -> FailedEntry[Entry[S]]:
    return FailedEntry(
        entry,
        entry.entry_id,
        "OutcomeUnknown",
        f"{type(error).__name__} while it was being sent: it may or may not have been applied",
    )


def botocore_retries(response: Any) -> int:
    """How often botocore retried the request behind ``response`` before it succeeded."""
    attempts = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    return attempts if isinstance(attempts, int) else 0

"""The one batch engine behind every batch writer: buffer, chunk, send, retry per entry, account.

Service adapters (DynamoDB ``BatchWriteItem``, SQS, SNS, EventBridge, Kinesis, Firehose) only
say how to send one request and how to read its per-entry answers; everything else lives here:
chunking by the service's entry and byte limits, de-duplication, per-group ordering,
concurrency, per-entry retries through the retry core, splitting of batches rejected whole,
and a result that accounts for every entry.

Pressure is shared, not per chunk. Entries a request did not complete go back to the front of
the writer's one buffer and ride in the next full request with new entries; one
:class:`~resilient_aws.retry.Pacer` decides how fast the whole writer sends (measured rate,
multiplicative decrease while the service withholds entries, backoff when a response completes
nothing). An entry is given up by time, not by round: at the policy's ``Deadline`` or
``max_elapsed``, or once it has been in ``max_attempts`` requests that completed nothing (the
writer stopped making progress). While the service keeps completing entries, nothing is given
up.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from resilient_aws import tracing
from resilient_aws.errors import BatchWriteError, ConfigurationError, EntryValidationError
from resilient_aws.limits import BatchLimits
from resilient_aws.results import Answer, BatchResult, FailedEntry
from resilient_aws.retry import Pacer, RetryEvent, RetryPolicy, classify, emit
from resilient_aws.retry._classify import THROTTLING_CODES
from resilient_aws.retry._run import _botocore_retries

__all__ = [
    "DEFAULT_MAX_ANSWERS",
    "Adapter",
    "BatchEngine",
    "Entry",
    "KeepAnswers",
    "Sent",
    "botocore_retries",
    "compact_answer",
]

logger = logging.getLogger("resilient_aws.batch")

S = TypeVar("S")

GroupFailure = Literal["continue", "fail"]
KeepAnswers = bool | Literal["full"]

# The answers a result keeps by default: a long-lived writer's memory must not grow with what
# it sent (about 200-400 bytes per compact answer: a few MB at most).
DEFAULT_MAX_ANSWERS = 10_000
# What a compact answer keeps of the service's answer: its identifiers, never the payload's
# echoes (MD5 digests) nor the caller's entry.
ANSWER_FIELDS = ("MessageId", "SequenceNumber", "ShardId", "EventId", "RecordId")


class Entry(Generic[S]):
    """One entry ready to send: the caller's ``source``, its wire ``payload`` and bookkeeping.

    ``group`` orders entries (at most one per group per request, never two requests of a group
    in flight); ``dedupe`` replaces an earlier pending entry with the same value. Read-only by
    convention, but for the engine's own bookkeeping at the end: one is built per entry on the
    hot path, so it is a plain slotted class (a frozen one costs three times as much to build,
    ``object.__setattr__`` per field; a slotted dataclass twice a class at import). Its repr
    names the entry, never its payload.
    """

    __slots__ = (
        "dedupe",
        "entry_id",
        "first_sent",
        "group",
        "payload",
        "sends",
        "settled",
        "size",
        "slot",
        "source",
        "stalled",
    )

    source: S
    entry_id: str
    payload: Any
    size: int
    group: Hashable | None
    dedupe: Hashable | None
    # the engine's: where it sits in the buffer, how often it was sent, how often in a request
    # that completed nothing, and when it was first sent
    slot: Hashable
    sends: int
    stalled: int
    first_sent: float
    settled: bool

    def __init__(
        self,
        source: S,
        entry_id: str,
        payload: Any,
        size: int,
        group: Hashable | None = None,
        dedupe: Hashable | None = None,
    ) -> None:
        self.source = source
        self.entry_id = entry_id
        self.payload = payload
        self.size = size
        self.group = group
        self.dedupe = dedupe
        self.slot = None
        self.sends = 0
        self.stalled = 0
        self.first_sent = 0.0
        self.settled = False

    def __repr__(self) -> str:
        return f"Entry({self.entry_id!r}, size={self.size}, sends={self.sends})"


class Sent(Generic[S]):
    """What one request did: the entries that succeeded (with the service's answer) and failed.

    Read-only by convention: one is built per request, so it is a plain slotted class (a frozen
    dataclass sets each field through ``object.__setattr__``, as much as the rest of reading a
    clean response).
    """

    __slots__ = ("botocore_retries", "counted", "failed", "succeeded")

    succeeded: list[tuple[Entry[S], Any]]
    failed: list[FailedEntry[Entry[S]]]
    botocore_retries: int
    counted: bool
    """The engine's: the entries that succeeded are in the result (one mark per request, not
    one per entry)."""

    def __init__(
        self,
        succeeded: list[tuple[Entry[S], Any]],
        failed: list[FailedEntry[Entry[S]]],
        botocore_retries: int = 0,
    ) -> None:
        self.succeeded = succeeded
        self.failed = failed
        self.botocore_retries = botocore_retries
        self.counted = False

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.succeeded, self.failed, self.botocore_retries) == (
            other.succeeded,
            other.failed,
            other.botocore_retries,
        )

    __hash__ = None  # type: ignore[assignment]  # it holds lists

    def __repr__(self) -> str:
        return (
            f"Sent(succeeded={len(self.succeeded)}, failed={self.failed!r}, "
            f"botocore_retries={self.botocore_retries})"
        )


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
    of one group in flight, so a retried entry (back at the front of the buffer) cannot be
    overtaken by a later one of its group.
    When an entry finally fails, ``on_group_failure="fail"`` fails the later entries of its group
    (code ``PrecedingEntryFailed``) instead of sending them out of order; ``"continue"`` sends
    them. ``split_codes``: whole-request error codes for which a rejected batch is halved until
    the bad entry stands alone.

    ``keep_answers``: ``True`` keeps a compact :class:`Answer` per entry that succeeded (its id
    and the service's identifiers, no entry), ``"full"`` the caller's entry and the whole
    response, ``False`` none; ``max_answers`` keeps the newest that many (``None``: all), so
    that what the engine holds is bounded by its configuration, not by what went through it.
    """

    # The share of a request's time spent computing in the thread that made it (None: no request
    # measured yet; set per engine once one is). Threads overlap only waiting: requests that
    # wait on nothing (botocore's Stubber, moto in the same process) are sent by the caller
    # itself, since under the GIL more threads only contend for it.
    _cpu_share: float | None = None
    _first_measured = False
    _trace_parent: Any = None

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
        keep_answers: KeepAnswers = True,
        flush_interval: float | None = None,
        pacer: Pacer | None = None,
        max_answers: int | None = DEFAULT_MAX_ANSWERS,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency", f"must be >= 1, got {concurrency!r}")
        if not (keep_answers is True or keep_answers is False or keep_answers == "full"):
            raise ConfigurationError(
                "keep_answers", f"must be True, False or 'full', got {keep_answers!r}"
            )
        if max_answers is not None and (
            type(max_answers) is not int or max_answers < 0  # True is no count
        ):
            raise ConfigurationError(
                "max_answers", f"must be an int >= 0 or None, got {max_answers!r}"
            )
        if flush_interval is not None and not (
            isinstance(flush_interval, (int, float)) and 0 < flush_interval < math.inf
        ):
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
        self.max_answers = max_answers
        self.flush_interval = flush_interval
        # one per writer unless shared: given here, or on the policy (like its budget)
        self.pacer = pacer or policy.pacer or Pacer()
        self._stall_tokens = 0  # budget tokens the current stall's retries withdrew
        self.result: BatchResult[S] = BatchResult()
        # insertion order is sending order; entries sent back go to the front
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
        self._workers = 0  # pool tasks running: each sends chunks while full ones are waiting
        self._pool: ThreadPoolExecutor | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self.closed = False
        self.staged: list[Entry[S]] = []
        """Entries an adapter staged (see :meth:`send_staged`), not yet counted nor buffered:
        fresh, without a group or a dedupe value. Appended to without the lock (``append`` is
        atomic), taken from only under it, from the front (a slice then a ``del`` of it, or one
        entry at a time) or, for an entry staged as the writer closed, at its own index: an
        entry appended meanwhile stays, it is never cleared away."""

    # -- feeding --------------------------------------------------------------------------------

    def add(self, entry: Entry[S]) -> None:
        """Buffer a prepared entry; sends full chunks as they form."""
        with self._lock:
            if self.closed:
                raise ConfigurationError("closed", "the writer is closed")
            if self.staged:  # staged before this entry: buffered before it
                self.absorb_staged()
            self.result.submitted += 1
            group = entry.group
            if group is not None and group in self._blocked_groups:
                self._fail_blocked(entry)
                return
            slot: Hashable
            pending = self._pending
            if entry.dedupe is None:
                slot = self._serial = self._serial + 1
            else:
                slot = ("dedupe", entry.dedupe)
                replaced = pending.pop(slot, None)
                if replaced is not None:
                    self.result.deduplicated += 1
                    self._pending_bytes -= replaced.size
            entry.slot = slot
            pending[slot] = entry
            size = self._pending_bytes = self._pending_bytes + entry.size
            if self._oldest is None:
                self._oldest = time.monotonic()
                if self.flush_interval is not None:
                    self._start_flusher()
                # the caller's trace, for the requests made on other threads (they do not
                # inherit it): taken once a request's worth, not per entry
                self._trace_parent = tracing.current_context()
            limits = self.limits
            if len(pending) < limits.max_entries and size < limits.max_request_bytes:
                return
            if self._workers >= self.concurrency and not self._backlogged():
                return  # every worker is busy and takes the next full chunk itself
        self._send_full_chunks()

    # Staging: a sender's plain entries (no group, no dedupe value) are appended to
    # ``staged`` without the lock, and handed over a request's worth at a time. When nothing
    # else is buffered and the caller makes the requests itself (concurrency 1, or requests
    # that wait on nothing), the request goes as it was staged, without the buffer's
    # bookkeeping per entry: most of what a message cost the caller on top of its request. The
    # sync engine only, and never with an interval flusher: it looks at the buffer alone.
    # A sender that stages reads ``closed`` after appending: if the writer is closed by then,
    # :meth:`unstage` takes the entry back, or close() took it (and accounted for it).
    stages = True

    def send_staged(self) -> None:
        """Send the first ``max_entries`` staged entries (whose bytes must fit one request) as
        one request, or buffer them like :meth:`add` when that request cannot go now."""
        chunk: list[Entry[S]] | None = None
        handed: list[bool] = []
        try:
            with self._lock:
                staged = self.staged
                count = self.limits.max_entries
                if len(staged) < count or self.closed:
                    return  # another thread took them, or close() did
                if self._pending:
                    # what waits in the buffer (entries sent back) goes first
                    self.absorb_staged()
                else:
                    # the caller makes the request (as _send_full_chunks decides: at concurrency
                    # 1 no share is measured and no future runs) and a slot is free
                    if not self._overlaps() and len(self._futures) < self.concurrency:
                        chunk = staged[:count]
                        del staged[:count]
                        self.result.submitted += count
                    else:
                        self.absorb_staged()
            if chunk is not None:
                # _settle without its bookkeeping: no group, and no interval flusher to tell
                self._send(chunk, handed)  # accounts for every entry of it, whatever happens
        except BaseException as error:
            # an interrupt as the lock was let go or as _send started: the chunk never left
            if chunk is not None and not handed:
                self._not_sent(chunk, error)
            raise
        if chunk is None:
            self._send_full_chunks()

    def absorb_staged(self, *, closing: bool = False) -> None:
        """Under the lock: count and buffer the staged entries, in order (:meth:`add`'s
        bookkeeping; a staged entry has no group and no dedupe value). Once the writer is
        closed, only close() takes them (``closing``): a producer that staged one as it closed
        looks for it to refuse it (:meth:`unstage`)."""
        if self.closed and not closing:
            return
        staged = self.staged
        if not staged:
            return
        pending = self._pending
        result = self.result
        # One entry at a time, every step of it with no call in between: a Ctrl-C goes off at
        # the loop's back edge, between two entries, each either staged or buffered and counted.
        # From the front, by index: an entry appended meanwhile stays staged.
        while staged:
            entry = staged[0]
            size = entry.size
            serial = self._serial + 1
            entry.slot = serial
            pending[serial] = entry
            del staged[0]
            self._serial = serial
            self._pending_bytes += size
            result.submitted += 1
        if self._oldest is None:
            self._oldest = time.monotonic()
            self._trace_parent = tracing.current_context()

    def unstage(self, entry: Entry[S]) -> None:
        """``entry`` was staged as the writer closed: refuse it as :meth:`add` would, unless
        close() took it first (it was then sent or reported ``NotSent``)."""
        with self._lock:
            staged = self.staged
            for index, candidate in enumerate(staged):
                if candidate is entry:
                    del staged[index]
                    raise ConfigurationError("closed", "the writer is closed")

    def reject(self, source: S, invalid: EntryValidationError) -> None:
        """Account for an entry refused before sending (``on_invalid="report"``)."""
        with self._lock:
            self.result.submitted += 1
            self.result.failed.append(
                FailedEntry(source, invalid.entry_id, type(invalid).__name__, invalid.reason)
            )

    def flush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled.

        Requests in flight may send entries back to the buffer: flushing ends only when the
        buffer is empty and nothing is in flight.
        """
        while True:
            with self._lock:
                if self.staged:
                    self.absorb_staged()
                pending = bool(self._pending)
            if pending:
                if not self._send_one_chunk():
                    self._wait_any()
                continue
            self._wait_all()
            with self._lock:
                if not self._pending:
                    break
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
                try:
                    if self._pool is not None:
                        self._pool.shutdown(wait=True)
                finally:  # an interrupt while the workers finish still accounts for the rest
                    self._fail_unsent()
                    self._log_uncollected()
                # A sender holds its engine and the engine its sender: a cycle that only the
                # garbage collector frees, late (a run that makes a writer per batch piles them
                # up). A closed engine sends nothing more; keep only what it still names.
                self.adapter = _Closed(self.adapter.operation, self.limits)
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

    def __del__(self) -> None:
        # A writer dropped without ``with`` or close() would lose what it still buffers without
        # a word: say so, the way asyncio reports an exception nobody retrieved.
        try:
            unsent = len(self._pending) + len(self.staged)
            if self.closed or not unsent:
                return
            operation = self.adapter.operation
            warnings.warn(
                f"a {operation} writer was garbage-collected with {unsent} entries never sent:"
                " use it in a `with` block or call close()",
                ResourceWarning,
                stacklevel=2,
            )
            logger.error(
                "%s writer garbage-collected with %d entries never sent (not closed)",
                operation,
                unsent,
            )
        except Exception:  # at interpreter exit, modules may already be gone
            pass

    # -- chunking -------------------------------------------------------------------------------

    def _full(self) -> bool:
        return (
            len(self._pending) >= self.limits.max_entries
            or self._pending_bytes >= self.limits.max_request_bytes
        )

    def _send_full_chunks(self) -> None:
        concurrency = self.concurrency
        while True:
            # _overlaps(), inlined: this runs once per request
            share = self._cpu_share
            inline = concurrency == 1 or share is None or share >= _CPU_BOUND
            chunk: list[Entry[S]] = []
            waits = False
            with self._lock:
                limits = self.limits  # _full(), inlined
                if (
                    len(self._pending) < limits.max_entries
                    and self._pending_bytes < limits.max_request_bytes
                ):
                    return
                if self._workers >= concurrency and not self._backlogged():
                    # Every worker is busy and takes the next full chunk itself when its
                    # request settles: the caller goes on buffering instead of waking a thread
                    # per request (most of what concurrency cost in client CPU).
                    return
                busy = concurrency > 1 and len(self._futures) >= concurrency
                if inline and not busy:
                    # _send_one_chunk's request from the caller, cut under this same lock
                    chunk, groups = self._take_chunk()
                    if chunk:
                        self._requests_in_flight += 1
                    waits = not chunk and bool(self._pending)
            if busy:
                # Wait for a slot, then look again before cutting a chunk: a worker ends only
                # once the buffer is no longer full, and what it left is no full request.
                self._wait_any()
            elif not inline:
                if not self._send_one_chunk():
                    self._wait_any()
            elif chunk:
                self._settle(chunk, groups)  # accounts for every entry of it, whatever happens
            elif waits:  # every full entry waits for a group in flight
                self._wait_any()

    def _backlogged(self) -> bool:
        """Under the lock: enough is buffered that the caller must wait for the workers: one
        full request per worker, or a request's worth of bytes (the buffer never holds more
        bytes than before workers took chunks themselves)."""
        limits = self.limits
        return (
            len(self._pending) >= self.concurrency * limits.max_entries
            or self._pending_bytes >= limits.max_request_bytes
        )

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
        if self.concurrency > 1 and self._overlaps():
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
            if pool is not None:
                self._workers += 1
        settling = False
        try:
            if pool is None:
                settling = True
                self._settle(chunk, groups)
                return True
            future = pool.submit(self._work, chunk, groups)
        except BaseException as error:
            if not settling:  # the chunk never reached _settle, which accounts for it
                with self._lock:
                    self._workers -= 1
                self._settled_without_sending(chunk, groups, error)
            raise
        with self._lock:
            self._futures.add(future)
        return True

    def _overlaps(self) -> bool:
        """Whether requests wait long enough that threads overlap them: measured on the first
        requests (sent by the caller), then on one in ``_SAMPLE_EVERY``."""
        share = self._cpu_share
        return share is not None and share < _CPU_BOUND

    def _measure(self, wall: float, cpu: float) -> None:
        """Fold one request's wall and thread CPU time into :attr:`_cpu_share`. The writer's
        first request is not a sample: it pays the client's one-time setup (credentials, the
        endpoint, the service model read from disk), which says nothing about the others."""
        if not self._first_measured:
            self._first_measured = True
            return
        if wall <= 0:
            return
        share = min(cpu / wall, 1.0)
        previous = self._cpu_share  # a lost update between threads is one sample, no harm
        self._cpu_share = share if previous is None else previous + (share - previous) / 4

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

    def _log_uncollected(self) -> None:
        """At close, once the pool has stopped: log the workers' errors nobody raised.

        Only one exception goes up from close(); another worker's bug (or any, when close was
        interrupted) would otherwise vanish with its future.
        """
        with self._lock:
            left, self._futures = self._futures, set()
        for future in left:
            error = future.exception() if future.done() and not future.cancelled() else None
            if error is not None:
                logger.error(
                    "%s request failed while another error was raised",
                    self.adapter.operation,
                    exc_info=error,
                )

    def _collect(self, done: set[Future[None]]) -> None:
        for future in done:
            with self._lock:
                mine = future in self._futures  # the flusher may be collecting the same one
                self._futures.discard(future)
            if mine:
                future.result()  # a bug in a worker surfaces here, once, not silently

    # -- sending --------------------------------------------------------------------------------

    def _work(self, chunk: list[Entry[S]], groups: set[Hashable]) -> None:
        """A pool task: send ``chunk``, then the next full chunk while there is one."""
        working = True
        try:
            while True:
                self._settle(chunk, groups)
                with self._lock:
                    if not self._full():
                        # decided under the lock: an entry added after this makes the caller
                        # start a worker, since this one no longer counts
                        self._workers -= 1
                        working = False
                        return
                    chunk, groups = self._take_chunk()
                    if not chunk:  # every full entry waits for a group in flight
                        self._workers -= 1
                        working = False
                        return
                    self._requests_in_flight += 1
        finally:
            if working:
                with self._lock:
                    self._workers -= 1

    def _settle(self, chunk: list[Entry[S]], groups: set[Hashable]) -> None:
        try:
            self._send_handed(chunk)
        finally:
            with self._lock:
                if groups:
                    self._in_flight_groups -= groups
                self._requests_in_flight -= 1
                if self._flusher is not None:  # only waits for the flusher's requests wait
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

    def _send(self, chunk: list[Entry[S]], handed: list[bool] | None = None) -> None:
        """One request of ``chunk``, paced; what it did not complete goes back to the buffer.

        The sync driver; ``resilient_aws._abatching`` is the async one. Both only wait and
        call the adapter: what a request means for its entries is decided by the phases they
        share (``_paced``, ``_sending``, ``_failed_request``, ``_answer``). ``handed`` gets a
        mark once this call answers for every entry of ``chunk``: an interrupt that goes off
        before (as the call starts) leaves them to the caller (:meth:`_send_handed`).
        """
        sending = False  # the request may have left: its entries are accounted for by then
        halves = None
        try:
            if handed is not None:
                handed.append(True)
            chunk, delay = self._paced(chunk)
            if not chunk:
                return
            if delay > 0:
                self.policy.sleep(delay)
            self._sending(chunk)
            # Once the share is known, one request in _SAMPLE_EVERY is measured (a quarter as
            # often while requests clearly compute): its two thread clock reads are system
            # calls, and what a client's requests wait on changes slowly.
            share = self._cpu_share
            measure = self.concurrency > 1 and (
                share is None
                or self.result.requests % (_SAMPLE_EVERY if share < _COMPUTING else _SAMPLE_RARELY)
                == 0
            )
            with self._request_span(chunk) as span:
                if measure:
                    wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    sending = True
                    sent = self.adapter.send_request(chunk)
                except (ClientError, BotoCoreError) as error:
                    if measure:
                        self._measure(time.perf_counter() - wall, time.thread_time() - cpu)
                    tracing.mark_failed(span, error)
                    halves = self._failed_request(chunk, error)
                except BaseException as error:
                    self._unknown(chunk, error)
                    raise
                else:
                    if measure:
                        self._measure(time.perf_counter() - wall, time.thread_time() - cpu)
                    self._answer(chunk, sent)
                    if sent.failed:
                        span.set_attribute(tracing.FAILED, len(sent.failed))
                    return
        except BaseException as error:
            # An interrupt (a Ctrl-C goes off on a clock read, a sleep, a loop, a call) before
            # the request left: none of it was sent. Or as the span ended, with the request
            # split in two: neither half was sent. Once sent, the request accounted for itself.
            if not sending:
                self._not_sent(chunk, error)
            elif halves is not None:
                self._not_sent(halves[0] + halves[1], error)
            raise
        if halves is not None:
            first, second = halves
            try:
                self._send_handed(first)
            except BaseException as interrupt:  # the first half accounted for itself
                self._not_sent(second, interrupt)
                raise
            self._send_handed(second)

    def _send_handed(self, chunk: list[Entry[S]]) -> None:
        """:meth:`_send` ``chunk``, out of the buffer already: reported ``NotSent`` if an
        interrupt goes off before ``_send`` answers for it."""
        handed: list[bool] = []
        try:
            self._send(chunk, handed)
        except BaseException as error:
            if not handed:
                self._not_sent(chunk, error)
            raise

    def _request_span(self, chunk: list[Entry[S]]) -> Any:
        """The span of one request (a shared no-op while tracing is off)."""
        return tracing.request_span(
            self.adapter.operation,
            entries=len(chunk),
            client=getattr(self.adapter, "client", None),
            parent=self._trace_parent,
        )

    # -- what a request means for its entries: shared by the sync and the async driver ----------

    def _paced(self, chunk: list[Entry[S]]) -> tuple[list[Entry[S]], float]:
        """Book ``chunk``'s request with the pacer: the entries still worth sending once the
        delay is over, and the seconds to wait (never past the deadline: first attempts are
        always made, at the latest by then)."""
        policy = self.policy
        delay = self.pacer.reserve(len(chunk), policy)
        if policy.deadline is not None or policy.max_elapsed is not None:
            chunk = self._still_worth_sending(chunk, delay)
        if chunk and delay > 0:
            deadline = policy.deadline
            if deadline is not None:
                delay = min(delay, deadline.remaining())
        return chunk, delay

    def _sending(self, chunk: list[Entry[S]]) -> None:
        """Count the request and each entry's send, just before it leaves."""
        now = self.policy.clock()
        resent = 0
        for entry in chunk:
            if entry.sends:
                resent += 1
            else:
                entry.first_sent = now
            entry.sends += 1
        with self._lock:
            self.result.requests += 1
            self.result.resent += resent

    def _not_sent(self, chunk: list[Entry[S]], error: BaseException) -> None:
        """``error`` (an interrupt, a cancellation) came before ``chunk`` was sent; entries
        already given up (their time was up) are not reported twice."""
        with self._lock:
            for entry in chunk:
                if not entry.settled:
                    self._record_failure(_not_sent(entry, error))

    def _unknown(self, chunk: list[Entry[S]], error: BaseException) -> None:
        """A bug in an adapter, an interrupt or a cancellation ended the request mid-way: its
        outcome is unknown for every entry of it; account for them (the caller raises on)."""
        with self._lock:
            for entry in chunk:
                self._record_failure(_outcome_unknown(entry, error))

    def _failed_request(
        self, chunk: list[Entry[S]], error: ClientError | BotoCoreError
    ) -> tuple[list[Entry[S]], list[Entry[S]]] | None:
        """The request failed whole: its entries retried, failed, or the two halves to send
        (in order) when the service refused it for one entry."""
        try:
            return self._request_failed(chunk, error)
        except BaseException as interrupt:
            self._settle_leftovers(chunk, interrupt, applied=())
            raise

    def _answer(self, chunk: list[Entry[S]], sent: Sent[S]) -> None:
        """Read the service's per-entry answer of ``chunk``'s request."""
        try:
            self._answered(sent)
        except BaseException as interrupt:
            # An interrupt (or a bug in a listener or a wait strategy) while the answer was
            # being read: what the service took is still counted, the rest reported.
            applied = [e for e, _ in sent.succeeded]
            self._settle_leftovers(chunk, interrupt, applied=applied, counted=sent.counted)
            raise

    def _settle_leftovers(
        self,
        chunk: list[Entry[S]],
        error: BaseException,
        applied: Sequence[Entry[S]],
        *,
        counted: bool = False,
    ) -> None:
        """Account for the entries of ``chunk`` that handling its answer left unsettled:
        ``applied`` the service took (``counted``: already in the result), the rest unknown."""
        took = {id(entry) for entry in applied}
        with self._lock:
            for entry in chunk:
                if entry.settled or self._pending.get(entry.slot) is entry:
                    continue  # reported or back in the buffer already
                if id(entry) in took:
                    entry.settled = True
                    if not counted:
                        self.result.succeeded += 1
                else:
                    self._record_failure(_outcome_unknown(entry, error))

    def _still_worth_sending(self, chunk: list[Entry[S]], delay: float) -> list[Entry[S]]:
        """``chunk`` without the re-sent entries whose time is up by the end of ``delay``."""
        policy = self.policy
        deadline, max_elapsed = policy.deadline, policy.max_elapsed
        if deadline is None and max_elapsed is None:
            return chunk
        now = policy.clock()
        keep: list[Entry[S]] = []
        expired: list[tuple[Entry[S], str]] = []
        for entry in chunk:
            if not entry.sends:
                keep.append(entry)
            elif deadline is not None and not deadline.allows(delay):
                expired.append((entry, "deadline"))
            elif max_elapsed is not None and now + delay - entry.first_sent > max_elapsed:
                expired.append((entry, "elapsed"))
            else:
                keep.append(entry)
        if expired:
            with self._lock:
                for entry, reason in expired:
                    self._record_failure(_gave_up(entry, reason))
            attempts = max(entry.sends for entry, _ in expired)
            self._gave_up_events(Counter(reason for _, reason in expired), None, attempts)
        return keep

    def _request_failed(
        self, chunk: list[Entry[S]], error: ClientError | BotoCoreError
    ) -> tuple[list[Entry[S]], list[Entry[S]]] | None:
        verdict = (self.policy.classifier or classify)(error)
        message = _error_message(error)
        if verdict.retryable:
            self.pacer.record(
                self.policy, completed=0, withheld=len(chunk), throttled=verdict.is_throttle
            )
            # A whole-request error is not a batch response's per-entry failure: it is reported
            # as the retry (or give-up) it leads to, not as partial_failure.
            failures = [
                FailedEntry(e, e.entry_id, verdict.code, message, retryable=True) for e in chunk
            ]
            self._send_back(failures, stalled=True, botocore=_botocore_retries(error))
            return None
        self.pacer.record(self.policy, completed=len(chunk), withheld=0)
        split = verdict.code in self.split_codes and len(chunk) > 1
        deadline = self.policy.deadline
        if split and deadline is not None and deadline.expired:
            # No time left to find the culprit: the whole request fails, named as given up.
            failures = [
                FailedEntry(e, e.entry_id, verdict.code, message, True, e.sends, "deadline")
                for e in chunk
            ]
            with self._lock:
                for failure in failures:
                    self._record_failure(failure)
            return None
        if split:
            # The service refused the whole request for one entry: halve until it stands alone.
            half = len(chunk) // 2
            first, second = chunk[:half], chunk[half:]
            for entry in chunk:  # the halves are new requests, not re-sends
                entry.sends -= 1
            return first, second
        failures = [
            FailedEntry(e, e.entry_id, verdict.code, message, attempts=e.sends) for e in chunk
        ]
        with self._lock:
            for failure in failures:
                self._record_failure(failure)
        return None

    def _answered(self, sent: Sent[S]) -> None:
        succeeded, failed = sent.succeeded, sent.failed
        if failed:
            retry = [f for f in failed if f.retryable]
            permanent = [f for f in failed if not f.retryable]
        else:
            retry = permanent = []
        completed = len(succeeded) + len(permanent)
        recovered = self.pacer.record(self.policy, completed=completed, withheld=len(retry))
        budget = self.policy.budget
        if budget is not None and completed:
            # a recovered stall gives back what its retries withdrew, as a recovered call does
            with self._lock:
                refund, self._stall_tokens = self._stall_tokens, 0
            budget.release(refund if recovered and refund else budget.success_refund)
        if failed:
            self._report(failed)
        answers = self._answers(succeeded) if self.keep_answers and succeeded else None
        with self._lock:
            self.result.succeeded += len(succeeded)
            sent.counted = True  # an interrupt from here on must not count them again
            if answers:
                self._keep(answers)
            for failure in permanent:
                self._record_failure(replace(failure, attempts=failure.entry.sends))
        if retry:
            self._send_back(retry, stalled=not completed, botocore=sent.botocore_retries)
        if recovered:
            self._event("recovered", attempt=0, entries=completed)

    def _answers(self, succeeded: list[tuple[Entry[S], Any]]) -> list[Answer[S]]:
        if self.keep_answers == "full":
            return [Answer(e.source, e.entry_id, full_answer(answer)) for e, answer in succeeded]
        return [Answer(None, e.entry_id, compact_answer(answer)) for e, answer in succeeded]

    def _keep(self, answers: list[Answer[S]]) -> None:
        """Under the lock: add ``answers`` to the result, keeping the newest ``max_answers``."""
        kept = self.result.answers
        kept += answers
        limit = self.max_answers
        if limit is not None and len(kept) > limit:
            over = len(kept) - limit
            del kept[:over]  # once full: one shift per request, not per entry
            self.result.answers_dropped += over

    def _send_back(
        self, failures: list[FailedEntry[Entry[S]]], *, stalled: bool, botocore: int
    ) -> None:
        """Return retryable failures to the front of the buffer, or give them up."""
        policy = self.policy
        now = policy.clock()
        stalls = self.pacer.stalls
        # Stopped making progress: max_attempts responses in a row and max_stalled seconds
        # without completing anything (a lone tail entry unlucky eight times is not an outage),
        # or four times max_attempts whatever the time (a policy that never sleeps).
        writer_stalled = stalled and (
            stalls >= _BACKSTOP * policy.max_attempts
            or (stalls >= policy.max_attempts and self.pacer.stalled_for(now) >= policy.max_stalled)
        )
        budget_refused = False
        # The budget is asked in a stall (two responses in a row that completed nothing), not
        # for one unlucky response among others that complete.
        if stalls >= 2 and not writer_stalled and policy.budget is not None:
            budget = policy.budget
            cost = budget.cost_of(throttle=failures[0].code in THROTTLING_CODES)
            if budget.try_acquire(cost):
                with self._lock:
                    self._stall_tokens += cost
            else:
                budget_refused = True
                self._event("budget_refused", attempt=0, entries=len(failures))
        given_up: Counter[str] = Counter()
        back: list[Entry[S]] = []
        with self._lock:
            for failure in failures:
                entry = failure.entry
                if stalled:
                    entry.stalled += 1 + botocore
                reason = None
                if self.closed:
                    # sent by another thread as the writer closed: nothing sends it again
                    reason = "closed"
                elif budget_refused:
                    reason = "budget"
                elif (
                    writer_stalled
                    or entry.stalled >= _BACKSTOP * policy.max_attempts
                    or (
                        entry.stalled >= policy.max_attempts
                        and now - entry.first_sent >= policy.max_stalled
                    )
                ):
                    reason = "attempts"
                if reason is not None:
                    given_up[reason] += 1
                    self._record_failure(replace(failure, attempts=entry.sends, gave_up=reason))
                else:
                    back.append(entry)
            if back:
                pending = self._pending
                front: dict[Hashable, Entry[S]] = {}
                for entry in back:
                    slot = entry.slot
                    if slot is None:  # sent as it was staged: never had a place in the buffer
                        slot = entry.slot = self._serial = self._serial + 1
                    elif slot in pending:  # a later write of the same key replaced it
                        entry.settled = True
                        self.result.deduplicated += 1
                        continue
                    front[slot] = entry
                    self._pending_bytes += entry.size
                # a plain dict (cheaper per entry added than an OrderedDict) rebuilt with what
                # goes back in front: a buffer holds a few requests' worth, and only on a retry
                front.update(pending)
                self._pending = front
            if back and self._oldest is None:
                self._oldest = time.monotonic()
        if given_up:
            attempts = max(f.entry.sends for f in failures)
            self._gave_up_events(given_up, failures[0].code, attempts)
        if back:
            self._event(
                "retry",
                attempt=max(e.sends for e in back),
                entries=len(back),
                code=failures[0].code,
                delay=self.pacer._backoff if stalled else 0.0,
            )

    # -- what the core tells the world ----------------------------------------------------------

    def _report(self, failures: list[FailedEntry[Entry[S]]]) -> None:
        # One event per code and verdict, so a metric can count failed entries by code without
        # ever naming an entry.
        counts = Counter((f.code, f.retryable) for f in failures)
        attempt = max(f.entry.sends for f in failures)
        for (code, retryable), entries in counts.items():
            emit(
                RetryEvent(
                    kind="partial_failure",
                    operation=self.adapter.operation,
                    attempt=attempt,
                    error_code=code,
                    entries=entries,
                    retryable=retryable,
                ),
                self.policy.listeners,
            )

    def _gave_up_events(self, reasons: Counter[str], code: str | None, attempts: int) -> None:
        for reason, entries in reasons.items():
            self._event("give_up", attempt=attempts, entries=entries, code=code, reason=reason)

    def _event(
        self,
        kind: Any,
        *,
        attempt: int,
        entries: int,
        code: str | None = None,
        reason: str | None = None,
        delay: float = 0.0,
    ) -> None:
        emit(
            RetryEvent(
                kind=kind,
                operation=self.adapter.operation,
                attempt=attempt,
                delay=delay,
                error_code=code,
                reason=reason,
                entries=entries,
            ),
            self.policy.listeners,
        )

    def _record_failure(self, failure: FailedEntry[Entry[S]]) -> None:
        entry = failure.entry
        entry.settled = True
        self.result.failed.append(replace(failure, entry=entry.source))  # type: ignore[arg-type]
        if entry.group is not None and self.on_group_failure == "fail":
            self._blocked_groups.add(entry.group)

    def _fail_unsent(self) -> None:
        with self._lock:
            self.absorb_staged(closing=True)
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
                except BaseException as error:  # raised again by the next flush() or close()
                    # a worker's interrupt collected here too: it must reach the caller, not
                    # end this thread (and time-based flushing with it)
                    logger.exception("background flush failed")
                    with self._lock:
                        if self._background_error is None:
                            self._background_error = error
                    # and keep flushing on time: one bad request must not stall the rest


class _Closed:
    """What a closed engine keeps of its adapter: its name and limits; it sends nothing."""

    __slots__ = ("limits", "operation")

    def __init__(self, operation: str, limits: BatchLimits) -> None:
        self.operation = operation
        self.limits = limits

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:
        raise ConfigurationError("closed", "the writer is closed")


def full_answer(answer: Any) -> Any:
    """The service's whole per-entry answer, but for the ``Id`` SQS and SNS echo (the entry's
    index in its request, meaningless to callers); the adapters pass it on untouched so that
    nothing is copied for an answer nobody keeps."""
    if isinstance(answer, dict) and "Id" in answer:
        answer = answer.copy()
        del answer["Id"]
    return answer


def compact_answer(answer: Any) -> Any:
    """The service's identifiers in a per-entry answer (``ANSWER_FIELDS``); anything that is not
    a mapping as it is."""
    if not isinstance(answer, dict):
        return answer
    return {name: answer[name] for name in ANSWER_FIELDS if name in answer}


def _entry_id(entry: Entry[Any]) -> str:
    return entry.entry_id


def _not_sent(entry: Entry[S], error: BaseException) -> FailedEntry[Entry[S]]:
    return FailedEntry(
        entry, entry.entry_id, "NotSent", f"not sent: {type(error).__name__} before sending it"
    )


# The share of a request's time spent computing in its thread above which a request waits on
# nothing worth overlapping: the caller sends it itself. Two threads that both compute share
# the GIL, each then measuring about half: threads stay once they have been started.
_CPU_BOUND = 0.5

# At concurrency > 1, the requests measured once the share is known: one in this many.
_SAMPLE_EVERY = 4
# ...and one in this many while the share is at least _COMPUTING. One sample of requests that
# started waiting brings the share under it (a quarter of the way per sample), so that the
# samples that move them to threads come every _SAMPLE_EVERY requests again.
_SAMPLE_RARELY = 16
_COMPUTING = 0.8

# No-progress rounds after which an entry is given up whatever the time: max_stalled is
# measured on the policy's clock, which only the backoff moves when a policy never sleeps.
_BACKSTOP = 4


def _gave_up(entry: Entry[S], reason: str) -> FailedEntry[Entry[S]]:
    return FailedEntry(
        entry,
        entry.entry_id,
        "GaveUp",
        f"re-sent {entry.sends - 1} times; the {reason} ran out before the next attempt",
        retryable=True,
        attempts=entry.sends,
        gave_up=reason,
    )


# The lines of botocore's parameter validation report, up to the parameter each one names.
_PARAMETER = re.compile(
    r"^(?:Invalid (?:type|value|length) for (?:document )?parameter|Missing required parameter in"
    r"|Unknown parameter in|Invalid parameter) ([\w.\[\]-]+)",
    re.MULTILINE,
)


def _error_message(error: BaseException) -> str:
    """``str(error)`` for a failed entry's message; botocore's ParamValidationError quotes each
    value it refused (a payload may hold personal data): only the parameters it names."""
    if isinstance(error, ParamValidationError):
        names = ", ".join(dict.fromkeys(_PARAMETER.findall(str(error))))
        return f"Parameter validation failed (values not shown): {names}"
    return str(error)


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

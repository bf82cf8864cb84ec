"""The batch processor: every record of a Lambda batch succeeds or is named in the response."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from resilient_aws import tracing
from resilient_aws.consumer._records import (
    LIGHT,
    SOURCES,
    CheckedBatch,
    Ordered,
    Source,
    check_event,
    powertools_classes,
)
from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import Deadline
from resilient_aws.tracing import error_type

if TYPE_CHECKING:
    from resilient_aws.consumer._visibility import VisibilityBackoff
    from resilient_aws.payloads import PayloadStore
    from resilient_aws.retry import RetryListener, RetryPolicy

__all__ = [
    "NOT_PROCESSED",
    "PRECEDING_RECORD_FAILED",
    "BatchProcessor",
    "FailedRecord",
    "ProcessedBatch",
    "RecordKind",
    "process_partial_response",
]

logger = logging.getLogger("resilient_aws.consumer")

RecordKind = Literal["auto", "light", "powertools", "raw"]
_RECORD_KINDS = ("auto", "light", "powertools", "raw")

NOT_PROCESSED = "NotProcessed"
"""The code of a record left untouched because the invocation's deadline was near."""
PRECEDING_RECORD_FAILED = "PrecedingRecordFailed"
"""The code of a record not run because an earlier record of its stream or FIFO group failed."""


class FailedRecord:
    """A record named in ``batchItemFailures``: ``index`` in the event, ``item_identifier``
    (message id or sequence number), ``code`` (the exception's type name, the service's error
    code for a botocore error, :data:`NOT_PROCESSED` or :data:`PRECEDING_RECORD_FAILED`) and the
    ``error`` the record function raised (``None`` for a record that did not run)."""

    __slots__ = ("code", "error", "index", "item_identifier")

    def __init__(
        self, index: int, item_identifier: str, code: str, error: BaseException | None = None
    ) -> None:
        self.index = index
        self.item_identifier = item_identifier
        self.code = code
        self.error = error

    def __repr__(self) -> str:
        return f"FailedRecord({self.index}, {self.item_identifier!r}, {self.code!r})"


class ProcessedBatch:
    """The account of one batch: ``total == succeeded + len(failed)``.

    ``failed`` lists, in event order, every record the response names; ``response`` is the
    partial batch response Lambda expects; ``visibility`` maps the message ids whose visibility
    was backed off to the timeout set; ``source`` is ``"sqs"``, ``"kinesis"`` or
    ``"dynamodb"``.
    """

    __slots__ = ("failed", "source", "succeeded", "total", "visibility")

    def __init__(
        self,
        source: Source,
        total: int,
        failed: list[FailedRecord],
        visibility: dict[str, int] | None = None,
    ) -> None:
        self.source = source
        self.total = total
        self.failed = failed
        self.succeeded = total - len(failed)
        self.visibility = visibility or {}

    @property
    def response(self) -> dict[str, list[dict[str, str]]]:
        """``{"batchItemFailures": [{"itemIdentifier": ...}, ...]}``, in event order."""
        return {"batchItemFailures": [{"itemIdentifier": f.item_identifier} for f in self.failed]}

    @property
    def all_failed(self) -> bool:
        return self.total > 0 and self.succeeded == 0

    def __repr__(self) -> str:
        return (
            f"ProcessedBatch({self.source}: {self.total} records, {self.succeeded} succeeded, "
            f"{len(self.failed)} failed)"
        )


RecordFunction = Callable[..., Any]


class BatchProcessor:
    """Runs a record function over each record of an SQS, Kinesis or DynamoDB Streams batch
    and answers Lambda's partial batch response (turn on ``ReportBatchItemFailures``).

    ::

        processor = BatchProcessor(policy=RetryPolicy(max_attempts=3))

        @processor.handler
        def handler(record):            # the Lambda handler is handler(event, context)
            charge(record.json_body)

    What it guarantees: every record either succeeds or is named in ``batchItemFailures``; a
    record function's exception is caught (``Exception``, and in async mode a
    ``CancelledError`` the function raised) and its record reported, never lost; a failure
    around the records (listeners, logging, the visibility calls) never costs the answer;
    ``KeyboardInterrupt`` and ``SystemExit`` propagate (async lanes stopped first); a malformed
    event (not a batch, a record without its id, records of two sources) raises
    :class:`~resilient_aws.errors.EntryValidationError` naming the record by index before any
    record runs.

    * ``source``: ``"sqs"``, ``"kinesis"`` or ``"dynamodb"``; by default read from each
      record's ``eventSource``.
    * ``ordered``: streams (Kinesis, DynamoDB) stop at the first failure and report it with
      every record after it, so a shard never skips ahead; FIFO queues skip the later records of
      a failed message's group only, other groups go on; standard queues report exactly the
      records that failed. ``ordered=False`` reports only failed records everywhere,
      ``ordered=True`` makes a standard queue stop at its first failure, ``ordered="batch"``
      makes any batch stop at its first failure, FIFO groups included (AWS's advice for FIFO
      queues, Powertools' default: fewer records go on, but no group can be reordered by a
      handler that reads across groups).
    * ``policy``: a :class:`~resilient_aws.retry.RetryPolicy` for each record: what it
      classifies as retryable (throttles, 5xx, a lost connection raised from inside the record
      function) is retried through the core, bounded by the invocation's deadline. ``None``
      (the default): one attempt, the queue or stream redelivers.
    * ``margin_s`` (default 1 s): no record starts when the invocation's remaining time, less
      ``margin_s``, would not cover the slowest record so far; those records are reported
      (:data:`NOT_PROCESSED`) and the handler returns instead of being killed mid-batch. It needs
      the Lambda context (``get_remaining_time_in_millis``); ``clock`` is its seam for tests.
    * ``visibility``: a :class:`VisibilityBackoff` that backs off failed SQS messages by their
      receive count (``ChangeMessageVisibilityBatch``), instead of the queue's fixed timeout.
    * ``concurrency`` (default 10): how many records an ``async def`` record function runs at
      once (FIFO groups and streams stay in order: one record of a group or stream at a time).
    * ``records``: what the record function receives: ``"light"`` (this module's records, with
      Powertools' attribute names), ``"powertools"`` (Powertools' own data classes, ``lambda``
      extra), ``"raw"`` (the record's dict), or ``"auto"`` (the default: Powertools' classes
      when ``aws_lambda_powertools`` is already imported, light records otherwise; importing
      Powertools' data classes costs about 40 ms of cold start).
    * ``payloads``: a :class:`~resilient_aws.payloads.PayloadStore`: an SQS message (or an
      SNS notification or EventBridge event in its body) or a Kinesis record carrying an
      extended client pointer reaches the record function with its payload in its place; a
      pointer that cannot be resolved (the object is gone) fails that record only, with
      :class:`~resilient_aws.payloads.PayloadNotFoundError` naming the message. With
      ``PayloadConfig(delete_after=True)`` the objects of the SQS records that succeeded are
      deleted once the batch is done (never a stream's: a stream delivers a record again
      after a failed one).
    * ``listeners``: :data:`~resilient_aws.retry.RetryListener` s told about each batch's
      failures (one ``partial_failure`` event per code, operation ``"consume:<source>"``) on top
      of the global ones, e.g. a
      :class:`~resilient_aws.powertools.PowertoolsMetricsListener`.

    A batch whose records all fail is answered like any other (every record named): Lambda
    retries them all, as it would after an error, without the invocation counting as one.
    """

    __slots__ = (
        "clock",
        "concurrency",
        "listeners",
        "margin_s",
        "ordered",
        "payloads",
        "policy",
        "records",
        "source",
        "visibility",
    )

    def __init__(
        self,
        *,
        source: Source | None = None,
        ordered: Ordered = None,
        policy: RetryPolicy | None = None,
        margin_s: float = 1.0,
        visibility: VisibilityBackoff | None = None,
        concurrency: int = 10,
        records: RecordKind = "auto",
        listeners: tuple[RetryListener, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        payloads: PayloadStore | None = None,
    ) -> None:
        if source is not None and source not in SOURCES:
            raise ConfigurationError("source", f"must be one of {SOURCES}, got {source!r}")
        if ordered is not None and not isinstance(ordered, bool) and ordered != "batch":
            raise ConfigurationError("ordered", f"must be None, a bool or 'batch', got {ordered!r}")
        if (
            not isinstance(margin_s, (int, float))
            or isinstance(margin_s, bool)
            or not margin_s >= 0
            or margin_s == float("inf")
        ):
            raise ConfigurationError("margin_s", f"must be a finite number >= 0, got {margin_s!r}")
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
        if records not in _RECORD_KINDS:
            raise ConfigurationError("records", f"must be one of {_RECORD_KINDS}, got {records!r}")
        if policy is not None and not callable(getattr(policy, "call", None)):
            raise ConfigurationError(
                "policy", f"must be a RetryPolicy, got {type(policy).__name__}"
            )
        if visibility is not None and not callable(getattr(visibility, "apply", None)):
            raise ConfigurationError(
                "visibility", f"must be a VisibilityBackoff, got {type(visibility).__name__}"
            )
        if payloads is not None and not callable(getattr(payloads, "get", None)):
            raise ConfigurationError(
                "payloads", f"must be a PayloadStore, got {type(payloads).__name__}"
            )
        self.source = source
        self.ordered = ordered
        self.policy = policy
        self.margin_s = float(margin_s)
        self.visibility = visibility
        self.concurrency = concurrency
        self.records = records
        self.listeners = tuple(listeners)
        self.clock = clock
        self.payloads = payloads

    def __setattr__(self, name: str, value: Any) -> None:
        # configuration is fixed once made (like the library's frozen dataclasses)
        if hasattr(self, name):
            raise AttributeError(f"BatchProcessor is immutable: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"BatchProcessor(source={self.source!r}, ordered={self.ordered!r}, "
            f"policy={self.policy!r}, margin_s={self.margin_s!r}, visibility={self.visibility!r}, "
            f"concurrency={self.concurrency!r}, records={self.records!r})"
        )

    # -- entry points ---------------------------------------------------------------------------

    def handler(self, record_function: RecordFunction) -> Callable[[Any, Any], dict[str, Any]]:
        """Decorate a record function into a Lambda handler ``handler(event, context)`` that
        returns the partial batch response. ``record_function(record)`` or
        ``record_function(record, context)`` (a second parameter, or one named
        ``lambda_context``, gets the Lambda context); ``async def`` works too."""
        passes_context = _takes_context(record_function)

        def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
            return self._process(event, record_function, context, passes_context).response

        lambda_handler.__name__ = getattr(record_function, "__name__", "handler")
        lambda_handler.__qualname__ = getattr(record_function, "__qualname__", "handler")
        lambda_handler.__doc__ = record_function.__doc__
        lambda_handler.__wrapped__ = record_function  # type: ignore[attr-defined]
        return lambda_handler

    def process(
        self, event: Any, record_function: RecordFunction, context: Any = None
    ) -> ProcessedBatch:
        """Process one batch with ``record_function`` and account for every record.

        ``ProcessedBatch.response`` is what the Lambda handler returns. An ``async def`` record
        function runs on an event loop kept for the thread (call :meth:`aprocess` from a
        running loop)."""
        return self._process(event, record_function, context, _takes_context(record_function))

    async def aprocess(
        self, event: Any, record_function: RecordFunction, context: Any = None
    ) -> ProcessedBatch:
        """:meth:`process` from a running event loop; ``async def`` record functions run
        ``concurrency`` records at once (in order within a FIFO group or a stream)."""
        from resilient_aws.consumer._async import process_async

        batch, wrap, deadline, policy = self._prepare(event, context)
        fn, positional = _bind_context(record_function, _takes_context(record_function), context)
        if tracing._active() is not None:
            from resilient_aws.consumer._tracing import atraced_batch

            return await atraced_batch(self, batch, wrap, fn, positional, context, deadline, policy)
        failed = await process_async(self, batch, wrap, fn, positional, context, deadline, policy)
        return self._finish(batch, failed, deadline)

    # -- one batch ------------------------------------------------------------------------------

    def _process(
        self, event: Any, fn: RecordFunction, context: Any, passes_context: bool | str
    ) -> ProcessedBatch:
        if is_async(fn):
            from resilient_aws.consumer._async import run_on_loop

            return run_on_loop(self.aprocess(event, fn, context))
        batch, wrap, deadline, policy = self._prepare(event, context)
        fn, positional = _bind_context(fn, passes_context, context)
        if tracing._active() is not None:
            from resilient_aws.consumer._tracing import traced_batch

            return traced_batch(self, batch, wrap, fn, positional, context, deadline, policy)
        failed = self._run(batch, wrap, fn, positional, context, deadline, policy)
        return self._finish(batch, failed, deadline)

    def _prepare(
        self, event: Any, context: Any
    ) -> tuple[CheckedBatch, Callable[[dict[str, Any]], Any], Deadline | None, RetryPolicy | None]:
        batch = check_event(event, self.source, self.ordered)
        deadline = None
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            deadline = Deadline.from_lambda_context(
                context, margin_s=self.margin_s, clock=self.clock
            )
        policy = self.policy
        if policy is not None and deadline is not None:
            policy = policy.with_deadline(deadline)
        wrap = self._wrapper(batch.source)
        if self.payloads is not None and batch.source in ("sqs", "kinesis"):
            from resilient_aws.payloads._resolve import resolving

            wrap = resolving(wrap, self.payloads, _payload_policy(self.payloads, deadline))
        return batch, wrap, deadline, policy

    def _wrapper(self, source: Source) -> Callable[[dict[str, Any]], Any]:
        kind = self.records
        if kind == "raw":
            return _identity
        if kind == "powertools" or (kind == "auto" and "aws_lambda_powertools" in sys.modules):
            try:
                return powertools_classes()[source]  # type: ignore[no-any-return]
            except ModuleNotFoundError as missing:
                if kind == "powertools":
                    raise ModuleNotFoundError(
                        "records='powertools' needs aws-lambda-powertools: "
                        "pip install 'resilient-aws[lambda]'",
                        name=missing.name,
                    ) from missing
        return LIGHT[source]

    def _run(
        self,
        batch: CheckedBatch,
        wrap: Callable[[dict[str, Any]], Any],
        fn: RecordFunction,
        passes_context: bool,
        context: Any,
        deadline: Deadline | None,
        policy: RetryPolicy | None,
    ) -> list[FailedRecord]:
        """The sync loop: records in event order, one at a time."""
        records, ids, lanes = batch.records, batch.ids, batch.lanes
        failed: list[FailedRecord] = []
        stopped: set[str] = set()
        clock = self.clock
        end = deadline.at if deadline is not None else None
        slowest = 0.0
        now = clock() if end is not None else 0.0
        call = policy.call if policy is not None else None
        plain = call is None and not passes_context  # the common case, tested first
        for index, raw in enumerate(records):
            if stopped and lanes is not None and lanes[index] in stopped:
                failed.append(FailedRecord(index, ids[index], PRECEDING_RECORD_FAILED))
                continue
            if end is not None and now + slowest >= end:
                # not enough time left for one more record: report the rest untouched
                failed.extend(
                    FailedRecord(
                        i,
                        ids[i],
                        PRECEDING_RECORD_FAILED
                        if lanes is not None and lanes[i] in stopped
                        else NOT_PROCESSED,
                    )
                    for i in range(index, len(records))
                )
                break
            try:
                if plain:
                    result = fn(wrap(raw))
                elif call is None:
                    result = fn(wrap(raw), context)
                elif passes_context:
                    result = call(fn, wrap(raw), context)
                else:
                    result = call(fn, wrap(raw))
                if result is not None and inspect.isawaitable(result):
                    _refuse_awaitable(fn, result)
            except Exception as error:
                failed.append(FailedRecord(index, ids[index], error_code(error), error))
                if lanes is not None:
                    stopped.add(lanes[index])
            if end is not None:
                # one clock read per record: this record's end is the next one's start
                finished = clock()
                if finished - now > slowest:
                    slowest = finished - now
                now = finished
        return failed

    def _finish(
        self, batch: CheckedBatch, failed: list[FailedRecord], deadline: Deadline | None
    ) -> ProcessedBatch:
        visibility: dict[str, int] | None = None
        store = self.payloads
        if store is not None and store.config.delete_after and batch.source == "sqs":
            self._delete_payloads(batch, failed, deadline)
        if failed:
            failed.sort(key=_index)  # async lanes finish in any order; the response is in order
            _report(batch, failed, self.listeners)
            if self.visibility is not None and batch.source == "sqs":
                try:
                    visibility = self._back_off(batch, failed, deadline)
                except Exception as error:
                    # The backoff is a courtesy: whatever breaks in it (a client, a hook), the
                    # failed records are answered all the same and keep the queue's timeout.
                    _warn(
                        "consume:sqs: visibility backoff failed (%s): %d message(s) keep the "
                        "queue's timeout",
                        type(error).__name__,
                        len(failed),
                    )
        return ProcessedBatch(batch.source, len(batch.records), failed, visibility)

    def _delete_payloads(
        self, batch: CheckedBatch, failed: list[FailedRecord], deadline: Deadline | None
    ) -> None:
        """Delete the objects of the records that succeeded: they are done with them (but for an
        object a record that did not succeed points to as well). Within the invocation's
        deadline: whatever goes wrong is logged (by message id and key), never the batch's
        answer."""
        try:
            from resilient_aws.payloads._resolve import delete_settled

            failed_indexes = {record.index for record in failed}
            succeeded = [i for i in range(len(batch.records)) if i not in failed_indexes]
            assert self.payloads is not None
            delete_settled(
                batch.records,
                succeeded,
                self.payloads,
                policy=_payload_policy(self.payloads, deadline),
            )
        except Exception as error:
            _warn("consume:sqs: deleting payloads failed (%s)", type(error).__name__)

    def _back_off(
        self, batch: CheckedBatch, failed: list[FailedRecord], deadline: Deadline | None
    ) -> dict[str, int]:
        """Back off the messages whose function raised; on a FIFO queue, the messages skipped
        behind one take its timeout (the group is held until all of them are visible again)."""
        assert self.visibility is not None
        chosen: list[tuple[str, dict[str, Any]]] = []
        follow: dict[str, str] = {}
        leaders: dict[str, str] = {}  # FIFO group -> the message that failed in it
        for record in failed:
            group = batch.lanes[record.index] if batch.fifo and batch.lanes else None
            if record.error is not None:
                chosen.append((record.item_identifier, batch.records[record.index]))
                if group is not None:
                    leaders.setdefault(group, record.item_identifier)
            elif record.code == PRECEDING_RECORD_FAILED and group in leaders:
                chosen.append((record.item_identifier, batch.records[record.index]))
                follow[record.item_identifier] = leaders[group]
        return self.visibility.apply(chosen, deadline, follow=follow)


def _index(failed: FailedRecord) -> int:
    return failed.index


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    return record


# A record's failure is named as a span names it (a botocore error's code, else the type's
# name): the response, the metrics and the trace agree.
error_code = error_type


def is_async(fn: Callable[..., Any]) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one (a plain
    ``iscoroutinefunction`` misses those: their records would "succeed" as coroutines nobody
    awaited)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # the attribute, not callable()
    )


def _refuse_awaitable(fn: Callable[..., Any], result: Any) -> None:
    """A record function that is not ``async def`` returned an awaitable: nothing awaited it,
    so the record did not run. It fails (reported, never counted a success)."""
    close = getattr(result, "close", None)
    if callable(close):
        close()  # no "coroutine was never awaited" warning: the TypeError says it
    raise TypeError(
        f"record function {getattr(fn, '__name__', type(fn).__name__)} returned an awaitable "
        f"({type(result).__name__}) that nothing awaits: make it an async def"
    )


def _warn(message: str, *args: Any, **kwargs: Any) -> None:
    """Log a warning; a broken logging setup (a filter that raises) costs the line, never the
    batch's answer."""
    try:
        logger.warning(message, *args, **kwargs)
    except Exception as error:
        with contextlib.suppress(Exception):  # nowhere left to say it
            sys.stderr.write(f"resilient_aws.consumer: logging failed ({type(error).__name__})\n")


def _report(
    batch: CheckedBatch, failed: list[FailedRecord], listeners: tuple[RetryListener, ...]
) -> None:
    """One log line per batch naming failed records by id, and one ``partial_failure`` retry
    event per code for the metrics listeners. Never a body, never an exception's message (it
    may quote the payload)."""
    from resilient_aws.retry import RetryEvent, emit

    operation = f"consume:{batch.source}"
    counts: dict[str, int] = {}
    for record in failed:
        counts[record.code] = counts.get(record.code, 0) + 1
    if logger.isEnabledFor(logging.WARNING):
        shown = ", ".join(f"{f.item_identifier} ({f.code})" for f in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        _warn(
            "%s: %d of %d records reported for retry: %s%s",
            operation,
            len(failed),
            len(batch.records),
            shown,
            more,
            extra={"consumer_failures": counts},
        )
    for code, count in counts.items():
        event = RetryEvent(
            kind="partial_failure",
            operation=operation,
            attempt=1,
            error_code=code,
            entries=count,
            retryable=True,  # every reported record comes back from the queue or stream
        )
        # emit() shields its log line and each listener: a broken logging setup or metrics
        # hook may cost this event, never the batch its answer
        emit(event, listeners)


def _takes_context(fn: Callable[..., Any]) -> bool | str:
    """How ``fn`` wants the Lambda context: ``True`` as a second positional argument,
    ``"keyword"`` as ``lambda_context=`` (Powertools' convention for a keyword-only parameter),
    ``False`` not at all. Cached: reading a signature costs more than a small batch."""
    try:
        return _context_mode(fn)
    except TypeError:  # an unhashable callable
        return _read_context_mode(fn)


def _read_context_mode(fn: Callable[..., Any]) -> bool | str:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= 2:
        return True
    if any(p.name == "lambda_context" for p in parameters):
        return "keyword"
    # record, *rest: a second positional argument is welcome
    return bool(positional) and any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


_context_mode = functools.lru_cache(maxsize=256)(_read_context_mode)


def _bind_context(
    fn: RecordFunction, passes_context: bool | str, context: Any
) -> tuple[RecordFunction, bool]:
    """``fn`` and whether to pass the context positionally; a keyword-only ``lambda_context``
    is bound here, once per batch."""
    if passes_context != "keyword":
        return fn, bool(passes_context)
    if is_async(fn):

        async def abound(record: Any) -> Any:
            return await fn(record, lambda_context=context)

        abound.__name__ = getattr(fn, "__name__", "record_function")
        return abound, False

    def bound(record: Any) -> Any:
        return fn(record, lambda_context=context)

    bound.__name__ = getattr(fn, "__name__", "record_function")
    return bound, False


def process_partial_response(
    event: Any,
    record_handler: RecordFunction,
    processor: BatchProcessor | None = None,
    context: Any = None,
) -> dict[str, Any]:
    """Powertools' ``process_partial_response``, on this module's :class:`BatchProcessor`
    (a default one when ``processor`` is ``None``): the partial batch response of ``event``."""
    return (processor or _default()).process(event, record_handler, context).response


_DEFAULT: list[BatchProcessor] = []


def _default() -> BatchProcessor:
    if not _DEFAULT:
        _DEFAULT.append(BatchProcessor())
    return _DEFAULT[0]


def _payload_policy(store: PayloadStore, deadline: Deadline | None) -> RetryPolicy | None:
    """The store's policy bound to the invocation's deadline: S3 is not retried past it."""
    return store.policy.with_deadline(deadline) if deadline is not None else None

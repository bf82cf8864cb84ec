"""Per-entry retries for batch APIs that answer 200 and report failures entry by entry."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Generic, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws import tracing
from resilient_aws._dataclass import lean_dataclass
from resilient_aws.results import FailedEntry
from resilient_aws.retry._classify import ErrorClass, classify
from resilient_aws.retry._run import Attempts, Run, _areplaying, _replaying

if TYPE_CHECKING:
    from resilient_aws.retry._policy import RetryPolicy

__all__ = ["FailedEntry", "PartialOutcome", "SendResult", "arun_partial", "run_partial"]

E = TypeVar("E")


@lean_dataclass(frozen=True)
class PartialOutcome(Generic[E]):
    """What became of a set of entries: every entry not in ``failed`` succeeded."""

    total: int
    failed: tuple[FailedEntry[E], ...]
    attempts: int
    resent: int
    gave_up: str | None = None

    @property
    def succeeded(self) -> int:
        return self.total - len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed


@lean_dataclass(frozen=True)
class SendResult(Generic[E]):
    """What ``send`` may return instead of a plain list: the failed entries, and how many
    times botocore already retried the request (``ResponseMetadata.RetryAttempts``), so that
    the core counts those wire attempts too and the two layers never multiply."""

    failed: Sequence[FailedEntry[E]]
    botocore_retries: int = 0


class _RetryableEntriesError(Exception):
    """Raised inside an attempt when retryable entries remain; never leaves this module."""

    def __init__(self, failures: list[FailedEntry[object]], botocore_retries: int) -> None:
        super().__init__(f"{len(failures)} entries to retry")
        self.code = failures[0].code
        self.botocore_retries = botocore_retries


def _classify(error: BaseException) -> ErrorClass:
    if isinstance(error, _RetryableEntriesError):
        # Partial failures are nearly always capacity: the cheap, back-off-and-retry kind.
        return ErrorClass(True, "throttle", error.code)
    return classify(error)


class _PartialRun(Generic[E]):
    def __init__(
        self,
        policy: RetryPolicy,
        entries: Sequence[E],
        entry_id: Callable[[E], str],
        operation: str,
        started: float | None = None,
    ) -> None:
        self.total = len(entries)
        self.pending: list[E] = list(entries)
        self.entry_id = entry_id
        # Times each entry was sent, by name. Until a re-send every entry was sent exactly once,
        # so the count is only built when a second attempt starts: a batch that succeeds at once
        # (the common case) never names its entries.
        self.sends: dict[str, int] = {}
        self.first_batch: list[E] | None = None
        self.last_botocore_retries = 0
        self.settled: list[FailedEntry[E]] = []
        self.resent = 0
        self.last_retry: list[FailedEntry[E]] = []
        self.policy = policy
        self.operation = operation
        self.started = policy.clock() if started is None else started
        self._run: Run | None = None

    @property
    def run(self) -> Run:
        """The retry state, built once something failed (a clean first attempt never needs it)."""
        if self._run is None:
            self._run = Run(
                self.policy,
                self.operation,
                classifier=_classify,
                pending_count=lambda: len(self.pending),
                started=self.started,
            )
        return self._run

    def before_send(self) -> list[E]:
        batch = list(self.pending)
        if self.first_batch is None:
            self.first_batch = self.pending  # replaced, never changed, by after_send
            return batch
        if not self.sends:
            entry_id = self.entry_id
            self.sends = {entry_id(entry): 1 for entry in self.first_batch}
        for entry in batch:
            name = self.entry_id(entry)
            count = self.sends.get(name, 0)
            if count:
                self.resent += 1
            self.sends[name] = count + 1
        return batch

    def sent_count(self, name: str, unsent: int) -> int:
        """How often the entry called ``name`` was sent (``unsent`` if it never was)."""
        if not self.sends:
            return unsent if self.first_batch is None else 1
        return self.sends.get(name, unsent)

    def after_send(self, answer: Sequence[FailedEntry[E]] | SendResult[E]) -> None:
        if isinstance(answer, SendResult):
            failures, self.last_botocore_retries = answer.failed, answer.botocore_retries
        else:
            failures, self.last_botocore_retries = answer, 0
        if not failures:
            self.pending = []
            self.last_retry = []
            return
        self._report(failures)
        retry: list[FailedEntry[E]] = []
        for failure in failures:
            failure = replace(failure, attempts=self.sent_count(failure.entry_id, 1))
            (retry if failure.retryable else self.settled).append(failure)
        self.pending = [f.entry for f in retry]
        self.last_retry = retry
        if retry:
            raise _RetryableEntriesError(retry, self.last_botocore_retries)  # type: ignore[arg-type]

    def _report(self, failures: Sequence[FailedEntry[E]]) -> None:
        # One event per code and verdict, so a metric can count failed entries by code without
        # ever naming an entry.
        counts = Counter((f.code, f.retryable) for f in failures)
        attempt = self.run.wire_attempts + 1 + self.last_botocore_retries
        for (code, retryable), entries in counts.items():
            self.run.partial_failure(code, entries, retryable=retryable, attempt=attempt)

    def finish(self, error: BaseException | None) -> PartialOutcome[E]:
        if error is None and self._run is None:
            # Nothing ever failed: one attempt (plus botocore's own), no retry to account for.
            budget = self.policy.budget
            if budget is not None:
                budget.release(budget.success_refund)
            return PartialOutcome(
                total=self.total,
                failed=(),
                attempts=1 + self.last_botocore_retries,
                resent=self.resent,
            )
        if error is None:
            self.run.succeeded()
        elif isinstance(error, _RetryableEntriesError):
            self.settled.extend(replace(f, gave_up=self.run.reason) for f in self.last_retry)
        elif isinstance(error, (ClientError, BotoCoreError)):
            verdict = classify(error)
            self.settled.extend(
                FailedEntry(
                    entry=entry,
                    entry_id=self.entry_id(entry),
                    code=verdict.code,
                    message=str(error),
                    retryable=verdict.retryable,
                    attempts=self.sent_count(self.entry_id(entry), 0),
                    gave_up=self.run.reason if verdict.retryable else None,
                )
                for entry in self.pending
            )
        else:
            raise error
        return PartialOutcome(
            total=self.total,
            failed=tuple(self.settled),
            attempts=self.run.wire_attempts
            + (1 + self.last_botocore_retries if error is None else 0),
            resent=self.resent,
            gave_up=self.run.reason,
        )


def run_partial(
    policy: RetryPolicy,
    send: Callable[[list[E]], Sequence[FailedEntry[E]] | SendResult[E]],
    entries: Sequence[E],
    *,
    entry_id: Callable[[E], str],
    operation: str,
) -> PartialOutcome[E]:
    """Send ``entries`` with ``send`` and re-send only what failed retryably, until settled.

    ``send(batch)`` makes one request and returns the entries of ``batch`` that failed (each a
    :class:`FailedEntry` carrying the caller's entry object), or a :class:`SendResult` that
    also says how often botocore retried the request; everything else in ``batch`` succeeded.
    Entries are told apart by ``entry_id``, which must be unique among ``entries``. Retryable failures are sent again after the policy's backoff; permanent ones are
    settled at once. A retryable error of the whole request re-sends the whole pending set. When
    the policy stops (attempts, elapsed time, deadline, budget), the entries still pending are
    reported with ``gave_up`` set: every entry ends up either succeeded or in ``failed``.
    Exceptions that do not come from botocore (bugs in ``send``) propagate.

    With tracing on, the run is a span named ``operation``; once a request fails entries, each
    request is a child span (``"{operation} attempt"``, its entries and failures counted).
    """
    if tracing._active() is None:
        return _run_partial(policy, send, entries, entry_id, operation)
    attempts = Attempts(operation, {tracing.OPERATION: operation})

    def traced_send(batch: list[E]) -> Sequence[FailedEntry[E]] | SendResult[E]:
        attempts.count += 1
        attributes = {**attempts.numbered(), tracing.ENTRIES: len(batch)}
        if attempts.count > 1:
            with tracing.span(attempts.name, attributes) as span:
                answer = send(batch)
                span.set_attribute(tracing.FAILED, len(_failures(answer)))
                return answer
        start = time.time_ns()
        try:
            answer = send(batch)
        except BaseException as error:
            tracing.span_since(attempts.name, attributes, start, error=error)
            raise
        _first_answered(attempts, attributes, start, answer)
        return answer

    with tracing.span(operation, _run_attributes(operation, entries)) as span:
        outcome = _run_partial(policy, traced_send, entries, entry_id, operation)
        _outcome_attributes(span, outcome)
        return outcome


def _run_partial(
    policy: RetryPolicy,
    send: Callable[[list[E]], Sequence[FailedEntry[E]] | SendResult[E]],
    entries: Sequence[E],
    entry_id: Callable[[E], str],
    operation: str,
) -> PartialOutcome[E]:
    pending = list(entries)
    if not pending:
        return PartialOutcome(total=0, failed=(), attempts=0, resent=0)
    batch = pending.copy()  # send's own: what it does to the list cannot change ours
    # The first attempt runs outside tenacity and without any retry state: when every entry
    # succeeds (the common case) that is all there is. Otherwise the state is built as if the
    # core had made that attempt, and an error (whole-request, or retryable entries) is replayed
    # as the first attempt of the Retrying, so that every retry, event, stop and budget goes
    # through the core exactly as before.
    started = policy.clock()
    try:
        answer = send(batch)
    except BaseException as error:
        return _settle(policy, send, pending, entry_id, operation, started, error, [])
    if isinstance(answer, SendResult):
        failures, retries = answer.failed, answer.botocore_retries
    else:
        failures, retries = answer, 0
    if failures:
        return _settle(policy, send, pending, entry_id, operation, started, None, answer)
    if policy.budget is not None:
        policy.budget.release(policy.budget.success_refund)
    return PartialOutcome(total=len(batch), failed=(), attempts=1 + retries, resent=0)


def _settle(
    policy: RetryPolicy,
    send: Callable[[list[E]], Sequence[FailedEntry[E]] | SendResult[E]],
    entries: list[E],
    entry_id: Callable[[E], str],
    operation: str,
    started: float,
    first_error: BaseException | None,
    first_answer: Sequence[FailedEntry[E]] | SendResult[E],
) -> PartialOutcome[E]:
    """:func:`run_partial` after a first attempt of all ``entries`` that did not settle them."""
    state = _PartialRun(policy, entries, entry_id, operation, started)
    state.first_batch = entries
    if first_error is None:
        try:
            state.after_send(first_answer)
        except BaseException as error:
            first_error = error
        else:
            return state.finish(None)  # only permanent failures: settled at once

    def attempt() -> None:
        state.after_send(send(state.before_send()))

    try:
        state.run.retrying()(_replaying(first_error, attempt))
    except BaseException as error:
        return state.finish(error)
    return state.finish(None)


async def arun_partial(
    policy: RetryPolicy,
    send: Callable[[list[E]], Awaitable[Sequence[FailedEntry[E]] | SendResult[E]]],
    entries: Sequence[E],
    *,
    entry_id: Callable[[E], str],
    operation: str,
) -> PartialOutcome[E]:
    """:func:`run_partial` for an ``async def send``."""
    if tracing._active() is None:
        return await _arun_partial(policy, send, entries, entry_id, operation)
    attempts = Attempts(operation, {tracing.OPERATION: operation})

    async def traced_send(batch: list[E]) -> Sequence[FailedEntry[E]] | SendResult[E]:
        attempts.count += 1
        attributes = {**attempts.numbered(), tracing.ENTRIES: len(batch)}
        if attempts.count > 1:
            with tracing.span(attempts.name, attributes) as span:
                answer = await send(batch)
                span.set_attribute(tracing.FAILED, len(_failures(answer)))
                return answer
        start = time.time_ns()
        try:
            answer = await send(batch)
        except BaseException as error:
            tracing.span_since(attempts.name, attributes, start, error=error)
            raise
        _first_answered(attempts, attributes, start, answer)
        return answer

    with tracing.span(operation, _run_attributes(operation, entries)) as span:
        outcome = await _arun_partial(policy, traced_send, entries, entry_id, operation)
        _outcome_attributes(span, outcome)
        return outcome


async def _arun_partial(
    policy: RetryPolicy,
    send: Callable[[list[E]], Awaitable[Sequence[FailedEntry[E]] | SendResult[E]]],
    entries: Sequence[E],
    entry_id: Callable[[E], str],
    operation: str,
) -> PartialOutcome[E]:
    state = _PartialRun(policy, entries, entry_id, operation)
    if not state.pending:
        return PartialOutcome(total=0, failed=(), attempts=0, resent=0)

    try:  # the first attempt outside tenacity, as in run_partial
        state.after_send(await send(state.before_send()))
    except BaseException as error:
        first_error: BaseException = error
    else:
        return state.finish(None)

    async def attempt() -> None:
        state.after_send(await send(state.before_send()))

    try:
        await state.run.async_retrying()(_areplaying(first_error, attempt))
    except BaseException as error:
        return state.finish(error)
    return state.finish(None)


# -- spans (tracing on only): the run, and a child per request -----------------------------------


def _run_attributes(operation: str, entries: Sequence[E]) -> dict[str, object]:
    return {tracing.OPERATION: operation, tracing.ENTRIES: len(entries)}


def _first_answered(
    attempts: Attempts,
    attributes: dict[str, object],
    start_ns: int,
    answer: Sequence[FailedEntry[E]] | SendResult[E],
) -> None:
    """The first request gets a span of its own only if some of its entries failed (then the
    others follow): a batch that succeeds at once stays one span."""
    failed = len(_failures(answer))
    if failed:
        tracing.span_since(attempts.name, attributes, start_ns, failed=failed)


def _failures(answer: Sequence[FailedEntry[E]] | SendResult[E]) -> Sequence[FailedEntry[E]]:
    return answer.failed if isinstance(answer, SendResult) else answer


def _outcome_attributes(span: tracing.SpanLike, outcome: PartialOutcome[E]) -> None:
    span.set_attributes({tracing.ATTEMPTS: outcome.attempts, tracing.FAILED: len(outcome.failed)})

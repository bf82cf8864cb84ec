"""What the retry core tells the world: stdlib logging and optional listeners for metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal

from resilient_aws import tracing
from resilient_aws._dataclass import lean_dataclass

__all__ = ["RetryEvent", "RetryListener", "add_listener", "emit", "remove_listener"]

logger = logging.getLogger("resilient_aws.retry")

EventKind = Literal["retry", "give_up", "budget_refused", "recovered", "partial_failure"]


@lean_dataclass(frozen=True)
class RetryEvent:
    """One thing the retry core did.

    ``kind`` is ``"retry"`` (about to sleep ``delay`` then try again), ``"recovered"`` (succeeded
    after retrying), ``"give_up"`` (stopped; ``reason`` says why), ``"budget_refused"``, or
    ``"partial_failure"``: a batch response reported ``entries`` entries failed with
    ``error_code`` (one event per code), which will be sent again if ``retryable`` and are
    settled as failed if not. For the other kinds ``entries`` counts the entries still pending
    for per-entry retries (0 for a whole call) and ``retryable`` is ``None``.

    Every field is low-cardinality (no entry ids, no payloads): safe as a metric dimension.
    The same fields travel on the log records as ``extra={"retry_event": {...}}``.
    """

    kind: EventKind
    operation: str
    attempt: int
    delay: float = 0.0
    error_code: str | None = None
    reason: str | None = None
    entries: int = 0
    retryable: bool | None = None

    def fields(self) -> dict[str, Any]:
        """The event as a dict without the fields that are ``None`` (for structured logs)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


RetryListener = Callable[[RetryEvent], None]

_listeners: tuple[RetryListener, ...] = ()
_listeners_lock = threading.Lock()


def add_listener(listener: RetryListener) -> None:
    """Call ``listener`` with every :class:`RetryEvent` of every policy (e.g. to emit metrics)."""
    global _listeners
    with _listeners_lock:
        _listeners = (*_listeners, listener)


def remove_listener(listener: RetryListener) -> None:
    """Stop calling a listener added with :func:`add_listener`."""
    global _listeners
    with _listeners_lock:
        _listeners = tuple(x for x in _listeners if x is not listener)


def emit(event: RetryEvent, listeners: Iterable[RetryListener] = ()) -> None:
    """Report ``event`` as the retry core reports its own: logged on the ``resilient_aws.retry``
    logger, then given to every listener added with :func:`add_listener` and to ``listeners``
    (those of one policy, say: ``emit(event, policy.listeners)``), and added as an event
    named ``event.kind`` to the current OpenTelemetry span, if one is recording
    (:mod:`resilient_aws.tracing`).

    For code that retries outside the core (a consumer reporting the records it hands back to
    the queue) and wants the same logs and metrics. Never raises an ``Exception``: a listener
    that raises is logged and skipped, and a logging setup that raises (a handler, a filter)
    costs the log line, not the caller's work.

    >>> from resilient_aws.retry import RetryEvent, emit
    >>> seen = []
    >>> emit(RetryEvent(kind="retry", operation="Charge", attempt=1, delay=0.2), [seen.append])
    >>> seen[0].kind
    'retry'
    """
    try:
        _log(event)
    except Exception as error:
        _logging_failed(error)
    for listener in (*_listeners, *listeners):
        try:
            listener(event)
        except Exception:  # a broken metrics hook must not break the call it observes
            try:
                logger.exception("retry listener %r failed", listener)
            except Exception as error:
                _logging_failed(error)
    if tracing.recording():  # never raises, nor does add_event
        tracing.add_event(event.kind, _span_attributes(event))


def _span_attributes(event: RetryEvent) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        # as the logs and metrics name it (the span names the call its own way)
        "resilient_aws.operation": event.operation,
        tracing.ATTEMPT: event.attempt,
        tracing.ERROR_TYPE: event.error_code,
        "resilient_aws.retry.reason": event.reason,
        "resilient_aws.retryable": event.retryable,
    }
    if event.kind == "retry":
        attributes["resilient_aws.retry.delay_s"] = event.delay
    if event.entries:
        attributes[tracing.ENTRIES] = event.entries
    return attributes


def _logging_failed(error: Exception) -> None:
    # nowhere left to say it but stderr, and that may be gone too
    with contextlib.suppress(Exception):
        sys.stderr.write(f"resilient_aws.retry: logging failed ({type(error).__name__})\n")


def _log(event: RetryEvent) -> None:
    if event.kind in ("retry", "recovered") or (
        event.kind == "partial_failure" and event.retryable
    ):
        level = logging.DEBUG
    else:
        level = logging.WARNING
    if not logger.isEnabledFor(level):
        return  # the common case in production: skip building the message and the fields
    # The fields ride along as one ``extra`` key: a JSON formatter (Powertools Logger) prints
    # them as an object, and no name can clash with a LogRecord attribute or a user's own key.
    extra = {"retry_event": event.fields()}
    if event.kind == "retry":
        pending = f", {event.entries} entries pending" if event.entries else ""
        logger.log(
            level,
            "%s: attempt %d failed (%s), retrying in %.3fs%s",
            event.operation,
            event.attempt,
            event.error_code,
            event.delay,
            pending,
            extra=extra,
        )
    elif event.kind == "recovered":
        logger.log(
            level, "%s: succeeded after %d attempts", event.operation, event.attempt, extra=extra
        )
    elif event.kind == "partial_failure":
        logger.log(
            level,
            "%s: %d entries failed (%s) in attempt %d, %s",
            event.operation,
            event.entries,
            event.error_code,
            event.attempt,
            "to be sent again" if event.retryable else "not retryable",
            extra=extra,
        )
    else:
        undone = f", {event.entries} entries not done" if event.entries else ""
        logger.log(
            level,
            "%s: gave up after %d attempt(s): %s (last error %s)%s",
            event.operation,
            event.attempt,
            event.reason,
            event.error_code,
            undone,
            extra=extra,
        )

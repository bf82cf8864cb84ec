"""What the retry core tells the world: stdlib logging and optional listeners for metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["RetryEvent", "RetryListener", "add_listener", "remove_listener"]

logger = logging.getLogger("resilient_aws.retry")

EventKind = Literal["retry", "give_up", "budget_refused", "recovered"]


@dataclass(frozen=True)
class RetryEvent:
    """One thing the retry core did.

    ``kind`` is ``"retry"`` (about to sleep ``delay`` then try again), ``"recovered"`` (succeeded
    after retrying), ``"give_up"`` (stopped; ``reason`` says why) or ``"budget_refused"``.
    ``entries`` counts the entries still pending for per-entry retries (0 for a whole call).
    """

    kind: EventKind
    operation: str
    attempt: int
    delay: float = 0.0
    error_code: str | None = None
    reason: str | None = None
    entries: int = 0


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


def emit(event: RetryEvent, extra: tuple[RetryListener, ...] = ()) -> None:
    if event.kind == "retry":
        logger.debug(
            "%s: attempt %d failed (%s), retrying in %.3fs%s",
            event.operation,
            event.attempt,
            event.error_code,
            event.delay,
            f", {event.entries} entries pending" if event.entries else "",
        )
    elif event.kind == "recovered":
        logger.debug("%s: succeeded after %d attempts", event.operation, event.attempt)
    else:
        logger.warning(
            "%s: gave up after %d attempt(s): %s (last error %s)%s",
            event.operation,
            event.attempt,
            event.reason,
            event.error_code,
            f", {event.entries} entries not done" if event.entries else "",
        )
    for listener in (*_listeners, *extra):
        try:
            listener(event)
        except Exception:  # a broken metrics hook must not break the call it observes
            logger.exception("retry listener %r failed", listener)

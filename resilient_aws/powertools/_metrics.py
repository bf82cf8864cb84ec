"""Retry-core events as CloudWatch metrics, serialized to EMF by Powertools Metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import ContextDecorator
from typing import TYPE_CHECKING, Literal

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import RetryEvent, add_listener, remove_listener

if TYPE_CHECKING:
    from types import TracebackType

    from aws_lambda_powertools.metrics import Metrics

__all__ = ["DIMENSIONS", "METRICS", "Dimension", "PowertoolsMetricsListener"]


Dimension = Literal["operation", "error_code", "reason"]
DIMENSIONS: tuple[Dimension, ...] = ("operation", "error_code", "reason")

# Metric name -> (unit, what it counts). The names are the contract with users' dashboards.
METRICS: dict[str, tuple[MetricUnit, str]] = {
    "RetryAttempt": (MetricUnit.Count, "retries: a failed attempt followed by a backoff sleep"),
    "RetryDelay": (MetricUnit.Seconds, "seconds slept in backoff before retries"),
    "RetryRecovered": (MetricUnit.Count, "calls or batches that succeeded after retrying"),
    "RetryGiveUp": (MetricUnit.Count, "calls or batches the core stopped retrying"),
    "RetryGiveUpEntries": (MetricUnit.Count, "entries still pending when the core gave up"),
    "RetryBudgetRefused": (MetricUnit.Count, "retries refused by an empty RetryBudget"),
    "PartialFailureEntries": (
        MetricUnit.Count,
        "entries a batch response reported as failed, retryable or not",
    ),
    "PermanentFailureEntries": (
        MetricUnit.Count,
        "entries a batch response failed with a non-retryable error (never re-sent)",
    ),
}

_Key = tuple[tuple[str, str], ...]


class PowertoolsMetricsListener:
    """A :data:`~resilient_aws.retry.RetryListener` that counts retry events as EMF metrics.

    ``metrics`` is your Powertools ``Metrics`` (or ``EphemeralMetrics``): its namespace (unless
    ``namespace`` is given), ``service`` and default dimensions are reused. Events are summed
    per metric and per ``dimensions`` (any of ``"operation"``, ``"error_code"``, ``"reason"``;
    a dimension an event does not carry is left out) and written by :meth:`flush` as one EMF
    blob per combination, through Powertools' serializer, to stdout where Lambda ships it to
    CloudWatch. EMF gives a blob one set of dimension values, which is why these metrics do not
    go into ``metrics``' own blob. Dimension values are operation names, error codes and give-up
    reasons: never entry ids or payloads.

    Install it for every policy with :func:`~resilient_aws.retry.add_listener`, or on one policy
    (``RetryPolicy(listeners=(listener,))``); then flush at the end of each invocation, which
    ``@listener.capture()`` (or ``with listener.capture():``) does for you. With
    ``buffered=False`` every event is written at once (one line per event, nothing to flush).
    Thread-safe: batch writers report from their worker threads.

    The metrics are listed in :data:`METRICS`.
    """

    def __init__(
        self,
        metrics: Metrics | EphemeralMetrics,
        *,
        namespace: str | None = None,
        dimensions: Iterable[Dimension] = ("operation",),
        buffered: bool = True,
    ) -> None:
        if isinstance(dimensions, str):
            raise ConfigurationError("dimensions", f"must be a tuple of names, got {dimensions!r}")
        chosen = tuple(dimensions)
        unknown = [d for d in chosen if d not in DIMENSIONS]
        if unknown or len(set(chosen)) != len(chosen):
            raise ConfigurationError(
                "dimensions", f"must be distinct names among {DIMENSIONS}, got {chosen!r}"
            )
        resolved: str | None = namespace or metrics.namespace
        if not resolved:
            raise ConfigurationError(
                "namespace",
                "neither given nor set on the Metrics (namespace=... or "
                "POWERTOOLS_METRICS_NAMESPACE)",
            )
        self.metrics = metrics
        self.namespace: str = resolved
        self.dimensions: tuple[Dimension, ...] = chosen
        self.buffered = buffered
        self._pending: dict[_Key, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._installed = 0

    # -- the listener ---------------------------------------------------------------------------

    def __call__(self, event: RetryEvent) -> None:
        counted = _count(event)
        if not counted:
            return
        key = tuple(
            (name, str(value))
            for name in self.dimensions
            if (value := getattr(event, name)) is not None
        )
        with self._lock:
            values = self._pending.setdefault(key, {})
            for name, amount in counted:
                values[name] = values.get(name, 0.0) + amount
        if not self.buffered:
            self.flush()

    def flush(self) -> None:
        """Write what was counted since the last flush as EMF, and start counting afresh.

        Honours ``POWERTOOLS_METRICS_DISABLED`` as Powertools does. Nothing is written when
        nothing was counted.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, values in pending.items():
            blob = EphemeralMetrics(
                namespace=self.namespace,
                service=self.metrics.service,
                default_dimensions=dict(self.metrics.default_dimensions),
            )
            for name, value in key:
                blob.add_dimension(name=name, value=value)
            for metric, amount in values.items():
                blob.add_metric(name=metric, unit=METRICS[metric][0], value=amount)
            blob.flush_metrics()

    # -- one invocation -------------------------------------------------------------------------

    def capture(self, *, install: bool = True) -> _Capture:
        """A context manager and decorator that flushes at the end of the block or call.

        With ``install`` (the default) it also adds the listener for every policy on entry and
        removes it on exit (nesting is counted, the listener is never added twice). Pass
        ``install=False`` when the listener is already on your policy or added for good, or
        its events would be counted twice. The flush happens whether the handler returns or
        raises.
        """
        return _Capture(self, install)

    def _install(self) -> None:
        with self._lock:
            self._installed += 1
            first = self._installed == 1
        if first:
            add_listener(self)

    def _uninstall(self) -> None:
        with self._lock:
            self._installed -= 1
            last = self._installed == 0
        if last:
            remove_listener(self)

    def __repr__(self) -> str:
        return (
            f"PowertoolsMetricsListener(namespace={self.namespace!r}, "
            f"dimensions={self.dimensions!r}, buffered={self.buffered!r})"
        )


class _Capture(ContextDecorator):
    """What :meth:`PowertoolsMetricsListener.capture` returns."""

    def __init__(self, listener: PowertoolsMetricsListener, install: bool) -> None:
        self.listener = listener
        self.install = install

    def __enter__(self) -> PowertoolsMetricsListener:
        if self.install:
            self.listener._install()
        return self.listener

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.install:
                self.listener._uninstall()
        finally:
            self.listener.flush()


def _count(event: RetryEvent) -> list[tuple[str, float]]:
    """The metrics one event adds to, and by how much."""
    if event.kind == "retry":
        return [("RetryAttempt", 1.0), ("RetryDelay", event.delay)]
    if event.kind == "give_up":
        counted = [("RetryGiveUp", 1.0)]
        if event.entries:
            counted.append(("RetryGiveUpEntries", float(event.entries)))
        return counted
    if event.kind == "partial_failure":
        counted = [("PartialFailureEntries", float(event.entries))]
        if event.retryable is False:
            counted.append(("PermanentFailureEntries", float(event.entries)))
        return counted
    # A kind added to the core later is not a metric until someone names it here.
    single = _SINGLE.get(event.kind)
    return [(single, 1.0)] if single else []


_SINGLE = {"recovered": "RetryRecovered", "budget_refused": "RetryBudgetRefused"}

"""PowertoolsMetricsListener and attach_logger with Powertools' real Metrics and Logger."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, Metrics

from resilient_aws.errors import AttemptsExhaustedError, ConfigurationError
from resilient_aws.powertools import METRICS, PowertoolsMetricsListener, attach_logger
from resilient_aws.retry import FailedEntry, RetryBudget, RetryEvent, add_listener, run_partial
from resilient_aws.retry._events import emit
from resilient_aws.testing import FakeClock
from tests.unit.helpers import Flaky, client_error


def emf_blobs(out: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed, each checked against the EMF shape."""
    blobs = []
    for line in out.splitlines():
        blob = json.loads(line)
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(blob[name], str) and blob[name]
        for metric in directive["Metrics"]:
            assert metric["Unit"] == METRICS[metric["Name"]][0].value
        blobs.append(blob)
    return blobs


def by_dimensions(
    blobs: list[dict[str, Any]],
) -> dict[tuple[tuple[str, str], ...], dict[str, float]]:
    """{sorted (dimension, value) pairs: {metric: summed value}} over every blob."""
    table: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for blob in blobs:
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        key = tuple(sorted((d, blob[d]) for d in directive["Dimensions"][0]))
        values = table.setdefault(key, {})
        for metric in directive["Metrics"]:
            name = metric["Name"]
            values[name] = values.get(name, 0.0) + sum(blob[name])
    return table


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> EphemeralMetrics:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    return EphemeralMetrics(namespace="Shop", service="orders")


def _partial_send(rounds: list[set[str]], poison: frozenset[str] = frozenset()) -> Any:
    def send(batch: list[str]) -> list[FailedEntry[str]]:
        failing = rounds.pop(0) if rounds else set()
        return [
            FailedEntry(e, e, "ValidationError", retryable=False)
            if e in poison
            else FailedEntry(e, e, "Unprocessed", retryable=True)
            for e in batch
            if e in poison or e in failing
        ]

    return send


def test_retries_recoveries_and_give_ups_become_emf_metrics_per_operation(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics)
    policy = fake_clock.policy(max_attempts=3, listeners=(listener,))
    policy.call(Flaky(client_error("Throttling"), client_error("Throttling")))
    with pytest.raises(AttemptsExhaustedError):
        policy.call(Flaky(*[client_error("InternalError", 500)] * 3))
    outcome = run_partial(
        policy,
        _partial_send([{"a", "b"}, {"a"}], poison=frozenset({"p"})),
        ["a", "b", "c", "p"],
        entry_id=str,
        operation="BatchWriteItem",
    )
    assert [f.entry_id for f in outcome.failed] == ["p"]
    assert capsys.readouterr().out == ""  # buffered until the flush

    listener.flush()
    blobs = emf_blobs(capsys.readouterr().out)
    assert {b["_aws"]["CloudWatchMetrics"][0]["Namespace"] for b in blobs} == {"Shop"}
    table = by_dimensions(blobs)
    flaky = table[(("operation", "flaky"), ("service", "orders"))]
    assert flaky["RetryAttempt"] == 4  # 2 before recovering, 2 before giving up
    assert flaky["RetryRecovered"] == 1
    assert flaky["RetryGiveUp"] == 1
    assert flaky["RetryDelay"] == pytest.approx(fake_clock.total_slept - _slept_by_batch(table))
    assert "RetryGiveUpEntries" not in flaky  # a whole call has no entries
    batch = table[(("operation", "BatchWriteItem"), ("service", "orders"))]
    assert batch["PartialFailureEntries"] == 4  # a, b, p, then a again
    assert batch["PermanentFailureEntries"] == 1
    assert batch["RetryAttempt"] == 2
    assert batch["RetryRecovered"] == 1
    assert len(table) == 2

    listener.flush()  # nothing new: nothing written, not even Powertools' empty warning
    assert capsys.readouterr().out == ""


def _slept_by_batch(table: dict[tuple[tuple[str, str], ...], dict[str, float]]) -> float:
    return table[(("operation", "BatchWriteItem"), ("service", "orders"))]["RetryDelay"]


def test_entries_left_undone_and_budget_refusals_are_counted(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics, dimensions=("operation", "reason"))
    policy = fake_clock.policy(max_attempts=2, listeners=(listener,))
    run_partial(
        policy, _partial_send([{"a", "b"}] * 5), ["a", "b", "c"], entry_id=str, operation="Put"
    )
    refused = fake_clock.policy(budget=RetryBudget(0), listeners=(listener,))
    run_partial(refused, _partial_send([{"a"}] * 5), ["a"], entry_id=str, operation="Put")
    listener.flush()
    table = by_dimensions(emf_blobs(capsys.readouterr().out))
    attempts = table[(("operation", "Put"), ("reason", "attempts"), ("service", "orders"))]
    assert attempts == {"RetryGiveUp": 1, "RetryGiveUpEntries": 2}
    budget = table[(("operation", "Put"), ("reason", "budget"), ("service", "orders"))]
    assert budget == {"RetryBudgetRefused": 1, "RetryGiveUp": 1, "RetryGiveUpEntries": 1}
    # events without a reason keep the dimensions they have
    plain = table[(("operation", "Put"), ("service", "orders"))]
    assert plain["PartialFailureEntries"] == 2 + 2 + 1
    assert plain["RetryAttempt"] == 1


def test_error_codes_as_a_dimension_split_the_blobs(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics, dimensions=("error_code",))
    run_partial(
        fake_clock.policy(listeners=(listener,)),
        _partial_send([{"a"}], poison=frozenset({"p"})),
        ["a", "p"],
        entry_id=str,
        operation="Put",
    )
    listener.flush()
    table = by_dimensions(emf_blobs(capsys.readouterr().out))
    assert table[(("error_code", "ValidationError"), ("service", "orders"))] == {
        "PartialFailureEntries": 1,
        "PermanentFailureEntries": 1,
    }
    unprocessed = table[(("error_code", "Unprocessed"), ("service", "orders"))]
    assert unprocessed["PartialFailureEntries"] == 1
    assert unprocessed["RetryAttempt"] == 1


def test_namespace_service_and_default_dimensions_come_from_the_metrics(
    fake_clock: FakeClock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    metrics = Metrics(namespace="Shop", service="payments")
    metrics.set_default_dimensions(environment="prod")
    try:
        listener = PowertoolsMetricsListener(metrics, namespace="ShopRetries")
        fake_clock.policy(listeners=(listener,)).call(Flaky(client_error("Throttling")))
        listener.flush()
    finally:
        metrics.clear_default_dimensions()  # Metrics share their state across instances
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ShopRetries"
    assert sorted(blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == [
        "environment",
        "operation",
        "service",
    ]
    assert (blob["environment"], blob["service"], blob["operation"]) == (
        "prod",
        "payments",
        "flaky",
    )
    assert blob["RetryAttempt"] == [1.0]
    # the user's own metric set is untouched
    assert metrics.metric_set == {}


def test_unbuffered_writes_each_event_at_once(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics, buffered=False)
    fake_clock.policy(listeners=(listener,)).call(Flaky(client_error("Throttling")))
    blobs = emf_blobs(capsys.readouterr().out)
    assert [sorted(k for k in b if k[0].isupper()) for b in blobs] == [
        ["RetryAttempt", "RetryDelay"],
        ["RetryRecovered"],
    ]


def test_capture_installs_for_one_invocation_and_flushes_even_on_error(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics)
    policy = fake_clock.policy(max_attempts=2)

    @listener.capture()
    def handler(fail: bool) -> str:
        with listener.capture():  # nested: still installed once, counted once
            return str(policy.call(Flaky(*[client_error("Throttling")] * (2 if fail else 1))))

    assert handler(False) == "ok"
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["RetryAttempt"] == [1.0]
    assert blob["RetryRecovered"] == [1.0]

    with pytest.raises(AttemptsExhaustedError):
        handler(True)
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["RetryGiveUp"] == [1.0]

    policy.call(Flaky(client_error("Throttling")))  # outside any invocation: not listened to
    listener.flush()
    assert capsys.readouterr().out == ""


def test_capture_without_install_for_a_listener_on_the_policy(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics)
    policy = fake_clock.policy(listeners=(listener,))
    with listener.capture(install=False) as same:
        assert same is listener
        policy.call(Flaky(client_error("Throttling")))
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["RetryAttempt"] == [1.0]  # not twice


def test_metrics_disabled_by_powertools_env_write_nothing(
    fake_clock: FakeClock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    listener = PowertoolsMetricsListener(EphemeralMetrics(namespace="Shop"))
    with listener.capture():
        fake_clock.policy().call(Flaky(client_error("Throttling")))
    assert capsys.readouterr().out == ""


def test_counts_from_many_threads_add_up(
    metrics: EphemeralMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = PowertoolsMetricsListener(metrics)
    event = RetryEvent(
        "partial_failure", "PutRecords", 1, error_code="X", entries=3, retryable=True
    )

    def report() -> None:
        for _ in range(500):
            listener(event)

    threads = [threading.Thread(target=report) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listener.flush()
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["PartialFailureEntries"] == [8 * 500 * 3.0]


def test_a_listener_added_for_good_sees_every_policy(
    metrics: EphemeralMetrics, fake_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    from resilient_aws.retry import remove_listener

    listener = PowertoolsMetricsListener(metrics)
    add_listener(listener)
    try:
        fake_clock.policy().call(Flaky(client_error("Throttling")))
        emit(RetryEvent("recovered", "elsewhere", 2))
    finally:
        remove_listener(listener)
    listener.flush()
    table = by_dimensions(emf_blobs(capsys.readouterr().out))
    assert set(table) == {
        (("operation", "flaky"), ("service", "orders")),
        (("operation", "elsewhere"), ("service", "orders")),
    }


@pytest.mark.parametrize(
    ("dimensions", "field"),
    [
        (("operation", "entry_id"), "dimensions"),
        (("operation", "operation"), "dimensions"),
        ("operation", "dimensions"),
    ],
)
def test_bad_dimensions_are_refused(metrics: EphemeralMetrics, dimensions: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PowertoolsMetricsListener(metrics, dimensions=dimensions)
    assert caught.value.field == field


def test_a_namespace_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        PowertoolsMetricsListener(EphemeralMetrics())
    assert caught.value.field == "namespace"
    assert PowertoolsMetricsListener(EphemeralMetrics(), namespace="X").namespace == "X"
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FromEnv")
    assert PowertoolsMetricsListener(EphemeralMetrics()).namespace == "FromEnv"


# -- Logger -------------------------------------------------------------------------------------


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    """The library logger, restored afterwards: attach_logger changes process-wide state."""
    library = logging.getLogger("resilient_aws")
    saved = (list(library.handlers), library.propagate, library.level)
    yield library
    library.handlers, library.propagate = saved[0], saved[1]
    library.setLevel(saved[2])


def test_attach_logger_makes_the_core_logs_powertools_json(
    library_logger: logging.Logger, fake_clock: FakeClock
) -> None:
    stream = io.StringIO()
    logger = Logger(service=f"orders-{uuid.uuid4().hex[:8]}", stream=stream, level="INFO")
    attach_logger(logger)
    assert library_logger.propagate is False
    assert library_logger.level == logging.INFO
    with pytest.raises(AttemptsExhaustedError):
        fake_clock.policy(max_attempts=2).call(Flaky(*[client_error("Throttling")] * 2))
    run_partial(
        fake_clock.policy(),
        _partial_send([], poison=frozenset({"customer-4711"})),
        ["a", "customer-4711"],
        entry_id=str,
        operation="SendMessageBatch",
    )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # retries are DEBUG: below the Logger's level; the give-up and the permanent failure show
    assert [line["level"] for line in lines] == ["WARNING", "WARNING"]
    give_up, permanent = lines
    assert give_up["service"] == logger.service
    assert give_up["name"] == "resilient_aws.retry"
    assert give_up["retry_event"] == {
        "kind": "give_up",
        "operation": "flaky",
        "attempt": 2,
        "delay": 0.0,
        "error_code": "Throttling",
        "reason": "attempts",
        "entries": 0,
    }
    assert "gave up after 2 attempt(s)" in give_up["message"]
    assert permanent["retry_event"]["kind"] == "partial_failure"
    assert permanent["retry_event"]["entries"] == 1
    assert "customer-4711" not in stream.getvalue()  # entries are counted, never named


def test_attach_logger_level_override(
    library_logger: logging.Logger, fake_clock: FakeClock
) -> None:
    stream = io.StringIO()
    logger = Logger(service=f"orders-{uuid.uuid4().hex[:8]}", stream=stream, level="INFO")
    attach_logger(logger, level="DEBUG")
    fake_clock.policy().call(Flaky(client_error("Throttling")))
    kinds = [json.loads(line)["retry_event"]["kind"] for line in stream.getvalue().splitlines()]
    assert kinds == ["retry", "recovered"]

"""What the retry core reports about per-entry partial failures, to listeners and to logs."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import pytest

from resilient_aws.retry import FailedEntry, RetryBudget, RetryEvent, run_partial
from resilient_aws.testing import FakeClock
from tests.unit.helpers import client_error


class ScriptedBatchApi:
    """Fails the entries named for each call (code, retryable); ``poison`` always fails."""

    def __init__(
        self, rounds: list[dict[str, tuple[str, bool]]], poison: frozenset[str] = frozenset()
    ):
        self.rounds = list(rounds)
        self.poison = poison
        self.reported: Counter[tuple[str, bool]] = Counter()

    def send(self, batch: list[str]) -> list[FailedEntry[str]]:
        failing = self.rounds.pop(0) if self.rounds else {}
        failed = []
        for entry in batch:
            if entry in self.poison:
                failed.append(FailedEntry(entry, entry, "ValidationError", retryable=False))
            elif entry in failing:
                code, retryable = failing[entry]
                failed.append(FailedEntry(entry, entry, code, retryable=retryable))
        self.reported.update((f.code, f.retryable) for f in failed)
        return failed


def _run(
    clock: FakeClock, api: ScriptedBatchApi, entries: list[str], **policy: object
) -> list[RetryEvent]:
    seen: list[RetryEvent] = []
    run_partial(
        clock.policy(listeners=(seen.append,), **policy),  # type: ignore[arg-type]
        api.send,
        entries,
        entry_id=str,
        operation="PutRecords",
    )
    return seen


def test_each_response_with_failures_is_reported_once_per_code_and_verdict(
    fake_clock: FakeClock,
) -> None:
    api = ScriptedBatchApi(
        [
            {"a": ("Throttled", True), "b": ("Throttled", True), "c": ("InternalFailure", True)},
            {"a": ("Throttled", True)},
        ],
        poison=frozenset({"p"}),
    )
    seen = _run(fake_clock, api, ["a", "b", "c", "d", "p"])
    partial = [e for e in seen if e.kind == "partial_failure"]
    assert [(e.error_code, e.entries, e.retryable, e.attempt) for e in partial] == [
        ("Throttled", 2, True, 1),
        ("InternalFailure", 1, True, 1),
        ("ValidationError", 1, False, 1),
        ("Throttled", 1, True, 2),
    ]
    # every failure the service reported is in exactly one event
    reported = Counter[tuple[str, bool]]()
    for e in partial:
        assert e.error_code is not None and e.retryable is not None
        reported[(e.error_code, e.retryable)] += e.entries
    assert reported == api.reported
    assert all(e.operation == "PutRecords" for e in seen)
    # the failures come before the retry they cause
    assert [e.kind for e in seen] == [
        "partial_failure",
        "partial_failure",
        "partial_failure",
        "retry",
        "partial_failure",
        "retry",
        "recovered",
    ]
    assert seen[3].entries == 3  # a, b, c pending


def test_only_permanent_failures_are_reported_without_a_retry(fake_clock: FakeClock) -> None:
    api = ScriptedBatchApi([], poison=frozenset({"p", "q"}))
    seen = _run(fake_clock, api, ["a", "p", "q"])
    assert [(e.kind, e.entries, e.retryable) for e in seen] == [("partial_failure", 2, False)]


def test_a_clean_batch_reports_nothing(fake_clock: FakeClock) -> None:
    assert _run(fake_clock, ScriptedBatchApi([]), ["a", "b"]) == []


def test_give_up_names_the_entries_left_undone(fake_clock: FakeClock) -> None:
    api = ScriptedBatchApi([{"a": ("Throttled", True), "b": ("Throttled", True)}] * 3)
    seen = _run(fake_clock, api, ["a", "b", "c"], max_attempts=3)
    give_up = [e for e in seen if e.kind == "give_up"]
    assert len(give_up) == 1
    assert (give_up[0].entries, give_up[0].reason, give_up[0].attempt) == (2, "attempts", 3)
    assert sum(e.entries for e in seen if e.kind == "partial_failure") == 6


def test_a_budget_refusal_is_reported_before_the_give_up(fake_clock: FakeClock) -> None:
    api = ScriptedBatchApi([{"a": ("Throttled", True)}] * 5)
    seen = _run(fake_clock, api, ["a"], budget=RetryBudget(0))
    assert [e.kind for e in seen] == ["partial_failure", "budget_refused", "give_up"]
    assert seen[-1].reason == "budget"


def test_a_whole_request_error_is_a_retry_not_a_partial_failure(fake_clock: FakeClock) -> None:
    errors = [client_error("ProvisionedThroughputExceededException")]
    seen: list[RetryEvent] = []

    def send(batch: list[str]) -> list[FailedEntry[str]]:
        if errors:
            raise errors.pop()
        return []

    run_partial(
        fake_clock.policy(listeners=(seen.append,)),
        send,
        ["a", "b"],
        entry_id=str,
        operation="BatchWriteItem",
    )
    assert [(e.kind, e.entries) for e in seen] == [("retry", 2), ("recovered", 0)]


def test_log_records_carry_the_event_fields(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_aws")
    api = ScriptedBatchApi([{"a": ("Throttled", True)}], poison=frozenset({"p"}))
    seen = _run(fake_clock, api, ["a", "p"])
    records = [r for r in caplog.records if r.name == "resilient_aws.retry"]
    fields = [r.__dict__["retry_event"] for r in records]
    assert fields == [e.fields() for e in seen]
    assert fields[0] == {
        "kind": "partial_failure",
        "operation": "PutRecords",
        "attempt": 1,
        "delay": 0.0,
        "error_code": "Throttled",
        "entries": 1,
        "retryable": True,
    }
    # a permanent per-entry failure is a warning: those entries are not sent again
    assert [r.levelno for r in records] == [
        logging.DEBUG,
        logging.WARNING,
        logging.DEBUG,
        logging.DEBUG,
    ]
    assert (
        "1 entries failed (ValidationError) in attempt 1, not retryable" in records[1].getMessage()
    )


def test_events_stay_constructible_as_before() -> None:
    event = RetryEvent("retry", "op", 2, 0.5, "Throttling")
    assert event.retryable is None
    assert event.fields() == {
        "kind": "retry",
        "operation": "op",
        "attempt": 2,
        "delay": 0.5,
        "error_code": "Throttling",
        "entries": 0,
    }
    assert dataclasses.replace(event, kind="give_up", reason="deadline").reason == "deadline"


def test_listeners_hear_everything_when_the_logger_is_silenced(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="resilient_aws")
    api = ScriptedBatchApi([{"a": ("Throttled", True)}] * 2, poison=frozenset({"p"}))
    seen = _run(fake_clock, api, ["a", "p"], max_attempts=2)
    assert [e.kind for e in seen] == [
        "partial_failure",
        "partial_failure",
        "retry",
        "partial_failure",
        "give_up",
    ]
    assert not [r for r in caplog.records if r.name == "resilient_aws.retry"]

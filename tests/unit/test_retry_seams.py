"""The retry core's public seams for code that backs off or reports outside it: ``backoff_delay``
(the one jittered exponential formula, without tenacity) and ``emit`` (logs and listeners)."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_aws.consumer import VisibilityBackoff
from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import (
    JITTERS,
    Jitter,
    RetryEvent,
    RetryPolicy,
    add_listener,
    backoff_delay,
    emit,
    remove_listener,
    wait_jittered,
)
from tests.unit.helpers import client_error

# -- backoff_delay --------------------------------------------------------------------------

bases = st.floats(min_value=0.0, max_value=2.0)
caps = st.floats(min_value=0.0, max_value=60.0)
attempts = st.integers(min_value=1, max_value=500)
seeds = st.integers(0, 2**32)


def _ceiling(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** min(attempt - 1, 64))


@given(base=bases, cap=caps, attempt=attempts, seed=seeds)
def test_full_jitter_is_between_zero_and_the_capped_exponential(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, jitter="full", rng=random.Random(seed))
    assert 0.0 <= delay <= _ceiling(attempt, base, cap)


@given(base=bases, cap=caps, attempt=attempts, seed=seeds)
def test_equal_jitter_keeps_at_least_half_the_capped_exponential(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, jitter="equal", rng=random.Random(seed))
    ceiling = _ceiling(attempt, base, cap)
    assert ceiling / 2 <= delay <= ceiling


@given(base=bases, cap=caps, attempt=attempts, previous=st.floats(0.0, 100.0), seed=seeds)
def test_decorrelated_jitter_grows_from_the_previous_delay_up_to_the_cap(
    base: float, cap: float, attempt: int, previous: float, seed: int
) -> None:
    delay = backoff_delay(
        attempt,
        base=base,
        cap=cap,
        jitter="decorrelated",
        rng=random.Random(seed),
        previous=previous,
    )
    assert min(base, cap) <= delay <= cap
    assert delay <= max(base, (previous or base) * 3)


@given(base=bases, cap=caps, attempt=attempts, seed=seeds)
def test_no_jitter_is_the_capped_exponential_and_draws_nothing(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    rng = random.Random(seed)
    state = rng.getstate()
    assert backoff_delay(attempt, base=base, cap=cap, jitter="none", rng=rng) == _ceiling(
        attempt, base, cap
    )
    assert rng.getstate() == state


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (10**6, 2.0)]
)
def test_no_jitter_values(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, base=0.1, cap=2.0, jitter="none") == pytest.approx(expected)


def test_a_base_over_the_cap_is_capped() -> None:
    for jitter in JITTERS:
        assert backoff_delay(1, base=10.0, cap=1.0, jitter=jitter, rng=random.Random(1)) <= 1.0


@pytest.mark.parametrize("jitter", JITTERS)
def test_same_seed_same_delays_as_the_policy_backoff(jitter: Jitter) -> None:
    """One formula: wait_jittered (every policy's backoff) and backoff_delay draw alike."""

    class State:
        def __init__(self, attempt_number: int, upcoming_sleep: float) -> None:
            self.attempt_number = attempt_number
            self.upcoming_sleep = upcoming_sleep
            self.outcome = None

    wait = wait_jittered(0.05, 3.0, jitter, random.Random(42))
    rng = random.Random(42)
    previous = 0.0
    for attempt in range(1, 12):
        expected = wait(State(attempt, previous))  # type: ignore[arg-type]
        got = backoff_delay(attempt, base=0.05, cap=3.0, jitter=jitter, rng=rng, previous=previous)
        assert got == expected
        previous = got


def test_default_rng_and_default_jitter_is_full() -> None:
    for attempt in range(1, 20):
        assert 0.0 <= backoff_delay(attempt, base=0.1, cap=1.0) <= _ceiling(attempt, 0.1, 1.0)
    seeded = [backoff_delay(5, base=1.0, cap=60.0, rng=random.Random(3)) for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert seeded[0] == random.Random(3).uniform(0.0, 16.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempt": 0}, "attempt"),
        ({"attempt": -1}, "attempt"),
        ({"attempt": 1.5}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"base": -0.1}, "base"),
        ({"base": math.nan}, "base"),
        ({"cap": math.inf}, "cap"),
        ({"cap": "1"}, "cap"),
        ({"previous": -1.0}, "previous"),
        ({"jitter": "half"}, "jitter"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"attempt": 1, "base": 0.1, "cap": 1.0, **kwargs}
    attempt = arguments.pop("attempt")
    with pytest.raises(ConfigurationError) as raised:
        backoff_delay(attempt, **arguments)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)


def test_visibility_backoff_is_backoff_delay_rounded_up() -> None:
    config = VisibilityBackoff(base_s=10, max_s=600, jitter="full", rng=random.Random(9))
    rng = random.Random(9)
    for count in (0, 1, 2, 5, 30):
        expected = backoff_delay(max(1, count), base=10, cap=600, jitter="full", rng=rng)
        assert config.timeout_for(count) == math.ceil(expected)


def _fresh_modules(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(out.stdout)}


def test_the_seams_load_neither_tenacity_nor_asyncio() -> None:
    loaded = _fresh_modules(
        "from resilient_aws.retry import RetryEvent, backoff_delay, emit; "
        "backoff_delay(3, base=0.1, cap=1.0, jitter='decorrelated'); "
        "emit(RetryEvent(kind='give_up', operation='op', attempt=3, reason='attempts'))"
    )
    assert not loaded & {"tenacity", "asyncio"}


# -- emit -----------------------------------------------------------------------------------

EVENT = RetryEvent(kind="give_up", operation="Charge", attempt=3, reason="attempts")


@pytest.fixture
def retry_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("resilient_aws.retry")
    level, handlers, filters = logger.level, list(logger.handlers), list(logger.filters)
    logger.setLevel(logging.DEBUG)
    try:
        yield logger
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.filters[:] = filters


class RaisingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the log shipper is down")


class RaisingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise KeyError("a filter bug")


def test_emit_logs_and_tells_the_global_and_the_given_listeners(
    retry_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    global_seen: list[RetryEvent] = []
    given: list[RetryEvent] = []
    add_listener(global_seen.append)
    try:
        with caplog.at_level(logging.DEBUG, logger="resilient_aws.retry"):
            emit(EVENT, [given.append])  # any iterable of listeners
    finally:
        remove_listener(global_seen.append)
    assert global_seen == given == [EVENT]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "Charge: gave up after 3 attempt(s): attempts" in record.getMessage()
    assert record.retry_event == EVENT.fields()  # type: ignore[attr-defined]


def test_a_raising_listener_is_logged_and_the_others_still_told(
    retry_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: RetryEvent) -> None:
        raise RuntimeError("metrics backend down")

    seen: list[RetryEvent] = []
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.retry"):
        emit(EVENT, (broken, seen.append))
    assert seen == [EVENT]
    failures = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None


@pytest.mark.parametrize("breakage", ["handler", "filter"])
def test_a_raising_log_handler_or_filter_does_not_break_the_caller(
    retry_logger: logging.Logger, capsys: pytest.CaptureFixture[str], breakage: str
) -> None:
    if breakage == "handler":
        retry_logger.addHandler(RaisingHandler())
    else:
        retry_logger.addFilter(RaisingFilter())

    def broken(event: RetryEvent) -> None:  # its failure's log line fails too
        raise RuntimeError("metrics backend down")

    seen: list[RetryEvent] = []
    for kind in ("retry", "recovered", "give_up", "budget_refused", "partial_failure"):
        event = RetryEvent(kind=kind, operation="op", attempt=2, error_code="Throttling")  # type: ignore[arg-type]
        emit(event, (broken, seen.append))
    assert [e.kind for e in seen] == [
        "retry",
        "recovered",
        "give_up",
        "budget_refused",
        "partial_failure",
    ]
    assert "resilient_aws.retry: logging failed" in capsys.readouterr().err


def test_the_policy_core_still_works_with_a_raising_log_handler(
    retry_logger: logging.Logger,
) -> None:
    """The core's own events go through emit: a broken handler costs lines, not the call."""
    retry_logger.addHandler(RaisingHandler())
    errors = [client_error("Throttling")]

    def flaky() -> str:
        if errors:
            raise errors.pop()
        return "ok"

    seen: list[RetryEvent] = []
    policy = RetryPolicy(sleep=lambda s: None, listeners=(seen.append,))
    assert policy.call(flaky) == "ok"
    assert [e.kind for e in seen] == ["retry", "recovered"]


# -- docs/retry.md --------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "retry.md").read_text()
    blocks = [
        b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "backoff_delay(" in b
    ]
    assert len(blocks) == 1
    namespace: dict[str, Any] = {"__name__": "retry_seams_example"}
    exec(compile(blocks[0], "docs/retry.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == list(JITTERS)

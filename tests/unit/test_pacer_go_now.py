"""``Pacer.reserve`` answers "go now" without its lock or the clock while the writer is unpaced,
not stalled and nothing is booked ahead: it must answer exactly what the locked path would, in
every sequence of requests, responses and pauses."""

from __future__ import annotations

import random

import pytest

from resilient_aws.retry import Pacer
from resilient_aws.testing import FakeClock


class AlwaysLocked(Pacer):
    """The pacer without its shortcut: every reserve takes the lock and reads the clock."""

    @property  # type: ignore[override]
    def _go_now(self) -> bool:
        return False

    @_go_now.setter
    def _go_now(self, value: bool) -> None:
        pass


def test_the_shortcut_answers_what_the_locked_path_answers() -> None:
    taken = [run_both(seed) for seed in range(200)]
    assert sum(taken) > 500  # the shortcut was taken, and answered the same each time


def run_both(seed: int) -> int:
    """Drive both pacers through the same random sequence; how often the shortcut was taken."""
    ops = random.Random(seed)
    clocks = [FakeClock(seed=seed), FakeClock(seed=seed)]
    policies = [c.policy(base_delay=0.05, max_delay=1.0) for c in clocks]
    pacers = [Pacer(window=0.25), AlwaysLocked(window=0.25)]
    shortcuts = 0
    for _ in range(150):
        op = ops.random()
        if op < 0.45:
            entries = ops.randint(1, 10)
            shortcuts += pacers[0]._go_now
            answers = [p.reserve(entries, pol) for p, pol in zip(pacers, policies, strict=True)]
        elif op < 0.85:
            withheld = ops.choice([0] * 12 + [1, 3, 10])
            completed = ops.choice([0, 10 - withheld, 10 - withheld])
            throttled = ops.random() < 0.3
            answers = [
                p.record(pol, completed=completed, withheld=withheld, throttled=throttled)
                for p, pol in zip(pacers, policies, strict=True)
            ]
        else:
            # now and then a pause longer than any backoff: a stall is forgotten
            pause = ops.choice([0.0, 0.01, 0.1, 0.3, 2.95, 5.0, 5.0])
            for clock in clocks:
                clock.advance(pause)
            answers = [0, 0]
        assert answers[0] == answers[1], seed
        assert (pacers[0].rate, pacers[0].stalls, pacers[0].headroom) == (
            pacers[1].rate,
            pacers[1].stalls,
            pacers[1].headroom,
        ), seed
    return shortcuts


def test_a_stall_ends_the_shortcut_and_a_request_after_it_waits() -> None:
    clock = FakeClock()
    policy = clock.policy(base_delay=1.0, max_delay=5.0, jitter="none")
    pacer = Pacer()
    assert pacer.reserve(10, policy) == 0.0
    assert pacer._go_now
    pacer.record(policy, completed=0, withheld=10)
    assert not pacer._go_now
    assert pacer.reserve(10, policy) == pytest.approx(1.0)


def test_a_measured_rate_ends_the_shortcut() -> None:
    clock = FakeClock()
    policy = clock.policy(jitter="none")
    pacer = Pacer(window=0.25)
    pacer.reserve(10, policy)
    assert pacer._go_now
    pacer.record(policy, completed=5, withheld=5)
    clock.advance(0.3)
    pacer.record(policy, completed=5, withheld=5)  # closes a window that withheld entries
    assert pacer.rate is not None and not pacer._go_now
    pacer.reserve(10, policy)
    assert pacer.reserve(10, policy) > 0  # the rate spaces requests again


def test_a_healthy_writer_books_its_requests_without_reading_the_clock() -> None:
    clock = FakeClock()
    reads = []

    def counted() -> float:
        reads.append(clock.now)
        return clock.now

    policy = clock.policy(clock=counted)
    pacer = Pacer()
    pacer.reserve(10, policy)
    pacer.record(policy, completed=10, withheld=0)
    before = len(reads)
    for _ in range(100):
        assert pacer.reserve(10, policy) == 0.0
    assert len(reads) == before

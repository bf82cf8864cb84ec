"""The progress line: what it draws on a terminal, and the one line it writes elsewhere."""

from __future__ import annotations

import io
import threading

import pytest

from resilient_aws.cli._progress import Progress, format_duration, is_terminal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(clock: Clock, stream: io.StringIO, **options: object) -> Progress:
    return Progress("load orders", stream=stream, clock=clock, width=200, **options)  # type: ignore[arg-type]


def test_live_line_has_bar_counts_rate_and_eta() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream, total=1000, unit="lines")
    clock.now += 2.0
    progress.update(250, failed=3)
    assert stream.getvalue() == (
        "\r\x1b[Kload orders [=====>              ] 250/1,000 lines (25%) · 3 failed · 125/s"
        " · ETA 0:06"
    )


def test_redraws_at_most_every_interval() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream, total=100, interval=0.5)
    clock.now += 1
    progress.update(10)
    clock.now += 0.1
    progress.update(11)  # too soon: not drawn
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.5
    progress.update(12)
    assert stream.getvalue().count("\r") == 2
    assert stream.getvalue().endswith("12/100 items (12%) · 8/s · ETA 0:12")  # 12 in 1.6 s


def test_unknown_total_shows_count_and_rate_without_eta() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream)
    clock.now += 4
    progress.advance(400)
    assert stream.getvalue() == "\r\x1b[Kload orders 400 items · 100/s"


def test_approximate_total_is_marked_and_loses_its_eta_when_passed() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream, total=100, approximate=True)
    clock.now += 1
    progress.update(50)
    assert "50/~100 items (50%)" in stream.getvalue()
    assert "ETA 0:01" in stream.getvalue()
    clock.now += 1
    progress.update(150)
    last = stream.getvalue().rsplit("\r", 1)[1]
    assert "150/~100 items (100%)" in last
    assert "ETA" not in last
    assert progress.eta() is None


def test_rate_follows_the_recent_window() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream, total=10_000, window=10.0)
    for _ in range(30):  # 100/s for 30 s
        clock.now += 1
        progress.advance(100)
    for _ in range(10):  # then 1,000/s for the last 10 s
        clock.now += 1
        progress.advance(1000)
    assert progress.rate() == pytest.approx(1000, rel=0.1)
    assert progress.summary() == "load orders: 13,000 items in 0:40 (325/s)"


def test_finish_replaces_the_live_line_with_the_summary() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream, total=10)
    clock.now += 1
    progress.update(10, failed=1)
    progress.finish()
    assert stream.getvalue().endswith("\r\x1b[Kload orders: 10 items in 0:01 (10/s), 1 failed\n")
    progress.finish()  # once only
    assert stream.getvalue().count("\n") == 1


def test_not_a_terminal_writes_one_plain_summary_line_and_no_escapes() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = _progress(clock, stream, total=1000)
    for _ in range(10):
        clock.now += 1
        progress.advance(100)
    assert stream.getvalue() == ""
    progress.finish()
    assert stream.getvalue() == "load orders: 1,000 items in 0:10 (100/s)\n"


def test_disabled_writes_nothing() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream, total=10, enabled=False)
    progress.update(5)
    progress.finish()
    assert stream.getvalue() == ""


def test_clear_erases_the_line_before_other_output() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream)
    progress.update(1)
    progress.clear()
    assert stream.getvalue().endswith("\r\x1b[K")
    progress.clear()  # nothing shown: nothing to erase
    assert stream.getvalue().count("\r") == 2


def test_line_is_cut_to_the_terminal_width() -> None:
    clock, stream = Clock(), Tty()
    progress = Progress("x" * 100, stream=stream, clock=clock, width=40)
    progress.update(1)
    assert len(stream.getvalue()) == len("\r\x1b[K") + 39


def test_updates_from_threads_are_counted() -> None:
    clock, stream = Clock(), Tty()
    progress = _progress(clock, stream)

    def work() -> None:
        for _ in range(1000):
            progress.advance(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert progress.done == 4000


def test_terminal_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    assert is_terminal(Tty())
    assert not is_terminal(io.StringIO())
    monkeypatch.setenv("TERM", "dumb")
    assert not is_terminal(Tty())


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (7.4, "0:07"), (723, "12:03"), (3723, "1:02:03")]
)
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

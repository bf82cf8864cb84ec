"""A progress line for long commands: redrawn in place on a terminal, one summary line otherwise.

Plain ANSI: a carriage return and "erase to end of line" (``ESC [ K``), nothing else, so it
works in any terminal and adds no dependency. The stream, the clock and the width are seams
for tests.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration", "is_terminal"]

_ERASE = "\r\x1b[K"
_BAR = 20


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is an interactive terminal that understands ANSI (not ``TERM=dumb``)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:03``, ``1:02:03``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts of a long piece of work, shown while it runs.

    ``live=True`` (default: when ``stream`` is a terminal) redraws one line at most every
    ``interval`` seconds: ``label [=====>    ] 1,200/5,000 (24%) · 3 failed · 410/s · ETA 0:09``.
    The rate is measured over the last ``window`` seconds; the ETA needs a ``total``
    (``approximate=True`` shows it as ``~5,000``, and drops the ETA once the count passes it).
    :meth:`finish` replaces the line with a summary (live), or writes only that summary line
    (not live). ``enabled=False`` writes nothing at all.

    Safe to update from several threads.
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        approximate: bool = False,
        unit: str = "items",
        stream: TextIO | None = None,
        live: bool | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
        interval: float = 0.1,
        window: float = 10.0,
    ) -> None:
        self.label = label
        self.total = total
        self.approximate = approximate
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = enabled and (is_terminal(self.stream) if live is None else live)
        self.clock = clock
        self.width = width
        self.interval = interval
        self.window = window
        self.done = 0
        self.failed = 0
        self.started = clock()
        self._drawn_at: float | None = None
        self._shown = False
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])
        self._lock = threading.Lock()

    # -- counting -------------------------------------------------------------------------------

    def update(self, done: int, *, failed: int | None = None) -> None:
        """Set the counts (``done`` includes the failed ones) and redraw if it is time."""
        with self._lock:
            self.done = done
            if failed is not None:
                self.failed = failed
            self._tick()

    def advance(self, count: int = 1, *, failed: int = 0) -> None:
        """Add to the counts and redraw if it is time."""
        with self._lock:
            self.done += count
            self.failed += failed
            self._tick()

    # -- figures --------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.started)

    def rate(self) -> float:
        """Units per second over the last ``window`` seconds (over the whole run before that)."""
        now = self.clock()
        first_time, first_done = self._samples[0]
        span = now - first_time
        return (self.done - first_done) / span if span > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, when the total is known and the rate measurable."""
        if self.total is None or self.done > self.total:
            return None
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        """The live line for the current counts."""
        parts = [self.label]
        if self.total is not None and self.total > 0:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * _BAR)
            bar = "=" * filled + (">" if filled < _BAR else "") + " " * (_BAR - filled - 1)
            approx = "~" if self.approximate else ""
            parts.append(
                f"[{bar}] {self.done:,}/{approx}{self.total:,} {self.unit} ({fraction:.0%})"
            )
        else:
            parts.append(f"{self.done:,} {self.unit}")
        text = " ".join(parts)
        if self.failed:
            text += f" · {self.failed:,} failed"
        text += f" · {self.rate():,.0f}/s"
        eta = self.eta()
        if eta is not None:
            text += f" · ETA {format_duration(eta)}"
        return text

    def summary(self) -> str:
        """``label: 5,000 items in 0:03 (1,612/s), 2 failed``."""
        elapsed = self.elapsed
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = (
            f"{self.label}: {self.done:,} {self.unit} in {format_duration(elapsed)} ({rate:,.0f}/s)"
        )
        if self.failed:
            text += f", {self.failed:,} failed"
        return text

    # -- drawing --------------------------------------------------------------------------------

    def clear(self) -> None:
        """Erase the live line (before writing something else to the stream)."""
        with self._lock:
            if self.live and self._shown:
                self.stream.write(_ERASE)
                self.stream.flush()
                self._shown = False
                self._drawn_at = None

    def finish(self, summary: str | None = None) -> None:
        """End the line: the summary (``summary()`` unless given) replaces it, newline-ended."""
        with self._lock:
            if not self.enabled:
                return
            text = summary if summary is not None else self.summary()
            self.stream.write((_ERASE if self.live and self._shown else "") + text + "\n")
            self.stream.flush()
            self._shown = False
            self.enabled = False  # a second finish() writes nothing

    def _tick(self) -> None:
        now = self.clock()
        if now - self._samples[-1][0] >= self.window / 50:  # bounded memory at any update rate
            self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        if not self.live or not self.enabled:
            return
        if self._drawn_at is not None and now - self._drawn_at < self.interval:
            return
        self._drawn_at = now
        width = self.width or shutil.get_terminal_size((80, 24)).columns
        self.stream.write(_ERASE + self.line()[: max(10, width - 1)])
        self.stream.flush()
        self._shown = True

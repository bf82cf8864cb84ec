"""Ctrl-C that stops at a safe point: the first one asks, the second one insists."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["StopRequest", "graceful_interrupt"]


class StopRequest:
    """Set by the first SIGINT: commands finish what is in flight (send, then delete), report,
    and exit 130. A second SIGINT raises ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def __call__(self) -> bool:
        return self.event.is_set()

    def request(self) -> None:
        self.event.set()


@contextmanager
def graceful_interrupt() -> Iterator[StopRequest]:
    """Install the two-step SIGINT handler for the block (main thread only; a no-op elsewhere)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.request()
        sys.stderr.write("\nstopping after what is in flight (Ctrl-C again to abort at once)...\n")
        sys.stderr.flush()

    previous: Any = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)

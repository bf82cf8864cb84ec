"""A small thread-safe LRU of completed results, so repeats in a warm Lambda cost no call."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

__all__ = ["CachedResult", "ResultCache"]


class CachedResult(NamedTuple):
    expires_at: int
    validation: str | None
    data: str | None


class ResultCache:
    """Completed records by key; in-progress records are never cached (they change elsewhere)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, CachedResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> CachedResult | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            if hit.expires_at < int(now):
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return hit

    def put(self, key: str, value: CachedResult) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

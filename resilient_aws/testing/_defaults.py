"""Fault injection on the clients the library makes itself (no ``client=`` given).

``chaos(client)`` reaches a client the test holds. Code written from the README — a
``BatchWriter("orders")`` or ``scan("orders")`` without ``client=`` — uses the library's shared
default clients, which the test never sees: :func:`chaos_defaults` installs :func:`chaos` on
every one of them, those made already and those made inside the block.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection
from typing import Any

from resilient_aws._clients import clear_default_clients, default_clients, on_default_client
from resilient_aws.errors import ConfigurationError
from resilient_aws.testing._chaos import Chaos, ChaosStats

__all__ = ["ChaosDefaults", "chaos_defaults", "clear_default_clients", "default_clients"]


class ChaosDefaults:
    """A :class:`Chaos` on each default client of the library; use :func:`chaos_defaults`.

    :attr:`injectors` holds one :class:`Chaos` per client reached; :attr:`stats` adds their
    counts up.
    """

    def __init__(
        self,
        *,
        services: Collection[str] | None = None,
        seed: int | None = None,
        **rates: Any,
    ) -> None:
        self.services = frozenset(services) if services is not None else None
        self.seed = seed
        self.rates = rates
        self.injectors: list[Chaos] = []
        self._lock = threading.Lock()
        self._remove: Any = None
        _check(rates)  # bad rates fail here, not when the first client is reached

    def _reach(self, service: str, client: Any) -> None:
        if self.services is not None and service not in self.services:
            return
        with self._lock:
            if any(injector.client is client for injector in self.injectors):
                return
            # one seed per client, in the order they are reached: deterministic for a test
            seed = None if self.seed is None else self.seed + len(self.injectors)
            self.injectors.append(Chaos(client, seed=seed, **self.rates).install())

    def install(self) -> ChaosDefaults:
        if self._remove is None:
            self._remove = on_default_client(self._reach)
        return self

    def uninstall(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        with self._lock:
            for injector in self.injectors:
                injector.uninstall()

    def __enter__(self) -> ChaosDefaults:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    @property
    def stats(self) -> ChaosStats:
        """What was injected on every client reached, added up."""
        total = ChaosStats()
        with self._lock:
            injectors = list(self.injectors)
        for injector in injectors:
            for field in dataclasses.fields(ChaosStats):
                mine = getattr(injector.stats, field.name)
                if isinstance(mine, dict):
                    merged = getattr(total, field.name)
                    for name, count in mine.items():
                        merged[name] = merged.get(name, 0) + count
                else:
                    setattr(total, field.name, getattr(total, field.name) + mine)
        return total


def _check(rates: dict[str, Any]) -> None:
    for name, rate in rates.items():
        if name != "operations" and not 0.0 <= rate <= 1.0:
            raise ConfigurationError(name, f"must be a probability in [0, 1], got {rate!r}")
    if rates.get("throttle", 0.0) + rates.get("error5xx", 0.0) + rates.get("reset", 0.0) > 1.0:
        raise ConfigurationError("throttle", "throttle + error5xx + reset must not exceed 1")


def chaos_defaults(
    *,
    partial: float = 0.0,
    throttle: float = 0.0,
    error5xx: float = 0.0,
    reset: float = 0.0,
    lost_response: float = 0.0,
    seed: int | None = None,
    operations: Collection[str] | None = None,
    services: Collection[str] | None = None,
) -> ChaosDefaults:
    """:func:`chaos` on every client the library makes itself, until the ``with`` block ends.

    ::

        with chaos_defaults(partial=0.3, throttle=0.05, seed=1) as c:
            handler(event, context)     # BatchWriter("orders"), scan("orders")...: no client=
        assert c.stats.faults > 0

    Default clients made before the block and inside it are both reached; ``services``
    (``{"dynamodb"}``) limits it to some services, ``operations`` to some operation names.
    Clients you pass with ``client=`` are yours: wrap them with :func:`chaos`.
    """
    return ChaosDefaults(
        services=services,
        seed=seed,
        partial=partial,
        throttle=throttle,
        error5xx=error5xx,
        reset=reset,
        lost_response=lost_response,
        operations=operations,
    )

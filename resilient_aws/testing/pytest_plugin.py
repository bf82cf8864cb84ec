"""pytest fixtures shipped with resilient_aws (registered through the ``pytest11`` entry point).

``moto_server``
    A moto server in a thread on a free localhost port for the whole session (needs
    ``moto[server]``, in the ``test`` extra). ``moto_server.client("sqs")`` gives a boto3
    client pointed at it with dummy credentials; ``moto_server.reset()`` empties it.
``chaos``
    A factory: ``chaos(client, partial=0.3, throttle=0.05, seed=1)`` installs fault injection
    on a client for the rest of the test and removes it afterwards.
``chaos_defaults``
    A factory: ``chaos_defaults(throttle=0.2, seed=1)`` installs fault injection on every
    default client of the library (the clients code without ``client=`` uses), those made
    already and those made later in the test; at the end of the test it is removed and the
    default clients are cleared.
``fake_clock``
    A :class:`~resilient_aws.testing.FakeClock`: retry policies that sleep instantly.
``dynalite_server``, ``kinesalite_server``
    The npm emulators (``npm ci`` puts them in ``node_modules``) on free localhost ports for the
    session. When they are not installed the tests using them are skipped, except when the
    ``CI`` environment variable is set: there a missing emulator is a failed install and fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilient_aws.testing import _defaults
from resilient_aws.testing._chaos import Chaos
from resilient_aws.testing._clock import FakeClock
from resilient_aws.testing._defaults import ChaosDefaults
from resilient_aws.testing._moto import MotoServer
from resilient_aws.testing.emulators import EmulatorNotFound, NodeEmulator, dynalite, kinesalite

__all__ = [
    "MotoServer",
    "chaos",
    "chaos_defaults",
    "dynalite_server",
    "fake_clock",
    "kinesalite_server",
    "moto_server",
]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto server on a free port, shared by the session."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def chaos() -> Iterator[Callable[..., Chaos]]:
    """Install fault injection on clients for the duration of one test."""
    installed: list[Chaos] = []

    def make(client: Any, **rates: Any) -> Chaos:
        injector = Chaos(client, **rates).install()
        installed.append(injector)
        return injector

    yield make
    for injector in installed:
        injector.uninstall()


@pytest.fixture
def chaos_defaults() -> Iterator[Callable[..., ChaosDefaults]]:
    """Install fault injection on the library's default clients for the duration of one test;
    the default clients are cleared when it ends."""
    installed: list[ChaosDefaults] = []

    def make(**rates: Any) -> ChaosDefaults:
        injector = _defaults.chaos_defaults(**rates).install()
        installed.append(injector)
        return injector

    try:
        yield make
    finally:
        for injector in installed:
            injector.uninstall()
        _defaults.clear_default_clients()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock whose sleeps return at once and are recorded in ``slept``."""
    return FakeClock()


def _emulator(factory: Callable[[], NodeEmulator]) -> Iterator[NodeEmulator]:
    try:
        emulator = factory()
    except EmulatorNotFound as missing:
        if os.environ.get("CI"):
            pytest.fail(f"emulator missing under CI: {missing}")
        pytest.skip(f"emulator not installed: {missing}")
    with emulator:
        yield emulator


@pytest.fixture(scope="session")
def dynalite_server() -> Iterator[NodeEmulator]:
    """dynalite (a stricter DynamoDB emulator) on a free port, in memory, for the session."""
    yield from _emulator(dynalite)


@pytest.fixture(scope="session")
def kinesalite_server() -> Iterator[NodeEmulator]:
    """kinesalite (a Kinesis emulator) on a free port, in memory, for the session."""
    yield from _emulator(lambda: kinesalite(options={"shardLimit": 1000}))

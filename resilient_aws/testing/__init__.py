"""Test helpers, public API: fault injection for boto3 clients and a deterministic clock.

``chaos(client, ...)`` makes any boto3 client (moto, an emulator, AWS) throttle, fail and
report partial batch failures the way AWS does under load. ``FakeClock`` makes retry policies
sleep instantly and deterministically; ``FakeLambdaContext`` stands in for a handler's context. Installing the package registers a pytest plugin with the
fixtures ``chaos`` and ``moto_server`` (see :mod:`resilient_aws.testing.pytest_plugin`).
"""

from resilient_aws.testing._chaos import Chaos, ChaosStats, chaos
from resilient_aws.testing._clock import FakeClock
from resilient_aws.testing._defaults import chaos_defaults, clear_default_clients
from resilient_aws.testing._lambda import FakeLambdaContext
from resilient_aws.testing._moto import MotoServer

__all__ = [
    "Chaos",
    "ChaosStats",
    "FakeClock",
    "FakeLambdaContext",
    "MotoServer",
    "chaos",
    "chaos_defaults",
    "clear_default_clients",
]

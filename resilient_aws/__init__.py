"""resilient_aws: AWS SDK calls that survive production.

Throttling, partial batch failures, duplicate deliveries, poison messages and expiring streams,
handled by one retry core. Subpackages load on first use, so ``import resilient_aws`` costs
next to nothing on a Lambda cold start::

    from resilient_aws.retry import RetryPolicy
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Silent unless the application configures logging (Powertools Logger, logging.basicConfig...).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_SUBMODULES = (
    "batch",
    "cli",
    "consumer",
    "dynamodb",
    "errors",
    "idempotency",
    "limits",
    "outbox",
    "payloads",
    "powertools",
    "redrive",
    "results",
    "retry",
    "testing",
    "tracing",
)

__all__ = ["__version__", *_SUBMODULES]

if TYPE_CHECKING:
    from resilient_aws import batch as batch
    from resilient_aws import cli as cli
    from resilient_aws import consumer as consumer
    from resilient_aws import dynamodb as dynamodb
    from resilient_aws import errors as errors
    from resilient_aws import idempotency as idempotency
    from resilient_aws import limits as limits
    from resilient_aws import outbox as outbox
    from resilient_aws import payloads as payloads
    from resilient_aws import powertools as powertools
    from resilient_aws import redrive as redrive
    from resilient_aws import results as results
    from resilient_aws import retry as retry
    from resilient_aws import testing as testing
    from resilient_aws import tracing as tracing


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        # __import__, not importlib.import_module: a module loaded through the latter does not
        # show in `-X importtime`, and the import budgets would not count it.
        __import__(f"{__name__}.{name}")
        return sys.modules[f"{__name__}.{name}"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

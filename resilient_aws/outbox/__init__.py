"""Transactional outbox on DynamoDB: the state change and its events in one transaction,
delivered at least once, in order per aggregate.

>>> from resilient_aws.outbox import Outbox, OutboxEvent, SqsTarget, relay_handler
>>> outbox = Outbox("orders")  # doctest: +SKIP
>>> outbox.write(puts=[order], events=[OutboxEvent("OrderPlaced", order["pk"], order)])  # doctest: +SKIP
>>> handler = relay_handler(outbox, SqsTarget(queue_url))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.errors import (
        OutboxError,
        TransactionCanceledError,
        TransactionConditionFailedError,
        TransactionTooLargeError,
    )
    from resilient_aws.outbox._actions import ConditionCheck, Delete, Put, Update
    from resilient_aws.outbox._deliver import DeliveryReport, deliver
    from resilient_aws.outbox._event import OffloadedPayload, OutboxEvent, envelope
    from resilient_aws.outbox._layout import BLOCKED, DELIVERED, PENDING, Layout, StoredEvent
    from resilient_aws.outbox._outbox import Outbox
    from resilient_aws.outbox._relay import events_from_stream, relay_handler
    from resilient_aws.outbox._sweeper import OutboxSweeper
    from resilient_aws.outbox._targets import (
        CallableTarget,
        EventBridgeTarget,
        KinesisTarget,
        Router,
        SnsTarget,
        SqsTarget,
        Target,
    )

__all__ = [
    "BLOCKED",
    "DELIVERED",
    "PENDING",
    "CallableTarget",
    "ConditionCheck",
    "Delete",
    "DeliveryReport",
    "EventBridgeTarget",
    "KinesisTarget",
    "Layout",
    "OffloadedPayload",
    "Outbox",
    "OutboxError",
    "OutboxEvent",
    "OutboxSweeper",
    "Put",
    "Router",
    "SnsTarget",
    "SqsTarget",
    "StoredEvent",
    "Target",
    "TransactionCanceledError",
    "TransactionConditionFailedError",
    "TransactionTooLargeError",
    "Update",
    "deliver",
    "envelope",
    "events_from_stream",
    "relay_handler",
]

# PEP 562: a public name is imported from its module when it is first asked for, so that
# a handler pays only for what it uses.
_MODULE_OF = {
    "BLOCKED": "resilient_aws.outbox._layout",
    "CallableTarget": "resilient_aws.outbox._targets",
    "ConditionCheck": "resilient_aws.outbox._actions",
    "DELIVERED": "resilient_aws.outbox._layout",
    "Delete": "resilient_aws.outbox._actions",
    "DeliveryReport": "resilient_aws.outbox._deliver",
    "EventBridgeTarget": "resilient_aws.outbox._targets",
    "KinesisTarget": "resilient_aws.outbox._targets",
    "Layout": "resilient_aws.outbox._layout",
    "OffloadedPayload": "resilient_aws.outbox._event",
    "Outbox": "resilient_aws.outbox._outbox",
    "OutboxError": "resilient_aws.errors",
    "OutboxEvent": "resilient_aws.outbox._event",
    "OutboxSweeper": "resilient_aws.outbox._sweeper",
    "PENDING": "resilient_aws.outbox._layout",
    "Put": "resilient_aws.outbox._actions",
    "Router": "resilient_aws.outbox._targets",
    "SnsTarget": "resilient_aws.outbox._targets",
    "SqsTarget": "resilient_aws.outbox._targets",
    "StoredEvent": "resilient_aws.outbox._layout",
    "Target": "resilient_aws.outbox._targets",
    "TransactionCanceledError": "resilient_aws.errors",
    "TransactionConditionFailedError": "resilient_aws.errors",
    "TransactionTooLargeError": "resilient_aws.errors",
    "Update": "resilient_aws.outbox._actions",
    "deliver": "resilient_aws.outbox._deliver",
    "envelope": "resilient_aws.outbox._event",
    "events_from_stream": "resilient_aws.outbox._relay",
    "relay_handler": "resilient_aws.outbox._relay",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

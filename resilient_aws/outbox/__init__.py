"""Transactional outbox on DynamoDB: the state change and its events in one transaction,
delivered at least once, in order per aggregate.

>>> from resilient_aws.outbox import Outbox, OutboxEvent, SqsTarget, relay_handler
>>> outbox = Outbox("orders")  # doctest: +SKIP
>>> outbox.write(puts=[order], events=[OutboxEvent("OrderPlaced", order["pk"], order)])  # doctest: +SKIP
>>> handler = relay_handler(outbox, SqsTarget(queue_url))  # doctest: +SKIP
"""

from resilient_aws.errors import (
    OutboxError,
    TransactionCanceledError,
    TransactionConditionFailedError,
    TransactionTooLargeError,
)
from resilient_aws.outbox._actions import ConditionCheck, Delete, Put, Update
from resilient_aws.outbox._deliver import DeliveryReport, deliver
from resilient_aws.outbox._event import OutboxEvent, envelope
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

"""Drain dead-letter queues without losing a message.

Every source works the same way: receive from the DLQ in batches, deliver each message (to a
queue, a function, an event bus), then delete from the DLQ exactly the messages whose delivery
was acknowledged, each delete checked. A :class:`RedriveReport` accounts for every message::

    from resilient_aws.redrive import redrive_sqs

    report = redrive_sqs(dlq_url)               # back to the DLQ's source queue
    print(report)                               # ... 120 received, 118 moved, 2 failed
    assert report.ok, report.failed             # message id -> reason
"""

from resilient_aws.errors import (
    AmbiguousTargetError,
    QueueNotFoundError,
    RedriveError,
    RedriveTargetError,
    TargetTypeMismatchError,
)
from resilient_aws.redrive._message import DlqMessage, Filter
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.redrive._sqs import fresh_deduplication_id, redrive_sqs

__all__ = [
    "AmbiguousTargetError",
    "DlqMessage",
    "Filter",
    "QueueNotFoundError",
    "RedriveError",
    "RedriveReport",
    "RedriveTargetError",
    "TargetTypeMismatchError",
    "fresh_deduplication_id",
    "redrive_sqs",
]

"""Drain dead-letter queues without losing a message.

Every source works the same way: receive from the DLQ in batches, deliver each message (to a
queue, a function, an event bus), then delete from the DLQ exactly the messages whose delivery
was acknowledged, each delete checked. A :class:`RedriveReport` accounts for every message::

    from resilient_aws.redrive import redrive_sqs

    report = redrive_sqs(dlq_url)               # back to the DLQ's source queue
    print(report)                               # ... 120 received, 118 moved, 2 failed
    assert report.ok, report.failed             # message id -> reason

Sources: :func:`redrive_sqs` (SQS DLQ -> source queue, or ``native=True`` for SQS's own move
task), :func:`redrive_lambda` (failed asynchronous invocations -> the function again, or a
queue), :func:`redrive_eventbridge` (rule target DLQs -> the event bus), and
:func:`redrive_stream_pointers` (DynamoDB Streams / Kinesis on-failure pointers -> the records,
read from the stream before they expire -> a queue, a function or a callable).
:func:`aredrive_sqs`, :func:`aredrive_lambda` and :func:`aredrive_eventbridge` are their sync
namesakes on asyncio (aiobotocore, the ``aio`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.errors import (
        AmbiguousTargetError,
        QueueNotFoundError,
        RedriveError,
        RedriveNotFoundError,
        RedriveTargetError,
        StreamPointerExpiredError,
        TargetTypeMismatchError,
    )
    from resilient_aws.redrive._aeventbridge import aredrive_eventbridge
    from resilient_aws.redrive._alambda import aredrive_lambda
    from resilient_aws.redrive._asqs import aredrive_sqs
    from resilient_aws.redrive._eventbridge import redrive_eventbridge
    from resilient_aws.redrive._lambda import LambdaFailure, parse_lambda_failure, redrive_lambda
    from resilient_aws.redrive._message import DlqMessage, Filter
    from resilient_aws.redrive._pointers import (
        StreamPointer,
        parse_stream_pointer,
        read_pointer,
        redrive_stream_pointers,
    )
    from resilient_aws.redrive._report import RedriveReport
    from resilient_aws.redrive._sqs import fresh_deduplication_id, redrive_sqs

__all__ = [
    "AmbiguousTargetError",
    "DlqMessage",
    "Filter",
    "LambdaFailure",
    "QueueNotFoundError",
    "RedriveError",
    "RedriveNotFoundError",
    "RedriveReport",
    "RedriveTargetError",
    "StreamPointer",
    "StreamPointerExpiredError",
    "TargetTypeMismatchError",
    "aredrive_eventbridge",
    "aredrive_lambda",
    "aredrive_sqs",
    "fresh_deduplication_id",
    "parse_lambda_failure",
    "parse_stream_pointer",
    "read_pointer",
    "redrive_eventbridge",
    "redrive_lambda",
    "redrive_sqs",
    "redrive_stream_pointers",
]

# PEP 562: a public name is imported from its module when it is first asked for, so that
# a handler pays only for what it uses.
_MODULE_OF = {
    "AmbiguousTargetError": "resilient_aws.errors",
    "DlqMessage": "resilient_aws.redrive._message",
    "Filter": "resilient_aws.redrive._message",
    "LambdaFailure": "resilient_aws.redrive._lambda",
    "QueueNotFoundError": "resilient_aws.errors",
    "RedriveError": "resilient_aws.errors",
    "RedriveNotFoundError": "resilient_aws.errors",
    "RedriveReport": "resilient_aws.redrive._report",
    "RedriveTargetError": "resilient_aws.errors",
    "StreamPointer": "resilient_aws.redrive._pointers",
    "StreamPointerExpiredError": "resilient_aws.errors",
    "TargetTypeMismatchError": "resilient_aws.errors",
    "aredrive_eventbridge": "resilient_aws.redrive._aeventbridge",
    "aredrive_lambda": "resilient_aws.redrive._alambda",
    "aredrive_sqs": "resilient_aws.redrive._asqs",
    "fresh_deduplication_id": "resilient_aws.redrive._sqs",
    "parse_lambda_failure": "resilient_aws.redrive._lambda",
    "parse_stream_pointer": "resilient_aws.redrive._pointers",
    "read_pointer": "resilient_aws.redrive._pointers",
    "redrive_eventbridge": "resilient_aws.redrive._eventbridge",
    "redrive_lambda": "resilient_aws.redrive._lambda",
    "redrive_sqs": "resilient_aws.redrive._sqs",
    "redrive_stream_pointers": "resilient_aws.redrive._pointers",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

"""One partial-failure batch engine for SQS, SNS, EventBridge, Kinesis and Firehose.

Every AWS batch API answers 200 and reports failures per entry. These senders buffer entries,
cut requests by each service's entry-count and byte limits, send up to ``concurrency``
requests at once, re-send only the retryable failed entries through the retry core, report
permanent ones at once, and account for every entry in a :class:`BatchResult`::

    from resilient_aws.batch import SqsSender

    with SqsSender(queue_url, policy=policy) as sender:
        for order in orders:
            sender.send_message(json.dumps(order))
    # leaving the block flushes; entries that finally failed raise BatchWriteError(result)

On asyncio (the ``aio`` extra, aiobotocore), ``AsyncSqsSender``, ``AsyncSnsPublisher`` and
the others are the same senders with ``await``: ``async with AsyncSqsSender(url) as sender:
await sender.send_message(body)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.batch._aio import (
        AsyncEventBridgePutter,
        AsyncFirehosePutter,
        AsyncKinesisPutter,
        AsyncSnsPublisher,
        AsyncSqsDeleter,
        AsyncSqsSender,
        AsyncSqsVisibilityChanger,
    )
    from resilient_aws.batch._base import BatchSender
    from resilient_aws.batch._eventbridge import EventBridgePutter, event_size
    from resilient_aws.batch._firehose import FirehosePutter
    from resilient_aws.batch._kinesis import KinesisPutter
    from resilient_aws.batch._sns import SnsPublisher
    from resilient_aws.batch._sqs import SqsDeleter, SqsSender, SqsVisibilityChanger
    from resilient_aws.results import Answer, BatchResult, FailedEntry

__all__ = [
    "Answer",
    "AsyncEventBridgePutter",
    "AsyncFirehosePutter",
    "AsyncKinesisPutter",
    "AsyncSnsPublisher",
    "AsyncSqsDeleter",
    "AsyncSqsSender",
    "AsyncSqsVisibilityChanger",
    "BatchResult",
    "BatchSender",
    "EventBridgePutter",
    "FailedEntry",
    "FirehosePutter",
    "KinesisPutter",
    "SnsPublisher",
    "SqsDeleter",
    "SqsSender",
    "SqsVisibilityChanger",
    "event_size",
]

# PEP 562: a public name is imported from its module when it is first asked for, so that
# a handler pays only for what it uses.
_MODULE_OF = {
    "Answer": "resilient_aws.results",
    "AsyncEventBridgePutter": "resilient_aws.batch._aio",
    "AsyncFirehosePutter": "resilient_aws.batch._aio",
    "AsyncKinesisPutter": "resilient_aws.batch._aio",
    "AsyncSnsPublisher": "resilient_aws.batch._aio",
    "AsyncSqsDeleter": "resilient_aws.batch._aio",
    "AsyncSqsSender": "resilient_aws.batch._aio",
    "AsyncSqsVisibilityChanger": "resilient_aws.batch._aio",
    "BatchResult": "resilient_aws.results",
    "BatchSender": "resilient_aws.batch._base",
    "EventBridgePutter": "resilient_aws.batch._eventbridge",
    "FailedEntry": "resilient_aws.results",
    "FirehosePutter": "resilient_aws.batch._firehose",
    "KinesisPutter": "resilient_aws.batch._kinesis",
    "SnsPublisher": "resilient_aws.batch._sns",
    "SqsDeleter": "resilient_aws.batch._sqs",
    "SqsSender": "resilient_aws.batch._sqs",
    "SqsVisibilityChanger": "resilient_aws.batch._sqs",
    "event_size": "resilient_aws.batch._eventbridge",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

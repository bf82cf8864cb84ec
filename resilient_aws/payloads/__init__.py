"""Large payloads through a claim-check: the payload in S3, a pointer in the message.

Compatible with the Amazon SQS and SNS Extended Client Libraries (Java and Python): messages
written here are read by consumers on those libraries, and the other way round::

    from resilient_aws.batch import SqsSender
    from resilient_aws.consumer import BatchProcessor
    from resilient_aws.payloads import PayloadConfig, PayloadStore

    store = PayloadStore(PayloadConfig(bucket="payloads", prefix="orders/"))

    with SqsSender(queue_url, payloads=store) as sender:
        sender.send_message(big_json)      # over 256 KiB: to S3, a pointer to SQS

    processor = BatchProcessor(payloads=store)   # record.body is the payload again

``EventBridgePutter`` (the event's detail) and ``KinesisPutter`` (the record's data) take
``payloads=`` too; :func:`resolve` reads every shape a pointer arrives in (an SQS body, an SNS
notification in one, an EventBridge event, a Kinesis record).

The object is written before the message; a message that finally fails to send has its
object deleted (or listed in ``sender.payloads_left`` when it may have been sent); a consumer
deletes objects only when ``PayloadConfig(delete_after=True)``, after its record succeeded;
:func:`sweep_payloads` deletes what is older than any message that could point at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.payloads._errors import (
        InvalidPointerError,
        PayloadError,
        PayloadNotFoundError,
        PayloadUploadError,
    )
    from resilient_aws.payloads._pointer import (
        LEGACY_POINTER_CLASS,
        LEGACY_SIZE_ATTRIBUTE,
        POINTER_CLASS,
        SIZE_ATTRIBUTE,
        PayloadPointer,
        embed_in_receipt_handle,
        split_receipt_handle,
    )
    from resilient_aws.payloads._resolve import pointer_of, resolve
    from resilient_aws.payloads._store import (
        EXTENDED_CLIENT_THRESHOLD,
        PayloadConfig,
        PayloadStore,
    )
    from resilient_aws.payloads._sweep import MIN_RETENTION_S, SweepResult, sweep_payloads

__all__ = [
    "EXTENDED_CLIENT_THRESHOLD",
    "LEGACY_POINTER_CLASS",
    "LEGACY_SIZE_ATTRIBUTE",
    "MIN_RETENTION_S",
    "POINTER_CLASS",
    "SIZE_ATTRIBUTE",
    "InvalidPointerError",
    "PayloadConfig",
    "PayloadError",
    "PayloadNotFoundError",
    "PayloadPointer",
    "PayloadStore",
    "PayloadUploadError",
    "SweepResult",
    "embed_in_receipt_handle",
    "pointer_of",
    "resolve",
    "split_receipt_handle",
    "sweep_payloads",
]

_MODULE_OF = {
    "EXTENDED_CLIENT_THRESHOLD": "_store",
    "LEGACY_POINTER_CLASS": "_pointer",
    "LEGACY_SIZE_ATTRIBUTE": "_pointer",
    "MIN_RETENTION_S": "_sweep",
    "POINTER_CLASS": "_pointer",
    "SIZE_ATTRIBUTE": "_pointer",
    "InvalidPointerError": "_errors",
    "PayloadConfig": "_store",
    "PayloadError": "_errors",
    "PayloadNotFoundError": "_errors",
    "PayloadPointer": "_pointer",
    "PayloadStore": "_store",
    "PayloadUploadError": "_errors",
    "SweepResult": "_sweep",
    "embed_in_receipt_handle": "_pointer",
    "pointer_of": "_resolve",
    "resolve": "_resolve",
    "split_receipt_handle": "_pointer",
    "sweep_payloads": "_sweep",
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

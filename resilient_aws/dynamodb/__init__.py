"""DynamoDB reads that never stop at page one, and batch writes and reads that never lose an entry.

::

    from resilient_aws.dynamodb import BatchWriter, batch_get, parallel_scan, query, scan

    for item in scan("orders", FilterExpression="city = :c",
                     ExpressionAttributeValues={":c": {"S": "Milan"}}):
        ...                                   # every page, plain Python values

    with BatchWriter("orders", concurrency=4) as writer:
        for order in orders:
            writer.put(order)                 # floats, dataclasses and pydantic models welcome
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.dynamodb._aio import AsyncBatchWriter, abatch_get
    from resilient_aws.dynamodb._get import BatchGetResult, batch_get
    from resilient_aws.dynamodb._parallel import ParallelScan, parallel_scan
    from resilient_aws.dynamodb._read import Page, Read, ReadSummary, query, scan, scan_segment
    from resilient_aws.dynamodb._schema import KeySchema, describe_key_schema
    from resilient_aws.dynamodb._serialize import (
        Numbers,
        deserialize_item,
        item_size,
        serialize_item,
    )
    from resilient_aws.dynamodb._write import BatchWriter
    from resilient_aws.results import BatchResult, FailedEntry

__all__ = [
    "AsyncBatchWriter",
    "BatchGetResult",
    "BatchResult",
    "BatchWriter",
    "FailedEntry",
    "KeySchema",
    "Numbers",
    "Page",
    "ParallelScan",
    "Read",
    "ReadSummary",
    "abatch_get",
    "batch_get",
    "describe_key_schema",
    "deserialize_item",
    "item_size",
    "parallel_scan",
    "query",
    "scan",
    "scan_segment",
    "serialize_item",
]

# PEP 562: a public name is imported from its module when it is first asked for, so that
# a handler pays only for what it uses.
_MODULE_OF = {
    "AsyncBatchWriter": "resilient_aws.dynamodb._aio",
    "BatchGetResult": "resilient_aws.dynamodb._get",
    "BatchResult": "resilient_aws.results",
    "BatchWriter": "resilient_aws.dynamodb._write",
    "FailedEntry": "resilient_aws.results",
    "KeySchema": "resilient_aws.dynamodb._schema",
    "Numbers": "resilient_aws.dynamodb._serialize",
    "Page": "resilient_aws.dynamodb._read",
    "ParallelScan": "resilient_aws.dynamodb._parallel",
    "Read": "resilient_aws.dynamodb._read",
    "ReadSummary": "resilient_aws.dynamodb._read",
    "abatch_get": "resilient_aws.dynamodb._aio",
    "batch_get": "resilient_aws.dynamodb._get",
    "describe_key_schema": "resilient_aws.dynamodb._schema",
    "deserialize_item": "resilient_aws.dynamodb._serialize",
    "item_size": "resilient_aws.dynamodb._serialize",
    "parallel_scan": "resilient_aws.dynamodb._parallel",
    "query": "resilient_aws.dynamodb._read",
    "scan": "resilient_aws.dynamodb._read",
    "scan_segment": "resilient_aws.dynamodb._read",
    "serialize_item": "resilient_aws.dynamodb._serialize",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

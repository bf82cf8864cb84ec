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

from resilient_aws.dynamodb._get import BatchGetResult, batch_get
from resilient_aws.dynamodb._parallel import ParallelScan, parallel_scan
from resilient_aws.dynamodb._read import Page, Read, ReadSummary, query, scan, scan_segment
from resilient_aws.dynamodb._schema import KeySchema, describe_key_schema
from resilient_aws.dynamodb._serialize import Numbers, deserialize_item, item_size, serialize_item
from resilient_aws.dynamodb._write import BatchWriter
from resilient_aws.results import BatchResult, FailedEntry

__all__ = [
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

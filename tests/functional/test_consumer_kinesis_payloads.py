"""A Kinesis record put by ``KinesisPutter(payloads=)`` reaches a ``BatchProcessor(payloads=)``
record function with its payload, not the pointer; a missing object fails that record only."""

from __future__ import annotations

import base64
from typing import Any

import boto3
import pytest

from resilient_aws.batch import KinesisPutter
from resilient_aws.consumer import BatchProcessor
from resilient_aws.payloads import PayloadConfig, PayloadStore
from tests.batch_targets import stream_records

REGION = "us-east-1"
BUCKET = "payloads"


@pytest.fixture
def store(aws: None) -> PayloadStore:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    return PayloadStore(PayloadConfig(bucket=BUCKET, threshold=1_000), client=s3)


def kinesis_event(records: list[tuple[str, bytes]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{n}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                "kinesis": {
                    "data": base64.b64encode(data).decode(),
                    "sequenceNumber": str(n),
                    "partitionKey": key,
                },
            }
            for n, (key, data) in enumerate(records)
        ]
    }


def test_kinesis_pointer_records_reach_the_function_as_their_payload(store: PayloadStore) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    big, small = b"x" * 5_000, b"small"
    with KinesisPutter("s", client=kinesis, payloads=store) as putter:
        putter.put(big, "k", id="big")
        putter.put(small, "k", id="small")
    records = stream_records(kinesis, "s")
    assert records[0][1] != big  # the stream holds the pointer
    seen: list[bytes] = []
    result = BatchProcessor(payloads=store).process(
        kinesis_event(records), lambda r: seen.append(base64.b64decode(r.kinesis.data))
    )
    assert not result.failed
    assert seen == [big, small]


def test_a_kinesis_pointer_to_a_missing_object_fails_that_record_only(
    store: PayloadStore,
) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    with KinesisPutter("s", client=kinesis, payloads=store) as putter:
        putter.put(b"y" * 5_000, "k", id="gone")
    ((key, data),) = stream_records(kinesis, "s")
    for listed in store.client.list_objects_v2(Bucket=BUCKET)["Contents"]:
        store.client.delete_object(Bucket=BUCKET, Key=listed["Key"])
    response = BatchProcessor(payloads=store, ordered=False).process(
        kinesis_event([(key, data), ("k", b"after")]), lambda r: None
    )
    assert [f.code for f in response.failed] == ["PayloadNotFoundError"]
    assert response.response == {"batchItemFailures": [{"itemIdentifier": "0"}]}

"""Integration tests against the npm emulators (dynalite, kinesalite).

They need ``npm ci`` at the repository root. Without it they skip locally, but fail
under CI (``CI`` set), where a missing emulator means a broken install step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from resilient_aws.testing.emulators import (
    EmulatorNotFound,
    NodeEmulator,
    dynalite,
    kinesalite,
)

pytestmark = pytest.mark.emulator


def _start(factory: Callable[[], NodeEmulator]) -> Iterator[NodeEmulator]:
    try:
        emulator = factory()
    except EmulatorNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"emulator missing under CI: {exc}")
        pytest.skip(f"emulator not installed ({exc})")
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def dynalite_server() -> Iterator[NodeEmulator]:
    yield from _start(dynalite)


@pytest.fixture(scope="module")
def kinesalite_server() -> Iterator[NodeEmulator]:
    yield from _start(kinesalite)


def _client(service: str, emulator: NodeEmulator) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
    )


@pytest.fixture
def table(dynalite_server: NodeEmulator, request: pytest.FixtureRequest) -> tuple[Any, str]:
    ddb = _client("dynamodb", dynalite_server)
    name = f"t-{request.node.name[:40]}"
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    return ddb, name


def test_dynalite_put_and_get_item(table: tuple[Any, str]) -> None:
    ddb, name = table
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})

    item = ddb.get_item(TableName=name, Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]

    assert item == {"pk": {"S": "a"}, "n": {"N": "1"}}


def test_dynalite_rejects_duplicate_keys_in_batch_write(table: tuple[Any, str]) -> None:
    # moto accepts this batch; DynamoDB (and dynalite) reject the whole request.
    ddb, name = table
    requests = [{"PutRequest": {"Item": {"pk": {"S": "dup"}, "v": {"N": str(i)}}}} for i in (1, 2)]

    with pytest.raises(ClientError) as info:
        ddb.batch_write_item(RequestItems={name: requests})

    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "duplicates" in info.value.response["Error"]["Message"]
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "dup"}})


def test_kinesalite_put_records_and_read_back(kinesalite_server: NodeEmulator) -> None:
    kinesis = _client("kinesis", kinesalite_server)
    kinesis.create_stream(StreamName="events", ShardCount=2)
    deadline = time.monotonic() + 10
    while (
        status := kinesis.describe_stream_summary(StreamName="events")[
            "StreamDescriptionSummary"
        ]["StreamStatus"]
    ) != "ACTIVE":
        assert time.monotonic() < deadline, f"stream still {status}"
        time.sleep(0.05)

    sent = [f"record-{i}".encode() for i in range(10)]
    result = kinesis.put_records(
        StreamName="events",
        Records=[{"Data": data, "PartitionKey": f"pk-{i}"} for i, data in enumerate(sent)],
    )
    assert result["FailedRecordCount"] == 0
    assert len({r["ShardId"] for r in result["Records"]}) == 2  # both shards got records

    received: list[bytes] = []
    for shard in kinesis.list_shards(StreamName="events")["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName="events", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        received += [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]]

    assert sorted(received) == sorted(sent)

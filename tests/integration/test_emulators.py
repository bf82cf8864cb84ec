"""Integration tests against the npm emulators (dynalite, kinesalite).

They need ``npm ci`` at the repository root. Without it they skip locally, but fail
under CI (``CI`` set), where a missing emulator means a broken install step.
"""

from __future__ import annotations

from typing import Any, Literal

import boto3
import pytest
from botocore.exceptions import ClientError

from resilient_aws.testing.emulators import NodeEmulator

pytestmark = pytest.mark.emulator


def _client(service: Literal["dynamodb", "kinesis"], emulator: NodeEmulator) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
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
    kinesis.get_waiter("stream_exists").wait(
        StreamName="events", WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )

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

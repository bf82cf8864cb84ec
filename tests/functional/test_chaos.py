"""chaos against moto in process: injected failures look like AWS's, withheld entries are not applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from moto import mock_aws

from resilient_aws.errors import ConfigurationError
from resilient_aws.testing import chaos

REGION = "us-east-1"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


def _puts(keys: list[str]) -> list[dict[str, Any]]:
    return [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in keys]


def _stored_keys(dynamodb: Any) -> set[str]:
    return {item["pk"]["S"] for item in dynamodb.scan(TableName="t")["Items"]}


def _queue_bodies(sqs: Any, url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return bodies
        bodies += [m["Body"] for m in got]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )


def test_batch_write_item_unprocessed_items_were_not_written(dynamodb: Any) -> None:
    keys = [f"k{i}" for i in range(25)]
    with chaos(dynamodb, partial=0.4, seed=11) as injected:
        response = dynamodb.batch_write_item(RequestItems={"t": _puts(keys)})
    unprocessed = {r["PutRequest"]["Item"]["pk"]["S"] for r in response["UnprocessedItems"]["t"]}
    assert 0 < len(unprocessed) < 25
    assert _stored_keys(dynamodb) == set(keys) - unprocessed
    assert injected.stats.withheld_entries == len(unprocessed)
    assert injected.stats.partial_calls == 1


def test_every_entry_withheld_still_answers_200_with_all_unprocessed(dynamodb: Any) -> None:
    with chaos(dynamodb, partial=1.0, seed=1):
        response = dynamodb.batch_write_item(RequestItems={"t": _puts(["a", "b"])})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(response["UnprocessedItems"]["t"]) == 2
    assert _stored_keys(dynamodb) == set()


def test_batch_get_item_unprocessed_keys_are_not_in_the_responses(dynamodb: Any) -> None:
    keys = [f"k{i}" for i in range(40)]
    for start in range(0, 40, 20):
        dynamodb.batch_write_item(RequestItems={"t": _puts(keys[start : start + 20])})
    with chaos(dynamodb, partial=0.5, seed=2):
        response = dynamodb.batch_get_item(
            RequestItems={"t": {"Keys": [{"pk": {"S": k}} for k in keys], "ConsistentRead": True}}
        )
    got = {item["pk"]["S"] for item in response["Responses"]["t"]}
    unprocessed = response["UnprocessedKeys"]["t"]
    pending = {key["pk"]["S"] for key in unprocessed["Keys"]}
    assert got
    assert pending
    assert got | pending == set(keys)
    assert not got & pending
    assert unprocessed["ConsistentRead"] is True  # the request's options come back with the keys


def test_sqs_failed_entries_were_not_enqueued(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    entries = [{"Id": f"m{i}", "MessageBody": f"body-{i}"} for i in range(10)]
    with chaos(sqs, partial=0.5, seed=4):
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    failed = {f["Id"] for f in response["Failed"]}
    succeeded = {s["Id"] for s in response["Successful"]}
    assert failed
    assert succeeded
    assert failed | succeeded == {e["Id"] for e in entries}
    assert all(f["SenderFault"] is False and f["Code"] for f in response["Failed"])
    assert sorted(_queue_bodies(sqs, url)) == sorted(
        f"body-{e['Id'][1:]}" for e in entries if e["Id"] in succeeded
    )


def test_sqs_delete_batch_failed_entries_stay_in_the_queue(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    for i in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=f"b{i}")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    with chaos(sqs, partial=0.5, seed=3):
        response = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    assert len(_queue_bodies(sqs, url)) == len(response["Failed"]) > 0


def test_sns_publish_batch_failed_entries_were_not_delivered(aws: None, sqs: Any) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="t")["TopicArn"]
    url = sqs.create_queue(QueueName="sub")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    with chaos(sns, partial=0.5, seed=5):
        response = sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[{"Id": f"e{i}", "Message": f"m{i}"} for i in range(10)],
        )
    delivered = sorted(_queue_bodies(sqs, url))
    assert response["Failed"]
    assert delivered == sorted(f"m{s['Id'][1:]}" for s in response["Successful"])


def _stream_data(kinesis: Any, stream: str) -> list[bytes]:
    data: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        data += [
            r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]
        ]
    return data


def test_kinesis_put_records_answers_in_request_order_and_failed_records_are_absent(
    aws: None,
) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=2)
    records = [{"Data": f"r{i}".encode(), "PartitionKey": f"p{i % 3}"} for i in range(30)]
    with chaos(kinesis, partial=0.3, seed=6):
        response = kinesis.put_records(StreamName="s", Records=records)
    answers = response["Records"]
    assert len(answers) == 30
    failed = [i for i, a in enumerate(answers) if "ErrorCode" in a]
    assert response["FailedRecordCount"] == len(failed) > 0
    assert all(answers[i]["ErrorCode"] == "ProvisionedThroughputExceededException" for i in failed)
    assert all("SequenceNumber" in a for i, a in enumerate(answers) if i not in failed)
    stored = sorted(_stream_data(kinesis, "s"))
    assert stored == sorted(records[i]["Data"] for i in range(30) if i not in failed)


def test_eventbridge_put_events_failed_entries_were_not_routed(aws: None, sqs: Any) -> None:
    events = boto3.client("events", region_name=REGION)
    url = sqs.create_queue(QueueName="target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="all", EventPattern=json.dumps({"source": ["app"]}))
    events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": arn}])
    entries = [
        {"Source": "app", "DetailType": "t", "Detail": json.dumps({"n": i})} for i in range(10)
    ]
    with chaos(events, partial=0.4, seed=8):
        response = events.put_events(Entries=entries)
    failed = [i for i, e in enumerate(response["Entries"]) if "ErrorCode" in e]
    assert response["FailedEntryCount"] == len(failed) > 0
    routed = sorted(json.loads(b)["detail"]["n"] for b in _queue_bodies(sqs, url))
    assert routed == [i for i in range(10) if i not in failed]


def test_firehose_put_record_batch_failed_records_are_reported_in_place(aws: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="chaos-firehose")
    firehose = boto3.client("firehose", region_name=REGION)
    firehose.create_delivery_stream(
        DeliveryStreamName="d",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": "arn:aws:s3:::chaos-firehose",
        },
    )
    with chaos(firehose, partial=0.4, seed=9):
        response = firehose.put_record_batch(
            DeliveryStreamName="d", Records=[{"Data": f"r{i}\n".encode()} for i in range(10)]
        )
    answers = response["RequestResponses"]
    failed = [i for i, a in enumerate(answers) if "ErrorCode" in a]
    assert len(answers) == 10
    assert response["FailedPutCount"] == len(failed) > 0
    assert all(answers[i]["ErrorCode"] == "ServiceUnavailableException" for i in failed)
    objects = s3.list_objects_v2(Bucket="chaos-firehose").get("Contents", [])
    written = b"".join(
        s3.get_object(Bucket="chaos-firehose", Key=o["Key"])["Body"].read() for o in objects
    )
    assert sorted(written.split()) == sorted(f"r{i}".encode() for i in range(10) if i not in failed)


def test_whole_request_faults_use_each_service_codes(dynamodb: Any, sqs: Any) -> None:
    with chaos(dynamodb, throttle=1.0, seed=1), pytest.raises(ClientError) as throttled:
        dynamodb.get_item(TableName="t", Key={"pk": {"S": "x"}})
    assert throttled.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert isinstance(throttled.value, dynamodb.exceptions.ProvisionedThroughputExceededException)
    with chaos(sqs, error5xx=1.0, seed=1), pytest.raises(ClientError) as failed:
        sqs.list_queues()
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with chaos(sqs, reset=1.0, seed=1), pytest.raises(ConnectionClosedError):
        sqs.list_queues()


def test_a_lost_response_means_the_write_happened_but_the_caller_saw_a_timeout(
    dynamodb: Any,
) -> None:
    with chaos(dynamodb, lost_response=1.0, seed=1), pytest.raises(ReadTimeoutError):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "applied"}})
    assert _stored_keys(dynamodb) == {"applied"}


def test_a_throttled_batch_applies_nothing(dynamodb: Any) -> None:
    with chaos(dynamodb, throttle=1.0, partial=0.5, seed=1), pytest.raises(ClientError):
        dynamodb.batch_write_item(RequestItems={"t": _puts(["a", "b", "c"])})
    assert _stored_keys(dynamodb) == set()


def test_same_seed_same_faults(dynamodb: Any) -> None:
    def run() -> list[int]:
        counts = []
        with chaos(dynamodb, partial=0.3, seed=42):
            for n in range(5):
                r = dynamodb.batch_write_item(
                    RequestItems={"t": _puts([f"{n}-{i}" for i in range(25)])}
                )
                counts.append(len(r["UnprocessedItems"].get("t", [])))
        return counts

    assert run() == run()


def test_leaving_the_block_removes_the_faults(dynamodb: Any) -> None:
    with chaos(dynamodb, throttle=1.0):
        pass
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "fine"}})
    assert _stored_keys(dynamodb) == {"fine"}


def test_operations_limits_the_faults(dynamodb: Any) -> None:
    with chaos(dynamodb, throttle=1.0, operations={"BatchWriteItem"}) as injected:
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "ok"}})
        with pytest.raises(ClientError):
            dynamodb.batch_write_item(RequestItems={"t": _puts(["a"])})
    assert injected.stats.throttled == 1
    assert injected.stats.by_operation == {"BatchWriteItem": 1}


@pytest.mark.parametrize(
    ("rates", "field"),
    [
        ({"partial": 1.5}, "partial"),
        ({"throttle": -0.1}, "throttle"),
        ({"throttle": 0.6, "error5xx": 0.6}, "throttle"),
    ],
)
def test_rates_are_validated(dynamodb: Any, rates: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        chaos(dynamodb, **rates)
    assert caught.value.field == field


def test_the_callers_request_objects_are_never_modified(dynamodb: Any, aws: None) -> None:
    request_items = {"t": _puts([f"k{i}" for i in range(10)])}
    snapshot = json.dumps(request_items, sort_keys=True)
    with chaos(dynamodb, partial=0.5, seed=3):
        dynamodb.batch_write_item(RequestItems=request_items)
        dynamodb.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "k1"}}]}})
    assert json.dumps(request_items, sort_keys=True) == snapshot


def test_all_records_withheld_passes_botocore_validation(aws: None) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    with chaos(kinesis, partial=1.0, seed=1):
        response = kinesis.put_records(
            StreamName="s", Records=[{"Data": b"x", "PartitionKey": "p"}]
        )
    assert response["FailedRecordCount"] == 1
    assert _stream_data(kinesis, "s") == []


def test_nested_chaos_on_one_client_loses_nothing(dynamodb: Any) -> None:
    keys = [f"k{i}" for i in range(25)]
    with (
        chaos(dynamodb, partial=0.3, seed=1) as outer,
        chaos(dynamodb, partial=0.3, seed=2) as inner,
    ):
        response = dynamodb.batch_write_item(RequestItems={"t": _puts(keys)})
    unprocessed = {r["PutRequest"]["Item"]["pk"]["S"] for r in response["UnprocessedItems"]["t"]}
    stored = _stored_keys(dynamodb)
    assert stored | unprocessed == set(keys)
    assert not stored & unprocessed
    assert outer.stats.withheld_entries + inner.stats.withheld_entries == len(unprocessed)

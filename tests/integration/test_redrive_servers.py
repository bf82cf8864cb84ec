"""The redrive over HTTP: a moto server for SQS, Lambda, EventBridge and DynamoDB Streams,
kinesalite for Kinesis pointers."""

from __future__ import annotations

import io
import json
import threading
import urllib.request
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamModel,
    KinesisDataStreamModel,
)

from resilient_aws.redrive import (
    redrive_eventbridge,
    redrive_lambda,
    redrive_sqs,
    redrive_stream_pointers,
)
from resilient_aws.testing import FakeClock, MotoServer, chaos
from resilient_aws.testing.emulators import NodeEmulator
from tests.batch_targets import drain, make_queue
from tests.redrive_support import make_moto_sqs_atomic

FAULTS = {"partial": 0.3, "throttle": 0.05, "reset": 0.01}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def policy() -> Any:
    return FakeClock().policy(max_attempts=30)


def test_a_fifo_dlq_goes_back_to_its_source_in_group_order(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_moto_sqs_atomic(monkeypatch)  # the server runs in this process: SQS calls are atomic
    sqs = moto_server.client("sqs")
    dlq, dlq_arn = make_queue(sqs, _name("dlq") + ".fifo", FifoQueue="true")
    source, _ = make_queue(
        sqs,
        _name("src") + ".fifo",
        FifoQueue="true",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}),
    )
    for start in range(0, 100, 10):
        sqs.send_message_batch(
            QueueUrl=dlq,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"n": start + i}),
                    "MessageGroupId": f"g{(start + i) % 5}",
                    "MessageDeduplicationId": f"d{start + i}",
                    "MessageAttributes": {
                        "n": {"DataType": "Number", "StringValue": str(start + i)}
                    },
                }
                for i in range(10)
            ],
        )

    with chaos(sqs, seed=11, **FAULTS) as injected:
        report = redrive_sqs(dlq, client=sqs, policy=policy(), wait_time_s=0, concurrency=4)

    assert report.ok, report
    assert (report.moved, report.target) == (100, source)
    assert injected.stats.withheld_entries > 0
    groups: dict[str, list[int]] = defaultdict(list)
    while batch := sqs.receive_message(
        QueueUrl=source,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        for m in batch:
            n = json.loads(m["Body"])["n"]
            assert m["MessageAttributes"]["n"]["StringValue"] == str(n)
            groups[m["Attributes"]["MessageGroupId"]].append(n)
        sqs.delete_message_batch(
            QueueUrl=source,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    assert groups == {f"g{g}": list(range(g, 100, 5)) for g in range(5)}


@pytest.fixture
def lambda_without_docker(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Any]]:
    """moto's Lambda without Docker, recording each invocation's event."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    calls: list[Any] = []
    lock = threading.Lock()

    def invoke(
        self: Any, name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        with lock:
            calls.append(json.loads(body))
        return b"null"

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)

    def configure(use_docker: bool) -> None:
        request = urllib.request.Request(
            f"{moto_server.endpoint_url}/moto-api/config",
            data=json.dumps({"lambda": {"use_docker": use_docker}}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    configure(False)
    yield calls
    configure(True)


def make_function(moto_server: MotoServer, name: str) -> str:
    role = moto_server.client("iam").create_role(
        RoleName=_name("role"), AssumeRolePolicyDocument="{}"
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return str(
        moto_server.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
    )


def test_lambda_failures_are_invoked_again_through_the_server(
    moto_server: MotoServer, lambda_without_docker: list[Any]
) -> None:
    sqs, lam = moto_server.client("sqs"), moto_server.client("lambda")
    arn = make_function(moto_server, _name("fn"))
    url, _ = make_queue(sqs, _name("failures"))
    for n in range(30):
        record = {
            "version": "1.0",
            "timestamp": "2019-11-14T18:16:05.568Z",
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{arn}:$LATEST",
                "condition": "EventAgeExceeded",
                "approximateInvokeCount": 0,
            },
            "requestPayload": {"n": n},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "responsePayload": None,
        }
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    with chaos(lam, throttle=0.1, reset=0.02, seed=2):
        report = redrive_lambda(url, client=sqs, lambda_client=lam, policy=policy(), wait_time_s=0)

    assert report.ok and report.moved == 30
    assert sorted(call["n"] for call in lambda_without_docker) == list(range(30))
    assert not drain(sqs, url)


def test_eventbridge_dlq_events_reach_the_rules_target_through_the_server(
    moto_server: MotoServer,
) -> None:
    sqs, events = moto_server.client("sqs"), moto_server.client("events")
    bus, rule = _name("bus"), _name("rule")
    events.create_event_bus(Name=bus)
    delivered, delivered_arn = make_queue(sqs, _name("delivered"))
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["shop"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": delivered_arn}])
    dlq, _ = make_queue(sqs, _name("target-dlq"))
    for n in range(40):
        sqs.send_message(
            QueueUrl=dlq,
            MessageBody=json.dumps(
                {
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "Placed",
                    "source": "shop",
                    "account": "123456789012",
                    "time": "2024-06-01T12:00:00Z",
                    "region": "us-east-1",
                    "resources": [],
                    "detail": {"n": n},
                }
            ),
            MessageAttributes={
                "RULE_ARN": {
                    "DataType": "String",
                    "StringValue": f"arn:aws:events:us-east-1:123456789012:rule/{bus}/{rule}",
                },
                "ERROR_CODE": {"DataType": "String", "StringValue": "NO_PERMISSIONS"},
            },
        )

    with chaos(events, seed=5, **FAULTS):
        report = redrive_eventbridge(
            dlq, client=sqs, events_client=events, policy=policy(), wait_time_s=0
        )

    assert report.ok and report.moved == 40
    assert sorted(json.loads(b)["detail"]["n"] for b in drain(sqs, delivered)) == list(range(40))
    assert not drain(sqs, dlq)


def test_dynamodb_stream_pointers_through_the_server(moto_server: MotoServer) -> None:
    sqs, ddb, streams = (moto_server.client(s) for s in ("sqs", "dynamodb", "dynamodbstreams"))
    table = _name("table")
    arn = ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]
    for i in range(20):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i:02d}"}, "n": {"N": str(i)}})
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    dlq, _ = make_queue(sqs, _name("ddb-failures"))
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=json.dumps(
            pointer(
                "DDBStreamBatchInfo",
                arn,
                shard,
                records[4]["dynamodb"]["SequenceNumber"],
                records[15]["dynamodb"]["SequenceNumber"],
                12,
            )
        ),
    )
    got: list[dict[str, Any]] = []

    report = redrive_stream_pointers(
        dlq,
        deliver=lambda rs, p: got.extend(rs),
        client=sqs,
        streams_client=streams,
        policy=policy(),
        wait_time_s=0,
    )

    assert report.ok and (report.resolved, report.records) == (1, 12)
    parsed = DynamoDBStreamModel.model_validate({"Records": got})
    assert [int(r.dynamodb.NewImage["n"]) for r in parsed.Records] == list(range(4, 16))


def pointer(info: str, arn: str, shard: str, first: str, last: str, size: int) -> dict[str, Any]:
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:consumer",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        info: {
            "shardId": shard,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": size,
            "streamArn": arn,
        },
    }


@pytest.mark.emulator
def test_kinesis_pointers_against_kinesalite(
    moto_server: MotoServer, kinesalite_server: NodeEmulator
) -> None:
    sqs, kinesis = moto_server.client("sqs"), kinesalite_server.client("kinesis")
    name = _name("clicks")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    for i in range(30):
        kinesis.put_record(
            StreamName=name, Data=json.dumps({"click": i}).encode(), PartitionKey=f"u{i % 4}"
        )
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    records = kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]
    sequences = [r["SequenceNumber"] for r in records]
    dlq, _ = make_queue(sqs, _name("kinesis-failures"))
    target, _ = make_queue(sqs, _name("replay") + ".fifo", FifoQueue="true")
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=json.dumps(
            pointer("KinesisBatchInfo", arn, shard, sequences[5], sequences[24], 20)
        ),
    )
    # and one whose records were trimmed: the shard starts after its start sequence number
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=json.dumps(
            pointer("KinesisBatchInfo", arn, shard, str(int(sequences[0]) - 1), sequences[3], 4)
        ),
    )

    report = redrive_stream_pointers(
        dlq,
        target_queue_url=target,
        client=sqs,
        kinesis_client=kinesis,
        policy=policy(),
        wait_time_s=0,
    )

    assert (report.resolved, report.records, len(report.expired)) == (1, 20, 1)
    assert report.ok  # an expired pointer is reported, it does not fail the run
    replayed = KinesisDataStreamModel.model_validate(
        {"Records": [json.loads(b) for b in drain(sqs, target)]}
    )
    assert [json.loads(r.kinesis.data)["click"] for r in replayed.Records] == list(
        range(5, 25)
    )  # shard order
    assert len(drain(sqs, dlq)) == 1  # the expired pointer stays

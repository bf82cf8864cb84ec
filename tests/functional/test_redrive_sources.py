"""redrive_lambda, redrive_eventbridge and redrive_stream_pointers against moto in process.

The dead-letter messages are shaped as AWS documents them (Lambda on-failure destination
records and DLQ attributes, EventBridge target DLQ attributes, DDBStreamBatchInfo /
KinesisBatchInfo pointers); the records handed on are checked against Powertools' parser
models of the events Lambda passes to functions.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamModel,
    DynamoDBStreamRecordModel,
    KinesisDataStreamModel,
)
from moto import mock_aws

from resilient_aws.errors import ConfigurationError, RedriveNotFoundError
from resilient_aws.redrive import (
    RedriveReport,
    StreamPointer,
    redrive_eventbridge,
    redrive_lambda,
    redrive_stream_pointers,
)
from resilient_aws.testing import FakeClock, chaos
from tests.batch_targets import depth, make_queue, take_all
from tests.redrive_support import make_moto_sqs_atomic

REGION = "us-east-1"
ACCOUNT = "123456789012"
STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"  # where moto serves them


class Invocations:
    """What moto's Lambda (no Docker) was asked to run: (function, invocation type, payload)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.answers: list[str] = []


@pytest.fixture
def invocations(monkeypatch: pytest.MonkeyPatch) -> Iterator[Invocations]:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    seen = Invocations()

    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        kind = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        with seen.lock:
            seen.calls.append((function_name, kind, json.loads(body)))
            answer = seen.answers.pop(0) if seen.answers else "null"
        return answer.encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        make_moto_sqs_atomic(monkeypatch)
        yield seen


@pytest.fixture
def sqs(invocations: Invocations) -> Any:
    return boto3.client("sqs", region_name=REGION)


def function(name: str) -> str:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return str(
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
    )


def policy() -> Any:
    return FakeClock().policy(max_attempts=30)


def put(sqs: Any, url: str, body: Any, **attributes: tuple[str, str]) -> None:
    sqs.send_message(
        QueueUrl=url,
        MessageBody=body if isinstance(body, str) else json.dumps(body),
        MessageAttributes={
            name: {"DataType": kind, "StringValue": value}
            for name, (kind, value) in attributes.items()
        },
    )


# -- Lambda ---------------------------------------------------------------------------------------


def on_failure_record(function_arn: str, n: int) -> dict[str, Any]:
    """An asynchronous invocation record for a failure, as the Lambda docs show it."""
    return {
        "version": "1.0",
        "timestamp": "2019-11-14T18:16:05.568Z",
        "requestContext": {
            "requestId": f"e4b46cbf-b738-xmpl-8880-a18cdf6120{n:02d}",
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"ORDER_IDS": [f"order-{n}"], "n": n},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorMessage": "RequestId: e4b46cbf Process exited before completing request"
        },
    }


def lambda_dlq_message(sqs: Any, url: str, n: int) -> None:
    """A Lambda DLQ message: the event as the body, RequestID / ErrorCode / ErrorMessage."""
    put(
        sqs,
        url,
        {"order": n},
        RequestID=("String", f"req-{n}"),
        ErrorCode=("Number", "200"),
        ErrorMessage=("String", "Task timed out after 3.00 seconds"),
    )


def test_on_failure_records_are_re_invoked_asynchronously_on_their_function(
    sqs: Any, invocations: Invocations
) -> None:
    arn = function("orders")
    url, _ = make_queue(sqs, "orders-failures")
    for n in range(15):
        put(sqs, url, on_failure_record(arn, n))

    report = redrive_lambda(url, client=sqs, policy=policy(), wait_time_s=0)

    assert report.ok, report
    assert report.moved == 15
    assert sorted(call[2]["n"] for call in invocations.calls) == list(range(15))
    assert {(call[0], call[1]) for call in invocations.calls} == {(f"{arn}:$LATEST", "Event")}
    assert depth(sqs, url) == 0


def test_lambda_dlq_messages_need_the_function_named(sqs: Any, invocations: Invocations) -> None:
    function("billing")
    url, _ = make_queue(sqs, "billing-dlq")
    for n in range(4):
        lambda_dlq_message(sqs, url, n)

    unnamed = redrive_lambda(url, client=sqs, policy=policy(), wait_time_s=0)
    assert (unnamed.moved, len(unnamed.failed)) == (0, 4)
    assert all(reason.startswith("NoFunction") for reason in unnamed.failed.values())
    assert depth(sqs, url) == 4 and not invocations.calls

    named = redrive_lambda(url, function_name="billing", client=sqs, policy=policy(), wait_time_s=0)
    assert named.ok and named.moved == 4
    assert sorted(call[2]["order"] for call in invocations.calls) == [0, 1, 2, 3]
    assert depth(sqs, url) == 0


def test_lambda_payloads_can_go_to_a_queue_instead(sqs: Any, invocations: Invocations) -> None:
    arn = function("shipping")
    url, _ = make_queue(sqs, "shipping-failures")
    target, _ = make_queue(sqs, "shipping-work")
    for n in range(3):
        put(sqs, url, on_failure_record(arn, n))
    lambda_dlq_message(sqs, url, 3)

    report = redrive_lambda(
        url, target_queue_url=target, client=sqs, policy=policy(), wait_time_s=0
    )

    assert report.ok and report.moved == 4
    bodies = sorted((json.loads(m["Body"]) for m in take_all(sqs, target)), key=json.dumps)
    assert bodies == sorted(
        [{"ORDER_IDS": [f"order-{n}"], "n": n} for n in range(3)] + [{"order": 3}], key=json.dumps
    )
    assert not invocations.calls


def test_what_is_not_a_lambda_failure_stays(sqs: Any, invocations: Invocations) -> None:
    arn = function("mixed")
    url, _ = make_queue(sqs, "mixed-failures")
    put(sqs, url, on_failure_record(arn, 1))
    put(sqs, url, "not json at all")
    put(sqs, url, {"KinesisBatchInfo": {"shardId": "s"}, "requestContext": {}})
    success = on_failure_record(arn, 2)
    success["requestContext"]["condition"] = "Success"
    put(sqs, url, success)
    sns_wrapped = {
        "Type": "Notification",
        "MessageId": "x",
        "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:failures",
        "Message": json.dumps(on_failure_record(arn, 3)),
    }
    put(sqs, url, sns_wrapped)

    report = redrive_lambda(url, client=sqs, policy=policy(), wait_time_s=0)

    assert report.moved == 2  # the plain record and the one an SNS topic wrapped
    reasons = sorted(reason.split(":")[0] for reason in report.failed.values())
    assert reasons == ["NotAFailure", "NotALambdaFailure", "StreamPointer"]
    assert depth(sqs, url) == 3
    assert sorted(call[2]["n"] for call in invocations.calls) == [1, 3]


def test_a_missing_function_is_refused_before_anything_moves(
    sqs: Any, invocations: Invocations
) -> None:
    url, _ = make_queue(sqs, "nowhere")
    lambda_dlq_message(sqs, url, 1)

    with pytest.raises(RedriveNotFoundError, match="target function"):
        redrive_lambda(url, function_name="missing", client=sqs, policy=policy(), wait_time_s=0)
    with pytest.raises(ConfigurationError):
        redrive_lambda(url, function_name="x", target_queue_url=url, client=sqs)
    assert depth(sqs, url) == 1


def test_lambda_redrive_under_chaos_invokes_every_event(sqs: Any, invocations: Invocations) -> None:
    arn = function("flaky")
    url, _ = make_queue(sqs, "flaky-failures")
    for n in range(60):
        put(sqs, url, on_failure_record(arn, n))
    lambda_client = boto3.client("lambda", region_name=REGION)

    with (
        chaos(lambda_client, throttle=0.1, error5xx=0.05, reset=0.02, seed=3) as injected,
        chaos(sqs, partial=0.3, throttle=0.05, seed=4),
    ):
        report = redrive_lambda(
            url, client=sqs, lambda_client=lambda_client, policy=policy(), wait_time_s=0
        )

    assert report.ok and report.moved == 60
    assert injected.stats.faults > 0
    assert set(call[2]["n"] for call in invocations.calls) == set(range(60))
    assert depth(sqs, url) == 0


# -- EventBridge ----------------------------------------------------------------------------------


def eventbridge_dlq_message(sqs: Any, url: str, n: int, *, bus: str = "orders") -> dict[str, Any]:
    """What EventBridge puts in a rule target's DLQ: the event, and why it was not delivered."""
    event = {
        "version": "0",
        "id": f"6a7e8feb-b491-4cf7-a9f1-bf3703467{n:03d}",
        "detail-type": "OrderPlaced",
        "source": "shop.orders",
        "account": ACCOUNT,
        "time": "2024-06-01T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:shop:{REGION}:{ACCOUNT}:order/{n}"],
        "detail": {"order_id": n, "total": "9.99"},
    }
    put(
        sqs,
        url,
        event,
        RULE_ARN=("String", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/to-billing"),
        TARGET_ARN=("String", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:billing"),
        ERROR_CODE=("String", "SDK_CLIENT_ERROR"),
        ERROR_MESSAGE=("String", "Unable to invoke Lambda function"),
        EXHAUSTED_RETRY_CONDITION=("String", "MaximumRetryAttempts"),
        RETRY_ATTEMPTS=("String", "185"),
    )
    return event


def bus_to_queue(sqs: Any, bus: str) -> str:
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name=bus)
    url, arn = make_queue(sqs, f"{bus}-delivered")
    events.put_rule(
        Name="to-billing", EventBusName=bus, EventPattern=json.dumps({"source": ["shop.orders"]})
    )
    events.put_targets(Rule="to-billing", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


def test_events_go_back_on_the_bus_of_their_rule(sqs: Any) -> None:
    delivered = bus_to_queue(sqs, "orders")
    dlq, _ = make_queue(sqs, "billing-target-dlq")
    sent = [eventbridge_dlq_message(sqs, dlq, n) for n in range(25)]
    events = boto3.client("events", region_name=REGION)

    with chaos(events, partial=0.3, throttle=0.05, seed=5) as injected:
        report = redrive_eventbridge(
            dlq, client=sqs, events_client=events, policy=policy(), wait_time_s=0
        )

    assert report.ok, report
    assert report.moved == 25 and depth(sqs, dlq) == 0
    assert injected.stats.withheld_entries > 0
    arrived = [json.loads(m["Body"]) for m in take_all(sqs, delivered)]
    assert sorted(e["detail"]["order_id"] for e in arrived) == list(range(25))
    for event in arrived:
        original = sent[event["detail"]["order_id"]]
        assert (event["source"], event["detail-type"], event["detail"]) == (
            original["source"],
            original["detail-type"],
            original["detail"],
        )
        assert event["resources"] == original["resources"]
        assert event["time"].startswith("2024-06-01T12:00:00")  # the original time kept


def test_what_is_not_an_event_stays_and_a_missing_bus_is_refused(sqs: Any) -> None:
    bus_to_queue(sqs, "orders")
    dlq, _ = make_queue(sqs, "mixed-target-dlq")
    eventbridge_dlq_message(sqs, dlq, 1)
    put(sqs, dlq, {"no": "event"}, RULE_ARN=("String", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/x"))
    put(sqs, dlq, {"source": "a", "detail-type": "b", "detail": {}})  # no RULE_ARN: which bus?

    report = redrive_eventbridge(dlq, client=sqs, policy=policy(), wait_time_s=0)

    assert report.moved == 1
    assert sorted(r.split(":")[0] for r in report.failed.values()) == ["NoBus", "NotAnEvent"]
    with pytest.raises(RedriveNotFoundError, match="event bus"):
        redrive_eventbridge(dlq, bus_name="nope", client=sqs, policy=policy(), wait_time_s=0)
    assert depth(sqs, dlq) == 2


# -- stream pointers ------------------------------------------------------------------------------


@pytest.fixture
def streams(sqs: Any) -> Any:
    return boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=STREAMS_ENDPOINT)


def table_with_stream(name: str, items: int) -> tuple[str, str, list[dict[str, Any]]]:
    """(stream arn, shard id, the shard's records) of a table with ``items`` items written."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    arn = ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    for i in range(items):
        ddb.put_item(
            TableName=name,
            Item={
                "pk": {"S": f"item-{i:03d}"},
                "n": {"N": str(i)},
                "sig": {"B": bytes([i, 255])},  # binary: base64 in Lambda's JSON
                "parts": {"BS": [b"x\x00", bytes([i + 1])]},
            },
        )
    streams = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=STREAMS_ENDPOINT)
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return arn, shard, streams.get_records(ShardIterator=iterator)["Records"]


def pointer_record(
    kind: str, arn: str, shard: str, first: str, last: str, size: int, function_arn: str
) -> dict[str, Any]:
    """An event source mapping failure record, as the Lambda docs show it."""
    info = "DDBStreamBatchInfo" if kind == "dynamodb" else "KinesisBatchInfo"
    return {
        "requestContext": {
            "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:13:49Z",
        info: {
            "shardId": shard,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
            "batchSize": size,
            "streamArn": arn,
        },
    }


def sequence(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def test_dynamodb_pointers_resolve_into_lambda_shaped_records_in_a_queue(
    sqs: Any, streams: Any
) -> None:
    arn, shard, records = table_with_stream("orders", 30)
    dlq, _ = make_queue(sqs, "orders-stream-failures")
    target, _ = make_queue(sqs, "orders-replay")
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders-consumer"
    for start in (0, 10, 20):
        first, last = records[start], records[start + 9]
        put(
            sqs,
            dlq,
            pointer_record("dynamodb", arn, shard, sequence(first), sequence(last), 10, fn),
        )

    report = redrive_stream_pointers(
        dlq,
        target_queue_url=target,
        client=sqs,
        streams_client=streams,
        policy=policy(),
        wait_time_s=0,
    )

    assert report.ok, report
    assert (report.resolved, report.records, report.moved, report.expired) == (3, 30, 3, {})
    replayed = [json.loads(m["Body"]) for m in take_all(sqs, target)]
    parsed = DynamoDBStreamModel.model_validate({"Records": replayed})  # Lambda's event shape
    assert sorted(int(r.dynamodb.NewImage["n"]) for r in parsed.Records) == list(range(30))
    for record in replayed:  # binary values as Lambda sends them: base64 text, not bytes' repr
        image = record["dynamodb"]["NewImage"]
        n = int(image["n"]["N"])
        assert base64.b64decode(image["sig"]["B"]) == bytes([n, 255])
        assert sorted(base64.b64decode(v) for v in image["parts"]["BS"]) == sorted(
            [b"x\x00", bytes([n + 1])]
        )
    assert {r["eventSourceARN"] for r in replayed} == {arn}
    assert depth(sqs, dlq) == 0


def kinesis_stream(name: str, count: int) -> tuple[str, str, list[dict[str, Any]]]:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    for i in range(count):
        kinesis.put_record(
            StreamName=name, Data=json.dumps({"click": i}).encode(), PartitionKey=f"user-{i % 3}"
        )
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return arn, shard, kinesis.get_records(ShardIterator=iterator)["Records"]


def test_kinesis_pointers_are_replayed_to_the_function_that_failed(
    sqs: Any, invocations: Invocations
) -> None:
    fn = function("clicks-consumer")
    arn, shard, records = kinesis_stream("clicks", 12)
    dlq, _ = make_queue(sqs, "clicks-failures")
    put(
        sqs,
        dlq,
        pointer_record(
            "kinesis", arn, shard, records[2]["SequenceNumber"], records[9]["SequenceNumber"], 8, fn
        ),
    )

    report = redrive_stream_pointers(
        dlq, client=sqs, policy=policy(), wait_time_s=0, invoke_identity_arn="arn:aws:iam::1:role/r"
    )

    assert report.ok, report
    assert (report.resolved, report.records) == (1, 8)
    [(name, kind, event)] = invocations.calls
    assert (name, kind) == (fn, "RequestResponse")
    parsed = KinesisDataStreamModel.model_validate(event)  # Lambda's event shape, exactly
    assert [json.loads(r.kinesis.data)["click"] for r in parsed.Records] == list(range(2, 10))
    assert parsed.Records[0].eventID == f"{shard}:{records[2]['SequenceNumber']}"


def test_a_function_that_fails_again_keeps_the_pointer(sqs: Any, invocations: Invocations) -> None:
    fn = function("still-broken")
    arn, shard, records = kinesis_stream("broken", 4)
    dlq, _ = make_queue(sqs, "broken-failures")
    put(
        sqs,
        dlq,
        pointer_record(
            "kinesis", arn, shard, records[0]["SequenceNumber"], records[3]["SequenceNumber"], 4, fn
        ),
    )
    invocations.answers.append(
        json.dumps({"batchItemFailures": [{"itemIdentifier": records[1]["SequenceNumber"]}]})
    )

    report = redrive_stream_pointers(dlq, client=sqs, policy=policy(), wait_time_s=0)

    assert not report.ok
    assert next(iter(report.failed.values())).startswith("BatchItemFailures")
    assert depth(sqs, dlq) == 1


def test_expired_pointers_are_reported_not_failed(sqs: Any, streams: Any) -> None:
    arn, shard, records = kinesis_stream("short-lived", 5)
    d_arn, d_shard, d_records = table_with_stream("events", 5)
    dlq, _ = make_queue(sqs, "old-failures")
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:x"
    # the first record was trimmed: the stream now starts after the pointer's start
    trimmed_start = str(int(records[0]["SequenceNumber"]) - 1)
    put(
        sqs,
        dlq,
        pointer_record("kinesis", arn, shard, trimmed_start, records[2]["SequenceNumber"], 3, fn),
    )
    # the stream of a table that was deleted since
    g_arn, g_shard, g_records = table_with_stream("dropped", 2)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName="dropped")
    put(
        sqs,
        dlq,
        pointer_record(
            "dynamodb", g_arn, g_shard, sequence(g_records[0]), sequence(g_records[1]), 2, fn
        ),
    )
    # a good one, and one that is not a pointer
    put(
        sqs,
        dlq,
        pointer_record(
            "dynamodb", d_arn, d_shard, sequence(d_records[0]), sequence(d_records[4]), 5, fn
        ),
    )
    put(sqs, dlq, {"DDBStreamBatchInfo": {"shardId": "s"}})
    got: list[tuple[StreamPointer, int]] = []

    report = redrive_stream_pointers(
        dlq,
        deliver=lambda records, pointer: got.append((pointer, len(records))),
        client=sqs,
        streams_client=streams,
        policy=policy(),
        wait_time_s=0,
    )

    assert (report.resolved, report.records, report.moved) == (1, 5, 1)
    assert len(report.expired) == 2
    reasons = sorted(report.expired.values())
    assert reasons[0].startswith("ResourceNotFoundException")
    assert "trimmed" in reasons[1]
    assert next(iter(report.failed.values())).startswith("NotAStreamPointer")
    assert not report.ok  # the malformed message failed; the expired ones alone would not
    assert depth(sqs, dlq) == 3  # expired pointers stay unless delete_expired
    assert [n for _, n in got] == [5]
    assert "2 expired" in str(report)

    cleanup = redrive_stream_pointers(
        dlq,
        deliver=lambda r, p: None,
        delete_expired=True,
        client=sqs,
        streams_client=streams,
        policy=policy(),
        wait_time_s=0,
    )
    assert len(cleanup.expired) == 2 and depth(sqs, dlq) == 1


def test_a_deleted_kinesis_stream_expires_its_pointers(sqs: Any) -> None:
    arn, shard, records = kinesis_stream("deleted", 3)
    boto3.client("kinesis", region_name=REGION).delete_stream(StreamName="deleted")
    dlq, _ = make_queue(sqs, "deleted-failures")
    put(
        sqs,
        dlq,
        pointer_record(
            "kinesis",
            arn,
            shard,
            records[0]["SequenceNumber"],
            records[2]["SequenceNumber"],
            3,
            "f",
        ),
    )

    report = redrive_stream_pointers(
        dlq, deliver=lambda r, p: None, client=sqs, policy=policy(), wait_time_s=0
    )

    assert report.ok and next(iter(report.expired.values())).startswith("ResourceNotFoundException")
    assert report.to_dict()["expired"] == report.expired


def test_dynamodb_records_keep_lambdas_shape_through_a_callable(sqs: Any, streams: Any) -> None:
    arn, shard, records = table_with_stream("shape", 3)
    dlq, _ = make_queue(sqs, "shape-failures")
    put(
        sqs,
        dlq,
        pointer_record("dynamodb", arn, shard, sequence(records[0]), sequence(records[2]), 3, "f"),
    )
    got: list[dict[str, Any]] = []

    report: RedriveReport = redrive_stream_pointers(
        dlq,
        deliver=lambda rs, p: got.extend(rs),
        client=sqs,
        streams_client=streams,
        policy=policy(),
        wait_time_s=0,
    )

    assert report.ok
    for record in got:
        DynamoDBStreamRecordModel.model_validate(record)
        assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], (int, float))
        json.dumps(record)  # JSON all the way down, as Lambda delivers it


class _SparseShard:
    """A Kinesis shard whose records lie after 60 empty pages, still behind its tip."""

    def get_shard_iterator(self, **_: Any) -> dict[str, str]:
        return {"ShardIterator": "page-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        page = int(ShardIterator.split("-")[1])
        return {
            "Records": [],
            "NextShardIterator": f"page-{page + 1}",
            "MillisBehindLatest": 60_000,
        }


def test_a_pointer_not_read_to_its_end_is_failed_not_expired(sqs: Any) -> None:
    dlq, _ = make_queue(sqs, "sparse-failures")
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/clicks"
    put(sqs, dlq, pointer_record("kinesis", arn, "shardId-000", "100", "101", 2, "f"))
    report = redrive_stream_pointers(
        dlq,
        deliver=lambda records, pointer: None,
        delete_expired=True,  # an expired pointer would be deleted: this one must stay
        client=sqs,
        kinesis_client=_SparseShard(),
        policy=policy(),
        wait_time_s=0,
    )
    assert report.expired == {}
    assert [reason.split(":")[0] for reason in report.failed.values()] == [
        "StreamReadIncompleteError"
    ]
    assert depth(sqs, dlq) == 1

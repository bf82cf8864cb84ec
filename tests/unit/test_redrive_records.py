"""Reading dead-letter records: Lambda failures, EventBridge events, stream pointers (Stubber)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from resilient_aws.errors import StreamPointerExpiredError
from resilient_aws.redrive import (
    DlqMessage,
    RedriveReport,
    StreamPointer,
    parse_lambda_failure,
    parse_stream_pointer,
    read_pointer,
)
from resilient_aws.redrive._eventbridge import bus_of_rule, event_entry
from resilient_aws.redrive._message import compile_filter
from resilient_aws.redrive._targets import invoke
from resilient_aws.testing import FakeClock

ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
DDB_ARN = "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
SHARD = "shardId-00000001573689847184-864758bb"


def message(body: Any, **attributes: str) -> DlqMessage:
    return DlqMessage(
        message_id="m1",
        body=body if isinstance(body, str) else json.dumps(body),
        receipt_handle="rh",
        message_attributes={
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        },
    )


def test_an_on_failure_record_gives_back_the_request_payload() -> None:
    record = {
        "version": "1.0",
        "timestamp": "2019-11-14T18:16:05.568Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"]},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "Process exited before completing request"},
    }
    failure = parse_lambda_failure(message(record))
    assert json.loads(failure.payload) == record["requestPayload"]
    assert failure.function == record["requestContext"]["functionArn"]
    assert (failure.request_id, failure.reason, failure.shape) == (
        "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "RetriesExhausted",
        "destination",
    )
    assert "ORDER_IDS" not in repr(failure)  # payloads never printed


def test_the_request_payload_keeps_every_digit_of_its_numbers() -> None:
    body = (
        '{"requestContext": {"condition": "RetriesExhausted", "functionArn": "f"}, '
        '"requestPayload": {"amount": 12345678901234567.89, "rate": 0.10000000000000000555}}'
    )
    failure = parse_lambda_failure(message(body))
    assert failure.payload == b'{"amount":12345678901234567.89,"rate":0.10000000000000000555}'


def test_a_lambda_dlq_message_is_its_own_payload() -> None:
    failure = parse_lambda_failure(
        message('{"a": 1}', RequestID="r-1", ErrorCode="200", ErrorMessage="boom")
    )
    assert (failure.payload, failure.function, failure.request_id, failure.reason) == (
        b'{"a": 1}',
        None,
        "r-1",
        "200",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("plain text", "NotALambdaFailure"),
        ({"requestContext": {}}, "NotALambdaFailure"),
        ({"DDBStreamBatchInfo": {}}, "StreamPointer"),
        ({"requestContext": {"condition": "Success"}, "requestPayload": {}}, "NotAFailure"),
    ],
)
def test_what_is_not_a_lambda_failure_says_why(body: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_lambda_failure(message(body))


def test_the_bus_comes_from_the_rule_arn() -> None:
    assert bus_of_rule("arn:aws:events:us-east-1:1:rule/orders/to-billing") == "orders"
    assert bus_of_rule("arn:aws:events:us-east-1:1:rule/to-billing") == "default"
    with pytest.raises(ValueError, match="NotARuleArn"):
        bus_of_rule("arn:aws:sqs:us-east-1:1:queue")


def test_an_eventbridge_dlq_message_becomes_a_put_events_entry() -> None:
    event = {
        "version": "0",
        "id": "x",
        "detail-type": "OrderPlaced",
        "source": "shop",
        "account": "1",
        "time": "2024-06-01T12:00:00Z",
        "region": "eu-west-1",
        "resources": ["r1"],
        "detail": {"order": 1},
    }
    # a number no float holds: the body is the text EventBridge wrote
    body = json.dumps(event).replace('"order": 1', '"order": 1, "amount": 12345678901234567.89')
    entry = event_entry(message(body, RULE_ARN="arn:aws:events:eu-west-1:1:rule/orders/r"))
    assert entry == {
        # the detail as text, numbers digit for digit (a float would round this amount)
        "detail": '{"order":1,"amount":12345678901234567.89}',
        "source": "shop",
        "detail_type": "OrderPlaced",
        "resources": ["r1"],
        "time": dt.datetime(2024, 6, 1, 12, tzinfo=dt.timezone.utc),
        "bus_name": "orders",
        "region": "eu-west-1",
    }
    assert event_entry(message(event), bus_name="replay")["bus_name"] == "replay"
    with pytest.raises(ValueError, match="NoBus"):
        event_entry(message(event))


def pointer_body(kind: str = "KinesisBatchInfo", **changes: Any) -> dict[str, Any]:
    info = {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
        "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 500,
        "streamArn": ARN,
    }
    info.update(changes)
    return {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
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
        kind: info,
    }


def test_a_kinesis_pointer_as_the_lambda_docs_show_it() -> None:
    pointer = parse_stream_pointer(message(pointer_body()))
    assert pointer == StreamPointer(
        kind="kinesis",
        stream_arn=ARN,
        shard_id="shardId-000000000001",
        start_sequence_number="49601189658422359378836298521827638475320189012309704722",
        end_sequence_number="49601189658422359378836298522902373528957594348623495186",
        batch_size=500,
        first_arrival="2019-11-14T00:38:04.835Z",
        last_arrival="2019-11-14T00:38:05.580Z",
        function_arn="arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        condition="RetryAttemptsExhausted",
    )
    assert (pointer.stream_name, pointer.region) == ("mystream", "us-east-2")


def test_a_pointer_through_an_sns_topic_is_unwrapped() -> None:
    envelope = {
        "Type": "Notification",
        "MessageId": "n-1",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:failures",
        "Message": json.dumps(pointer_body("DDBStreamBatchInfo", streamArn=DDB_ARN)),
    }
    assert parse_stream_pointer(message(envelope)).kind == "dynamodb"


@pytest.mark.parametrize(
    "body",
    [
        "text",
        [],
        {"requestContext": {}},
        pointer_body(streamArn=""),
        pointer_body(startSequenceNumber="abc"),
    ],
)
def test_a_malformed_pointer_is_named_not_guessed(body: Any) -> None:
    with pytest.raises(ValueError, match="NotAStreamPointer"):
        parse_stream_pointer(message(body))


def ddb_pointer(
    start: str = "800000000003126276362", end: str = "800000000003126276364"
) -> StreamPointer:
    return StreamPointer("dynamodb", DDB_ARN, SHARD, start, end, batch_size=3)


def ddb_record(sequence: str) -> dict[str, Any]:
    return {
        "eventID": f"e{sequence}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-2",
        "dynamodb": {
            "ApproximateCreationDateTime": dt.datetime(2019, 11, 14, tzinfo=dt.timezone.utc),
            "Keys": {"pk": {"S": sequence}},
            "SequenceNumber": sequence,
            "SizeBytes": 26,
            "StreamViewType": "KEYS_ONLY",
        },
    }


@pytest.fixture
def streams() -> Any:
    client = boto3.client("dynamodbstreams", region_name="us-east-2")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def iterator(
    stubber: Stubber, kind: str = "AT_SEQUENCE_NUMBER", sequence: str = "800000000003126276362"
) -> None:
    stubber.add_response(
        "get_shard_iterator",
        {"ShardIterator": "i" * 10},
        {
            "StreamArn": DDB_ARN,
            "ShardId": SHARD,
            "ShardIteratorType": kind,
            "SequenceNumber": sequence,
        },
    )


def test_a_pointer_reads_from_its_start_to_its_end(streams: Any) -> None:
    client, stubber = streams
    iterator(stubber)
    page = {"Records": [ddb_record("800000000003126276362"), ddb_record("800000000003126276363")]}
    stubber.add_response("get_records", {**page, "NextShardIterator": "j" * 10})
    more = [ddb_record("800000000003126276364"), ddb_record("800000000003126276365")]
    stubber.add_response("get_records", {"Records": more, "NextShardIterator": "k" * 10})

    records = read_pointer(ddb_pointer(), client=client, policy=FakeClock().policy())

    assert [r["dynamodb"]["SequenceNumber"] for r in records] == [
        "800000000003126276362",
        "800000000003126276363",
        "800000000003126276364",
    ]
    assert records[0]["eventSourceARN"] == DDB_ARN
    assert records[0]["dynamodb"]["ApproximateCreationDateTime"] == 1573689600


def test_an_iterator_that_expires_mid_read_is_renewed_after_the_last_record(streams: Any) -> None:
    client, stubber = streams
    iterator(stubber)
    stubber.add_response(
        "get_records",
        {"Records": [ddb_record("800000000003126276362")], "NextShardIterator": "j" * 10},
    )
    stubber.add_client_error(
        "get_records", service_error_code="ExpiredIteratorException", http_status_code=400
    )
    iterator(stubber, "AFTER_SEQUENCE_NUMBER", "800000000003126276362")
    rest = [ddb_record("800000000003126276363"), ddb_record("800000000003126276364")]
    stubber.add_response("get_records", {"Records": rest, "NextShardIterator": "k" * 10})

    assert len(read_pointer(ddb_pointer(), client=client, policy=FakeClock().policy())) == 3


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("TrimmedDataAccessException", "retention"),
        ("ResourceNotFoundException", "no longer exists"),
    ],
)
def test_trimmed_or_gone_records_expire_the_pointer(streams: Any, code: str, reason: str) -> None:
    client, stubber = streams
    stubber.add_client_error("get_shard_iterator", service_error_code=code, http_status_code=400)

    with pytest.raises(StreamPointerExpiredError, match=reason) as raised:
        read_pointer(ddb_pointer(), client=client, policy=FakeClock().policy())
    assert raised.value.reason.startswith(code)


@pytest.mark.parametrize(
    ("message", "expired"),
    [
        (
            "StartingSequenceNumber 4960 used in GetShardIterator on shard shardId-000000000001 in "
            "stream mystream under account 123456789012 is invalid because it did not come from this "
            "stream.",
            True,
        ),
        (
            "Invalid StartingSequenceNumber. It encodes shardId-000000000007, while it was used in a "
            "call to a shard with shardId-000000000001",
            False,
        ),
    ],
)
def test_kinesis_says_trimmed_as_did_not_come_from_this_stream(message: str, expired: bool) -> None:
    client = boto3.client("kinesis", region_name="us-east-2")
    pointer = StreamPointer("kinesis", ARN, "shardId-000000000001", "4960", "4970")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_shard_iterator",
            service_error_code="InvalidArgumentException",
            service_message=message,
            http_status_code=400,
        )
        if expired:
            with pytest.raises(StreamPointerExpiredError, match="retention"):
                read_pointer(pointer, client=client, policy=FakeClock().policy())
        else:  # a pointer to another shard is wrong, not expired: a failure of its own
            with pytest.raises(ClientError):
                read_pointer(pointer, client=client, policy=FakeClock().policy())


def test_a_closed_shard_that_ends_before_the_pointer_expires_it(streams: Any) -> None:
    client, stubber = streams
    iterator(stubber)
    stubber.add_response(
        "get_records", {"Records": [ddb_record("800000000003126276362")]}
    )  # closed

    with pytest.raises(StreamPointerExpiredError, match="1 of the records"):
        read_pointer(ddb_pointer(), client=client, policy=FakeClock().policy())


def test_a_synchronous_invoke_fails_on_function_errors_and_item_failures() -> None:
    client = boto3.client("lambda", region_name="us-east-2")
    with Stubber(client) as stubber:
        for payload, error in (
            (b'{"errorType": "KeyError", "errorMessage": "secret"}', "Unhandled"),
            (b'{"batchItemFailures": [{"itemIdentifier": "1"}]}', None),
            (b"null", None),
        ):
            response: dict[str, Any] = {"StatusCode": 200, "Payload": payload}
            if error:
                response["FunctionError"] = error
            stubber.add_response("invoke", response)
        policy = FakeClock().policy()
        first = invoke(client, "f", b"{}", "RequestResponse", policy)
        assert first == "FunctionError: Unhandled (KeyError)"  # the type, not the message
        assert invoke(client, "f", b"{}", "RequestResponse", policy) == (
            "BatchItemFailures: the function reported 1 failed record(s)"
        )
        assert invoke(client, "f", b"{}", "RequestResponse", policy) is None


def test_filters_follow_jmespath_truth() -> None:
    zero = message({"n": 0})
    assert compile_filter("body.n")(zero)  # 0 is true in JMESPath
    assert not compile_filter("body.missing")(zero)
    assert not compile_filter("body.list")(message({"list": []}))


def test_the_report_prints_and_serializes_without_payloads() -> None:
    report = RedriveReport(source="dlq", target="src", received=3, moved=1)
    report.failed = {"m2": "InvalidMessageContents: no"}
    report.undeleted = {"m3": "delivered, but not deleted"}
    text = str(report)
    assert "1 moved" in text and "m2 (InvalidMessageContents)" in text and "not deleted" in text
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False
    assert report.handled == 3

"""resilient_aws.consumer on moto: real SQS, Kinesis and DynamoDB Streams records, with chaos.

Each record function writes its record to a DynamoDB table that ``chaos`` throttles and fails;
the processor retries it through the core. What the table holds and what the response names
account for every record: none lost, none reported that succeeded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from resilient_aws.consumer import (
    NOT_PROCESSED,
    BatchProcessor,
    DynamoDBStreamRecord,
    KinesisStreamRecord,
    SQSRecord,
    VisibilityBackoff,
)
from resilient_aws.errors import EntryValidationError
from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.outbox import CallableTarget, Outbox, OutboxEvent, relay_handler
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from resilient_aws.testing._moto_sqs import speed_up_moto_sqs
from tests.outbox_support import StreamReader, create_outbox_table
from tests.sqs_events import lambda_event

REGION = "us-east-1"


@pytest.fixture
def clients(aws: None) -> dict[str, Any]:
    made = {name: boto3.client(name, region_name=REGION) for name in ("sqs", "dynamodb", "kinesis")}
    made["dynamodb"].create_table(
        TableName="processed",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return made


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    clock = FakeClock()
    undo = speed_up_moto_sqs(clock.monotonic)  # SQS visibility timeouts follow this clock
    yield clock
    undo()


def processed(dynamodb: Any) -> set[str]:
    items = dynamodb.scan(TableName="processed", ConsistentRead=True)["Items"]
    return {item["id"]["S"] for item in items}


def recorder(dynamodb: Any, bad: set[int]) -> Any:
    """A record function: writes the record's ``n`` to the table, or fails on a bad one."""

    def record_function(record: Any) -> None:
        if isinstance(record, SQSRecord):
            n = json.loads(record.body)["n"]
        elif isinstance(record, KinesisStreamRecord):
            n = record.kinesis.data_as_json()["n"]
        else:
            assert isinstance(record, DynamoDBStreamRecord)
            n = int(record.dynamodb.new_image["n"])  # type: ignore[index]
        if n in bad:
            raise ValueError(f"record {n} is poison")
        dynamodb.put_item(TableName="processed", Item={"id": {"S": str(n)}})

    return record_function


# -- Lambda events from what moto holds ---------------------------------------------------------


def queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"]


def receive_event(sqs: Any, url: str, arn: str, n: int = 10) -> dict[str, Any]:
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=n, AttributeNames=["All"], VisibilityTimeout=30
    ).get("Messages", [])
    return lambda_event(messages, arn, REGION)


def kinesis_event(kinesis: Any, stream: str) -> dict[str, Any]:
    shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventID": f"{shard['ShardId']}:{r['SequenceNumber']}",
                "eventSourceARN": f"arn:aws:kinesis:{REGION}:123456789012:stream/{stream}",
            }
            for r in records
        ]
    }


def ids(response: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


# -- one test per source --------------------------------------------------------------------------


def test_sqs_batch_of_ten_reports_exactly_records_3_and_7_under_chaos(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs, dynamodb = clients["sqs"], clients["dynamodb"]
    url, arn = queue(sqs, "orders")
    for n in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    event = receive_event(sqs, url, arn)
    assert len(event["Records"]) == 10
    by_n = {json.loads(r["body"])["n"]: r["messageId"] for r in event["Records"]}
    processor = BatchProcessor(policy=clock.policy(max_attempts=10), records="light")
    with chaos(dynamodb, throttle=0.3, error5xx=0.1, seed=3) as faults:
        response = processor.handler(recorder(dynamodb, {3, 7}))(event, FakeLambdaContext())
    assert faults.stats.faults > 0  # the record functions really were throttled and retried
    assert ids(response) == [by_n[3], by_n[7]]
    assert processed(dynamodb) == {str(n) for n in range(10)} - {"3", "7"}


def test_kinesis_batch_failing_at_record_4_reports_4_to_the_end_and_runs_none_after(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    kinesis, dynamodb = clients["kinesis"], clients["dynamodb"]
    kinesis.create_stream(StreamName="clicks", ShardCount=1)
    for n in range(10):
        kinesis.put_record(
            StreamName="clicks", Data=json.dumps({"n": n}).encode(), PartitionKey="k"
        )
    event = kinesis_event(kinesis, "clicks")
    sequence = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    processor = BatchProcessor(policy=clock.policy(max_attempts=10), records="light")
    with chaos(dynamodb, throttle=0.3, seed=5):
        batch = processor.process(event, recorder(dynamodb, {4}), FakeLambdaContext())
    assert ids(batch.response) == sequence[4:]
    assert processed(dynamodb) == {"0", "1", "2", "3"}  # none after the failure ran


def test_dynamodb_stream_batch_stops_at_its_first_failure(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    dynamodb = clients["dynamodb"]
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for n in range(8):
        dynamodb.put_item(TableName="orders", Item={"pk": {"S": f"o{n}"}, "n": {"N": str(n)}})
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    event = StreamReader(dynamodb, streams, "orders").next_batch()
    assert event is not None and len(event["Records"]) == 8
    sequence = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    processor = BatchProcessor(policy=clock.policy(max_attempts=10), records="light")
    with chaos(dynamodb, throttle=0.3, seed=6):
        batch = processor.process(event, recorder(dynamodb, {4}), FakeLambdaContext())
    assert ids(batch.response) == sequence[4:]
    assert processed(dynamodb) == {"0", "1", "2", "3"}


def test_fifo_batch_with_two_groups_reports_only_the_failed_groups_later_records(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs, dynamodb = clients["sqs"], clients["dynamodb"]
    url, arn = queue(sqs, "orders.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for n in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}), MessageGroupId="ab"[n % 2])
    event = receive_event(sqs, url, arn)
    assert len(event["Records"]) == 10
    by_n = {json.loads(r["body"])["n"]: r["messageId"] for r in event["Records"]}
    order = [json.loads(r["body"])["n"] for r in event["Records"]]
    processor = BatchProcessor(policy=clock.policy(max_attempts=10), records="light")
    with chaos(dynamodb, throttle=0.2, seed=7):
        batch = processor.process(event, recorder(dynamodb, {2}), FakeLambdaContext())
    # group a (even n): 0 ok, 2 fails, 4, 6, 8 not run; group b runs whole
    later_a = [n for n in order if n % 2 == 0 and order.index(n) > order.index(2)]
    assert ids(batch.response) == [by_n[2]] + [by_n[n] for n in later_a]
    ran_ok = [n for n in order if n % 2 == 1 or order.index(n) < order.index(2)]
    assert processed(dynamodb) == {str(n) for n in ran_ok}
    assert len(ran_ok) + len(batch.failed) == 10  # every record accounted for


def test_fifo_batch_ordered_batch_stops_at_the_first_failure_whatever_the_group(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs, dynamodb = clients["sqs"], clients["dynamodb"]
    url, arn = queue(sqs, "whole.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for n in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}), MessageGroupId="ab"[n % 2])
    event = receive_event(sqs, url, arn)
    order = [json.loads(r["body"])["n"] for r in event["Records"]]
    processor = BatchProcessor(
        policy=clock.policy(max_attempts=10), records="light", ordered="batch"
    )
    with chaos(dynamodb, throttle=0.2, seed=7):
        batch = processor.process(event, recorder(dynamodb, {2}), FakeLambdaContext())
    # AWS's advice for FIFO: 2 fails, every record after it, of either group, comes back
    cut = order.index(2)
    assert ids(batch.response) == [r["messageId"] for r in event["Records"][cut:]]
    assert processed(dynamodb) == {str(n) for n in order[:cut]}
    assert batch.succeeded + len(batch.failed) == 10


def test_300_ms_left_and_100_ms_records_report_the_unprocessed_and_return_with_margin(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs, dynamodb = clients["sqs"], clients["dynamodb"]
    url, arn = queue(sqs, "orders")
    for n in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    event = receive_event(sqs, url, arn)
    context = FakeLambdaContext(timeout_s=0.3, clock=clock.monotonic)
    write = recorder(dynamodb, set())

    def slow(record: SQSRecord) -> None:
        write(record)
        clock.advance(0.1)  # each record takes 100 ms

    processor = BatchProcessor(margin_s=0.05, clock=clock.monotonic, records="light")
    batch = processor.process(event, slow, context)
    assert batch.succeeded == 2
    assert [f.code for f in batch.failed] == [NOT_PROCESSED] * 8
    assert len(processed(dynamodb)) == 2
    # nothing lost: what ran is in the table, the rest is in the response
    reported = set(ids(batch.response))
    ran = {json.loads(r["body"])["n"] for r in event["Records"] if r["messageId"] not in reported}
    assert {str(n) for n in ran} == processed(dynamodb)
    assert context.get_remaining_time_in_millis() >= 50  # returned before the deadline


def test_visibility_backoff_is_visible_on_the_redelivered_message(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs = clients["sqs"]
    url, arn = queue(sqs, "orders", VisibilityTimeout="5")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 1}))
    visibility = VisibilityBackoff(base_s=60, max_s=900, jitter="none", client=sqs)
    processor = BatchProcessor(
        visibility=visibility, policy=clock.policy(), clock=clock.monotonic, records="light"
    )

    def always_fails(record: SQSRecord) -> None:
        raise RuntimeError("downstream is down")

    timeouts = []
    for receive in (1, 2, 3):
        event = receive_event(sqs, url, arn)
        assert len(event["Records"]) == 1, f"receive {receive}"
        assert event["Records"][0]["attributes"]["ApproximateReceiveCount"] == str(receive)
        # chaos fails some ChangeMessageVisibilityBatch entries: the engine sends them again
        with chaos(sqs, partial=0.5, seed=receive, operations={"ChangeMessageVisibilityBatch"}):
            batch = processor.process(event, always_fails, FakeLambdaContext(clock=clock.monotonic))
        assert len(batch.failed) == 1
        timeout = batch.visibility[batch.failed[0].item_identifier]
        timeouts.append(timeout)
        clock.advance(timeout - 1)
        assert receive_event(sqs, url, arn)["Records"] == []  # not back after the queue's 5 s
        clock.advance(2)
    assert timeouts == [60, 120, 240]


def test_the_queues_own_timeout_is_kept_without_backoff(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs = clients["sqs"]
    url, arn = queue(sqs, "orders")
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    event = receive_event(sqs, url, arn)
    batch = BatchProcessor(records="light").process(event, lambda record: 1 / 0)
    assert batch.visibility == {} and len(batch.failed) == 1
    clock.advance(31)
    assert len(receive_event(sqs, url, arn)["Records"]) == 1


def test_each_record_through_idempotent_runs_once_across_redeliveries(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    sqs, dynamodb = clients["sqs"], clients["dynamodb"]
    dynamodb.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = IdempotencyStore("idempotency", client=dynamodb, policy=clock.policy())
    charged: list[str] = []

    @idempotent(store, key="powertools_json(body).order", key_prefix="charge")
    def charge(record: SQSRecord, context: Any) -> str:
        charged.append(record.json_body["order"])
        return "charged"

    url, arn = queue(sqs, "orders")
    for order in ["a", "b", "a", "c", "b"]:  # delivered twice: a and b
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"order": order}))
    event = receive_event(sqs, url, arn)
    processor = BatchProcessor(policy=clock.policy(max_attempts=10), records="light")
    with chaos(dynamodb, throttle=0.2, seed=9):
        response = processor.handler(charge)(event, FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert sorted(charged) == ["a", "b", "c"]


def test_the_relay_refuses_a_malformed_stream_batch_before_publishing_anything(
    aws: None, clock: FakeClock
) -> None:
    # A record the response could not name fails the invocation (Lambda retries the batch
    # whole): the events of the batch must not have been published first, or every retry
    # publishes them again.
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_outbox_table(dynamodb)
    outbox = Outbox("orders", client=dynamodb, policy=clock.policy(), clock=clock.monotonic)
    for n in (1, 2):
        outbox.write(events=[OutboxEvent("OrderPlaced", "a", {"n": n}, sequence=n)])
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    event = StreamReader(dynamodb, streams, "orders").next_batch()
    assert event is not None and len(event["Records"]) == 2
    del event["Records"][1]["dynamodb"]["SequenceNumber"]
    published: list[OutboxEvent] = []

    def publish(events: Any) -> dict[str, str]:
        published.extend(events)
        return {}

    handler = relay_handler(outbox, CallableTarget(publish))
    with pytest.raises(EntryValidationError, match="record 1"):
        handler(event, FakeLambdaContext())
    assert published == []

"""The batch senders against moto in process: results, answers, bad input, ordering under chaos."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import boto3
import pytest

from resilient_aws.batch import (
    EventBridgePutter,
    FirehosePutter,
    KinesisPutter,
    SnsPublisher,
    SqsDeleter,
    SqsSender,
    SqsVisibilityChanger,
    event_size,
)
from resilient_aws.errors import BatchWriteError, EntryTooLargeError, EntryValidationError
from resilient_aws.limits import SQS_BATCH
from resilient_aws.testing import FakeClock, chaos
from tests.batch_targets import (
    bucket_lines,
    drain,
    eventbridge_to_queue,
    firehose_to_bucket,
    make_queue,
    sns_to_queue,
    stream_records,
)

REGION = "us-east-1"


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


def test_senders_keep_no_answers_unless_asked(sqs: Any) -> None:
    url, _ = make_queue(sqs, "quiet")
    with SqsSender(url, client=sqs) as sender:
        sender.send_many(f"body-{i}" for i in range(12))
    assert (sender.result.succeeded, sender.result.answers) == (12, [])


def test_sqs_sender_answers_every_message_with_its_message_id(sqs: Any) -> None:
    url, _ = make_queue(sqs, "q")
    with SqsSender(url, client=sqs, keep_answers=True) as sender:
        for i in range(25):
            sender.send_message(
                f"body-{i}",
                id=f"m{i}",
                attributes={"n": {"DataType": "Number", "StringValue": str(i)}},
            )
    result = sender.result
    assert (result.submitted, result.succeeded, result.requests) == (25, 25, 3)
    assert sorted(a.entry_id for a in result.answers) == sorted(f"m{i}" for i in range(25))
    assert all("MessageId" in a.response and "Id" not in a.response for a in result.answers)
    assert sorted(drain(sqs, url)) == sorted(f"body-{i}" for i in range(25))


def test_sqs_batches_are_cut_by_bytes_as_well_as_count(sqs: Any) -> None:
    url, _ = make_queue(sqs, "q")
    body = "x" * 300_000
    with SqsSender(url, client=sqs, concurrency=1) as sender:
        for _ in range(7):
            sender.send_message(body)
    assert sender.result.requests == 3  # 3 + 3 + 1 messages of 300 KB under a 1 MiB request


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.send_message(b"bytes"), "must be a str"),
        (lambda s: s.send_message(""), "empty"),
        (lambda s: s.send_message("x" * (1024 * 1024 + 1)), "over the limit"),
        (lambda s: s.send_message("x", delay_seconds=901), "delay_seconds"),
        (lambda s: s.send_message("x", deduplication_id="d"), "standard queue"),
        (lambda s: s.send_message("x", attributes={"kind": "order"}), "attribute 'kind' must be"),
        (
            lambda s: s.send_message("x", attributes={"n": {"DataType": "Number"}}),
            "attribute 'n' needs exactly one of StringValue and BinaryValue",
        ),
        (lambda s: s.send_message("x", attributes="kind=order"), "attributes must map"),  # type: ignore[arg-type]
        (
            lambda s: s.send_message(
                "x",
                attributes={f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
            ),
            "11 message attributes",
        ),
    ],
)
def test_bad_messages_raise_typed_errors_and_keep_the_rest(
    sqs: Any, call: Any, message: str
) -> None:
    url, _ = make_queue(sqs, "q")
    with SqsSender(url, client=sqs) as sender:
        sender.send_message("before")
        with pytest.raises(EntryValidationError, match=message) as caught:
            call(sender)
        sender.send_message("after")
    assert caught.value.entry_id == "#1"
    assert sorted(drain(sqs, url)) == ["after", "before"]


def test_a_fifo_message_without_a_group_is_refused(sqs: Any) -> None:
    url, _ = make_queue(sqs, "f.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    with (
        SqsSender(url, client=sqs) as sender,
        pytest.raises(EntryValidationError, match="group_id"),
    ):
        sender.send_message("x")


def test_on_invalid_report_puts_bad_messages_in_the_result(sqs: Any) -> None:
    url, _ = make_queue(sqs, "q")
    sender = SqsSender(url, client=sqs, on_invalid="report")
    sender.send_message("ok")
    sender.send_message("x" * (SQS_BATCH.max_entry_bytes or 0) + "y", id="too-big")
    with pytest.raises(BatchWriteError) as caught:
        sender.close()
    (failed,) = caught.value.result.failed
    assert (failed.entry_id, failed.code) == ("too-big", "EntryTooLargeError")
    assert caught.value.result.succeeded == 1


def test_sender_faults_are_reported_at_once_not_retried() -> None:
    from botocore.stub import Stubber

    sqs = boto3.client("sqs", region_name=REGION)
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    clock = FakeClock()
    with Stubber(sqs) as stub:
        # what SQS answers for a body with characters it does not allow
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m-0", "MD5OfMessageBody": "x"}],
                "Failed": [
                    {
                        "Id": "1",
                        "SenderFault": True,
                        "Code": "InvalidMessageContents",
                        "Message": "Invalid binary character",
                    }
                ],
            },
        )
        sender = SqsSender(url, client=sqs, policy=clock.policy(), raise_on_failure=False)
        sender.send_message("fine")
        sender.send_message("bad \x00 char", id="bad")
        result = sender.close()
        stub.assert_no_pending_responses()
    assert [f.entry_id for f in result.failed] == ["bad"]
    assert not result.failed[0].retryable
    assert result.failed[0].attempts == 1
    assert clock.slept == []


def test_partial_failures_are_retried_until_everything_is_sent(sqs: Any) -> None:
    url, _ = make_queue(sqs, "q")
    clock = FakeClock()
    with (
        chaos(sqs, partial=0.4, throttle=0.1, seed=3) as injected,
        SqsSender(url, client=sqs, policy=clock.policy(max_attempts=30), concurrency=3) as sender,
    ):
        for i in range(200):
            sender.send_message(f"b{i}")
    assert sender.result.succeeded == 200
    assert sender.result.resent >= injected.stats.withheld_entries > 0
    assert sorted(drain(sqs, url)) == sorted(f"b{i}" for i in range(200))


def test_fifo_groups_arrive_in_order_under_chaos(sqs: Any) -> None:
    url, _ = make_queue(sqs, "orders.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    clock = FakeClock()
    with (
        chaos(sqs, partial=0.4, throttle=0.05, error5xx=0.02, seed=7),
        SqsSender(url, client=sqs, policy=clock.policy(max_attempts=40), concurrency=4) as sender,
    ):
        for i in range(120):
            sender.send_message(f"g{i % 6}:{i}", group_id=f"g{i % 6}", deduplication_id=str(i))
    arrived: dict[str, list[int]] = defaultdict(list)
    for body in drain(sqs, url):
        group, n = body.split(":")
        arrived[group].append(int(n))
    assert sum(len(v) for v in arrived.values()) == 120
    for group, numbers in arrived.items():
        assert numbers == sorted(numbers), group


def test_a_finally_failed_fifo_message_holds_back_its_group_only(sqs: Any) -> None:
    url, _ = make_queue(sqs, "orders.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    sender = SqsSender(
        url,
        client=sqs,
        policy=FakeClock().policy(max_attempts=2),
        raise_on_failure=False,
        concurrency=1,
    )
    with chaos(sqs, partial=1.0, seed=1, operations={"SendMessageBatch"}):
        sender.send_message("a1", group_id="a")
        sender.flush()
    sender.send_message("a2", group_id="a")
    sender.send_message("b1", group_id="b")
    result = sender.close()
    assert [(f.entry_id, f.code) for f in result.failed] == [
        ("#0", "InternalError"),
        ("#1", "PrecedingEntryFailed"),
    ]
    assert drain(sqs, url) == ["b1"]


def test_sqs_delete_and_visibility_batches(sqs: Any) -> None:
    url, _ = make_queue(sqs, "q")
    for i in range(15):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    received = []
    while len(received) < 15:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)[
            "Messages"
        ]
    with SqsVisibilityChanger(url, client=sqs) as visibility:
        for message in received[:5]:
            visibility.change(message["ReceiptHandle"], 0)
    with SqsDeleter(url, client=sqs) as deleter:
        for message in received[5:]:
            deleter.delete(message["ReceiptHandle"], id=message["MessageId"])
    assert deleter.result.succeeded == 10
    assert sorted(drain(sqs, url)) == sorted(m["Body"] for m in received[:5])


def test_sns_publisher_to_a_subscribed_queue(aws: None, sqs: Any) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic, url = sns_to_queue(sns, sqs, "t")
    with (
        chaos(sns, partial=0.3, seed=2),
        SnsPublisher(topic, client=sns, policy=FakeClock().policy(max_attempts=30)) as publisher,
    ):
        for i in range(60):
            publisher.publish(f"n{i}", subject="s")
        with pytest.raises(EntryValidationError, match="attribute 'kind' must be") as caught:
            publisher.publish("bad", id="bad", attributes={"kind": "order"})
    assert caught.value.entry_id == "bad" and "order" not in str(caught.value)  # no value shown
    assert publisher.result.succeeded == 60
    assert sorted(drain(sqs, url)) == sorted(f"n{i}" for i in range(60))


def test_sns_fifo_topic_keeps_group_order(aws: None, sqs: Any) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic, url = sns_to_queue(sns, sqs, "ft", fifo=True)
    with (
        chaos(sns, partial=0.4, seed=4),
        SnsPublisher(topic, client=sns, policy=FakeClock().policy(max_attempts=30)) as publisher,
    ):
        for i in range(40):
            publisher.publish(f"g{i % 2}:{i}", group_id=f"g{i % 2}", deduplication_id=str(i))
    arrived: dict[str, list[int]] = defaultdict(list)
    for body in drain(sqs, url):
        group, n = body.split(":")
        arrived[group].append(int(n))
    assert {g: sorted(v) for g, v in arrived.items()} == arrived
    assert sum(map(len, arrived.values())) == 40


def test_eventbridge_putter_through_a_rule_to_sqs(aws: None, sqs: Any) -> None:
    events = boto3.client("events", region_name=REGION)
    url = eventbridge_to_queue(events, sqs, "rule")
    with (
        chaos(events, partial=0.3, seed=5),
        EventBridgePutter(
            client=events, policy=FakeClock().policy(max_attempts=30), keep_answers=True
        ) as putter,
    ):
        for i in range(50):
            putter.put({"n": i, "price": 1.5}, source="test", detail_type="Tick")
        with pytest.raises(EntryValidationError, match="JSON object"):
            putter.put("[1, 2]", source="test", detail_type="Tick")
    assert len({a.response["EventId"] for a in putter.result.answers}) == 50
    assert sorted(json.loads(b)["detail"]["n"] for b in drain(sqs, url)) == list(range(50))


def test_eventbridge_size_is_computed_as_documented() -> None:
    import datetime

    entry = {
        "Source": "shop",
        "DetailType": "Ordered",
        "Detail": '{"a":"é"}',
        "Resources": ["arn:x"],
        "Time": datetime.datetime.now(),
    }
    assert event_size(entry) == 14 + 4 + 7 + 10 + 5


def test_eventbridge_takes_events_up_to_1_mb_and_cuts_requests_below_it(
    aws: None, sqs: Any
) -> None:
    events = boto3.client("events", region_name=REGION)
    url = eventbridge_to_queue(events, sqs, "big")
    padding = "x" * 300_000  # over the old 256 KB limit
    with EventBridgePutter(client=events, concurrency=1) as putter:
        for i in range(4):
            putter.put({"n": i, "pad": padding}, source="test", detail_type="Big", id=f"e{i}")
        with pytest.raises(EntryTooLargeError) as caught:  # "less than 1MB"
            putter.put({"pad": "x" * 1_000_000}, source="test", detail_type="Big", id="huge")
    assert caught.value.entry_id == "huge"
    assert putter.result.succeeded == 4
    assert putter.result.requests == 2  # 3 events of ~300 KB fit under 1 MB, the 4th does not
    assert sorted(json.loads(b)["detail"]["n"] for b in drain(sqs, url)) == [0, 1, 2, 3]


def test_kinesis_putter_answers_with_sequence_numbers(aws: None) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=2)
    # moto's Kinesis is not thread-safe (concurrent puts overwrite each other): one at a time here,
    # concurrency is tested against kinesalite.
    with (
        chaos(kinesis, partial=0.3, seed=6),
        KinesisPutter(
            "s",
            client=kinesis,
            policy=FakeClock().policy(max_attempts=30),
            concurrency=1,
            keep_answers=True,
        ) as putter,
    ):
        for i in range(700):
            putter.put(f"r{i}", f"k{i % 10}")
    assert putter.result.requests >= 2
    assert all({"SequenceNumber", "ShardId"} <= set(a.response) for a in putter.result.answers)
    assert sorted(d for _, d in stream_records(kinesis, "s")) == sorted(
        f"r{i}".encode() for i in range(700)
    )


def test_kinesis_ordered_mode_keeps_each_key_in_order(aws: None) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=3)
    with (
        chaos(kinesis, partial=0.4, throttle=0.05, seed=8),
        KinesisPutter(
            "s",
            client=kinesis,
            ordered=True,
            policy=FakeClock().policy(max_attempts=40),
            concurrency=1,
        ) as putter,
    ):
        for i in range(300):
            putter.put(str(i), f"key-{i % 7}")
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, data in stream_records(kinesis, "s"):
        per_key[key].append(int(data))
    assert sum(map(len, per_key.values())) == 300
    for key, numbers in per_key.items():
        assert numbers == sorted(numbers), key


def test_kinesis_bad_records(aws: None) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    putter = KinesisPutter("s", client=kinesis)
    with pytest.raises(EntryValidationError, match="partition key"):
        putter.put(b"x", "")
    with pytest.raises(EntryValidationError, match="partition key"):
        putter.put(b"x", "k" * 257)
    with pytest.raises(EntryTooLargeError):
        putter.put(b"x" * (10 * 1024 * 1024), "k")
    assert putter.close().submitted == 0


def test_firehose_putter_to_s3(aws: None) -> None:
    firehose = boto3.client("firehose", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    firehose_to_bucket(firehose, s3, "delivery")
    with (
        chaos(firehose, partial=0.3, seed=9),
        FirehosePutter(
            "delivery", client=firehose, policy=FakeClock().policy(max_attempts=30)
        ) as putter,
    ):
        for i in range(120):
            putter.put(f"line-{i}\n")
    assert putter.result.succeeded == 120
    assert sorted(bucket_lines(s3, "delivery")) == sorted(f"line-{i}".encode() for i in range(120))


def test_flush_interval_sends_a_partial_batch_without_close(sqs: Any) -> None:
    import time

    url, _ = make_queue(sqs, "q")
    sender = SqsSender(url, client=sqs, flush_interval=0.05)
    sender.send_message("lonely")
    deadline = time.monotonic() + 30  # only a failing test waits that long
    while sender.result.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sender.result.requests == 1
    sender.close()
    assert drain(sqs, url) == ["lonely"]

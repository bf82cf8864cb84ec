"""Review of resilient_aws.payloads: holes found by reproducing them first.

Each test counts the objects left in the bucket (none orphaned) and the pointers left in the
queue (none dangling).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError

from resilient_aws.batch import SnsPublisher, SqsSender
from resilient_aws.consumer import BatchProcessor, SQSRecord
from resilient_aws.errors import ConfigurationError, EntryTooLargeError
from resilient_aws.payloads import PayloadConfig, PayloadStore
from resilient_aws.testing import FakeClock, chaos
from tests.sqs_events import lambda_event

REGION = "us-east-1"
BUCKET = "payloads"


@pytest.fixture
def clients(aws: None) -> dict[str, Any]:
    made: dict[str, Any] = {
        name: boto3.client(name, region_name=REGION) for name in ("s3", "sqs", "sns")
    }
    made["s3"].create_bucket(Bucket=BUCKET)
    return made


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def objects(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"]


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=300,
        ).get("Messages", [])
        if not batch:
            return got
        got.extend(batch)


HUGE_ATTRIBUTE = {"blob": {"DataType": "String", "StringValue": "a" * 1_100_000}}


@pytest.mark.parametrize("on_invalid", ["raise", "report"])
def test_a_message_too_large_even_as_a_pointer_uploads_nothing(
    clients: dict[str, Any], clock: FakeClock, on_invalid: Any
) -> None:
    """Its attributes alone exceed SQS's 1 MiB: the pointer message would be refused, so the
    payload must not be uploaded first (with on_invalid="raise" nothing would delete it)."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "too-large")
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(
        url, client=sqs, policy=clock.policy(), payloads=store, on_invalid=on_invalid
    )
    if on_invalid == "raise":
        with pytest.raises(EntryTooLargeError):
            sender.send_message("x" * 10, id="big", attributes=HUGE_ATTRIBUTE)
        assert objects(s3) == []  # before the fix: the object was left, named nowhere
    else:
        sender.send_message("x" * 10, id="big", attributes=HUGE_ATTRIBUTE)
        assert objects(s3) == []  # not even uploaded and deleted later
    result = sender.close() if on_invalid == "raise" else None
    if result is not None:
        assert result.failed == []
    assert objects(s3) == []
    assert received(sqs, url) == []


def test_sns_a_message_too_large_even_as_a_pointer_uploads_nothing(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sns = clients["s3"], clients["sns"]
    topic = sns.create_topic(Name="too-large")["TopicArn"]
    store = PayloadStore(BUCKET, client=s3)
    publisher = SnsPublisher(topic, client=sns, policy=clock.policy(), payloads=store)
    attributes = {"blob": {"DataType": "String", "StringValue": "a" * 300_000}}
    with pytest.raises(EntryTooLargeError):
        publisher.publish("x" * 10, id="big", attributes=attributes)
    assert objects(s3) == []
    publisher.close()
    assert objects(s3) == []


def test_a_message_added_to_a_closed_sender_uploads_nothing(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "closed")
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(url, client=sqs, policy=clock.policy(), payloads=store)
    sender.close()
    with pytest.raises(ConfigurationError):
        sender.send_message("x" * 300_000, id="late")
    assert objects(s3) == []  # before the fix: uploaded, then refused by the closed engine


def test_sns_a_message_added_to_a_closed_publisher_uploads_nothing(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sns = clients["s3"], clients["sns"]
    topic = sns.create_topic(Name="closed")["TopicArn"]
    store = PayloadStore(BUCKET, client=s3)
    publisher = SnsPublisher(topic, client=sns, policy=clock.policy(), payloads=store)
    publisher.close()
    with pytest.raises(ConfigurationError):
        publisher.publish("x" * 300_000, id="late")
    assert objects(s3) == []


class _RefusingClient:
    """An SQS client whose botocore refuses (before sending) any request holding the entry
    with a ``poison`` attribute, as botocore's parameter validation does."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message_batch(self, **kwargs: Any) -> Any:
        for entry in kwargs["Entries"]:
            if "poison" in entry.get("MessageAttributes", {}):
                raise ParamValidationError(report="Invalid type for parameter Entries[0]")
        return self._client.send_message_batch(**kwargs)


def test_a_request_botocore_refused_before_sending_leaves_no_object(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """botocore's parameter validation refuses a request before anything is sent: the entry
    it isolates was never sent, so its object is deleted, not kept as "may have been sent"."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "refused")
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(
        url,
        client=_RefusingClient(sqs),
        policy=clock.policy(),
        payloads=store,
        raise_on_failure=False,
    )
    poison = {"poison": {"DataType": "String", "StringValue": "p"}}
    for n in range(4):
        sender.send_message("x" * 300_000, id=f"m{n}", attributes=poison if n == 2 else None)
    result = sender.close()
    assert [f.entry_id for f in result.failed] == ["m2"]
    assert sender.payloads_left == []  # before the fix: m2's object kept as maybe sent
    assert len(objects(s3)) == 3
    assert len(received(sqs, url)) == 3


def test_delete_after_keeps_an_object_that_a_failed_record_of_the_batch_still_needs(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """SQS delivers at least once: the same message can come twice in one batch. If one copy
    succeeds and the other fails, the failed copy comes back and needs the object."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "twice")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, delete_after=True), client=s3)
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        sender.send_message("x" * 300_000)
    (message,) = received(sqs, url)
    event = lambda_event([message, message], arn)  # a duplicate delivery
    calls: list[int] = []

    def record_function(record: SQSRecord) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("the second copy fails")

    batch = BatchProcessor(payloads=store).process(event, record_function)
    assert batch.succeeded == 1 and len(batch.failed) == 1
    assert len(objects(s3)) == 1  # before the fix: deleted, the redelivered copy dangles


class _Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_s3_calls_of_the_consumer_stop_at_the_lambda_deadline(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """The store's policy knows no Lambda deadline: reading (and deleting) a payload under a
    failing S3 retried past it, and the invocation would be killed mid-batch."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "deadline")
    sender_store = PayloadStore(BUCKET, client=s3)
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=sender_store) as sender:
        sender.send_message("x" * 300_000)
    store = PayloadStore(
        BUCKET, client=s3, policy=clock.policy(max_attempts=20, base_delay=1.0, max_delay=1.0)
    )
    processor = BatchProcessor(payloads=store, clock=clock.monotonic, margin_s=1.0)
    start = clock.monotonic()
    with chaos(s3, error5xx=1.0, operations={"GetObject"}) as injected:
        batch = processor.process(
            lambda_event(received(sqs, url), arn), lambda record: None, _Context(3000)
        )
    assert [f.code for f in batch.failed] == ["PayloadError"]
    assert clock.monotonic() - start <= 2.0  # before the fix: 19 backoffs, ~10 s
    assert injected.stats.calls < 20


def test_delete_after_stops_at_the_lambda_deadline(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "deadline-delete")
    store = PayloadStore(
        PayloadConfig(bucket=BUCKET, delete_after=True),
        client=s3,
        policy=clock.policy(max_attempts=20, base_delay=1.0, max_delay=1.0),
    )
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        sender.send_message("x" * 300_000)
    processor = BatchProcessor(payloads=store, clock=clock.monotonic, margin_s=1.0)
    start = clock.monotonic()
    with chaos(s3, error5xx=1.0, operations={"DeleteObject"}):
        batch = processor.process(
            lambda_event(received(sqs, url), arn), lambda record: None, _Context(3000)
        )
    assert not batch.failed
    assert clock.monotonic() - start <= 2.0
    assert len(objects(s3)) == 1  # left to the lifecycle rule, logged


def test_a_sender_dropped_unclosed_logs_the_objects_it_leaves(
    clients: dict[str, Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "dropped")
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(url, client=sqs, policy=clock.policy(), payloads=store)
    sender.send_message("x" * 300_000, id="forgotten")
    (key,) = objects(s3)
    del sender
    with (
        caplog.at_level(logging.WARNING, logger="resilient_aws"),
        pytest.warns(ResourceWarning),
    ):
        gc.collect()
    assert key in caplog.text and "forgotten" in caplog.text  # before: a count only


class _InterruptedS3:
    """An S3 client whose PutObject stores the object, then the caller is interrupted."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **kwargs: Any) -> Any:
        self._client.put_object(**kwargs)
        raise KeyboardInterrupt


def test_an_upload_interrupted_names_the_object_it_may_leave(
    clients: dict[str, Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "interrupted")
    store = PayloadStore(BUCKET, client=_InterruptedS3(s3))
    sender = SqsSender(url, client=sqs, policy=clock.policy(), payloads=store)
    with (
        caplog.at_level(logging.WARNING, logger="resilient_aws"),
        pytest.raises(KeyboardInterrupt),
    ):
        sender.send_message("x" * 300_000, id="cut")
    sender.close()
    (key,) = objects(s3)
    assert key in caplog.text and "cut" in caplog.text  # before: left without a word

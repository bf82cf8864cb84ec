"""resilient_aws.payloads on moto (S3, SQS, SNS): large messages through a claim-check.

Every test counts what was sent, what arrived, what failed and which objects are left in the
bucket: no message lost, no orphaned object, no pointer to a missing object.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from resilient_aws.batch import SnsPublisher, SqsSender
from resilient_aws.consumer import BatchProcessor, SQSRecord
from resilient_aws.errors import BatchWriteError, EntryTooLargeError, EntryValidationError
from resilient_aws.payloads import (
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    PayloadConfig,
    PayloadNotFoundError,
    PayloadPointer,
    PayloadStore,
    PayloadUploadError,
    pointer_of,
    resolve,
)
from resilient_aws.testing import FakeClock, chaos
from tests.sqs_events import lambda_event

REGION = "us-east-1"
BUCKET = "payloads"
MiB = 1024 * 1024


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


def queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, arn["Attributes"]["QueueArn"]


def objects(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message in the queue, as boto3 returns them (attributes included)."""
    got: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=300,
        ).get("Messages", [])
        if not batch:
            return got
        got.extend(batch)


def big(n: int, size: int) -> str:
    """A JSON document of ``size`` bytes or more, naming ``n``."""
    return json.dumps({"n": n, "pad": "x" * size})


def test_a_2_mb_message_round_trips_through_the_sender_and_the_consumer(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "orders")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="orders/"), client=s3)
    bodies = {f"m{n}": big(n, 2 * MiB if n % 3 == 0 else 100) for n in range(12)}
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        for entry_id, body in bodies.items():
            sender.send_message(body, id=entry_id)
    assert sender.result.submitted == 12 and not sender.result.failed
    assert len(objects(s3)) == 4  # 0, 3, 6, 9: the others went as they were
    assert all(key.startswith("orders/") for key in objects(s3))

    messages = receive_all(sqs, url)
    assert len(messages) == 12
    pointers = [m for m in messages if m["Body"].startswith(f'["{POINTER_CLASS}"')]
    assert len(pointers) == 4
    seen: list[str] = []

    def record_function(record: SQSRecord) -> None:
        assert "ExtendedPayloadSize" not in record.message_attributes
        seen.append(record.body)

    processor = BatchProcessor(payloads=store)
    done = 0
    for start in range(0, 12, 10):
        batch = processor.process(lambda_event(messages[start : start + 10], arn), record_function)
        assert not batch.failed
        done += batch.succeeded
    assert done == 12
    assert sorted(seen) == sorted(bodies.values())
    assert len(objects(s3)) == 4  # delete_after is off: a lifecycle rule expires them


def test_our_pointer_messages_are_what_the_extended_clients_read(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """The checks the SQS Extended Client Library (Python) makes on receive, by hand."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "interop")
    store = PayloadStore(BUCKET, client=s3)
    body = big(1, 300_000)
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        sender.send_message(body, attributes={"kind": {"DataType": "String", "StringValue": "a"}})
    (message,) = receive_all(sqs, url)
    attributes = message["MessageAttributes"]
    assert attributes["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(len(body.encode())),
    }
    assert attributes["kind"]["StringValue"] == "a"
    pointer = json.loads(message["Body"])
    assert isinstance(pointer, list) and len(pointer) == 2 and isinstance(pointer[1], dict)
    assert pointer[0] == POINTER_CLASS
    stored = s3.get_object(Bucket=pointer[1]["s3BucketName"], Key=pointer[1]["s3Key"])
    assert stored["Body"].read().decode() == body
    # boto3's own message shape resolves too
    resolved = resolve(message, store)
    assert resolved["Body"] == body and set(resolved["MessageAttributes"]) == {"kind"}


@pytest.mark.parametrize(
    ("pointer_class", "attribute"),
    [(POINTER_CLASS, "ExtendedPayloadSize"), (LEGACY_POINTER_CLASS, "SQSLargePayloadSize")],
)
def test_pointers_written_by_the_extended_clients_are_resolved(
    clients: dict[str, Any], pointer_class: str, attribute: str
) -> None:
    """A message as the Java/Python extended clients write it, built from their format by hand
    (Jackson's compact JSON and Python's json.dumps with spaces both parse)."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "from-java")
    payload = big(7, 400_000)
    s3.put_object(Bucket=BUCKET, Key="3c1d0a2e-java", Body=payload.encode())
    java = f'["{pointer_class}",{{"s3BucketName":"{BUCKET}","s3Key":"3c1d0a2e-java"}}]'
    python = json.dumps([pointer_class, {"s3BucketName": BUCKET, "s3Key": "3c1d0a2e-java"}])
    for body in (java, python):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                attribute: {"DataType": "Number", "StringValue": str(len(payload))},
                "kind": {"DataType": "String", "StringValue": "order"},
            },
        )
    messages = receive_all(sqs, url)
    got: list[tuple[str, dict[str, Any]]] = []
    processor = BatchProcessor(payloads=PayloadStore(BUCKET, client=s3))
    batch = processor.process(
        lambda_event(messages, arn),
        lambda record: got.append((record.body, dict(record.message_attributes))),
    )
    assert batch.succeeded == 2 and not batch.failed
    assert [body for body, _ in got] == [payload, payload]
    assert all(set(attributes) == {"kind"} for _, attributes in got)


def test_a_pointer_to_a_missing_object_fails_its_record_only_naming_the_message(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "dangling")
    store = PayloadStore(BUCKET, client=s3)
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        for n in range(5):
            sender.send_message(big(n, 300_000))
    messages = receive_all(sqs, url)
    gone = messages[2]
    pointer = pointer_of(gone)
    assert pointer is not None
    s3.delete_object(Bucket=pointer.bucket, Key=pointer.key)
    seen: list[int] = []
    batch = BatchProcessor(payloads=store).process(
        lambda_event(messages, arn), lambda record: seen.append(record.json_body["n"])
    )
    assert batch.total == 5 and batch.succeeded == 4
    (failed,) = batch.failed
    assert failed.item_identifier == gone["MessageId"]
    assert failed.code == "PayloadNotFoundError"
    assert isinstance(failed.error, PayloadNotFoundError)
    assert gone["MessageId"] in str(failed.error) and pointer.key in str(failed.error)
    assert "xxxx" not in str(failed.error)  # never the payload
    assert len(seen) == 4


def test_a_marked_message_whose_body_is_no_pointer_fails_its_record_only(
    clients: dict[str, Any],
) -> None:
    sqs = clients["sqs"]
    url, arn = queue(sqs, "bad-pointer")
    for body in ("plain text", '["software.amazon.payloadoffloading.PayloadS3Pointer",{}]'):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "9"}},
        )
    sqs.send_message(QueueUrl=url, MessageBody="fine")
    store = PayloadStore(BUCKET, client=clients["s3"])
    seen: list[str] = []
    batch = BatchProcessor(payloads=store).process(
        lambda_event(receive_all(sqs, url), arn), lambda record: seen.append(record.body)
    )
    assert batch.total == 3 and seen == ["fine"]
    assert sorted(f.code for f in batch.failed) == ["InvalidPointerError"] * 2


def test_delete_after_deletes_the_objects_of_the_records_that_succeeded_only(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "delete-after")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, delete_after=True), client=s3)
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        for n in range(6):
            sender.send_message(big(n, 300_000))
    assert len(objects(s3)) == 6

    def record_function(record: SQSRecord) -> None:
        if record.json_body["n"] in (1, 4):
            raise ValueError("poison")

    batch = BatchProcessor(payloads=store).process(
        lambda_event(receive_all(sqs, url), arn), record_function
    )
    assert batch.succeeded == 4 and len(batch.failed) == 2
    assert len(objects(s3)) == 2  # the failed ones come back: their objects stay


def test_a_send_that_finally_fails_leaves_no_object(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "refusing")
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(
        url,
        client=sqs,
        policy=clock.policy(max_attempts=3, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(sqs, partial=1.0, seed=3) as injected:  # SQS withholds every entry
        for n in range(15):
            sender.send_message(big(n, 300_000 if n % 2 else 10), id=f"e{n}")
        result = sender.close()
    assert injected.stats.withheld_entries > 0
    assert result.submitted == 15 and len(result.failed) == 15
    assert objects(s3) == []  # the 7 offloaded messages' objects were deleted
    assert sender.payloads_left == []
    assert all("pointer" not in failure.entry for failure in result.failed)
    assert receive_all(sqs, url) == []


def test_a_send_to_a_missing_queue_raises_and_leaves_no_object(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/nowhere"
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(url, client=sqs, policy=clock.policy(), payloads=store)
    for n in range(4):
        sender.send_message(big(n, 300_000))
    with pytest.raises(BatchWriteError) as raised:
        sender.close()
    assert len(raised.value.result.failed) == 4
    assert objects(s3) == []


def test_messages_whose_outcome_is_unknown_keep_their_objects_no_dangling_pointer(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """A response lost after SQS stored the messages: the sender cannot know they were sent, so
    it must not delete their objects, whatever happens next. Every message in the queue then
    resolves."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "lost")
    store = PayloadStore(BUCKET, client=s3)
    sender = SqsSender(
        url,
        client=sqs,
        policy=clock.policy(max_attempts=1, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(sqs, lost_response=1.0, seed=5):
        for n in range(10):
            sender.send_message(big(n, 300_000))
        result = sender.close()
    assert len(result.failed) == 10
    assert len(sender.payloads_left) == 10
    assert all("pointer" in failure.entry for failure in result.failed)
    messages = receive_all(sqs, url)
    assert len(messages) >= 10  # applied, the responses lost
    batch = BatchProcessor(payloads=store).process(
        lambda_event(messages[:10], arn), lambda record: None
    )
    assert not batch.failed


def test_s3_throttles_and_5xx_under_chaos_are_retried_by_the_core(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "chaotic")
    store = PayloadStore(BUCKET, client=s3, policy=clock.policy(max_attempts=20))
    bodies = [big(n, 300_000) for n in range(20)]
    with chaos(s3, throttle=0.3, error5xx=0.2, reset=0.1, seed=11) as injected:
        with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
            sender.send_many(bodies)
        seen: list[str] = []
        messages = receive_all(sqs, url)
        for start in range(0, len(messages), 10):
            batch = BatchProcessor(payloads=store).process(
                lambda_event(messages[start : start + 10], arn), lambda r: seen.append(r.body)
            )
            assert not batch.failed
    assert injected.stats.throttled > 0 and injected.stats.errors_5xx > 0
    assert sender.result.submitted == 20 and not sender.result.failed
    assert sorted(seen) == sorted(bodies)
    assert len(objects(s3)) == 20


def test_an_upload_that_fails_reports_its_entry_and_the_rest_goes_on(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "no-bucket")
    store = PayloadStore("no-such-bucket", client=s3, policy=clock.policy())
    sender = SqsSender(
        url, client=sqs, policy=clock.policy(), payloads=store, raise_on_failure=False
    )
    sender.send_message("small", id="small")
    sender.send_message(big(1, 300_000), id="large")
    result = sender.close()
    assert result.submitted == 2
    (failed,) = result.failed
    assert failed.entry_id == "large" and failed.code == "PayloadUploadError"
    assert "NoSuchBucket" in failed.message
    assert [m["Body"] for m in receive_all(sqs, url)] == ["small"]


def test_bad_input_is_refused_when_added_naming_the_entry(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, _ = queue(sqs, "bad-input")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, always=True, max_bytes=MiB), client=s3)
    sender = SqsSender(url, client=sqs, policy=clock.policy(), payloads=store)
    reserved = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "1"}}
    with pytest.raises(EntryValidationError, match="reserved"):
        sender.send_message("x", id="a", attributes=reserved)
    ten = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(10)}
    with pytest.raises(EntryValidationError, match="9 at most"):
        sender.send_message("x", id="b", attributes=ten)
    with pytest.raises(EntryTooLargeError, match="'c'"):
        sender.send_message("x" * (MiB + 1), id="c")
    sender.send_message("ok", id="d")
    assert sender.close().submitted == 1
    assert len(objects(s3)) == 1  # always=True: even a small message


def test_a_payload_over_the_single_put_size_goes_in_parts(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "parts")
    config = PayloadConfig(bucket=BUCKET, multipart_bytes=6 * MiB, part_bytes=5 * MiB)
    store = PayloadStore(config, client=s3, policy=clock.policy())
    body = big(1, 12 * MiB)
    with (
        chaos(s3, throttle=0.5, seed=2, operations={"UploadPart"}) as injected,
        SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender,
    ):
        sender.send_message(body)
    # three parts, each throttled one sent again (the draws depend on the random upload id)
    assert injected.stats.calls == 3 + injected.stats.throttled
    (key,) = objects(s3)
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    seen: list[str] = []
    BatchProcessor(payloads=store).process(
        lambda_event(receive_all(sqs, url), arn), lambda r: seen.append(r.body)
    )
    assert seen == [body]


def test_a_failed_multipart_upload_is_aborted_leaving_no_parts(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3 = clients["s3"]
    config = PayloadConfig(bucket=BUCKET, multipart_bytes=6 * MiB, part_bytes=5 * MiB)
    store = PayloadStore(config, client=s3, policy=clock.policy(max_attempts=2))
    with (
        chaos(s3, error5xx=1.0, seed=1, operations={"CompleteMultipartUpload"}),
        pytest.raises(PayloadUploadError) as raised,
    ):
        store.put(b"x" * (11 * MiB), entry_id="huge")
    assert raised.value.entry_id == "huge" and raised.value.key is not None
    assert objects(s3) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_sns_publisher_offloads_and_a_raw_delivery_queue_resolves(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs, sns = clients["s3"], clients["sqs"], clients["sns"]
    url, arn = queue(sqs, "subscriber")
    topic = sns.create_topic(Name="orders")["TopicArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    store = PayloadStore(BUCKET, client=s3)
    bodies = [big(n, 300_000 if n % 2 else 10) for n in range(6)]
    with SnsPublisher(topic, client=sns, policy=clock.policy(), payloads=store) as publisher:
        for body in bodies:
            publisher.publish(body)
    assert publisher.result.submitted == 6 and not publisher.result.failed
    assert len(objects(s3)) == 3
    seen: list[str] = []
    batch = BatchProcessor(payloads=store).process(
        lambda_event(receive_all(sqs, url), arn), lambda r: seen.append(r.body)
    )
    assert batch.total == 6 and not batch.failed
    assert sorted(seen) == sorted(bodies)


def test_sns_publish_that_finally_fails_leaves_no_object(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sns = clients["s3"], clients["sns"]
    topic = sns.create_topic(Name="refusing")["TopicArn"]
    store = PayloadStore(BUCKET, client=s3)
    publisher = SnsPublisher(
        topic,
        client=sns,
        policy=clock.policy(max_attempts=2, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(sns, partial=1.0, seed=4):
        for n in range(5):
            publisher.publish(big(n, 300_000))
        result = publisher.close()
    assert len(result.failed) == 5
    assert objects(s3) == []


def test_pointer_round_trip_and_receipt_handles() -> None:
    from resilient_aws.payloads import embed_in_receipt_handle, split_receipt_handle

    pointer = PayloadPointer("b", "k/1")
    assert PayloadPointer.parse(pointer.to_body()) == pointer
    assert PayloadPointer.parse(pointer.to_body(legacy=True)) == pointer
    for not_one in ("", "[]", "{}", '["x",{"s3BucketName":"b","s3Key":"k"}]', "[1", None, 3):
        assert PayloadPointer.parse(not_one) is None
    handle = embed_in_receipt_handle(pointer, "AQEB+abc==")
    assert handle.startswith("-..s3BucketName..-b-..s3BucketName..--..s3Key..-k/1-..s3Key..-")
    assert split_receipt_handle(handle) == ("AQEB+abc==", pointer)
    assert split_receipt_handle("AQEB+abc==") == ("AQEB+abc==", None)


def test_under_chaos_on_s3_and_sqs_every_message_is_accounted_and_every_object_is_owed(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """Faults on both services at once: each message is sent or reported; each object in the
    bucket belongs to a message in the queue or is listed in ``payloads_left``; each pointer in
    the queue resolves."""
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "both")
    store = PayloadStore(BUCKET, client=s3, policy=clock.policy(max_attempts=3))
    bodies = {f"e{n}": big(n, 300_000 if n % 2 else 50) for n in range(40)}
    sender = SqsSender(
        url,
        client=sqs,
        policy=clock.policy(max_attempts=2, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with (
        chaos(s3, throttle=0.3, error5xx=0.2, seed=7),
        chaos(sqs, partial=0.5, throttle=0.2, lost_response=0.1, seed=8),
    ):
        for entry_id, body in bodies.items():
            sender.send_message(body, id=entry_id)
        result = sender.close()
    failed = {f.entry_id for f in result.failed}
    assert result.submitted == 40
    messages = receive_all(sqs, url)
    seen: dict[str, str] = {}
    for start in range(0, len(messages), 10):
        batch = BatchProcessor(payloads=store).process(
            lambda_event(messages[start : start + 10], arn),
            lambda r: seen.setdefault(r.message_id, r.body),
        )
        assert not batch.failed  # no dangling pointer
    arrived = set(seen.values())
    for entry_id, body in bodies.items():
        assert (body in arrived) or (entry_id in failed), entry_id  # none lost silently
    assert arrived <= set(bodies.values())  # none invented
    in_queue = {p.key for m in messages if (p := pointer_of(m)) is not None}
    left = {pointer.key for _, pointer in sender.payloads_left}
    assert set(objects(s3)) == in_queue | left  # no orphan that is not owed


def test_an_async_record_function_gets_the_payload(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs = clients["s3"], clients["sqs"]
    url, arn = queue(sqs, "async")
    store = PayloadStore(BUCKET, client=s3)
    bodies = [big(n, 300_000) for n in range(3)]
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        sender.send_many(bodies)
    messages = receive_all(sqs, url)
    gone = pointer_of(messages[0])
    assert gone is not None
    s3.delete_object(Bucket=gone.bucket, Key=gone.key)
    seen: list[str] = []

    async def record_function(record: SQSRecord) -> None:
        seen.append(record.body)

    batch = BatchProcessor(payloads=store).process(lambda_event(messages, arn), record_function)
    assert batch.succeeded == 2 and [f.code for f in batch.failed] == ["PayloadNotFoundError"]
    assert len(seen) == 2
    assert set(seen) < set(bodies)


def test_s3_throttles_are_classified_as_throttles() -> None:
    from botocore.exceptions import ClientError

    from resilient_aws.retry import classify

    for code, status in (("SlowDown", 503), ("ThrottlingException", 400)):
        response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        error = ClientError(response, "PutObject")
        verdict = classify(error)
        assert verdict.retryable and verdict.is_throttle, code

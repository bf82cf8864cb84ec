"""EventBridgePutter and KinesisPutter with a PayloadStore, on moto (S3, EventBridge, SQS,
Kinesis): each event or record sent or reported, each object owed to one or deleted, each
pointer resolved by the same resolver."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import boto3
import pytest

from resilient_aws.batch import EventBridgePutter, FirehosePutter, KinesisPutter
from resilient_aws.consumer import BatchProcessor, SQSRecord
from resilient_aws.errors import EntryTooLargeError
from resilient_aws.limits import EVENTBRIDGE_PUT_EVENTS
from resilient_aws.payloads import (
    POINTER_CLASS,
    InvalidPointerError,
    PayloadConfig,
    PayloadError,
    PayloadNotFoundError,
    PayloadPointer,
    PayloadStore,
    pointer_of,
    resolve,
)
from resilient_aws.payloads._resolve import resolving
from resilient_aws.testing import FakeClock, chaos
from tests.batch_targets import eventbridge_to_queue, stream_records

REGION = "us-east-1"
BUCKET = "payloads"
MiB = 1024 * 1024


@pytest.fixture
def clients(aws: None) -> dict[str, Any]:
    made: dict[str, Any] = {
        name: boto3.client(name, region_name=REGION) for name in ("s3", "sqs", "events", "kinesis")
    }
    made["s3"].create_bucket(Bucket=BUCKET)
    return made


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def objects(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300
    ).get("Messages", []):
        got.extend(batch)
    return got


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
            }
            for m in messages
        ]
    }


def kinesis_event(records: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Lambda's Kinesis records for (partition key, data) read from a stream."""
    return [
        {
            "eventSource": "aws:kinesis",
            "eventID": f"shardId-000000000000:{n}",
            "kinesis": {
                "partitionKey": key,
                "data": base64.b64encode(data).decode(),
                "sequenceNumber": str(n),
                "kinesisSchemaVersion": "1.0",
            },
        }
        for n, (key, data) in enumerate(records)
    ]


def detail(n: int, size: int) -> dict[str, Any]:
    return {"n": n, "pad": "é" * (size // 2)}  # two UTF-8 bytes per character


# -- EventBridge ----------------------------------------------------------------------------------


def test_events_over_the_threshold_go_to_s3_and_resolve_through_an_sqs_target(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs, events = clients["s3"], clients["sqs"], clients["events"]
    url = eventbridge_to_queue(events, sqs, "rule")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="events/"), client=s3)
    sent = {f"e{n}": detail(n, 2 * MiB if n % 3 == 0 else 100) for n in range(7)}
    with EventBridgePutter(client=events, policy=clock.policy(), payloads=store) as putter:
        for entry_id, body in sent.items():
            putter.put(body, source="test", detail_type="Report", id=entry_id)
    assert putter.result.submitted == 7 and not putter.result.failed
    assert len(objects(s3)) == 3  # e0, e3, e6
    assert all(key.startswith("events/") for key in objects(s3))

    messages = receive_all(sqs, url)
    assert len(messages) == 7
    offloaded = [json.loads(m["Body"])["detail"] for m in messages]
    pointers = [d for d in offloaded if "ExtendedPayloadSize" in d]
    assert len(pointers) == 3
    for pointer in pointers:  # the documented shape: the extended clients' fields and the size
        assert set(pointer) == {"ExtendedPayloadSize", "s3BucketName", "s3Key"}
        assert pointer["s3BucketName"] == BUCKET
        stored = s3.get_object(Bucket=BUCKET, Key=pointer["s3Key"])["Body"].read()
        assert pointer["ExtendedPayloadSize"] == len(stored)
    seen: list[dict[str, Any]] = []

    def record_function(record: SQSRecord) -> None:
        seen.append(record.json_body["detail"])

    batch = BatchProcessor(payloads=store).process(sqs_event(messages), record_function)
    assert batch.succeeded == 7 and not batch.failed
    assert sorted(seen, key=lambda d: d["n"]) == list(sent.values())

    # a Lambda target gets the event itself: the same resolver gives its detail back
    event = json.loads(next(m["Body"] for m in messages if "s3Key" in m["Body"]))
    resolved = resolve(event, store)
    assert resolved["detail"] == sent[f"e{resolved['detail']['n']}"]
    assert resolved["source"] == "test" and resolved["detail-type"] == "Report"
    assert event["detail"]["s3Key"]  # the caller's event is not changed


def test_an_event_over_the_entry_limit_is_offloaded_whatever_the_threshold(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, events = clients["s3"], clients["events"]
    store = PayloadStore(PayloadConfig(bucket=BUCKET, threshold=4 * MiB), client=s3)
    with EventBridgePutter(client=events, policy=clock.policy(), payloads=store) as putter:
        putter.put({"pad": "x" * 600_000}, source="test", detail_type="Big", id="under")
        putter.put({"pad": "x" * 1_100_000}, source="test", detail_type="Big", id="over")
    assert putter.result.succeeded == 2
    assert len(objects(s3)) == 1  # only the one EventBridge would refuse


def test_an_event_still_too_large_with_its_pointer_is_refused_before_any_upload(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, events = clients["s3"], clients["events"]
    store = PayloadStore(PayloadConfig(bucket=BUCKET, always=True), client=s3)
    limits = dataclasses.replace(EVENTBRIDGE_PUT_EVENTS, max_entry_bytes=200)
    putter = EventBridgePutter(client=events, policy=clock.policy(), payloads=store, limits=limits)
    with pytest.raises(EntryTooLargeError) as raised:
        putter.put({"n": 1}, source="s" * 150, detail_type="Big", id="long-source")
    assert raised.value.entry_id == "long-source"
    putter.put({"n": 2}, source="test", detail_type="Small", id="fits")
    assert putter.close().succeeded == 1
    assert len(objects(s3)) == 1  # the refused event uploaded nothing


def test_events_that_finally_fail_leave_no_object(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, events = clients["s3"], clients["events"]
    store = PayloadStore(BUCKET, client=s3)
    putter = EventBridgePutter(
        client=events,
        policy=clock.policy(max_attempts=2, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(events, partial=1.0, seed=3) as injected:
        for n in range(8):
            putter.put(detail(n, 300_000 if n % 2 else 10), source="test", detail_type="T")
        result = putter.close()
    assert injected.stats.withheld_entries > 0
    assert result.submitted == 8 and len(result.failed) == 8
    assert objects(s3) == []  # the 4 offloaded events' objects were deleted
    assert putter.payloads_left == []
    assert all("pointer" not in failure.entry for failure in result.failed)


def test_events_whose_outcome_is_unknown_keep_their_objects_and_resolve(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, sqs, events = clients["s3"], clients["sqs"], clients["events"]
    url = eventbridge_to_queue(events, sqs, "lost")
    store = PayloadStore(BUCKET, client=s3)
    putter = EventBridgePutter(
        client=events,
        policy=clock.policy(max_attempts=1, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(events, lost_response=1.0, seed=5):
        for n in range(4):
            putter.put(detail(n, 300_000), source="test", detail_type="T", id=f"e{n}")
        result = putter.close()
    assert len(result.failed) == 4
    assert sorted(entry_id for entry_id, _ in putter.payloads_left) == ["e0", "e1", "e2", "e3"]
    assert {pointer.key for _, pointer in putter.payloads_left} == set(objects(s3))
    messages = receive_all(sqs, url)
    assert len(messages) == 4  # put, the responses lost
    batch = BatchProcessor(payloads=store).process(sqs_event(messages), lambda record: None)
    assert not batch.failed  # no dangling pointer


def test_an_upload_that_fails_reports_its_event_and_the_rest_goes_on(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    store = PayloadStore("no-such-bucket", client=clients["s3"], policy=clock.policy())
    putter = EventBridgePutter(
        client=clients["events"], policy=clock.policy(), payloads=store, raise_on_failure=False
    )
    putter.put({"n": 1}, source="test", detail_type="T", id="small")
    putter.put(detail(2, 300_000), source="test", detail_type="T", id="large")
    result = putter.close()
    assert result.submitted == 2 and result.succeeded == 1
    (failed,) = result.failed
    assert (failed.entry_id, failed.code) == ("large", "PayloadUploadError")
    assert "NoSuchBucket" in failed.message


def test_event_pointers_that_cannot_be_resolved_fail_their_record_only(
    clients: dict[str, Any],
) -> None:
    s3 = clients["s3"]
    store = PayloadStore(BUCKET, client=s3)
    s3.put_object(Bucket=BUCKET, Key="not-json", Body=b"[1, 2]")

    def event_body(n: int, detail: dict[str, Any]) -> dict[str, Any]:
        event = {"id": f"ev{n}", "detail-type": "T", "source": "test", "detail": detail}
        return {"MessageId": f"m{n}", "ReceiptHandle": "r", "Body": json.dumps(event)}

    messages = [
        event_body(0, {"ExtendedPayloadSize": 9, "s3BucketName": BUCKET}),  # no key
        event_body(1, {"ExtendedPayloadSize": 9, "s3BucketName": BUCKET, "s3Key": "gone"}),
        event_body(2, {"ExtendedPayloadSize": 6, "s3BucketName": BUCKET, "s3Key": "not-json"}),
        event_body(3, {"n": 3, "note": "mentions ExtendedPayloadSize in passing"}),
    ]
    seen: list[int] = []
    batch = BatchProcessor(payloads=store).process(
        sqs_event(messages), lambda record: seen.append(record.json_body["detail"]["n"])
    )
    assert batch.total == 4 and seen == [3]
    codes = {f.item_identifier: f.code for f in batch.failed}
    assert codes == {
        "m0": "InvalidPointerError",
        "m1": "PayloadNotFoundError",
        "m2": "PayloadError",
    }
    errors = {f.item_identifier: f.error for f in batch.failed}
    assert all(f"'m{n}'" in str(errors[f"m{n}"]) for n in range(3))  # named by message id
    assert isinstance(errors["m2"], PayloadError) and errors["m2"].code == "NotAJsonObject"
    with pytest.raises(InvalidPointerError, match="'ev0'"):  # a Lambda target's event
        pointer_of(json.loads(messages[0]["Body"]))


# -- Kinesis --------------------------------------------------------------------------------------


def test_records_over_the_threshold_go_to_s3_and_resolve(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, kinesis = clients["s3"], clients["kinesis"]
    kinesis.create_stream(StreamName="s", ShardCount=1)
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="records/"), client=s3)
    sent = [bytes([n]) * (2 * MiB if n % 2 == 0 else 50) + b"\xff\x00" for n in range(5)]
    with KinesisPutter("s", client=kinesis, policy=clock.policy(), payloads=store) as putter:
        for n, data in enumerate(sent):
            putter.put(data, f"k{n}", id=f"r{n}")
    assert putter.result.submitted == 5 and not putter.result.failed
    assert len(objects(s3)) == 3
    in_stream = stream_records(kinesis, "s")
    pointers = [PayloadPointer.parse(data.decode("latin-1")) for _, data in in_stream]
    assert sum(p is not None for p in pointers) == 3
    assert all(data.startswith(f'["{POINTER_CLASS}"'.encode()) for _, data in in_stream[::2])

    records = kinesis_event(in_stream)
    resolved = [resolve(record, store) for record in records]
    assert [base64.b64decode(r["kinesis"]["data"]) for r in resolved] == sent
    assert [r["kinesis"]["partitionKey"] for r in resolved] == [f"k{n}" for n in range(5)]
    assert records[0]["kinesis"]["data"] == base64.b64encode(in_stream[0][1]).decode()
    assert resolved[1] is records[1]  # a small record passes untouched
    # what BatchProcessor does once it resolves Kinesis records: the wrapper, per record
    wrap = resolving(lambda raw: base64.b64decode(raw["kinesis"]["data"]), store)
    assert [wrap(record) for record in records] == sent


def test_kinesis_pointers_that_cannot_be_resolved_name_the_record(
    clients: dict[str, Any],
) -> None:
    store = PayloadStore(BUCKET, client=clients["s3"])
    gone = PayloadPointer(BUCKET, "gone").to_body().encode()
    almost = f'["{POINTER_CLASS}",{{"s3BucketName":"b"}}]'.encode()  # no key: not a pointer
    records = kinesis_event([("k", gone), ("k", almost), ("k", b"\x00plain")])
    with pytest.raises(PayloadNotFoundError) as raised:
        resolve(records[0], store)
    assert raised.value.message_id == "0" and raised.value.key == "gone"
    assert resolve(records[1], store) is records[1]
    assert resolve(records[2], store) is records[2]
    broken = {"kinesis": {"data": records[0]["kinesis"]["data"][:-3] + "!!!"}}
    assert pointer_of(broken) is None  # not base64: no pointer


def test_records_that_finally_fail_leave_no_object_and_unknown_ones_keep_theirs(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, kinesis = clients["s3"], clients["kinesis"]
    kinesis.create_stream(StreamName="s", ShardCount=1)
    store = PayloadStore(BUCKET, client=s3)
    failing = KinesisPutter(
        "s",
        client=kinesis,
        policy=clock.policy(max_attempts=2, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(kinesis, partial=1.0, seed=2):
        for n in range(6):
            failing.put(b"x" * (300_000 if n % 2 else 5), "k")
        assert len(failing.close().failed) == 6
    assert objects(s3) == [] and failing.payloads_left == []

    lost = KinesisPutter(
        "s",
        client=kinesis,
        policy=clock.policy(max_attempts=1, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with chaos(kinesis, lost_response=1.0, seed=2):
        for n in range(3):
            lost.put(b"y" * 300_000, "k", id=f"r{n}")
        assert len(lost.close().failed) == 3
    assert len(lost.payloads_left) == 3 and len(objects(s3)) == 3
    for record in kinesis_event(stream_records(kinesis, "s")):  # every pointer resolves
        assert base64.b64decode(resolve(record, store)["kinesis"]["data"]) == b"y" * 300_000


def test_a_record_over_the_stream_limit_is_offloaded_whatever_the_threshold(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    s3, kinesis = clients["s3"], clients["kinesis"]
    kinesis.create_stream(StreamName="s", ShardCount=1)
    store = PayloadStore(PayloadConfig(bucket=BUCKET, threshold=8 * MiB, legacy=True), client=s3)
    with KinesisPutter("s", client=kinesis, policy=clock.policy(), payloads=store) as putter:
        putter.put(b"a" * MiB, "k")  # with the key: over 1 MiB
        putter.put(b"b" * (MiB - 10), "k")
    assert putter.result.succeeded == 2
    assert len(objects(s3)) == 1
    first, second = (data for _, data in stream_records(kinesis, "s"))
    assert first.startswith(b'["com.amazon.sqs.javamessaging.MessageS3Pointer"')  # legacy
    assert second == b"b" * (MiB - 10)


def test_firehose_takes_no_payload_store(clients: dict[str, Any]) -> None:
    """Firehose delivers to destinations that cannot follow a pointer (docs/payloads.md)."""
    store = PayloadStore(BUCKET, client=clients["s3"])
    firehose = boto3.client("firehose", region_name=REGION)
    with pytest.raises(TypeError, match="payloads"):
        FirehosePutter("stream", client=firehose, payloads=store)


# -- what is refused or cut before the entry is sent ---------------------------------------------


def test_nothing_is_uploaded_for_an_event_a_closed_putter_or_max_bytes_refuses(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    from resilient_aws.errors import ConfigurationError

    s3, events = clients["s3"], clients["events"]
    store = PayloadStore(PayloadConfig(bucket=BUCKET, max_bytes=400_000), client=s3)
    putter = EventBridgePutter(client=events, policy=clock.policy(), payloads=store)
    with pytest.raises(EntryTooLargeError) as raised:
        putter.put(detail(1, 500_000), source="test", detail_type="T", id="huge")
    assert raised.value.entry_id == "huge"
    putter.close()
    with pytest.raises(ConfigurationError, match="closed"):
        putter.put(detail(2, 300_000), source="test", detail_type="T")
    assert objects(s3) == []


def test_an_upload_whose_answer_is_lost_leaves_no_object(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """S3 stored the object, the answer never came, the retry core gave up: the entry fails
    and the object it may have left is deleted."""
    s3, kinesis = clients["s3"], clients["kinesis"]
    kinesis.create_stream(StreamName="s", ShardCount=1)
    store = PayloadStore(BUCKET, client=s3, policy=clock.policy(max_attempts=2))
    putter = KinesisPutter(
        "s", client=kinesis, policy=clock.policy(), payloads=store, raise_on_failure=False
    )
    with chaos(s3, lost_response=1.0, seed=1, operations={"PutObject"}) as injected:
        putter.put(b"z" * 300_000, "k", id="lost")
    putter.put(b"small", "k", id="small")
    result = putter.close()
    assert injected.stats.lost_responses == 2
    assert [(f.entry_id, f.code) for f in result.failed] == [("lost", "PayloadUploadError")]
    assert objects(s3) == []
    assert [data for _, data in stream_records(kinesis, "s")] == [b"small"]


def test_an_upload_cut_by_an_interrupt_names_the_object_it_may_leave(
    clients: dict[str, Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = PayloadStore(BUCKET, client=clients["s3"])

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    store.put = interrupted  # type: ignore[method-assign]
    putter = EventBridgePutter(client=clients["events"], policy=clock.policy(), payloads=store)
    with pytest.raises(KeyboardInterrupt), caplog.at_level("WARNING", "resilient_aws.payloads"):
        putter.put(detail(1, 300_000), source="test", detail_type="T", id="cut")
    (warning,) = [r for r in caplog.records if "interrupted" in r.getMessage()]
    assert "'cut'" in warning.getMessage() and f"s3://{BUCKET}/" in warning.getMessage()
    assert "éé" not in caplog.text  # never the payload
    assert putter.close().submitted == 0


def test_a_detail_object_that_is_not_json_fails_its_record(clients: dict[str, Any]) -> None:
    s3 = clients["s3"]
    s3.put_object(Bucket=BUCKET, Key="garbage", Body=b"{not json")
    store = PayloadStore(BUCKET, client=s3)
    event = {
        "id": "ev",
        "detail-type": "T",
        "detail": {"ExtendedPayloadSize": 9, "s3BucketName": BUCKET, "s3Key": "garbage"},
    }
    with pytest.raises(PayloadError) as raised:
        resolve(event, store)
    assert raised.value.code == "NotAJsonObject" and raised.value.message_id == "ev"
    assert "not json" not in str(raised.value)


def test_under_chaos_on_s3_and_eventbridge_every_event_and_object_is_accounted_for(
    clients: dict[str, Any], clock: FakeClock
) -> None:
    """Each event arrives or is reported failed; each object in the bucket belongs to an event
    in the queue or is listed in ``payloads_left``; each pointer in the queue resolves. Seeds
    are tried until one draws both withheld entries and lost responses (which seed does depends
    on the order of the calls), and every run is checked."""
    s3 = clients["s3"]
    for seed in range(8, 20):
        withheld, lost = _chaos_run(clients, clock, seed)
        for key in objects(s3):  # the next run starts from an empty bucket
            s3.delete_object(Bucket=BUCKET, Key=key)
        if withheld and lost:
            return
    pytest.fail("no seed drew both withheld entries and lost responses")


def _chaos_run(clients: dict[str, Any], clock: FakeClock, seed: int) -> tuple[int, int]:
    s3, sqs, events = clients["s3"], clients["sqs"], clients["events"]
    url = eventbridge_to_queue(events, sqs, f"both-{seed}")
    store = PayloadStore(BUCKET, client=s3, policy=clock.policy(max_attempts=3))
    sent = {f"e{n}": detail(n, 300_000 if n % 2 else 40) for n in range(30)}
    putter = EventBridgePutter(
        client=events,
        policy=clock.policy(max_attempts=2, max_stalled=0),
        payloads=store,
        raise_on_failure=False,
    )
    with (
        chaos(s3, throttle=0.3, error5xx=0.2, seed=seed - 1),
        chaos(events, partial=0.5, throttle=0.2, lost_response=0.1, seed=seed) as injected,
    ):
        for entry_id, body in sent.items():
            putter.put(body, source="test", detail_type="T", id=entry_id)
        result = putter.close()
    failed = {f.entry_id for f in result.failed}
    assert result.submitted == 30
    assert result.succeeded + len(failed) == 30
    messages = receive_all(sqs, url)
    seen: dict[int, dict[str, Any]] = {}
    batch = BatchProcessor(payloads=store).process(
        sqs_event(messages),
        lambda r: seen.setdefault(r.json_body["detail"]["n"], r.json_body["detail"]),
    )
    assert not batch.failed  # no dangling pointer
    for entry_id, body in sent.items():
        assert seen.get(body["n"]) == body or entry_id in failed, entry_id  # none lost
    assert all(sent[f"e{n}"] == body for n, body in seen.items())  # none invented
    in_queue = {json.loads(m["Body"])["detail"].get("s3Key") for m in messages} - {None}
    left = {pointer.key for _, pointer in putter.payloads_left}
    assert set(objects(s3)) == in_queue | left  # no orphan that is not owed
    return injected.stats.withheld_entries, injected.stats.lost_responses

"""The pointer shapes of EventBridge details and Kinesis records, and the offload rule, without
AWS: what is a pointer, what passes untouched."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from resilient_aws.limits import BatchLimits
from resilient_aws.payloads import (
    POINTER_CLASS,
    InvalidPointerError,
    PayloadConfig,
    PayloadPointer,
    PayloadStore,
    pointer_of,
    resolve,
)
from resilient_aws.payloads._pointer import detail_pointer
from resilient_aws.payloads._senders import offloads

STORE = PayloadStore(PayloadConfig(bucket="b", threshold=100), client=object())


def test_a_detail_is_a_pointer_by_its_size_field_and_the_extended_clients_fields() -> None:
    pointer = PayloadPointer("b", "k/1")
    detail = json.loads(pointer.to_detail(12))
    assert detail == {"ExtendedPayloadSize": 12, "s3BucketName": "b", "s3Key": "k/1"}
    assert detail_pointer(detail) == (True, pointer)
    assert detail_pointer({"ExtendedPayloadSize": 1, "s3Key": "k"}) == (True, None)
    assert detail_pointer({"s3BucketName": "b", "s3Key": "k"}) == (False, None)  # unmarked
    assert detail_pointer("ExtendedPayloadSize s3Key") == (False, None)  # not an object
    assert detail_pointer(["ExtendedPayloadSize"]) == (False, None)


def test_the_pointer_fields_must_be_an_object_of_non_empty_strings() -> None:
    for fields in ("s3Key", ["s3BucketName", "s3Key"], {"s3BucketName": "", "s3Key": "k"}):
        assert PayloadPointer.from_fields(fields) is None
    assert PayloadPointer.parse(json.dumps([POINTER_CLASS, "s3BucketName"])) is None


def test_events_without_a_pointer_pass_untouched() -> None:
    events: list[dict[str, Any]] = [
        {"id": "1", "detail-type": "T", "detail": "mentions ExtendedPayloadSize"},
        {"id": "2", "detail-type": "T", "detail": {"ExtendedPayload": 1, "s3Key": "k"}},
        {"id": "3", "detail-type": "T"},
    ]
    for event in events:
        assert resolve(event, STORE) is event
    with pytest.raises(InvalidPointerError) as raised:
        resolve({"id": "4", "detail-type": "T", "detail": {"ExtendedPayloadSize": 1}}, STORE)
    assert raised.value.message_id == "4"


def test_kinesis_records_without_a_pointer_pass_untouched() -> None:
    legacy = PayloadPointer("b", "k").to_body(legacy=True).encode()
    assert pointer_of({"kinesis": {"data": base64.b64encode(legacy).decode()}}) == (
        PayloadPointer("b", "k")
    )
    for record in (
        {"kinesis": "not an object"},
        {"kinesis": {"data": None}},
        {"kinesis": {}},
        {
            "kinesis": {
                "data": base64.b64encode(b'["software.amazon.payloadoffloading.x"]').decode()
            }
        },
        {"kinesis": {"data": base64.b64encode(b"\xff" * 60).decode()}},
    ):
        assert resolve(record, STORE) is record


def test_an_entry_goes_to_s3_over_the_threshold_or_over_the_service_limit() -> None:
    assert not offloads(STORE, 100, None)  # no limit known: the threshold alone decides
    assert offloads(STORE, 101, None)
    assert offloads(STORE, 50, 49)
    assert not offloads(STORE, 50, 50)
    always = PayloadStore(PayloadConfig(bucket="b", always=True), client=object())
    assert offloads(always, 1, None)


class FakeS3:
    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:  # noqa: N803
        self.stored[Key] = Body
        return {}


class FakeKinesis:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def put_records(self, *, Records: list[dict[str, Any]], **_: Any) -> dict[str, Any]:  # noqa: N803
        self.data += [record["Data"] for record in Records]
        return {"Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records]}


def test_a_putter_with_no_entry_limit_offloads_by_threshold() -> None:
    from resilient_aws.batch import KinesisPutter

    s3, kinesis = FakeS3(), FakeKinesis()
    store = PayloadStore(PayloadConfig(bucket="b", threshold=100), client=s3)
    unlimited = BatchLimits(max_entries=500, max_request_bytes=5 * 1024 * 1024)
    with KinesisPutter("s", client=kinesis, payloads=store, limits=unlimited) as putter:
        putter.put(b"x" * 10, "k")
        putter.put(b"y" * 200, "k")
    assert putter.result.succeeded == 2
    assert list(s3.stored.values()) == [b"y" * 200]
    (key,) = s3.stored
    assert kinesis.data == [b"x" * 10, PayloadPointer("b", key).to_body().encode()]

"""Review of issue 17's claim-check, unit level: what a consumer would misread is recognised
without parsing what cannot be one; a sweep ended early still accounts for every listed key."""

from __future__ import annotations

import datetime
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from resilient_aws.batch._eventbridge import _marked
from resilient_aws.batch._kinesis import _pointer_like
from resilient_aws.payloads import POINTER_CLASS, PayloadConfig, PayloadStore, sweep_payloads
from resilient_aws.payloads._sweep import MIN_RETENTION_S
from resilient_aws.testing import FakeClock

OLD = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ('{"ExtendedPayloadSize":1}', True),
        ('{"a":{"ExtendedPayloadSize":1}}', False),  # nested: resolve looks at the top only
        ('{"note":"ExtendedPayloadSize"}', False),
        ('{"n":1}', False),
        ('{"ExtendedPayloadSize": ', False),  # not JSON: no crash
    ],
)
def test_review_a_detail_is_marked_by_its_top_level_size_field(text: str, marked: bool) -> None:
    assert _marked(text) is marked


@pytest.mark.parametrize(
    ("data", "like"),
    [
        (json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": "k"}]).encode(), True),
        (
            b'  ["com.amazon.sqs.javamessaging.MessageS3Pointer",{"s3BucketName":"b","s3Key":"k"}]',
            True,
        ),
        (b'["x", 1]', False),
        (b'["\xff\xfe"]', False),  # not UTF-8: no crash
        (b"plain", False),
    ],
)
def test_review_kinesis_data_is_pointer_like_when_it_parses_as_one(data: bytes, like: bool) -> None:
    assert _pointer_like(data) is like


def stubbed(keys: list[str]) -> tuple[PayloadStore, Stubber]:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(s3)
    stubber.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": k, "LastModified": OLD} for k in keys], "IsTruncated": False},
        {"Bucket": "b", "Prefix": "", "MaxKeys": 1000},
    )
    store = PayloadStore(
        PayloadConfig(bucket="b"), client=s3, policy=FakeClock().policy(max_attempts=1)
    )
    return store, stubber


def test_review_keep_that_raises_stops_the_sweep_with_every_listed_key_counted() -> None:
    store, stubber = stubbed(["a", "b", "c"])

    def keep(key: str) -> bool:
        if key == "c":
            raise RuntimeError("the keep-list's table is gone")
        return False

    with stubber, pytest.raises(RuntimeError) as raised:
        sweep_payloads(store, older_than_s=MIN_RETENTION_S, keep=keep)
    result = raised.value.sweep_result  # type: ignore[attr-defined]
    assert (result.listed, result.kept, result.deleted) == (2, 2, 0)  # nothing deleted


def test_review_an_interrupt_from_progress_carries_the_result() -> None:
    store, stubber = stubbed(["a", "b"])
    stubber.add_response("delete_objects", {"Deleted": [{"Key": "a"}, {"Key": "b"}]})

    def progress(result: Any) -> None:
        raise KeyboardInterrupt

    with stubber, pytest.raises(KeyboardInterrupt) as raised:
        sweep_payloads(store, older_than_s=MIN_RETENTION_S, progress=progress)
    result = raised.value.sweep_result  # type: ignore[attr-defined]
    assert (result.listed, result.deleted, result.pages) == (2, 2, 1)


def test_review_the_minimum_retention_is_one_day() -> None:
    assert MIN_RETENTION_S == 86_400

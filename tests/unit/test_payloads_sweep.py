"""The sweeper's DeleteObjects adapter with botocore's Stubber: a response that does not
answer each key exactly once is never taken as a success."""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from resilient_aws.payloads import PayloadConfig, PayloadStore, sweep_payloads
from resilient_aws.testing import FakeClock

OLD = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


def stubbed(keys: list[str], answer: dict[str, Any]) -> tuple[PayloadStore, Stubber]:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(s3)
    stubber.add_response(
        "list_objects_v2",
        {
            "Contents": [{"Key": key, "LastModified": OLD} for key in keys],
            "IsTruncated": False,
        },
        {"Bucket": "b", "Prefix": "p/", "MaxKeys": 1000},
    )
    stubber.add_response("delete_objects", answer)
    store = PayloadStore(
        PayloadConfig(bucket="b", prefix="p/"),
        client=s3,
        policy=FakeClock().policy(max_attempts=1),
    )
    return store, stubber


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"Deleted": [{"Key": "p/a"}, {"Key": "p/b"}]}, "IncompleteResponseError"),
        (
            {"Deleted": [{"Key": "p/a"}, {"Key": "p/b"}, {"Key": "p/x"}]},
            "InconsistentResponseError",
        ),
        (
            {"Deleted": [{"Key": "p/a"}, {"Key": "p/b"}], "Errors": [{"Key": "p/a"}]},
            "InconsistentResponseError",
        ),
    ],
)
def test_a_response_that_does_not_answer_each_key_once_fails_them_all(
    answer: dict[str, Any], code: str
) -> None:
    store, stubber = stubbed(["p/a", "p/b", "p/c"], answer)
    with stubber:
        result = sweep_payloads(store, older_than_s=86_400)
    stubber.assert_no_pending_responses()
    assert (result.listed, result.deleted, result.failed) == (3, 0, 3)
    assert {reason.split(":")[0] for reason in result.failures.values()} == {code}
    assert result.stopped == code


def test_an_error_without_a_code_is_named_unknown() -> None:
    store, stubber = stubbed(
        ["p/a", "p/b"], {"Deleted": [{"Key": "p/a"}], "Errors": [{"Key": "p/b"}]}
    )
    with stubber:
        result = sweep_payloads(store, older_than_s=86_400)
    assert (result.deleted, result.failed, result.stopped) == (1, 1, None)
    assert result.failures == {"p/b": "Unknown: "}
    assert result.to_dict()["ok"] is False

"""chaos on S3 throttles the way S3 does: ``SlowDown`` with HTTP 503."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from resilient_aws.retry import classify
from resilient_aws.testing import chaos


def test_chaos_throttles_s3_with_slowdown_503_which_the_core_classifies_as_a_throttle() -> None:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    with chaos(s3, throttle=1.0, seed=1) as injected, pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="b", Key="k", Body=b"x")
    assert injected.stats.throttled == 1
    response = raised.value.response
    assert response["Error"]["Code"] == "SlowDown"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    verdict = classify(raised.value)
    assert verdict.retryable and verdict.is_throttle

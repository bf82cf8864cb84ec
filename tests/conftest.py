from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings
from moto import mock_aws

# Never let a test reach real AWS, whatever the developer's environment holds.
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
)

# One process runs every test with many moto backends alive: a garbage collection or a busy
# core can stall one example past Hypothesis' 200 ms deadline, which says nothing about the
# code. CI also runs the same examples every time, so a red run can be reproduced.
settings.register_profile("default", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def aws_region() -> str:
    return "us-east-1"


@pytest.fixture
def aws() -> Iterator[None]:
    """moto in process for the duration of one test."""
    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")

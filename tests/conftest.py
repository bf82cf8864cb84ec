from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import jsonpath_ng.ext
import pytest
from botocore.loaders import Loader, create_loader
from hypothesis import HealthCheck, settings
from jsonpath_ng.ext.parser import parse as parse_jsonpath
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

# moto sets boto3.DEFAULT_SESSION to None inside every mock, so each test's clients came from a
# fresh session that parsed the service models again: tens of thousands of objects a model,
# which also drove the garbage collector into a full collection of the whole (growing) heap
# nearly every test. That was more than half of the functional tests' time. Every session now
# shares the parsed models, which botocore only reads.
_parsed_models: dict[str | None, dict[Any, Any]] = {}


def _loader_sharing_parsed_models(search_path_string: str | None = None) -> Loader:
    loader = create_loader(search_path_string)
    loader._cache = _parsed_models.setdefault(search_path_string, {})  # type: ignore[attr-defined]
    return loader


botocore.session.create_loader = _loader_sharing_parsed_models

# moto hands each EventBridge event to a rule's target after parsing the target's eight input
# paths with jsonpath_ng, which builds a new parser (yacc tables and all) every time: 6 ms an
# event, four fifths of an EventBridge counting run. A parsed path is an expression nothing
# changes: each is parsed once.
jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(parse_jsonpath)  # type: ignore[attr-defined]


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


@pytest.fixture
def exporter() -> Iterator[Any]:
    """resilient_aws's spans go to an in-memory OpenTelemetry exporter for one test."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from resilient_aws import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_tracer_provider(provider)
    yield exporter
    tracing.set_tracer_provider(None)


# The tracing tests import OpenTelemetry when they are collected, so in a whole run it is
# imported for every test, and the library would take its tracing-aware paths everywhere
# (SqsSender's plain-message fast path never). A process that never imported OpenTelemetry is
# the common case: every test but the tracing ones runs as in one. The library's checks look
# for a module name in sys.modules; the name is changed for the test, never sys.modules itself
# (taking the module out would make the next import load a second copy of it).
_NOT_IMPORTED = "opentelemetry.trace (not imported in this test)"
_LOOKS_FOR_OPENTELEMETRY = (
    "resilient_aws.tracing._TRACE",
    "resilient_aws.batch._sqs.TRACE_API",
    "resilient_aws.batch._sns.TRACE_API",
    "resilient_aws.batch._eventbridge.TRACE_API",
)


@pytest.fixture(autouse=True)
def _opentelemetry_not_imported(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = request.node.module.__name__ if request.node.module is not None else ""
    if "tracing" in module or "exporter" in request.fixturenames:
        return
    for name in _LOOKS_FOR_OPENTELEMETRY:
        monkeypatch.setattr(name, _NOT_IMPORTED)

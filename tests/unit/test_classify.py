from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)

from resilient_aws.retry import _classify, classify, classify_entry, register_entry_codes
from tests.unit.helpers import client_error


def _entry_codes() -> dict[str, dict[str, bool]]:
    """A copy of the process-wide registry of per-entry codes (``register_entry_codes``)."""
    with _classify._entry_lock:
        return {service: dict(codes) for service, codes in _classify._ENTRY_CODES.items()}


@pytest.fixture(autouse=True, scope="module")
def _registry_unchanged_after_the_module() -> Iterator[None]:
    """The registry is global: other modules must find it as this one found it."""
    before = _entry_codes()
    yield
    assert _entry_codes() == before, "tests in test_classify.py left entry codes registered"


@pytest.fixture(autouse=True)
def _restore_entry_codes() -> Iterator[None]:
    """Whatever a test registers is gone after it."""
    saved = _entry_codes()
    yield
    with _classify._entry_lock:
        _classify._ENTRY_CODES.clear()
        _classify._ENTRY_CODES.update(saved)


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "Throttled",
        "LimitExceededException",
        "TransactionInProgressException",
        "KMSThrottling",
        "KmsThrottled",
        "KMS.ThrottlingException",
    ],
)
def test_throttling_codes_are_retryable_throttles(code: str) -> None:
    verdict = classify(client_error(code))
    assert verdict.retryable
    assert verdict.kind == "throttle"
    assert verdict.code == code


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
        ("Whatever", 502),
        ("Odd", 504),
        ("TransactionConflictException", 400),
        ("ReplicatedWriteConflictException", 400),
    ],
)
def test_5xx_is_transient(code: str, status: int) -> None:
    verdict = classify(client_error(code, status))
    assert verdict.retryable
    assert verdict.kind == "transient"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("AccessDeniedException", 400),
        ("AccessDenied", 403),
        ("ConditionalCheckFailedException", 400),
        ("ResourceNotFoundException", 400),
        ("UnrecognizedClientException", 400),
        ("SomethingNew", 400),
    ],
)
def test_client_mistakes_are_permanent(code: str, status: int) -> None:
    verdict = classify(client_error(code, status))
    assert not verdict.retryable
    assert verdict.kind == "permanent"


def test_network_errors() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://x")).kind == "connection"
    assert classify(ConnectTimeoutError(endpoint_url="http://x")).kind == "timeout"
    from botocore.exceptions import HTTPClientError, ProxyConnectionError

    assert classify(HTTPClientError(error="boom")).retryable
    assert classify(ProxyConnectionError(proxy_url="http://p", error="x")).retryable
    assert not classify(NoCredentialsError()).retryable
    assert not classify(ParamValidationError(report="bad")).retryable
    assert not classify(KeyError("x")).retryable


def test_sqs_and_sns_entries_follow_sender_fault() -> None:
    assert classify_entry("sqs", "InternalError", sender_fault=False).retryable
    assert not classify_entry("sqs", "InvalidParameterValue", sender_fault=True).retryable
    assert not classify_entry("sns", "InvalidParameter", sender_fault=True).retryable


@pytest.mark.parametrize(
    ("service", "code"),
    [("sns", "Throttled"), ("sns", "KMSThrottling"), ("sqs", "KMS.ThrottlingException")],
)
def test_throttles_aws_marks_as_sender_faults_are_retried(service: str, code: str) -> None:
    verdict = classify_entry(service, code, sender_fault=True)  # as the service models them
    assert verdict.retryable and verdict.is_throttle


@pytest.mark.parametrize("code", ["InternalFailureException", "InternalException"])
def test_modelled_server_faults_are_transient_whatever_the_status(code: str) -> None:
    error = client_error(code, 400)  # not a 5xx: an emulator or a Stubber may answer so
    assert classify(error).retryable and classify(error).kind == "transient"


@pytest.mark.parametrize(
    ("service", "code", "retryable"),
    [
        ("kinesis", "ProvisionedThroughputExceededException", True),
        ("kinesis", "InternalFailure", True),
        ("kinesis", "KMSAccessDeniedException", False),
        ("firehose", "ServiceUnavailableException", True),
        ("events", "ThrottlingException", True),
        ("events", "InternalFailure", True),
        ("events", "MalformedDetail", False),
        ("dynamodb", "Unprocessed", True),
    ],
)
def test_entry_codes_per_service(service: str, code: str, retryable: bool) -> None:
    assert classify_entry(service, code).retryable is retryable


def test_new_entry_codes_can_be_registered() -> None:
    assert not classify_entry("testsvc", "BrandNewThrottle").retryable
    register_entry_codes("testsvc", retryable=("BrandNewThrottle",), permanent=("Nope",))
    assert classify_entry("testsvc", "BrandNewThrottle").retryable
    assert not classify_entry("testsvc", "Nope").retryable


def test_registering_codes_for_a_known_service_keeps_its_other_codes() -> None:
    register_entry_codes("kinesis", permanent=("InternalFailure",))
    assert not classify_entry("kinesis", "InternalFailure").retryable
    assert classify_entry("kinesis", "ProvisionedThroughputExceededException").retryable


def test_codes_registered_by_an_earlier_test_are_gone() -> None:
    # runs after the two tests above (pytest keeps a module's order): their codes were undone
    assert not classify_entry("testsvc", "BrandNewThrottle").retryable
    assert classify_entry("kinesis", "InternalFailure").retryable


@pytest.mark.parametrize(
    ("service", "code", "kind"),
    [
        ("kinesis", "ProvisionedThroughputExceededException", "throttle"),
        ("kinesis", "KMSThrottlingException", "throttle"),
        ("kinesis", "InternalFailure", "transient"),
        ("kinesis", "KMSAccessDeniedException", "permanent"),
        ("firehose", "ServiceUnavailableException", "transient"),
        ("events", "ThrottlingException", "throttle"),
        ("events", "InternalFailure", "transient"),
        ("sqs", "InternalError", "transient"),
        ("sqs", "SomethingNew", "permanent"),
        ("dynamodb", "Unprocessed", "throttle"),
    ],
)
def test_entry_codes_have_the_kind_that_decides_their_backoff(
    service: str, code: str, kind: str
) -> None:
    assert classify_entry(service, code).kind == kind

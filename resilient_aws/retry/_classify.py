"""What is worth retrying: whole-request errors and per-entry error codes of batch APIs."""

from __future__ import annotations

import threading
from typing import Any, Literal

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from resilient_aws._dataclass import lean_dataclass

__all__ = ["ErrorClass", "ErrorKind", "classify", "classify_entry", "register_entry_codes"]

ErrorKind = Literal["throttle", "transient", "timeout", "connection", "permanent"]


@lean_dataclass(frozen=True)
class ErrorClass:
    """The verdict on one error: ``retryable``, its ``kind`` and its service ``code``."""

    retryable: bool
    kind: ErrorKind
    code: str

    @property
    def is_throttle(self) -> bool:
        return self.kind == "throttle"


# botocore's standard retry mode treats these as throttling (ThrottledRetryableChecker), plus the
# SNS, SQS and KMS spellings; botocore retries nothing on the clients the core configures, so
# every code it would retry must be here or in TRANSIENT_CODES.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "Throttled",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "EC2ThrottledException",
        "KMSThrottlingException",
        "KMSThrottling",
        "KmsThrottled",
        "KMS.ThrottlingException",
        "PriorRequestNotComplete",
    }
)

TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalFailureException",
        "InternalException",
        "InternalServerError",
        "InternalServiceError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceUnavailableError",
        "KMSInternalException",
        # KMS: "You can retry the request" (a 5xx on AWS; named here for emulators and chaos)
        "DependencyTimeoutException",
        "KeyUnavailableException",
        # STS: the identity provider did not answer (botocore's RetryIDPCommunicationError)
        "IDPCommunicationError",
        # DynamoDB: another request touched the item; trying again is what AWS advises
        "TransactionConflictException",
        "ReplicatedWriteConflictException",
    }
)

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})

# botocore's standard mode retries every HTTPClientError and ConnectionError: so do we.
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ResponseStreamingError,
    HTTPClientError,
    BotocoreConnectionError,
)
_TIMEOUT_ERRORS = (ReadTimeoutError, ConnectTimeoutError)
# A response whose body did not match its checksum (DynamoDB's x-amz-crc32): the request may
# well have succeeded, but its answer is unusable, so ask again as botocore's legacy mode does.
_CORRUPT_RESPONSE_ERRORS = (ChecksumError,)

_entry_lock = threading.Lock()
# service -> code -> retryable; consulted for per-entry failures reported inside a 200 response.
_ENTRY_CODES: dict[str, dict[str, bool]] = {
    "dynamodb": {"Unprocessed": True},
    "kinesis": {
        "ProvisionedThroughputExceededException": True,
        "InternalFailure": True,
        "KMSThrottlingException": True,
        "KMSAccessDeniedException": False,
        "KMSDisabledException": False,
        "KMSInvalidStateException": False,
        "KMSNotFoundException": False,
        "KMSOptInRequired": False,
    },
    "firehose": {"ServiceUnavailableException": True, "InternalFailure": True},
    "events": {"ThrottlingException": True, "InternalFailure": True, "InternalException": True},
}


def classify(error: BaseException, *, service_model: Any = None) -> ErrorClass:
    """Say whether a whole-request error is worth retrying, and why.

    Throttling codes, 5xx responses, timeouts, dropped connections and corrupted responses are
    retryable; everything else a service answers (validation, access denied, a failed
    condition, a missing resource) is permanent, and so is any exception that does not come
    from botocore. Given the client's ``service_model`` (``client.meta.service_model``), the
    errors the service's model marks retryable are retryable too, as botocore's standard mode
    has them: :meth:`RetryPolicy.call` passes it when it calls a client's method.
    """
    if isinstance(error, ClientError):
        error_info = error.response.get("Error", {})
        code = str(error_info.get("Code", "Unknown"))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in THROTTLING_CODES or status == 429:
            return ErrorClass(True, "throttle", code)
        if code in TRANSIENT_CODES or status in TRANSIENT_STATUS:
            return ErrorClass(True, "transient", code)
        if service_model is not None:
            modeled = _modeled_kind(service_model, error.operation_name, code)
            if modeled is not None:
                return ErrorClass(True, modeled, code)
        return ErrorClass(False, "permanent", code)
    if isinstance(error, _TIMEOUT_ERRORS):
        return ErrorClass(True, "timeout", type(error).__name__)
    if isinstance(error, _CONNECTION_ERRORS):
        return ErrorClass(True, "connection", type(error).__name__)
    if isinstance(error, _CORRUPT_RESPONSE_ERRORS):
        return ErrorClass(True, "transient", type(error).__name__)
    return ErrorClass(False, "permanent", type(error).__name__)


def _modeled_kind(service_model: Any, operation: str, code: str) -> ErrorKind | None:
    """The kind of retry the service's model declares for ``code`` (botocore's
    ModeledRetryErrorDetector), or None if the model says nothing."""
    try:
        shapes = service_model.operation_model(operation).error_shapes
    except Exception:  # an operation the model does not know, or not a botocore model at all
        return None
    for shape in shapes:
        retryable = shape.metadata.get("retryable")
        if retryable is None:
            continue
        if (shape.metadata.get("error", {}).get("code") or shape.name) == code:
            return "throttle" if retryable.get("throttling") else "transient"
    return None


def classify_entry(service: str, code: str, *, sender_fault: bool | None = None) -> ErrorClass:
    """Say whether one failed entry of a batch response is worth sending again.

    The codes known for each service (see :func:`register_entry_codes`) decide first, then the
    general throttling and transient lists. SQS and SNS mark each failed entry with
    ``SenderFault``, which decides the rest: the sender's fault is permanent, anything else
    retryable. The throttling list comes before it because AWS models its throttles (SNS
    ``Throttled`` and ``KMSThrottling``, SQS ``KMS.ThrottlingException``) as sender faults, and
    those are worth waiting for. Otherwise an unknown code is permanent, so that a bad entry is
    reported, not looped on.
    """
    known = _ENTRY_CODES.get(service, {}).get(code)
    if known is not None:
        kind: ErrorKind = "throttle" if code in THROTTLING_CODES or known else "permanent"
        if known and code in TRANSIENT_CODES:
            kind = "transient"
        return ErrorClass(known, kind, code)
    if code in THROTTLING_CODES:
        return ErrorClass(True, "throttle", code)
    if code in TRANSIENT_CODES:
        return ErrorClass(True, "transient", code)
    if sender_fault is not None:
        return ErrorClass(not sender_fault, "permanent" if sender_fault else "transient", code)
    return ErrorClass(False, "permanent", code)


def register_entry_codes(
    service: str, *, retryable: tuple[str, ...] = (), permanent: tuple[str, ...] = ()
) -> None:
    """Teach :func:`classify_entry` per-entry codes of a service (when AWS adds one)."""
    with _entry_lock:
        codes = dict(_ENTRY_CODES.get(service, {}))
        codes.update(dict.fromkeys(retryable, True))
        codes.update(dict.fromkeys(permanent, False))
        _ENTRY_CODES[service] = codes

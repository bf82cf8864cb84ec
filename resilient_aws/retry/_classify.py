"""What is worth retrying: whole-request errors and per-entry error codes of batch APIs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

__all__ = ["ErrorClass", "ErrorKind", "classify", "classify_entry", "register_entry_codes"]

ErrorKind = Literal["throttle", "transient", "timeout", "connection", "permanent"]


@dataclass(frozen=True)
class ErrorClass:
    """The verdict on one error: ``retryable``, its ``kind`` and its service ``code``."""

    retryable: bool
    kind: ErrorKind
    code: str

    @property
    def is_throttle(self) -> bool:
        return self.kind == "throttle"


# The same list botocore's standard retry mode treats as throttling, plus SQS and S3 spellings.
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


def classify(error: BaseException) -> ErrorClass:
    """Say whether a whole-request error is worth retrying, and why.

    Throttling codes, 5xx responses, timeouts and dropped connections are retryable; everything
    else a service answers (validation, access denied, a failed condition, a missing resource) is
    permanent, and so is any exception that does not come from botocore.
    """
    if isinstance(error, ClientError):
        error_info = error.response.get("Error", {})
        code = str(error_info.get("Code", "Unknown"))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in THROTTLING_CODES or status == 429:
            return ErrorClass(True, "throttle", code)
        if code in TRANSIENT_CODES or status in TRANSIENT_STATUS:
            return ErrorClass(True, "transient", code)
        return ErrorClass(False, "permanent", code)
    if isinstance(error, _TIMEOUT_ERRORS):
        return ErrorClass(True, "timeout", type(error).__name__)
    if isinstance(error, _CONNECTION_ERRORS):
        return ErrorClass(True, "connection", type(error).__name__)
    return ErrorClass(False, "permanent", type(error).__name__)


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

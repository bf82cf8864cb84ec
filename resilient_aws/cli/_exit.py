"""Exit codes of ``resilient-aws`` and the errors that map to them."""

from __future__ import annotations

import re

__all__ = [
    "FAILED",
    "INTERRUPTED",
    "OK",
    "PIPE_CLOSED",
    "STOPPED",
    "USAGE",
    "UsageError",
    "classify_error",
    "stops_the_run",
]

OK = 0
"""Everything handed to the command succeeded."""
FAILED = 1
"""The run finished, and some entries failed: each is in the report, with its error."""
USAGE = 2
"""Bad usage or input that names nothing usable: an unknown option, a missing file or table or
queue, an invalid value, a profile or region that does not exist. Nothing was sent."""
STOPPED = 3
"""AWS stopped the run: access denied, retries exhausted, the endpoint unreachable. What was
done before is in the report."""
INTERRUPTED = 130
"""Interrupted (Ctrl-C, SIGINT): what was in flight was settled and reported first."""
PIPE_CLOSED = 141
"""stdout was closed by its reader (``| head``)."""

# Service error codes that mean "the thing you named does not exist": bad input, not an outage.
_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFound",
        "InvalidAddress",
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterCombination",
        "InvalidArgumentException",
        "UnsupportedOperation",
    }
)


# Service error codes that no retry and no other line can fix: the identity, its permissions or
# the target are wrong. A run that meets one stops at once (exit 3) rather than send every
# remaining request into the same refusal.
_STOP_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "AuthorizationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "NotAuthorized",
        "RequestExpired",
        "ResourceNotFoundException",
        "SignatureDoesNotMatch",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
    }
)


def stops_the_run(code: str | None) -> bool:
    """True for a service error code that every further request would meet too (access
    denied, an unknown or expired identity, a table deleted under the run): stop, exit 3."""
    return code in _STOP_CODES


class UsageError(Exception):
    """Bad usage the command detected itself (a file that cannot be read, a wrong token)."""


def classify_error(error: BaseException) -> tuple[int, str]:
    """The exit code for an error that ended a command, and a one-line message.

    Messages carry the service's error code and message, never a payload nor a credential.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    from resilient_aws.errors import ResilientAWSError, RetryError

    if isinstance(error, UsageError):
        return USAGE, str(error)
    cause = error.__cause__
    if (
        isinstance(error, ResilientAWSError)
        and isinstance(cause, ClientError)
        and stops_the_run(str(cause.response.get("Error", {}).get("Code", "")))
        and not isinstance(error, LookupError)
    ):
        # e.g. DescribeTable refused while reading the key schema: access denied is AWS
        # stopping the run, not bad usage.
        return STOPPED, str(error)
    if isinstance(error, ResilientAWSError) and isinstance(error, (ValueError, LookupError)):
        # Invalid options and entries, unknown tables and queues, a target of the wrong type,
        # a bad cursor: each is also a ValueError or a LookupError, raised before sending.
        return USAGE, str(error)
    if isinstance(
        error,
        (
            ProfileNotFound,
            NoRegionError,
            NoCredentialsError,
            PartialCredentialsError,
        ),
    ):
        return USAGE, str(error)
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "")) or type(error).__name__
        operation = getattr(error, "operation_name", "")
        message = f"{operation}: {code}: {details.get('Message', '')}".strip(": ")
        return (USAGE if code in _NOT_FOUND else STOPPED), message
    if isinstance(error, RetryError):
        last = error.last_error
        if isinstance(last, (EndpointConnectionError, ConnectTimeoutError)):
            return STOPPED, f"{error}: {last}"  # name the endpoint that could not be reached
        return STOPPED, str(error)
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return STOPPED, f"{type(error).__name__}: {error}"
    if isinstance(error, ParamValidationError):
        # botocore's report quotes each value it refused: name the parameters only
        names = ", ".join(dict.fromkeys(_PARAMETER.findall(str(error))))
        return STOPPED, f"ParamValidationError: invalid parameters (values not shown): {names}"
    return STOPPED, f"{type(error).__name__}: {error}"


# The lines of botocore's parameter validation report, up to the parameter they name.
_PARAMETER = re.compile(
    r"^(?:Invalid (?:type|value|length) for (?:document )?parameter|Missing required parameter in"
    r"|Unknown parameter in|Invalid parameter) ([\w.\[\]-]+)",
    re.MULTILINE,
)

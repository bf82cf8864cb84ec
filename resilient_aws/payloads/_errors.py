"""The errors of the claim-check: each names the message (or entry) and the S3 object, never
the payload."""

from __future__ import annotations

from resilient_aws.errors import EntryValidationError, ResilientAWSError

__all__ = [
    "InvalidPointerError",
    "PayloadError",
    "PayloadNotFoundError",
    "PayloadUploadError",
]


class PayloadError(ResilientAWSError):
    """A payload could not be stored, read or deleted. ``message_id`` names the message (or the
    entry's id on the sending side), ``bucket`` and ``key`` the S3 object, ``code`` the S3 error
    code (or the error's type name); the S3 error is the ``__cause__``."""

    _names = "message"

    def __init__(
        self,
        message_id: str | None,
        reason: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
    ) -> None:
        where = f" (s3://{bucket}/{key})" if bucket is not None and key is not None else ""
        # not super(): PayloadUploadError's next class is EntryValidationError, whose
        # arguments differ; the attributes it sets are set here
        ResilientAWSError.__init__(self, f"{self._names} {message_id!r}{where}: {reason}")
        self.message_id = message_id
        self.reason = reason
        self.bucket = bucket
        self.key = key
        self.code = code


class PayloadNotFoundError(PayloadError, LookupError):
    """A pointer names an object (or a bucket) that does not exist: deleted too early, expired
    by a lifecycle rule, or written to another account's bucket."""


class InvalidPointerError(PayloadError, ValueError):
    """A message says it carries a pointer (its ``ExtendedPayloadSize`` attribute) but its body
    is not one the extended client libraries write."""


class PayloadUploadError(PayloadError, EntryValidationError):
    """A sender could not store an entry's payload in S3 (after the retry core gave up): the
    entry is reported failed (code ``PayloadUploadError``) and never sent; nothing else in the
    batch is affected."""

    _names = "entry"

    def __init__(
        self,
        entry_id: str,
        reason: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
    ) -> None:
        PayloadError.__init__(self, entry_id, reason, bucket=bucket, key=key, code=code)
        self.entry_id = entry_id

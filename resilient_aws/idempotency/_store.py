"""The DynamoDB table behind ``@idempotent``: conditional writes, every call through the core."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from resilient_aws.errors import (
    ConfigurationError,
    IdempotencyResultError,
    IdempotencyTableError,
)
from resilient_aws.idempotency._record import COMPLETED, INPROGRESS, IdempotencyRecord
from resilient_aws.limits import DYNAMODB_ITEM_BYTES
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from resilient_aws.payloads.crypto import Encryptor

__all__ = ["IdempotencyStore", "MAX_ITEM_BYTES"]

logger = logging.getLogger("resilient_aws.idempotency")

MAX_ITEM_BYTES = DYNAMODB_ITEM_BYTES

SEALED_PREFIX = "sealed:"
"""What starts the ``data`` attribute of a result sealed by an encryptor (then base64): no
JSON text starts so, so a sealed result is never read as JSON."""


class RecordVanishedError(Exception):
    """The take failed on a record that was gone when read back: nothing was written."""


# Take the key if nobody holds it: no record, a record past its TTL, or an in-progress record
# whose lease ran out (its caller crashed or timed out). Same condition as Powertools, so a
# key held by either library is held for both.
_TAKE_CONDITION = (
    "attribute_not_exists(#id) OR #expiry < :now OR "
    "(#status = :inprogress AND attribute_exists(#in_progress_expiry) "
    "AND #in_progress_expiry < :now_in_millis)"
)


class IdempotencyStore:
    """Idempotency records in a DynamoDB table, compatible with Powertools' records.

    The table needs a string partition key (``key_attr``, default ``"id"``), or with
    ``sort_key_attr`` a composite key whose partition value is ``static_pk_value`` (default
    ``"idempotency#{AWS_LAMBDA_FUNCTION_NAME}"``, as in Powertools). Turn on TTL on
    ``expiry_attr`` so that old records clean themselves up. ``owner_attr`` (the token of the call
    holding a key) and ``error_attr`` (why the result of a call that ran could not be stored)
    are resilient_aws's own attributes; Powertools ignores them.

    Every DynamoDB call goes through ``policy`` (the retry core): a throttled idempotency table
    does not fail the handler while attempts remain, and the caller's Lambda deadline bounds the
    retries. Without ``client``, the library's shared default DynamoDB client is used (made
    once per environment, botocore's own retries off). ``clock`` (epoch seconds) is a seam for
    tests.

    ``encryptor`` (a :class:`~resilient_aws.payloads.crypto.KmsEnvelope`, or any
    :class:`~resilient_aws.payloads.crypto.Encryptor`) seals every stored result with the
    idempotency key as associated data: a result moved to another record, sealed by another
    KMS key, or tampered with raises :class:`IdempotencyResultError` instead of being replayed,
    and so does a sealed result read by a store without an encryptor, or a plain result read by
    a store with one. Powertools cannot read sealed results.
    """

    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        key_attr: str = "id",
        sort_key_attr: str | None = None,
        static_pk_value: str | None = None,
        expiry_attr: str = "expiration",
        in_progress_expiry_attr: str = "in_progress_expiration",
        status_attr: str = "status",
        data_attr: str = "data",
        validation_attr: str = "validation",
        owner_attr: str = "owner",
        error_attr: str = "error",
        clock: Callable[[], float] = time.time,
        encryptor: Encryptor | None = None,
    ) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigurationError("table", "must be a non-empty table name")
        if sort_key_attr is not None and sort_key_attr == key_attr:
            raise ConfigurationError("sort_key_attr", f"must differ from key_attr {key_attr!r}")
        if not isinstance(policy, RetryPolicy):
            raise ConfigurationError("policy", f"must be a RetryPolicy, got {type(policy)!r}")
        self.table = table
        self.policy = policy
        self.key_attr = key_attr
        self.sort_key_attr = sort_key_attr
        self.static_pk_value = (
            static_pk_value
            if static_pk_value is not None
            else f"idempotency#{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', '')}"
        )
        self.expiry_attr = expiry_attr
        self.in_progress_expiry_attr = in_progress_expiry_attr
        self.status_attr = status_attr
        self.data_attr = data_attr
        self.validation_attr = validation_attr
        self.owner_attr = owner_attr
        self.error_attr = error_attr
        self.clock = clock
        if encryptor is not None:
            from resilient_aws.payloads.crypto import check_encryptor

            check_encryptor(encryptor)
        self.encryptor = encryptor
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        """``client=`` if given, else the library's shared default DynamoDB client.

        The default client is looked up on every call, not kept: a store made at import (a
        Lambda global) follows the environment (``mock_aws()``'s credentials, a test's
        ``clear_default_clients()``) and is reached by ``chaos_defaults``.
        """
        if self._client is not None:
            return self._client
        from resilient_aws._clients import default_client

        client: DynamoDBClient = default_client("dynamodb")
        return client

    # -- the operations ----------------------------------------------------------------------------

    def put_in_progress(
        self,
        key: str,
        *,
        owner: str,
        expires_at: int,
        in_progress_until_ms: int,
        validation: str | None,
        policy: RetryPolicy | None = None,
    ) -> IdempotencyRecord | None:
        """Take ``key`` for one call: ``None`` if taken, else the record that holds it.

        One conditional ``PutItem``; when the condition fails, DynamoDB returns the current
        record with it (``ReturnValuesOnConditionCheckFailure``), so no ``GetItem`` follows
        unless the table does not support that (then one consistent read does; if it finds the
        record gone, :class:`RecordVanishedError` says nothing was written and the take may be
        tried again).
        """
        now = self.clock()
        item: dict[str, Any] = {
            **self._key(key),
            self.expiry_attr: {"N": str(expires_at)},
            self.status_attr: {"S": INPROGRESS},
            self.in_progress_expiry_attr: {"N": str(in_progress_until_ms)},
            self.owner_attr: {"S": owner},
        }
        if validation is not None:
            item[self.validation_attr] = {"S": validation}
        try:
            self._call(
                policy,
                self.client.put_item,
                TableName=self.table,
                Item=item,
                ConditionExpression=_TAKE_CONDITION,
                ExpressionAttributeNames={
                    "#id": self.key_attr,
                    "#expiry": self.expiry_attr,
                    "#status": self.status_attr,
                    "#in_progress_expiry": self.in_progress_expiry_attr,
                },
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":now_in_millis": {"N": str(int(now * 1000))},
                    ":inprogress": {"S": INPROGRESS},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old: Any = error.response.get("Item")
            existing = self._record(old) if old else self.get(key, policy=policy)
            if existing is None:
                # A table that does not return the record with the failure (the fallback read)
                # can lose it between the two calls: nothing was written, so the caller's race
                # loop takes the key again.
                raise RecordVanishedError(key) from error
            if existing.owner == owner:
                # Our own write, applied on an attempt whose response was lost.
                return None
            return existing
        return None

    def complete(
        self,
        key: str,
        *,
        data: str,
        expires_at: int,
        validation: str | None,
        policy: RetryPolicy | None = None,
    ) -> None:
        """Store the result (``data``, JSON text; sealed first with an ``encryptor``) and mark
        the record ``COMPLETED``."""
        if self.encryptor is not None:
            sealed = self.encryptor.encrypt(data.encode("utf-8"), context=key)
            data = SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")
        names = {"#data": self.data_attr, "#expiry": self.expiry_attr, "#status": self.status_attr}
        values: dict[str, Any] = {
            ":data": {"S": data},
            ":expiry": {"N": str(expires_at)},
            ":status": {"S": COMPLETED},
        }
        expression = "SET #data = :data, #expiry = :expiry, #status = :status"
        if validation is not None:
            expression += ", #validation = :validation"
            names["#validation"] = self.validation_attr
            values[":validation"] = {"S": validation}
        self._call(
            policy,
            self.client.update_item,
            TableName=self.table,
            Key=self._key(key),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def hold_unstorable(
        self,
        key: str,
        *,
        owner: str,
        reason: str,
        expires_at: int,
        policy: RetryPolicy | None = None,
    ) -> bool:
        """Keep the in-progress record of ``owner`` until ``expires_at``, marked with ``reason``.

        For a call that ran but whose result cannot be stored: the key must not run again, so the
        record stays ``INPROGRESS`` with its lease stretched to its expiry (Powertools and the
        take condition see a call in progress) and ``error_attr`` says why (resilient_aws refuses
        repeats with :class:`IdempotencyResultError`). Conditional on the owner: False if the
        record is no longer this call's (its lease ran out and another call took the key).
        """
        try:
            self._call(
                policy,
                self.client.update_item,
                TableName=self.table,
                Key=self._key(key),
                UpdateExpression=(
                    "SET #error = :error, #expiry = :expiry, #in_progress_expiry = :until_ms"
                ),
                ConditionExpression="#owner = :owner AND #status = :inprogress",
                ExpressionAttributeNames={
                    "#error": self.error_attr,
                    "#expiry": self.expiry_attr,
                    "#in_progress_expiry": self.in_progress_expiry_attr,
                    "#owner": self.owner_attr,
                    "#status": self.status_attr,
                },
                ExpressionAttributeValues={
                    ":error": {"S": reason},
                    ":expiry": {"N": str(expires_at)},
                    ":until_ms": {"N": str(expires_at * 1000)},
                    ":owner": {"S": owner},
                    ":inprogress": {"S": INPROGRESS},
                },
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def release(self, key: str, *, owner: str, policy: RetryPolicy | None = None) -> None:
        """Delete the in-progress record of ``owner`` so the key can run again.

        Conditional on the owner and on the record still being in progress: a call whose lease
        ran out must not delete the record of the call that took the key over, nor a result
        another call completed meanwhile (a later duplicate replays it instead of running).
        """
        try:
            self._call(
                policy,
                self.client.delete_item,
                TableName=self.table,
                Key=self._key(key),
                ConditionExpression="#owner = :owner AND #status = :inprogress",
                ExpressionAttributeNames={"#owner": self.owner_attr, "#status": self.status_attr},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":inprogress": {"S": INPROGRESS},
                },
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise

    def get(self, key: str, *, policy: RetryPolicy | None = None) -> IdempotencyRecord | None:
        """The record of ``key`` (consistent read), or ``None``."""
        response = self._call(
            policy,
            self.client.get_item,
            TableName=self.table,
            Key=self._key(key),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return self._record(item) if item else None

    def record_size(
        self, key: str, data: str, validation: str | None, owner: str | None = None
    ) -> int:
        """The size DynamoDB counts for a completed record (attribute names + values; the
        in-progress record's ``owner`` stays on it)."""
        size = sum(len(name.encode()) for name in self._attribute_names()) + 3 * 21
        data_size = len(data.encode())
        if self.encryptor is not None:
            overhead = getattr(self.encryptor, "overhead", 1024)
            data_size = len(SEALED_PREFIX) + 4 * -(-(data_size + overhead) // 3)  # base64
        size += len(key.encode()) + data_size + len(COMPLETED)
        if owner is not None:
            size += len(owner.encode())
        if self.sort_key_attr is not None:
            size += len(self.static_pk_value.encode())
        if validation is not None:
            size += len(validation)
        return size

    # -- internals -----------------------------------------------------------------------------

    def _attribute_names(self) -> list[str]:
        names = [
            self.key_attr,
            self.expiry_attr,
            self.in_progress_expiry_attr,
            self.status_attr,
            self.data_attr,
            self.validation_attr,
            self.owner_attr,
        ]
        if self.sort_key_attr is not None:
            names.append(self.sort_key_attr)
        return names

    def _key(self, key: str) -> dict[str, Any]:
        if self.sort_key_attr is not None:
            return {
                self.key_attr: {"S": self.static_pk_value},
                self.sort_key_attr: {"S": key},
            }
        return {self.key_attr: {"S": key}}

    def _record(self, item: dict[str, Any]) -> IdempotencyRecord:
        key_attr = self.sort_key_attr or self.key_attr

        def text(name: str) -> str | None:
            value = item.get(name)
            return value.get("S") if isinstance(value, dict) else None

        def number(name: str) -> int | None:
            value = item.get(name)
            if isinstance(value, dict) and "N" in value:
                return int(float(value["N"]))
            return None

        key = text(key_attr) or ""
        return IdempotencyRecord(
            key=key,
            status=text(self.status_attr) or "",
            expires_at=number(self.expiry_attr) or 0,
            in_progress_until_ms=number(self.in_progress_expiry_attr),
            data=self._open(key, text(self.data_attr)),
            validation=text(self.validation_attr),
            owner=text(self.owner_attr),
            error=text(self.error_attr),
        )

    def _open(self, key: str, data: str | None) -> str | None:
        """The stored result as JSON text: opened by the encryptor when sealed; refused when
        sealed without one or plain with one (never replayed as something else)."""
        if data is None:
            return None
        sealed = data.startswith(SEALED_PREFIX)
        if self.encryptor is None:
            if sealed:
                raise IdempotencyResultError(
                    f"idempotency table {self.table!r}: the stored result is sealed and this "
                    "store has no encryptor",
                    key=key,
                )
            return data
        if not sealed:
            raise IdempotencyResultError(
                f"idempotency table {self.table!r}: the stored result is not sealed, and this "
                "store reads sealed results only",
                key=key,
            )
        from resilient_aws.payloads.crypto import DecryptionError

        try:
            blob = base64.b64decode(data[len(SEALED_PREFIX) :], validate=True)
            return self.encryptor.decrypt(blob, context=key).decode("utf-8")
        except (DecryptionError, ValueError) as error:
            code = getattr(error, "code", type(error).__name__)
            raise IdempotencyResultError(
                f"idempotency table {self.table!r}: the stored result cannot be decrypted "
                f"({code}): moved from another record, sealed by another key, or tampered with",
                key=key,
            ) from error

    def _call(self, policy: RetryPolicy | None, fn: Callable[..., Any], **params: Any) -> Any:
        try:
            return (policy or self.policy).call(fn, **params)
        except ClientError as error:
            translated = self._table_error(error)
            if translated is None:
                raise
            raise translated from error

    def _table_error(self, error: ClientError) -> IdempotencyTableError | None:
        code = _code(error)
        message = str(error.response.get("Error", {}).get("Message", ""))
        if code == "ResourceNotFoundException":
            return IdempotencyTableError(f"idempotency table {self.table!r} does not exist")
        if code == "ValidationException" and "key" in message.lower():
            if self.sort_key_attr is None:
                expected = f"a string partition key {self.key_attr!r}"
            else:
                expected = (
                    f"a string partition key {self.key_attr!r} and a string sort key "
                    f"{self.sort_key_attr!r}"
                )
            return IdempotencyTableError(
                f"idempotency table {self.table!r} must have {expected}; DynamoDB said: {message}"
            )
        return None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))

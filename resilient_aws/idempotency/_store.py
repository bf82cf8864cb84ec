"""The DynamoDB table behind ``@idempotent``: conditional writes, every call through the core."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from resilient_aws._steps import Blocking, Call, Steps, arun_steps, run_steps
from resilient_aws.errors import (
    ConfigurationError,
    IdempotencyError,
    IdempotencyResultError,
    IdempotencyTableError,
    RetryError,
)
from resilient_aws.idempotency._record import COMPLETED, INPROGRESS, IdempotencyRecord
from resilient_aws.limits import DYNAMODB_ITEM_BYTES
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from resilient_aws.payloads import PayloadPointer, PayloadStore
    from resilient_aws.payloads.crypto import Encryptor
    from resilient_aws.retry import Deadline

__all__ = ["IdempotencyStore", "MAX_ITEM_BYTES"]

logger = logging.getLogger("resilient_aws.idempotency")

MAX_ITEM_BYTES = DYNAMODB_ITEM_BYTES

T = TypeVar("T")

SEALED_PREFIX = "sealed:"
"""What starts the ``data`` attribute of a result sealed by an encryptor (then base64): no
JSON text starts so, so a sealed result is never read as JSON."""

OFFLOADED_PREFIX = "offloaded:"
"""What starts the ``data`` attribute of a result stored in S3 by ``payloads=``, then a JSON
object: ``{"bucket", "key", "bytes", "sha256", "sealed"}`` (the object's size and SHA-256 as
stored, and whether it is sealed under the idempotency key). No JSON text, and no sealed
result, starts so."""

# DynamoDB answered these without applying the request (4xx); after any other failure (a 5xx,
# a timeout, a lost connection) the write may have been applied.
_REFUSED_CODES = frozenset(
    {
        "ConditionalCheckFailedException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "ValidationException",
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ItemCollectionSizeLimitExceededException",
        "TransactionConflictException",
    }
)


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
    a store with one. Powertools cannot read sealed results. ``accept_plaintext=True`` (for
    turning encryption on) reads results stored in clear before it, and still writes sealed
    ones; that a plain result was read is logged once per store (no key, no value).

    ``payloads`` (a :class:`~resilient_aws.payloads.PayloadStore`) stores a result whose record
    would not fit a DynamoDB item (400 KB), or would exceed the payload store's
    ``config.threshold`` (or every result with ``config.always``), as an S3 object written
    before the record is marked ``COMPLETED``; the record holds a small pointer (``data``
    starts with :data:`OFFLOADED_PREFIX`). With an ``encryptor`` the object is sealed under
    the idempotency key. A replay reads it back through the caller's policy (the Lambda
    deadline); an object that is gone, changed, or sealed under another key raises
    :class:`IdempotencyResultError` naming the key, never runs the function again. The bucket
    needs a lifecycle rule that keeps objects at least as long as the records (``ttl_s``),
    plus a day. Powertools cannot read offloaded results.

    ``async_client`` (an aiobotocore DynamoDB client) gives ``async def`` functions the event
    loop's own requests instead of a worker thread per call; ``async with store:`` opens one
    on the running loop and closes it at the end of the block. Without one they use ``client``
    in a worker thread (``asyncio.to_thread``). Both drivers make the same requests and read
    the answers the same way; S3 and KMS (``payloads``, ``encryptor``) stay on boto3, in a
    worker thread.
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
        accept_plaintext: bool = False,
        payloads: PayloadStore | None = None,
        async_client: Any = None,
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
        if not isinstance(accept_plaintext, bool):
            raise ConfigurationError("accept_plaintext", "must be a bool")
        if payloads is not None and not (
            all(
                callable(getattr(payloads, name, None))
                for name in ("put", "get_bytes", "delete", "new_pointer")
            )
            and callable(getattr(getattr(payloads, "config", None), "offloads", None))
        ):
            raise ConfigurationError(
                "payloads", f"must be a PayloadStore, got {type(payloads).__name__}"
            )
        self.encryptor = encryptor
        self.accept_plaintext = accept_plaintext
        self.payloads = payloads
        self._client = client
        self._lock = threading.Lock()
        self._plaintext_seen = False
        self._async_client: Any = None
        self._async_context: Any = None
        self._async_users = 0
        self.async_client = async_client

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

    @property
    def async_client(self) -> Any:
        """The aiobotocore DynamoDB client ``async def`` functions use (``async_client=``, set
        later, or opened by ``async with store``), or ``None``: they use :attr:`client` in a
        worker thread. It belongs to the event loop it was made on."""
        return self._async_client

    @async_client.setter
    def async_client(self, client: Any) -> None:
        if client is not None and not _is_async_client(client):
            raise ConfigurationError(
                "async_client",
                f"must be an aiobotocore DynamoDB client, got {type(client).__name__} (a boto3 "
                "client goes in client=)",
            )
        self._async_client = client

    async def __aenter__(self) -> IdempotencyStore:
        """Open an aiobotocore DynamoDB client on the running loop (configured by ``policy``, as
        the default clients are: botocore's own retries off) unless the store has one; the
        outermost block closes the client it opened, never one it was given."""
        if self._async_users == 0 and self._async_client is None:
            from aiobotocore.session import get_session

            context = get_session().create_client("dynamodb", config=self.policy.botocore_config())
            self._async_client = await context.__aenter__()
            self._async_context = context
        self._async_users += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._async_users -= 1
        context = self._async_context
        if self._async_users or context is None:
            return
        self._async_context = self._async_client = None
        await context.__aexit__(None, None, None)

    # -- the operations: each written once, as steps both drivers run --------------------------
    #
    # An operation is a generator of steps (:mod:`resilient_aws._steps`): it builds each
    # DynamoDB request and yields it as a ``Call``, gets the response back (or, thrown in, the
    # error the retry core finally raised) and interprets it. What may block on other I/O (S3,
    # KMS) is yielded as a ``Blocking`` step. ``_run`` answers the steps with the boto3 client
    # and ``policy.call``; ``_arun`` with the aiobotocore client and ``policy.acall``, and runs
    # the blocking steps in a worker thread. Conditions, owners, expiry, takeovers, sealed and
    # offloaded results and error mapping are decided here, the same for both.

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
        return self._run(
            self._take(key, owner, expires_at, in_progress_until_ms, validation, policy), policy
        )

    async def aput_in_progress(
        self,
        key: str,
        *,
        owner: str,
        expires_at: int,
        in_progress_until_ms: int,
        validation: str | None,
        policy: RetryPolicy | None = None,
    ) -> IdempotencyRecord | None:
        """:meth:`put_in_progress` on the store's ``async_client``."""
        return await self._arun(
            self._take(key, owner, expires_at, in_progress_until_ms, validation, policy), policy
        )

    def complete(
        self,
        key: str,
        *,
        data: str,
        expires_at: int,
        validation: str | None,
        policy: RetryPolicy | None = None,
        owner: str | None = None,
    ) -> None:
        """Store the result (``data``, JSON text; sealed first with an ``encryptor``) and mark
        the record ``COMPLETED``.

        With ``payloads``, a result over the item limit or the payload store's threshold is
        written to S3 first and the record gets its pointer. If marking the record then fails,
        the object is deleted when DynamoDB refused every attempt (nothing was written), else
        its S3 key is logged (the record may point to it: a lifecycle rule expires it).
        ``owner`` (the in-progress record's token, which stays on it) is counted in the size.
        """
        self._run(self._complete(key, data, expires_at, validation, policy, owner), policy)

    async def acomplete(
        self,
        key: str,
        *,
        data: str,
        expires_at: int,
        validation: str | None,
        policy: RetryPolicy | None = None,
        owner: str | None = None,
    ) -> None:
        """:meth:`complete` on the store's ``async_client`` (S3 and KMS in a worker thread)."""
        await self._arun(self._complete(key, data, expires_at, validation, policy, owner), policy)

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
        return self._run(self._hold(key, owner, reason, expires_at), policy)

    async def ahold_unstorable(
        self,
        key: str,
        *,
        owner: str,
        reason: str,
        expires_at: int,
        policy: RetryPolicy | None = None,
    ) -> bool:
        """:meth:`hold_unstorable` on the store's ``async_client``."""
        return await self._arun(self._hold(key, owner, reason, expires_at), policy)

    def release(self, key: str, *, owner: str, policy: RetryPolicy | None = None) -> None:
        """Delete the in-progress record of ``owner`` so the key can run again.

        Conditional on the owner and on the record still being in progress: a call whose lease
        ran out must not delete the record of the call that took the key over, nor a result
        another call completed meanwhile (a later duplicate replays it instead of running).
        """
        self._run(self._release(key, owner), policy)

    async def arelease(self, key: str, *, owner: str, policy: RetryPolicy | None = None) -> None:
        """:meth:`release` on the store's ``async_client``."""
        await self._arun(self._release(key, owner), policy)

    def get(self, key: str, *, policy: RetryPolicy | None = None) -> IdempotencyRecord | None:
        """The record of ``key`` (consistent read), or ``None``. A live completed record's
        result is opened (decrypted, read from S3) through ``policy``; an expired record's
        offloaded result is not read (``data`` is ``None``)."""
        return self._run(self._get(key, policy), policy)

    async def aget(
        self, key: str, *, policy: RetryPolicy | None = None
    ) -> IdempotencyRecord | None:
        """:meth:`get` on the store's ``async_client``."""
        return await self._arun(self._get(key, policy), policy)

    # -- the steps ---------------------------------------------------------------------------------

    def _take(
        self,
        key: str,
        owner: str,
        expires_at: int,
        in_progress_until_ms: int,
        validation: str | None,
        policy: RetryPolicy | None,
    ) -> Steps[IdempotencyRecord | None]:
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
        extra: dict[str, Any] = {}
        if self.payloads is not None:
            # an expired record taken over is replaced: its offloaded result is deleted below
            extra["ReturnValues"] = "ALL_OLD"
        try:
            response = yield Call(
                "put_item",
                {
                    "TableName": self.table,
                    "Item": item,
                    "ConditionExpression": _TAKE_CONDITION,
                    "ExpressionAttributeNames": {
                        "#id": self.key_attr,
                        "#expiry": self.expiry_attr,
                        "#status": self.status_attr,
                        "#in_progress_expiry": self.in_progress_expiry_attr,
                    },
                    "ExpressionAttributeValues": {
                        ":now": {"N": str(int(now))},
                        ":now_in_millis": {"N": str(int(now * 1000))},
                        ":inprogress": {"S": INPROGRESS},
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    **extra,
                },
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old: Any = error.response.get("Item")
            existing: IdempotencyRecord | None
            if old:
                existing = yield from self._read(old, policy)
            else:
                existing = yield from self._get(key, policy)
            if existing is None:
                # A table that does not return the record with the failure (the fallback read)
                # can lose it between the two calls: nothing was written, so the caller's race
                # loop takes the key again.
                raise RecordVanishedError(key) from error
            if existing.owner == owner:
                # Our own write, applied on an attempt whose response was lost.
                return None
            return existing
        if self.payloads is not None:
            replaced = (response or {}).get("Attributes") or {}
            yield from self._drop_replaced_steps(key, replaced.get(self.data_attr), policy)
        return None

    def _complete(
        self,
        key: str,
        data: str,
        expires_at: int,
        validation: str | None,
        policy: RetryPolicy | None,
        owner: str | None,
    ) -> Steps[None]:
        stored = data
        blob: bytes | None = None
        if self.encryptor is not None:
            blob = yield Blocking(self._seal, (key, data, policy))
        pointer: PayloadPointer | None = None
        if self.payloads is not None:
            body = blob if blob is not None else data.encode("utf-8")
            # measured, not built: the base64 text of a large sealed result is never needed
            inline = _sealed_size(len(body)) if blob is not None else len(body)
            size = self._size(key, inline, validation, owner)
            # a result the payload store refuses (max_bytes) but the record holds stays there:
            # an upload refused after the function ran would let it run again
            fits_s3 = len(body) <= self.payloads.config.max_bytes
            if size > MAX_ITEM_BYTES or (fits_s3 and self.payloads.config.offloads(size)):
                pointer, stored = yield Blocking(
                    self._offload, (key, body, blob is not None, policy)
                )
        if pointer is None and blob is not None:
            stored = SEALED_PREFIX + base64.b64encode(blob).decode("ascii")
        names = {"#data": self.data_attr, "#expiry": self.expiry_attr, "#status": self.status_attr}
        values: dict[str, Any] = {
            ":data": {"S": stored},
            ":expiry": {"N": str(expires_at)},
            ":status": {"S": COMPLETED},
        }
        expression = "SET #data = :data, #expiry = :expiry, #status = :status"
        if validation is not None:
            expression += ", #validation = :validation"
            names["#validation"] = self.validation_attr
            values[":validation"] = {"S": validation}
        params: dict[str, Any] = {
            "TableName": self.table,
            "Key": self._key(key),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if self.payloads is None:
            yield Call("update_item", params)
            return
        # a result this call replaces (a second completion) leaves its object behind
        params["ReturnValues"] = "UPDATED_OLD"
        attempts: list[BaseException] = []
        try:
            response = yield Call("update_item", params, attempts)
        except BaseException as error:
            if pointer is not None:
                yield Blocking(self._not_marked, (key, pointer, attempts, error, policy))
            raise
        replaced = (response or {}).get("Attributes") or {}
        yield from self._drop_replaced_steps(key, replaced.get(self.data_attr), policy, pointer)

    def _hold(self, key: str, owner: str, reason: str, expires_at: int) -> Steps[bool]:
        try:
            yield Call(
                "update_item",
                {
                    "TableName": self.table,
                    "Key": self._key(key),
                    "UpdateExpression": (
                        "SET #error = :error, #expiry = :expiry, #in_progress_expiry = :until_ms"
                    ),
                    "ConditionExpression": "#owner = :owner AND #status = :inprogress",
                    "ExpressionAttributeNames": {
                        "#error": self.error_attr,
                        "#expiry": self.expiry_attr,
                        "#in_progress_expiry": self.in_progress_expiry_attr,
                        "#owner": self.owner_attr,
                        "#status": self.status_attr,
                    },
                    "ExpressionAttributeValues": {
                        ":error": {"S": reason},
                        ":expiry": {"N": str(expires_at)},
                        ":until_ms": {"N": str(expires_at * 1000)},
                        ":owner": {"S": owner},
                        ":inprogress": {"S": INPROGRESS},
                    },
                },
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _release(self, key: str, owner: str) -> Steps[None]:
        try:
            yield Call(
                "delete_item",
                {
                    "TableName": self.table,
                    "Key": self._key(key),
                    "ConditionExpression": "#owner = :owner AND #status = :inprogress",
                    "ExpressionAttributeNames": {
                        "#owner": self.owner_attr,
                        "#status": self.status_attr,
                    },
                    "ExpressionAttributeValues": {
                        ":owner": {"S": owner},
                        ":inprogress": {"S": INPROGRESS},
                    },
                },
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise

    def _get(self, key: str, policy: RetryPolicy | None) -> Steps[IdempotencyRecord | None]:
        response = yield Call(
            "get_item", {"TableName": self.table, "Key": self._key(key), "ConsistentRead": True}
        )
        item = response.get("Item")
        if not item:
            return None
        return (yield from self._read(item, policy))

    def _read(self, item: dict[str, Any], policy: RetryPolicy | None) -> Steps[IdempotencyRecord]:
        """The record of ``item``; a step of its own when opening its result may call KMS or
        S3 (a store with an encryptor or payloads), else read where it stands."""
        if self.encryptor is None and self.payloads is None:
            return self._record(item, policy)
        record: IdempotencyRecord = yield Blocking(self._record, (item, policy))
        return record

    def _drop_replaced_steps(
        self, key: str, old: Any, policy: RetryPolicy | None, keep: PayloadPointer | None = None
    ) -> Steps[None]:
        text = old.get("S") if isinstance(old, dict) else None
        if isinstance(text, str) and text.startswith(OFFLOADED_PREFIX):
            yield Blocking(self._drop_replaced, (key, old, policy, keep))

    def _seal(self, key: str, data: str, policy: RetryPolicy | None) -> bytes:
        from resilient_aws.payloads.crypto import encrypt_with

        assert self.encryptor is not None
        return encrypt_with(
            self.encryptor, data.encode("utf-8"), context=key, deadline=_deadline(policy)
        )

    # -- the two drivers -------------------------------------------------------------------------

    def _run(self, steps: Steps[T], policy: RetryPolicy | None) -> T:
        """Run ``steps`` with the boto3 client, every request through ``policy.call``."""
        return run_steps(lambda: self.client, policy or self.policy, steps, errors=self._means)

    async def _arun(self, steps: Steps[T], policy: RetryPolicy | None) -> T:
        """Run ``steps`` with the aiobotocore client, every request through ``policy.acall``;
        S3 and KMS steps in a worker thread (their clients are boto3's)."""
        client = self.async_client
        if client is None:
            raise ConfigurationError(
                "async_client",
                "this store has no async client: pass async_client= or use it in `async with`",
            )
        return await arun_steps(lambda: client, policy or self.policy, steps, errors=self._means)

    def _means(self, error: Exception) -> IdempotencyTableError | None:
        """The :class:`IdempotencyTableError` a request's ``error`` means, if it means one."""
        return self._table_error(error) if isinstance(error, ClientError) else None

    def record_size(
        self, key: str, data: str, validation: str | None, owner: str | None = None
    ) -> int:
        """The size DynamoDB counts for a completed record holding ``data`` itself (attribute
        names + values; the in-progress record's ``owner`` stays on it)."""
        data_size = len(data.encode())
        if self.encryptor is not None:
            data_size = _sealed_size(data_size + self._overhead())
        return self._size(key, data_size, validation, owner)

    def unstorable(
        self, key: str, data: str, validation: str | None, owner: str | None = None
    ) -> str | None:
        """Why the result ``data`` cannot be stored (no value in it), or ``None``: a record over
        the item limit without ``payloads``, or a result over the payload store's
        ``max_bytes``."""
        size = self.record_size(key, data, validation, owner)
        if size <= MAX_ITEM_BYTES:
            return None
        if self.payloads is None:
            return (
                f"its result makes a {size}-byte record, over DynamoDB's {MAX_ITEM_BYTES}-byte "
                "item limit (an IdempotencyStore with payloads= stores such results in S3)"
            )
        body = len(data.encode()) + (self._overhead() if self.encryptor is not None else 0)
        limit = self.payloads.config.max_bytes
        if body > limit:
            return f"its {body}-byte result is over the payload store's max_bytes ({limit})"
        return None

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

    def _record(self, item: dict[str, Any], policy: RetryPolicy | None = None) -> IdempotencyRecord:
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
        status = text(self.status_attr) or ""
        expires_at = number(self.expiry_attr) or 0
        data = text(self.data_attr)
        if data is not None and data.startswith(OFFLOADED_PREFIX):
            # read from S3 only what may be replayed: an expired record is taken over, and its
            # object may be gone already (the lifecycle rule)
            live = status == COMPLETED and expires_at >= int(self.clock())
            data = self._fetch(key, data, policy) if live else None
        else:
            data = self._open(key, data, policy)
            # every result stored has data ("null" for None, sealed by an encrypting store):
            # a live completed record without it is not sealed, so not replayed as None
            live = status == COMPLETED and expires_at >= int(self.clock())
            if data is None and self.encryptor is not None and live:
                self._plain_allowed(key)
        return IdempotencyRecord(
            key=key,
            status=status,
            expires_at=expires_at,
            in_progress_until_ms=number(self.in_progress_expiry_attr),
            data=data,
            validation=text(self.validation_attr),
            owner=text(self.owner_attr),
            error=text(self.error_attr),
        )

    def _open(self, key: str, data: str | None, policy: RetryPolicy | None = None) -> str | None:
        """The stored result as JSON text: opened by the encryptor when sealed; refused when
        sealed without one or plain with one (unless ``accept_plaintext``: never replayed as
        something else)."""
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
            self._plain_allowed(key)
            return data
        try:
            blob = base64.b64decode(data[len(SEALED_PREFIX) :], validate=True)
        except ValueError as error:
            raise IdempotencyResultError(
                f"idempotency table {self.table!r}: the stored result cannot be decrypted "
                f"(Malformed): not base64",
                key=key,
            ) from error
        return self._unseal(key, blob, policy, "the stored result")

    def _unseal(self, key: str, blob: bytes, policy: RetryPolicy | None, what: str) -> str:
        """``blob`` opened under ``key`` (KMS bound to the call's deadline), as text. A blob
        that does not open is :class:`IdempotencyResultError`; KMS failing past its retries
        is :class:`IdempotencyError` (the record may replay later), both naming the key."""
        from resilient_aws.payloads.crypto import DecryptionError, decrypt_with

        assert self.encryptor is not None
        where = f"idempotency table {self.table!r}"
        try:
            opened = decrypt_with(self.encryptor, blob, context=key, deadline=_deadline(policy))
            return opened.decode("utf-8")
        except (DecryptionError, UnicodeDecodeError) as error:
            code = getattr(error, "code", type(error).__name__)
            raise IdempotencyResultError(
                f"{where}: {what} cannot be decrypted ({code}): moved from another record, "
                "sealed by another key, or tampered with",
                key=key,
            ) from error
        except (ClientError, BotoCoreError, RetryError) as error:
            raise IdempotencyError(
                f"{where}: decrypting {what} failed ({_error_code(error)})", key=key
            ) from error

    def _plain_allowed(self, key: str) -> None:
        """A result stored in clear, read by a store with an encryptor: refused, or accepted
        (and logged once per store) with ``accept_plaintext``."""
        if not self.accept_plaintext:
            raise IdempotencyResultError(
                f"idempotency table {self.table!r}: the stored result is not sealed, and this "
                "store reads sealed results only (accept_plaintext=True reads the results "
                "stored before encryption was turned on)",
                key=key,
            )
        with self._lock:
            if self._plaintext_seen:
                return
            self._plaintext_seen = True
        logger.warning(
            "idempotency table %r: read a result stored without encryption "
            "(accept_plaintext=True); turn accept_plaintext off once the records written "
            "before encryption have expired",
            self.table,
        )

    def _s3_policy(self, policy: RetryPolicy | None) -> RetryPolicy | None:
        """The payload store's own policy, bound to the deadline of the call's (the Lambda
        deadline ``@idempotent`` gives the table's calls); ``None``: the store's as it is."""
        deadline = _deadline(policy)
        if deadline is None or self.payloads is None:
            return None
        return self.payloads.policy.with_deadline(deadline)

    def _overhead(self) -> int:
        return int(getattr(self.encryptor, "overhead", 1024))

    def _size(self, key: str, data_size: int, validation: str | None, owner: str | None) -> int:
        size = sum(len(name.encode()) for name in self._attribute_names()) + 3 * 21
        size += len(key.encode()) + data_size + len(COMPLETED)
        if owner is not None:
            size += len(owner.encode())
        if self.sort_key_attr is not None:
            size += len(self.static_pk_value.encode())
        if validation is not None:
            size += len(validation)
        return size

    # -- results in S3 -------------------------------------------------------------------------

    def _offload(
        self, key: str, body: bytes, sealed: bool, policy: RetryPolicy | None
    ) -> tuple[PayloadPointer, str]:
        """Write ``body`` (the result, sealed under ``key`` when ``sealed``) to S3; its pointer
        and the record's ``data`` naming it. A failed upload deletes what it may have left."""
        import hashlib

        from resilient_aws.payloads import PayloadUploadError

        payloads = self.payloads
        assert payloads is not None
        pointer = payloads.new_pointer()
        try:
            payloads.put(body, entry_id=key, pointer=pointer, policy=self._s3_policy(policy))
        except PayloadUploadError:
            self._delete_object(key, pointer, policy, "its upload failed")
            raise
        except BaseException:
            _left_behind(key, pointer, "its upload was interrupted")
            raise
        reference = {
            "bucket": pointer.bucket,
            "key": pointer.key,
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "sealed": sealed,
        }
        return pointer, OFFLOADED_PREFIX + json.dumps(reference, separators=(",", ":"))

    def _fetch(self, key: str, data: str, policy: RetryPolicy | None) -> str:
        """The offloaded result ``data`` points to, as JSON text: read from S3 through
        ``policy``, checked against the record's size and SHA-256, opened under ``key``."""
        import hashlib

        from resilient_aws.payloads import PayloadError, PayloadNotFoundError, PayloadPointer

        where = f"idempotency table {self.table!r}"
        if self.payloads is None:
            raise IdempotencyResultError(
                f"{where}: the stored result is in S3 and this store has no payloads=", key=key
            )
        try:
            reference = json.loads(data[len(OFFLOADED_PREFIX) :])
            pointer = PayloadPointer(str(reference["bucket"]), str(reference["key"]))
            size, digest = int(reference["bytes"]), str(reference["sha256"])
            sealed = reference["sealed"] is True
        except (ValueError, TypeError, KeyError) as error:
            raise IdempotencyResultError(
                f"{where}: the stored result's S3 pointer is malformed", key=key
            ) from error
        location = f"s3://{pointer.bucket}/{pointer.key}"
        if sealed and self.encryptor is None:
            raise IdempotencyResultError(
                f"{where}: the stored result ({location}) is sealed and this store has no "
                "encryptor",
                key=key,
            )
        if not sealed and self.encryptor is not None:
            self._plain_allowed(key)
        try:
            body = self.payloads.get_bytes(pointer, message_id=key, policy=self._s3_policy(policy))
        except PayloadNotFoundError as error:
            raise IdempotencyResultError(
                f"{where}: the stored result's object {location} does not exist (deleted, or "
                "expired by a lifecycle rule shorter than the record's ttl_s); the function "
                "does not run again, repeats raise this error until the record expires",
                key=key,
            ) from error
        except PayloadError as error:
            if error.code == "PayloadTooLarge":
                raise IdempotencyResultError(
                    f"{where}: the stored result's object {location} is larger than the "
                    f"payload store reads ({error.code}): not the object this store wrote",
                    key=key,
                ) from error
            if _decryption_failed(error):
                raise IdempotencyResultError(
                    f"{where}: the stored result's object {location} cannot be decrypted by "
                    f"the payload store ({error.code})",
                    key=key,
                ) from error
            raise IdempotencyError(
                f"{where}: reading the stored result from {location} failed ({error.code})",
                key=key,
            ) from error
        if len(body) != size or hashlib.sha256(body).hexdigest() != digest:
            raise IdempotencyResultError(
                f"{where}: the stored result's object {location} was changed or replaced (its "
                "size or SHA-256 is not the record's)",
                key=key,
            )
        if sealed:
            return self._unseal(key, body, policy, f"the stored result's object {location}")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise IdempotencyResultError(
                f"{where}: the stored result's object {location} is not UTF-8 text", key=key
            ) from error

    def _not_marked(
        self,
        key: str,
        pointer: PayloadPointer,
        attempts: list[BaseException],
        error: BaseException,
        policy: RetryPolicy | None,
    ) -> None:
        """Marking the record COMPLETED failed after its result went to S3: delete the object
        if DynamoDB refused every attempt, else name it (the record may point to it)."""
        if attempts and all(_refused(e) for e in attempts):
            self._delete_object(key, pointer, policy, "its record could not be marked COMPLETED")
            return
        _left_behind(
            key,
            pointer,
            f"marking its record COMPLETED failed ({type(error).__name__}) and may have been "
            "applied",
        )

    def _drop_replaced(
        self,
        key: str,
        old: Any,
        policy: RetryPolicy | None,
        keep: PayloadPointer | None = None,
    ) -> None:
        """Delete the object of an offloaded result this write replaced (an expired record
        taken over, a second completion): nothing points to it any more."""
        text = old.get("S") if isinstance(old, dict) else None
        if not isinstance(text, str) or not text.startswith(OFFLOADED_PREFIX):
            return
        from resilient_aws.payloads import PayloadPointer

        try:
            reference = json.loads(text[len(OFFLOADED_PREFIX) :])
            pointer = PayloadPointer(str(reference["bucket"]), str(reference["key"]))
        except (ValueError, TypeError, KeyError):
            return
        if pointer == keep:
            return
        assert self.payloads is not None
        config = self.payloads.config
        if pointer.bucket != config.bucket or not pointer.key.startswith(config.prefix):
            # the record names it, but this store did not write it: anyone who can write the
            # table (or a store on another bucket) must not make us delete any object we can
            logger.warning(
                "idempotency key %s: the result it replaced names s3://%s/%s, outside this "
                "store's bucket and prefix: not deleted",
                key,
                pointer.bucket,
                pointer.key,
            )
            return
        self._delete_object(key, pointer, policy, "its record was replaced")

    def _delete_object(
        self, key: str, pointer: PayloadPointer, policy: RetryPolicy | None, why: str
    ) -> None:
        from resilient_aws.payloads import PayloadError

        assert self.payloads is not None
        try:
            self.payloads.delete(pointer, policy=self._s3_policy(policy))
        except PayloadError as error:
            _left_behind(key, pointer, f"{why}, and deleting it failed ({error.code})")

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


def _is_async_client(client: Any) -> bool:
    """An aiobotocore client (its methods are botocore's, returning the coroutine of its
    async ``_make_api_call``) or a fake whose ``put_item`` is ``async def``."""
    from inspect import iscoroutinefunction

    method = getattr(client, "put_item", None)
    return callable(method) and (
        iscoroutinefunction(method) or iscoroutinefunction(getattr(client, "_make_api_call", None))
    )


def _refused(error: BaseException) -> bool:
    """Whether DynamoDB certainly did not apply the request that raised ``error``."""
    if isinstance(error, ParamValidationError):
        return True  # never sent
    if not isinstance(error, ClientError):
        return False  # a timeout, a lost connection, an interrupt: it may have been applied
    metadata: dict[str, Any] = dict(error.response.get("ResponseMetadata") or {})
    if metadata.get("RetryAttempts"):
        return False  # botocore retried inside: an earlier attempt may have been a 5xx
    status = metadata.get("HTTPStatusCode")
    if isinstance(status, int):
        return 400 <= status < 500
    return _code(error) in _REFUSED_CODES


def _sealed_size(blob_size: int) -> int:
    """The length of ``sealed:`` + the base64 text of a ``blob_size``-byte blob."""
    return len(SEALED_PREFIX) + 4 * -(-blob_size // 3)


def _deadline(policy: RetryPolicy | None) -> Deadline | None:
    return policy.deadline if policy is not None else None


def _error_code(error: BaseException) -> str:
    """AWS's error code (a RetryError's last error's), else the error's type name."""
    last = getattr(error, "last_error", None)
    if isinstance(last, ClientError):
        error = last
    if isinstance(error, ClientError):
        return _code(error) or type(error).__name__
    return type(error).__name__


def _decryption_failed(error: BaseException) -> bool:
    from resilient_aws.payloads.crypto import DecryptionError

    return isinstance(error.__cause__, DecryptionError)


def _left_behind(key: str, pointer: PayloadPointer, why: str) -> None:
    logger.warning(
        "the result of idempotency key %s may be left in s3://%s/%s: %s (a lifecycle rule on "
        "the bucket expires it)",
        key,
        pointer.bucket,
        pointer.key,
        why,
    )

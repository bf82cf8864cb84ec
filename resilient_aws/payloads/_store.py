"""The claim-check store: payloads in S3, behind the extended client libraries' pointers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import (
    ConfigurationError,
    EntryTooLargeError,
    EntryValidationError,
    RetryError,
)
from resilient_aws.payloads._errors import PayloadError, PayloadNotFoundError, PayloadUploadError
from resilient_aws.payloads._pointer import (
    LEGACY_SIZE_ATTRIBUTE,
    SIZE_ATTRIBUTE,
    SIZE_ATTRIBUTES,
    PayloadPointer,
)
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from resilient_aws.payloads.crypto import Encryptor
    from resilient_aws.retry import Deadline

__all__ = [
    "EXTENDED_CLIENT_THRESHOLD",
    "MAX_PAYLOAD_BYTES",
    "S3_MAX_PART_BYTES",
    "S3_MIN_PART_BYTES",
    "S3_SINGLE_PUT_BYTES",
    "PayloadConfig",
    "PayloadStore",
]

logger = logging.getLogger("resilient_aws.payloads")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

EXTENDED_CLIENT_THRESHOLD = 262_144
"""The extended client libraries' default threshold: a message whose body and attributes
together exceed 256 KiB is offloaded."""
MAX_PAYLOAD_BYTES = 2 * GiB
"""The largest payload the extended client libraries document (2 GB)."""
S3_SINGLE_PUT_BYTES = 5 * GiB
"""S3's limit for one ``PutObject``: a larger object needs a multipart upload."""
S3_MIN_PART_BYTES = 5 * MiB
"""S3's smallest part of a multipart upload (but the last)."""
S3_MAX_PART_BYTES = 5 * GiB
_MAX_PARTS = 10_000
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_KEY_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!-_.*'()/"
)


def _uuid_key() -> str:
    import uuid

    return str(uuid.uuid4())


@lean_dataclass(frozen=True, kw_only=True)
class PayloadConfig:
    """How payloads are offloaded: where, from what size, and what happens to the objects.

    * ``bucket``, ``prefix``: where objects go (``prefix`` + a random UUID per payload, or
      ``key()`` when given; a lifecycle rule on the prefix expires whatever is left).
    * ``threshold``: a message whose body and attributes exceed this many bytes is offloaded
      (262,144, the extended clients' default); ``always=True`` offloads every message.
    * ``legacy``: write the older attribute (``SQSLargePayloadSize``) and pointer class
      (``com.amazon.sqs.javamessaging.MessageS3Pointer``) for consumers on old library versions.
      Both are always read.
    * ``delete_after``: a consumer deletes the object once its record succeeded (default
      ``False``: with several subscribers of one SNS topic, every queue holds a pointer to the
      same object; leave it to the lifecycle rule).
    * ``multipart_bytes``: payloads larger than this are uploaded in parts of ``part_bytes``
      (S3 takes at most 5 GiB in one ``PutObject``); ``max_bytes`` (2 GiB, the extended clients'
      limit) refuses larger payloads when they are added.
    """

    bucket: str
    prefix: str = ""
    threshold: int = EXTENDED_CLIENT_THRESHOLD
    always: bool = False
    legacy: bool = False
    delete_after: bool = False
    multipart_bytes: int = 64 * MiB
    part_bytes: int = 16 * MiB
    max_bytes: int = MAX_PAYLOAD_BYTES
    key: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not self.bucket:
            raise ConfigurationError("bucket", "must be a non-empty str")
        if not isinstance(self.prefix, str) or not set(self.prefix) <= _KEY_CHARACTERS:
            raise ConfigurationError(
                "prefix", "must be a str of letters, digits and !-_.*'()/ (S3's safe characters)"
            )
        if len(self.prefix) > 988:  # the Java client's limit: the key must fit 1,024 bytes
            raise ConfigurationError("prefix", "must be at most 988 characters")
        for name in ("threshold", "multipart_bytes", "part_bytes", "max_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigurationError(name, f"must be an int >= 0, got {value!r}")
        if not S3_MIN_PART_BYTES <= self.part_bytes <= S3_MAX_PART_BYTES:
            raise ConfigurationError("part_bytes", "must be between 5 MiB and 5 GiB (S3's parts)")
        if self.multipart_bytes > S3_SINGLE_PUT_BYTES:
            raise ConfigurationError("multipart_bytes", "must be at most 5 GiB (one PutObject)")
        if self.max_bytes > self.part_bytes * _MAX_PARTS:
            raise ConfigurationError("max_bytes", "must fit in 10,000 parts of part_bytes")
        if self.key is not None and not callable(self.key):
            raise ConfigurationError("key", "must be a callable returning a key, or None")

    def offloads(self, size: int) -> bool:
        """Whether a message of ``size`` bytes (body and attributes) goes to S3."""
        return self.always or size > self.threshold


class PayloadStore:
    """Payloads in S3 behind pointers that the SQS and SNS Extended Client Libraries read and
    write; every S3 call through the :mod:`retry core <resilient_aws.retry>`.

    ::

        store = PayloadStore(PayloadConfig(bucket="payloads", prefix="orders/"))
        with SqsSender(queue_url, payloads=store) as sender:
            sender.send_message(big_json)        # over 256 KiB: to S3, a pointer to SQS

    ``PayloadStore("bucket")`` is ``PayloadStore(PayloadConfig(bucket="bucket"))``. The S3
    client is ``client``, else the library's default S3 client (made on first use). Errors
    name the message and the object, never the payload: :class:`PayloadError`,
    :class:`PayloadNotFoundError` (the object is gone), :class:`PayloadUploadError`.

    ``encryptor`` (a :class:`~resilient_aws.payloads.crypto.KmsEnvelope`, or any
    :class:`~resilient_aws.payloads.crypto.Encryptor`) seals every object before it is
    uploaded, with its S3 key as associated data: an object copied under another key, tampered
    with, or sealed by another KMS key is refused with a :class:`PayloadError` (code
    ``DecryptionFailed`` or the reason's) naming the message, and fails that record only.
    The deadline of a ``policy`` given to :meth:`get`/:meth:`get_bytes`/:meth:`put` for one
    call reaches the encryptor too (see :func:`~resilient_aws.payloads.crypto.decrypt_with`):
    KMS is not retried past the deadline the S3 call had.

    ``accept_plaintext=True`` (with an ``encryptor``) is for turning encryption on: objects
    written before it, in clear, are read as they are (logged once per store, without names or
    values), new ones are sealed. The encryptor must tell its blobs from plaintext
    (``is_sealed``: :class:`~resilient_aws.payloads.crypto.KmsEnvelope` can, by its header; a
    :class:`~resilient_aws.payloads.crypto.CallableEncryptor` needs ``is_sealed=``), else
    :class:`ConfigurationError`. While it is on, a sealed object whose header was destroyed
    reads as plaintext: turn it off once the lifecycle rule has expired the older objects.
    Without an encryptor it changes nothing (everything is read in clear).
    """

    def __init__(
        self,
        config: PayloadConfig | str,
        *,
        client: Any = None,
        session: Any = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        encryptor: Encryptor | None = None,
        accept_plaintext: bool = False,
    ) -> None:
        if isinstance(config, str):
            config = PayloadConfig(bucket=config)
        if not isinstance(config, PayloadConfig):
            raise ConfigurationError(
                "config", f"must be a PayloadConfig or a bucket name, got {type(config).__name__}"
            )
        if not callable(getattr(policy, "call", None)):
            raise ConfigurationError(
                "policy", f"must be a RetryPolicy, got {type(policy).__name__}"
            )
        if not isinstance(accept_plaintext, bool):
            raise ConfigurationError("accept_plaintext", "must be a bool")
        if encryptor is not None:
            from resilient_aws.payloads.crypto import check_encryptor, tells_sealed

            check_encryptor(encryptor)
            if accept_plaintext and not tells_sealed(encryptor):
                raise ConfigurationError(
                    "accept_plaintext",
                    f"needs an encryptor that tells its blobs from plaintext (is_sealed); "
                    f"{type(encryptor).__name__} cannot",
                )
        self.config = config
        self.policy = policy
        self.encryptor = encryptor
        self.accept_plaintext = accept_plaintext
        self._plaintext_seen = False
        self._client = client
        self._session = session
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PayloadStore(bucket={self.config.bucket!r}, prefix={self.config.prefix!r})"

    @property
    def client(self) -> Any:
        """The S3 client: the one given, else the default one (made on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from resilient_aws._clients import default_client

                    self._client = default_client("s3", self._session)
        return self._client

    # -- keys, pointers -------------------------------------------------------------------------

    def new_pointer(self) -> PayloadPointer:
        """A fresh pointer in the configured bucket (not yet written)."""
        make = self.config.key or _uuid_key
        return PayloadPointer(self.config.bucket, f"{self.config.prefix}{make()}")

    # -- the three calls ------------------------------------------------------------------------

    def put(
        self,
        payload: str | bytes,
        *,
        entry_id: str = "-",
        pointer: PayloadPointer | None = None,
        policy: RetryPolicy | None = None,
    ) -> PayloadPointer:
        """Write ``payload`` (text is stored as UTF-8) and return its pointer; a payload over
        ``multipart_bytes`` is uploaded in parts (an upload that fails is aborted, leaving no
        parts behind). Raises :class:`PayloadUploadError` naming ``entry_id`` and the key when
        the retry core gives up; a payload over ``max_bytes`` raises ``EntryTooLargeError``.
        ``policy`` replaces the store's for this call; its deadline bounds the encryptor's KMS
        calls too."""
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if len(data) > self.config.max_bytes:
            raise EntryTooLargeError(entry_id, len(data), self.config.max_bytes)
        pointer = pointer or self.new_pointer()
        try:
            if self.encryptor is not None:
                from resilient_aws.payloads.crypto import encrypt_with

                data = encrypt_with(
                    self.encryptor, data, context=pointer.key, deadline=_deadline(policy)
                )
            if len(data) > self.config.multipart_bytes:
                self._put_parts(pointer, data, entry_id, policy)
            else:
                (policy or self.policy).call(
                    self.client.put_object, Bucket=pointer.bucket, Key=pointer.key, Body=data
                )
        except PayloadError:
            raise
        except (ClientError, BotoCoreError, RetryError) as error:
            raise PayloadUploadError(
                entry_id,
                f"storing the payload failed ({_code(error)})",
                bucket=pointer.bucket,
                key=pointer.key,
                code=_code(error),
            ) from error
        return pointer

    def get(
        self,
        pointer: PayloadPointer,
        *,
        message_id: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> str:
        """The payload ``pointer`` names, as text (UTF-8). :class:`PayloadNotFoundError` when the
        object (or bucket) does not exist, :class:`PayloadError` for any other failure.
        ``policy`` replaces the store's for this call (the consumer passes the store's policy
        bound to the Lambda deadline)."""
        return self.get_bytes(pointer, message_id=message_id, policy=policy).decode("utf-8")

    def get_bytes(
        self,
        pointer: PayloadPointer,
        *,
        message_id: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> bytes:
        """:meth:`get`, as bytes. The body is read inside the retried call, so a connection
        lost halfway through is retried like any other. An object larger than this store
        writes (``config.max_bytes``, plus the ``encryptor``'s ``overhead``) is refused before
        its body is read: :class:`PayloadError` with ``code="PayloadTooLarge"`` (a pointer
        naming a huge object must not take the consumer's memory)."""
        client = self.client
        limit = self.config.max_bytes + (
            int(getattr(self.encryptor, "overhead", 0)) if self.encryptor is not None else 0
        )

        def get_object() -> bytes:
            response = client.get_object(Bucket=pointer.bucket, Key=pointer.key)
            body = response["Body"]
            try:
                size = response.get("ContentLength")
                if isinstance(size, int) and size > limit:
                    # not retried: the retry core treats an error of ours as permanent
                    raise PayloadError(
                        message_id,
                        f"the payload object is {size} bytes, over the {limit} this store "
                        "reads (PayloadTooLarge)",
                        bucket=pointer.bucket,
                        key=pointer.key,
                        code="PayloadTooLarge",
                    )
                data: bytes = body.read()
            finally:
                body.close()
            return data

        try:
            data = (policy or self.policy).call(get_object)
        except (ClientError, BotoCoreError, RetryError) as error:
            code = _code(error)
            kind = PayloadNotFoundError if code in _NOT_FOUND else PayloadError
            raise kind(
                message_id,
                "the payload object does not exist"
                if kind is PayloadNotFoundError
                else f"reading the payload failed ({code})",
                bucket=pointer.bucket,
                key=pointer.key,
                code=code,
            ) from error
        if self.encryptor is None:
            return data
        if self.accept_plaintext and not cast(Any, self.encryptor).is_sealed(data):
            self._accepted_plaintext()
            return data
        return _decrypt(self.encryptor, data, pointer, message_id, policy)

    def delete(
        self,
        pointer: PayloadPointer,
        *,
        message_id: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        """Delete the object (S3 answers success for one already gone). :class:`PayloadError`
        when the retry core gives up. ``policy`` replaces the store's for this call."""
        try:
            (policy or self.policy).call(
                self.client.delete_object, Bucket=pointer.bucket, Key=pointer.key
            )
        except (ClientError, BotoCoreError, RetryError) as error:
            raise PayloadError(
                message_id,
                f"deleting the payload failed ({_code(error)})",
                bucket=pointer.bucket,
                key=pointer.key,
                code=_code(error),
            ) from error

    # -- for senders ----------------------------------------------------------------------------

    def offload(
        self,
        entry_id: str,
        body: str,
        attributes: Mapping[str, Any] | None,
        *,
        max_attributes: int,
        max_entry_bytes: int | None = None,
    ) -> tuple[PayloadPointer, str, dict[str, Any]]:
        """Store a message's ``body``; return its pointer, the pointer body to send instead and
        the attributes with the size attribute added. Raises ``EntryValidationError`` for what
        cannot be offloaded (a reserved attribute name, no room for the size attribute, a
        pointer message still over ``max_entry_bytes``: all checked before anything is
        uploaded), :class:`PayloadUploadError` when the upload fails (the object is deleted
        again if the failed upload may have written it)."""
        if attributes:
            for name in SIZE_ATTRIBUTES:
                if name in attributes:
                    raise EntryValidationError(
                        entry_id, f"attribute {name!r} is reserved for payload pointers"
                    )
            if len(attributes) >= max_attributes:
                raise EntryValidationError(
                    entry_id,
                    f"{len(attributes)} message attributes: an offloaded message needs one "
                    f"for its pointer, {max_attributes - 1} at most",
                )
        data = body.encode("utf-8")
        if len(data) > self.config.max_bytes:
            raise EntryTooLargeError(entry_id, len(data), self.config.max_bytes)
        pointer = self.new_pointer()
        name = LEGACY_SIZE_ATTRIBUTE if self.config.legacy else SIZE_ATTRIBUTE
        extended = dict(attributes or {})
        extended[name] = {"DataType": "Number", "StringValue": str(len(data))}
        pointer_body = pointer.to_body(legacy=self.config.legacy)
        if max_entry_bytes is not None:
            # what is refused must not be uploaded first: nothing would delete the object
            from resilient_aws.batch._sqs import message_attributes_size

            size = len(pointer_body.encode("utf-8")) + message_attributes_size(extended)
            if size > max_entry_bytes:
                raise EntryTooLargeError(entry_id, size, max_entry_bytes)
        self.put_for(data, entry_id, pointer)
        return pointer, pointer_body, extended

    def put_for(self, data: bytes, entry_id: str, pointer: PayloadPointer) -> None:
        """:meth:`put` for a message about to be sent: after a failed upload the object is
        deleted (a response lost after S3 stored it leaves it behind), and one cut by an
        interrupt is named for a cleanup job."""
        try:
            self.put(data, entry_id=entry_id, pointer=pointer)
        except PayloadUploadError:
            self._forget(pointer, entry_id)
            raise
        except BaseException:
            # an interrupt (or a bug) mid-upload: S3 may hold the object; no S3 call while
            # the interrupt goes on, but name it for a cleanup job (a lifecycle rule expires it)
            logger.warning(
                "upload of the payload of entry %r to s3://%s/%s interrupted: the object may be "
                "left behind",
                entry_id,
                pointer.bucket,
                pointer.key,
            )
            raise

    def _forget(self, pointer: PayloadPointer, entry_id: str) -> None:
        """After a failed put: a response lost after S3 stored the object leaves it behind."""
        try:
            self.delete(pointer, message_id=entry_id)
        except PayloadError:
            logger.warning(
                "payload of entry %r may be left in s3://%s/%s: its upload and delete failed",
                entry_id,
                pointer.bucket,
                pointer.key,
            )

    def _accepted_plaintext(self) -> None:
        """Log, once per store, that an object stored in clear was read."""
        with self._lock:
            if self._plaintext_seen:
                return
            self._plaintext_seen = True
        logger.warning(
            "payload store on bucket %r read an object stored without encryption "
            "(accept_plaintext=True); turn accept_plaintext off once the objects written before "
            "encryption have expired",
            self.config.bucket,
        )

    def _put_parts(
        self,
        pointer: PayloadPointer,
        data: bytes,
        entry_id: str,
        policy: RetryPolicy | None = None,
    ) -> None:
        client, call = self.client, (policy or self.policy).call
        upload = call(client.create_multipart_upload, Bucket=pointer.bucket, Key=pointer.key)
        upload_id = upload["UploadId"]
        size = self.config.part_bytes
        view = memoryview(data)
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), size), start=1):
                answer = call(
                    client.upload_part,
                    Bucket=pointer.bucket,
                    Key=pointer.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=bytes(view[start : start + size]),  # one part copied at a time
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
            call(
                client.complete_multipart_upload,
                Bucket=pointer.bucket,
                Key=pointer.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            try:
                call(
                    client.abort_multipart_upload,
                    Bucket=pointer.bucket,
                    Key=pointer.key,
                    UploadId=upload_id,
                )
            except Exception as error:
                logger.warning(
                    "multipart upload of entry %r to s3://%s/%s not aborted (%s): a lifecycle "
                    "rule (AbortIncompleteMultipartUpload) removes its parts",
                    entry_id,
                    pointer.bucket,
                    pointer.key,
                    _code(error),
                )
            raise


def _code(error: BaseException) -> str:
    """S3's error code, else the error's type name (a RetryError names its last error's)."""
    last = getattr(error, "last_error", None)
    if isinstance(last, BaseException) and last is not error:
        error = last
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        detail = response.get("Error")
        if isinstance(detail, dict) and isinstance(detail.get("Code"), str) and detail["Code"]:
            return str(detail["Code"])
    return type(error).__name__


def _deadline(policy: RetryPolicy | None) -> Deadline | None:
    """The deadline a per-call policy carries, for the encryptor's KMS calls."""
    return policy.deadline if policy is not None else None


def _decrypt(
    encryptor: Encryptor,
    data: bytes,
    pointer: PayloadPointer,
    message_id: str | None,
    policy: RetryPolicy | None = None,
) -> bytes:
    """The payload in ``data`` opened by ``encryptor`` (its S3 key as associated data; KMS
    bound to the deadline of ``policy``, the S3 read's, when it has one)."""
    from resilient_aws.payloads.crypto import DecryptionError, decrypt_with

    try:
        return decrypt_with(encryptor, data, context=pointer.key, deadline=_deadline(policy))
    except DecryptionError as error:
        raise PayloadError(
            message_id,
            f"the payload cannot be decrypted ({error.code}): tampered with, moved from "
            "another S3 key, or sealed by another KMS key",
            bucket=pointer.bucket,
            key=pointer.key,
            code=error.code,
        ) from error
    except (ClientError, BotoCoreError, RetryError) as error:
        raise PayloadError(
            message_id,
            f"decrypting the payload failed ({_code(error)})",
            bucket=pointer.bucket,
            key=pointer.key,
            code=_code(error),
        ) from error

"""Envelope encryption for offloaded payloads and idempotency results.

An :class:`Encryptor` seals bytes under a *context* (the S3 key of a payload, the idempotency
key of a result) used as AES-GCM associated data: a sealed blob moved under another context
does not open. Two implementations:

* :class:`KmsEnvelope`: a KMS data key (``GenerateDataKey``, AES-256) encrypts with AES-GCM;
  the data key is cached for ``max_uses`` encryptions or ``max_age_s`` seconds, and the data
  keys ``Decrypt`` returns are kept in a bounded LRU. Every KMS call goes through the
  :mod:`retry core <resilient_aws.retry>` (KMS throttles are throttles).
* :class:`CallableEncryptor`: a user's own ``encrypt``/``decrypt`` pair.

The stores call an encryptor through :func:`encrypt_with`/:func:`decrypt_with`, which hand it the
deadline of the call it serves (``deadline=``, a :class:`~resilient_aws.retry.Deadline`: the
consumer's Lambda deadline that bounds the S3 read, the one ``@idempotent`` gives the table's
calls) when its methods take one: :class:`KmsEnvelope` then retries KMS under its own policy
bound to that deadline (a copy per call; the envelope is never changed), so KMS is not retried
past the time the record has. An encryptor of one's own may take ``deadline=`` too; one that
does not is called as before.

``cryptography`` is needed by :class:`KmsEnvelope` only (``pip install 'resilient-aws[crypto]'``)
and imported when one is made: importing this module costs nothing more. Errors name the
context at most, never a key, a data key or a plaintext.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, cast, runtime_checkable

from botocore.exceptions import ClientError

from resilient_aws.errors import ConfigurationError, DeadlineExceededError, ResilientAWSError
from resilient_aws.retry import DEFAULT_POLICY, Deadline, RetryPolicy, classify

__all__ = [
    "ENVELOPE_MAGIC",
    "ENVELOPE_VERSION",
    "CallableEncryptor",
    "DecryptionError",
    "Encryptor",
    "KmsEnvelope",
    "decrypt_with",
    "encrypt_with",
    "tells_sealed",
]

ENVELOPE_MAGIC = 0xE5
"""The first byte of a :class:`KmsEnvelope` blob."""
ENVELOPE_VERSION = 1
"""The second byte: the blob's format (``magic, version, len(edk) as 2 bytes big-endian, edk,
12-byte nonce, AES-GCM ciphertext and 16-byte tag``)."""

_HEADER = struct.Struct(">BBH")
_NONCE_BYTES = 12
_TAG_BYTES = 16
# What KMS answers for a data key that is not one of this key's, or is damaged: the blob does
# not open here. (moto answers AccessDeniedException for the first; AWS IncorrectKeyException.)
_NOT_THIS_KEYS = frozenset({"IncorrectKeyException", "InvalidCiphertextException"})
_INSTALL_HINT = "needs the cryptography package: pip install 'resilient-aws[crypto]'"


class DecryptionError(ResilientAWSError, ValueError):
    """A blob does not open under this context and key: tampered, moved under another context,
    sealed by another key, or not a blob at all. ``context`` names where it was read (an S3
    key, an idempotency key); ``code`` says why (``InvalidTag``, ``Malformed``, a KMS code)."""

    def __init__(self, context: str, reason: str, *, code: str = "DecryptionFailed") -> None:
        super().__init__(f"cannot decrypt the blob of {context!r}: {reason}")
        self.context = context
        self.reason = reason
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_decryption_error, (self.context, self.reason, self.code))


def _rebuild_decryption_error(context: str, reason: str, code: str) -> DecryptionError:
    return DecryptionError(context, reason, code=code)


@runtime_checkable
class Encryptor(Protocol):
    """Seals and opens bytes bound to a ``context`` string (associated data): ``decrypt``
    raises :class:`DecryptionError` for a blob that does not open under ``context``.
    ``overhead`` is an upper bound of the bytes a blob adds to its plaintext."""

    overhead: int

    def encrypt(self, plaintext: bytes, *, context: str) -> bytes: ...

    def decrypt(self, blob: bytes, *, context: str) -> bytes: ...


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:
        raise ConfigurationError("encryptor", f"KmsEnvelope {_INSTALL_HINT}") from error
    return AESGCM


class _DataKey:
    __slots__ = ("cipher", "encrypted", "made_at", "uses")

    def __init__(self, cipher: Any, encrypted: bytes, made_at: float) -> None:
        self.cipher = cipher
        self.encrypted = encrypted
        self.made_at = made_at
        self.uses = 0

    def __repr__(self) -> str:  # never the key
        return f"_DataKey(uses={self.uses})"


class KmsEnvelope:
    """Envelope encryption under the KMS key ``key_id`` (an id, ARN or alias).

    ::

        sealer = KmsEnvelope("alias/payloads", max_uses=1000, max_age_s=300)
        store = PayloadStore(PayloadConfig(bucket="payloads"), encryptor=sealer)

    One ``GenerateDataKey`` (``AES_256``) serves at most ``max_uses`` encryptions and
    ``max_age_s`` seconds (``clock``, monotonic seconds, is a seam for tests); each blob carries
    its data key encrypted by KMS, a random 12-byte nonce and the AES-GCM ciphertext, with the
    ``context`` as associated data. ``decrypt`` asks KMS to ``Decrypt`` the data key (with
    ``KeyId``, so a blob of another KMS key is refused) and keeps up to ``cache_size`` data keys
    by their encrypted form. ``client`` is a KMS client, else the library's default one (made
    on first use, reached by ``chaos_defaults``); every call goes through ``policy``, bound for
    one call to the ``deadline`` given to :meth:`encrypt`/:meth:`decrypt` (the stores pass the
    Lambda deadline of the call they serve). :meth:`is_sealed` tells a blob from a plaintext
    (for ``accept_plaintext``).
    """

    def __init__(
        self,
        key_id: str,
        *,
        client: Any = None,
        session: Any = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        max_uses: int = 10_000,
        max_age_s: float = 300.0,
        cache_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(key_id, str) or not key_id:
            raise ConfigurationError("key_id", "must be a non-empty KMS key id, ARN or alias")
        if type(max_uses) is not int or max_uses < 1:
            raise ConfigurationError("max_uses", f"must be an int >= 1, got {max_uses!r}")
        if not isinstance(max_age_s, (int, float)) or max_age_s <= 0:
            raise ConfigurationError("max_age_s", f"must be a number > 0, got {max_age_s!r}")
        if type(cache_size) is not int or cache_size < 1:
            raise ConfigurationError("cache_size", f"must be an int >= 1, got {cache_size!r}")
        if not callable(getattr(policy, "call", None)):
            raise ConfigurationError("policy", f"must be a RetryPolicy, got {type(policy)!r}")
        self._aesgcm = _aesgcm()
        self.key_id = key_id
        self.policy = policy
        self.max_uses = max_uses
        self.max_age_s = float(max_age_s)
        self.cache_size = cache_size
        self.clock = clock
        self._client = client
        self._session = session
        self._lock = threading.Lock()
        self._current: _DataKey | None = None
        self._pending: threading.Event | None = None  # set when the KMS call in flight ends
        self._opened: OrderedDict[bytes, Any] = OrderedDict()
        # KMS ciphertext blobs of symmetric keys are about 150-200 bytes; 1 KiB bounds them
        self.overhead = _HEADER.size + 1024 + _NONCE_BYTES + _TAG_BYTES

    def __repr__(self) -> str:
        return f"KmsEnvelope(key_id={self.key_id!r}, max_uses={self.max_uses})"

    @property
    def client(self) -> Any:
        """The KMS client: the one given, else the library's default one."""
        if self._client is not None:
            return self._client
        from resilient_aws._clients import default_client

        return default_client("kms", self._session)

    def encrypt(self, plaintext: bytes, *, context: str, deadline: Deadline | None = None) -> bytes:
        """``plaintext`` sealed under ``context``. A KMS failure the retry core gives up on
        raises (``ClientError`` or ``RetryError``; ``DeadlineExceededError`` when the next
        backoff would pass ``deadline``)."""
        key = self._data_key(deadline)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = key.cipher.encrypt(nonce, bytes(plaintext), context.encode("utf-8"))
        header = _HEADER.pack(ENVELOPE_MAGIC, ENVELOPE_VERSION, len(key.encrypted))
        return b"".join((header, key.encrypted, nonce, sealed))

    def decrypt(self, blob: bytes, *, context: str, deadline: Deadline | None = None) -> bytes:
        """The plaintext of ``blob``; :class:`DecryptionError` when it does not open under
        ``context`` and this KMS key. KMS throttles and 5xx are retried by the core, never past
        ``deadline``; what is left after it gives up raises as it is (``ClientError``/
        ``RetryError``)."""
        blob = bytes(blob)
        if len(blob) < _HEADER.size:
            raise DecryptionError(context, "not an envelope (too short)", code="Malformed")
        magic, version, length = _HEADER.unpack_from(blob)
        if magic != ENVELOPE_MAGIC:
            raise DecryptionError(context, "not an envelope (no magic byte)", code="Malformed")
        if version != ENVELOPE_VERSION:
            raise DecryptionError(context, f"unknown envelope version {version}", code="Version")
        start = _HEADER.size
        if len(blob) < start + length + _NONCE_BYTES + _TAG_BYTES or length == 0:
            raise DecryptionError(context, "not an envelope (truncated)", code="Malformed")
        encrypted = blob[start : start + length]
        nonce = blob[start + length : start + length + _NONCE_BYTES]
        sealed = blob[start + length + _NONCE_BYTES :]
        cipher = self._opened_key(encrypted, context, deadline)
        from cryptography.exceptions import InvalidTag

        try:
            plaintext: bytes = cipher.decrypt(nonce, sealed, context.encode("utf-8"))
        except InvalidTag:
            raise DecryptionError(
                context, "tampered, or sealed under another context", code="InvalidTag"
            ) from None
        return plaintext

    def is_sealed(self, blob: bytes) -> bool:
        """Whether ``blob`` starts as this envelope's blobs do (the magic byte, then a version
        byte below 0x80, or nothing: a blob truncated to its magic byte is still refused, not
        read as plaintext). UTF-8 text never starts so (0xE5 opens a three-byte sequence,
        whose next byte is 0x80-0xBF): a text or JSON payload stored in clear is never taken
        for a blob, a binary one might."""
        return len(blob) >= 1 and blob[0] == ENVELOPE_MAGIC and (len(blob) == 1 or blob[1] < 0x80)

    # -- data keys ---------------------------------------------------------------------------

    def _policy(self, deadline: Deadline | None) -> RetryPolicy:
        """The envelope's policy, bound to ``deadline`` for one call (a copy)."""
        return self.policy if deadline is None else self.policy.with_deadline(deadline)

    def _data_key(self, deadline: Deadline | None = None) -> _DataKey:
        """The current data key, or a new one from KMS. One caller asks KMS at a time (the
        others use its key), and KMS is called outside the lock: a caller never waits for
        another's retries past its own ``deadline`` (it raises ``DeadlineExceededError``)."""
        while True:
            with self._lock:
                key = self._current
                if key is not None and self._usable(key):
                    key.uses += 1
                    return key
                pending = self._pending
                if pending is None:
                    pending = self._pending = threading.Event()
                    break
            if not pending.wait(None if deadline is None else deadline.remaining()):
                raise DeadlineExceededError("GenerateDataKey", 0, None)
        try:
            response = self._policy(deadline).call(
                self.client.generate_data_key, KeyId=self.key_id, KeySpec="AES_256"
            )
            cipher = self._aesgcm(response["Plaintext"])
            encrypted = bytes(response["CiphertextBlob"])
            with self._lock:
                key = self._current = _DataKey(cipher, encrypted, self.clock())
                self._remember(encrypted, cipher)
                key.uses += 1
                return key
        finally:
            # a failure too: a waiting caller then asks KMS itself
            with self._lock:
                self._pending = None
            pending.set()

    def _usable(self, key: _DataKey) -> bool:
        return key.uses < self.max_uses and self.clock() - key.made_at < self.max_age_s

    def _opened_key(self, encrypted: bytes, context: str, deadline: Deadline | None = None) -> Any:
        with self._lock:
            cipher = self._opened.get(encrypted)
            if cipher is not None:
                self._opened.move_to_end(encrypted)
                return cipher
        try:
            response = self._policy(deadline).call(
                self.client.decrypt, CiphertextBlob=encrypted, KeyId=self.key_id
            )
        except ClientError as error:
            verdict = classify(error)
            if verdict.code not in _NOT_THIS_KEYS:
                # retryable, or KMS refusing the caller (AccessDenied, a disabled or deleted
                # key): the blob may be sound, and nobody should be told it was tampered with
                raise
            raise DecryptionError(
                context, f"KMS refused its data key ({verdict.code})", code=verdict.code
            ) from error
        cipher = self._aesgcm(response["Plaintext"])
        with self._lock:
            self._remember(encrypted, cipher)
        return cipher

    def _remember(self, encrypted: bytes, cipher: Any) -> None:
        self._opened[encrypted] = cipher
        self._opened.move_to_end(encrypted)
        while len(self._opened) > self.cache_size:
            self._opened.popitem(last=False)


class CallableEncryptor:
    """An :class:`Encryptor` from a user's pair: ``encrypt(plaintext, context)`` and
    ``decrypt(blob, context)``, both taking and returning bytes (``context`` is the associated
    data the pair must bind the blob to). An exception from ``decrypt`` becomes a
    :class:`DecryptionError` (its cause kept). ``overhead`` bounds the bytes a blob adds.
    ``is_sealed(blob)``, if given, tells the pair's blobs from plaintext: without it a
    ``PayloadStore(accept_plaintext=True)`` cannot use this encryptor (it could not tell an
    object stored in clear from a sealed one that fails to open)."""

    def __init__(
        self,
        encrypt: Callable[[bytes, str], bytes],
        decrypt: Callable[[bytes, str], bytes],
        *,
        overhead: int = 1024,
        is_sealed: Callable[[bytes], bool] | None = None,
    ) -> None:
        if not callable(encrypt) or not callable(decrypt):
            raise ConfigurationError("encryptor", "encrypt and decrypt must be callables")
        if type(overhead) is not int or overhead < 0:
            raise ConfigurationError("overhead", f"must be an int >= 0, got {overhead!r}")
        if is_sealed is not None and not callable(is_sealed):
            raise ConfigurationError("is_sealed", "must be a callable of the blob, or None")
        self._encrypt = encrypt
        self._decrypt = decrypt
        self._is_sealed = is_sealed
        self.overhead = overhead

    def __repr__(self) -> str:
        return f"CallableEncryptor(overhead={self.overhead})"

    def encrypt(self, plaintext: bytes, *, context: str, deadline: Deadline | None = None) -> bytes:
        """``encrypt(plaintext, context)``; ``deadline`` is not passed on (the pair takes none)."""
        return bytes(self._encrypt(bytes(plaintext), context))

    def decrypt(self, blob: bytes, *, context: str, deadline: Deadline | None = None) -> bytes:
        """``decrypt(blob, context)``; ``deadline`` is not passed on (the pair takes none)."""
        try:
            return bytes(self._decrypt(bytes(blob), context))
        except DecryptionError:
            raise
        except Exception as error:
            raise DecryptionError(
                context, f"the decrypt function raised {type(error).__name__}", code="Callable"
            ) from error

    def is_sealed(self, blob: bytes) -> bool:
        """``is_sealed(blob)`` as given; :class:`ConfigurationError` when none was."""
        if self._is_sealed is None:
            raise ConfigurationError(
                "is_sealed", "this CallableEncryptor cannot tell its blobs from plaintext"
            )
        return bool(self._is_sealed(bytes(blob)))


def encrypt_with(
    encryptor: Encryptor, plaintext: bytes, *, context: str, deadline: Deadline | None = None
) -> bytes:
    """``encryptor.encrypt(plaintext, context=context)``, with ``deadline=deadline`` when one is
    given and the encryptor's ``encrypt`` takes it."""
    if deadline is not None and _takes_deadline(encryptor, "encrypt"):
        sealed: bytes = cast(Any, encryptor).encrypt(plaintext, context=context, deadline=deadline)
        return sealed
    return encryptor.encrypt(plaintext, context=context)


def decrypt_with(
    encryptor: Encryptor, blob: bytes, *, context: str, deadline: Deadline | None = None
) -> bytes:
    """``encryptor.decrypt(blob, context=context)``, with ``deadline=deadline`` when one is
    given and the encryptor's ``decrypt`` takes it."""
    if deadline is not None and _takes_deadline(encryptor, "decrypt"):
        opened: bytes = cast(Any, encryptor).decrypt(blob, context=context, deadline=deadline)
        return opened
    return encryptor.decrypt(blob, context=context)


def tells_sealed(encryptor: Any) -> bool:
    """Whether ``encryptor`` can tell its blobs from plaintext (an ``is_sealed(blob)``)."""
    if isinstance(encryptor, CallableEncryptor):
        return encryptor._is_sealed is not None
    return callable(getattr(encryptor, "is_sealed", None))


def _takes_deadline(encryptor: Any, name: str) -> bool:
    if type(encryptor) in (KmsEnvelope, CallableEncryptor):
        return True
    import inspect

    try:
        parameters = inspect.signature(getattr(encryptor, name)).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "deadline" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in parameters
    )


def check_encryptor(encryptor: Any) -> None:
    """``ConfigurationError`` unless ``encryptor`` is ``None`` or has ``encrypt``/``decrypt``."""
    if encryptor is None:
        return
    if not (
        callable(getattr(encryptor, "encrypt", None))
        and callable(getattr(encryptor, "decrypt", None))
    ):
        raise ConfigurationError(
            "encryptor",
            f"must have encrypt() and decrypt() (an Encryptor), got {type(encryptor).__name__}",
        )

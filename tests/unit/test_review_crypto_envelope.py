"""Review of issue 17's envelope and claim-check reads (fake S3 and KMS clients, no network): a
caller never waits past its own deadline behind another caller's ``GenerateDataKey``, a
truncated envelope is never taken for plaintext, and ``get_bytes`` refuses an object larger than
the store could have written before reading a byte of it."""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws.errors import DeadlineExceededError
from resilient_aws.payloads import PayloadConfig, PayloadError, PayloadPointer, PayloadStore
from resilient_aws.payloads.crypto import ENVELOPE_MAGIC, ENVELOPE_VERSION, KmsEnvelope
from resilient_aws.retry import Deadline, RetryPolicy

KEY_ID = "alias/payloads"


class SlowKms:
    """``GenerateDataKey`` that blocks until ``release`` is set (a KMS retried for long by the
    first caller's policy); ``fail_first`` makes the first call fail once released."""

    def __init__(self, *, fail_first: bool = False, block: bool = True) -> None:
        self.key = os.urandom(32)
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.entered = threading.Event()
        self.fail_first = fail_first
        self.calls = 0
        self._lock = threading.Lock()

    def generate_data_key(self, *, KeyId: str, KeySpec: str) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.entered.set()
            self.release.wait(10)
            if self.fail_first:
                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                    "GenerateDataKey",
                )
        return {"Plaintext": self.key, "CiphertextBlob": b"edk:" + KeyId.encode()}

    def decrypt(self, *, CiphertextBlob: bytes, KeyId: str) -> dict[str, Any]:  # noqa: N803
        return {"Plaintext": self.key}


def envelope(kms: Any) -> KmsEnvelope:
    return KmsEnvelope(KEY_ID, client=kms, policy=RetryPolicy(max_attempts=1))


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- GenerateDataKey and the caller's deadline -----------------------------------------------------


def test_a_caller_never_waits_past_its_deadline_behind_anothers_generate_data_key() -> None:
    kms = SlowKms()
    sealer = envelope(kms)
    first, first_outcome = in_thread(lambda: sealer.encrypt(b"a", context="k1"))
    assert kms.entered.wait(5)
    started = time.monotonic()
    second, second_outcome = in_thread(
        lambda: sealer.encrypt(b"b", context="k2", deadline=Deadline.after(0.2))
    )
    second.join(3)
    try:
        assert not second.is_alive()  # it used to wait for the lock as long as KMS took
        (error,) = second_outcome
        assert isinstance(error, DeadlineExceededError)
        assert time.monotonic() - started < 2
    finally:
        kms.release.set()
        first.join(5)
    (blob,) = first_outcome
    assert sealer.decrypt(blob, context="k1") == b"a"
    assert kms.calls == 1  # the late caller made no KMS call past its deadline


def test_callers_within_their_deadline_share_one_generate_data_key() -> None:
    kms = SlowKms()
    sealer = envelope(kms)
    first, first_outcome = in_thread(lambda: sealer.encrypt(b"a", context="k1"))
    assert kms.entered.wait(5)
    others = [
        in_thread(lambda: sealer.encrypt(b"b", context="k2", deadline=Deadline.after(30))),
        in_thread(lambda: sealer.encrypt(b"c", context="k3")),
    ]
    time.sleep(0.05)
    kms.release.set()
    for thread, _ in [(first, first_outcome), *others]:
        thread.join(5)
    assert kms.calls == 1
    blobs = [first_outcome[0], others[0][1][0], others[1][1][0]]
    assert [
        sealer.decrypt(b, context=c) for b, c in zip(blobs, ["k1", "k2", "k3"], strict=True)
    ] == [
        b"a",
        b"b",
        b"c",
    ]


def test_when_the_first_callers_generate_data_key_fails_a_waiting_caller_asks_kms_itself() -> None:
    kms = SlowKms(fail_first=True)
    sealer = envelope(kms)
    first, first_outcome = in_thread(lambda: sealer.encrypt(b"a", context="k1"))
    assert kms.entered.wait(5)
    second, second_outcome = in_thread(lambda: sealer.encrypt(b"b", context="k2"))
    time.sleep(0.05)
    kms.release.set()
    first.join(5)
    second.join(5)
    assert isinstance(first_outcome[0], ClientError)
    assert sealer.decrypt(second_outcome[0], context="k2") == b"b"
    assert kms.calls == 2


# -- is_sealed: a truncated envelope ----------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 3])
def test_a_truncated_envelope_is_taken_for_a_blob_never_for_plaintext(length: int) -> None:
    sealer = envelope(SlowKms(block=False))
    assert sealer.is_sealed(bytes([ENVELOPE_MAGIC, ENVELOPE_VERSION, 0])[:length])


@pytest.mark.parametrize("text", [b"", b"{}", b"plain", "\u5e73".encode(), b"\xe5\xb9\xb3"])
def test_text_is_never_taken_for_a_blob(text: bytes) -> None:
    assert not envelope(SlowKms(block=False)).is_sealed(text)


def test_a_truncated_envelope_is_refused_by_a_store_accepting_plaintext() -> None:
    sealer = envelope(SlowKms(block=False))
    s3 = FakeS3({"k": bytes([ENVELOPE_MAGIC, ENVELOPE_VERSION])})
    store = PayloadStore("b", client=s3, encryptor=sealer, accept_plaintext=True)
    with pytest.raises(PayloadError, match="cannot be decrypted"):
        store.get_bytes(PayloadPointer("b", "k"), message_id="m1")


# -- get_bytes: an object larger than the store writes ------------------------------------------


class Body(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0
        self.closed_early = False

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.bodies: list[Body] = []

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        body = Body(self.objects[Key])
        self.bodies.append(body)
        return {"Body": body, "ContentLength": len(self.objects[Key])}


def test_get_bytes_refuses_an_object_over_max_bytes_before_reading_it() -> None:
    s3 = FakeS3({"big": b"x" * 1_001, "fits": b"y" * 1_000})
    store = PayloadStore(PayloadConfig(bucket="b", max_bytes=1_000), client=s3)
    with pytest.raises(PayloadError) as error:
        store.get_bytes(PayloadPointer("b", "big"), message_id="m-7")
    assert error.value.code == "PayloadTooLarge"
    assert error.value.message_id == "m-7" and error.value.key == "big"
    assert "m-7" in str(error.value) and "s3://b/big" in str(error.value)
    assert "1001" in str(error.value) and "1000" in str(error.value)
    (body,) = s3.bodies
    assert body.reads == 0 and body.closed  # not read, the connection given back
    assert store.get_bytes(PayloadPointer("b", "fits")) == b"y" * 1_000


def test_get_bytes_allows_the_encryptors_overhead_on_top_of_max_bytes() -> None:
    sealer = envelope(SlowKms(block=False))
    sealed = sealer.encrypt(b"z" * 1_000, context="k")
    assert len(sealed) <= 1_000 + sealer.overhead
    s3 = FakeS3({"k": sealed, "over": bytes([ENVELOPE_MAGIC]) * (1_001 + sealer.overhead)})
    store = PayloadStore(PayloadConfig(bucket="b", max_bytes=1_000), client=s3, encryptor=sealer)
    assert store.get_bytes(PayloadPointer("b", "k")) == b"z" * 1_000
    with pytest.raises(PayloadError, match="PayloadTooLarge"):
        store.get_bytes(PayloadPointer("b", "over"))

"""Envelope encryption (resilient_aws.payloads.crypto) on moto KMS, and offloaded payloads
sealed with it through the sender and the consumer (moto S3, SQS, KMS)."""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from resilient_aws.batch import SqsSender
from resilient_aws.consumer import BatchProcessor
from resilient_aws.errors import ConfigurationError, RetryError
from resilient_aws.payloads import PayloadError, PayloadStore, pointer_of
from resilient_aws.payloads.crypto import (
    ENVELOPE_MAGIC,
    ENVELOPE_VERSION,
    CallableEncryptor,
    DecryptionError,
    Encryptor,
    KmsEnvelope,
)
from resilient_aws.retry import classify
from resilient_aws.testing import FakeClock, chaos
from tests.kms_support import aws_like_kms

REGION = "us-east-1"
BUCKET = "payloads"


@pytest.fixture
def kms(aws: None) -> Any:
    return aws_like_kms(REGION)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def new_key(kms: Any) -> str:
    return str(kms.create_key()["KeyMetadata"]["KeyId"])


class KmsCounter:
    """Counts the KMS operations a client sends."""

    def __init__(self, client: Any) -> None:
        self.counts: dict[str, int] = {}
        client.meta.events.register("before-call.kms", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] = self.counts.get(model.name, 0) + 1


def envelope(kms: Any, key: str, clock: FakeClock, **options: Any) -> KmsEnvelope:
    return KmsEnvelope(key, client=kms, policy=clock.policy(), clock=clock.monotonic, **options)


# -- KmsEnvelope -------------------------------------------------------------------------------


def test_a_blob_round_trips_and_has_the_documented_format(kms: Any, clock: FakeClock) -> None:
    sealer = envelope(kms, new_key(kms), clock)
    assert isinstance(sealer, Encryptor)
    blob = sealer.encrypt(b"secret payload", context="orders/1")
    assert blob[0] == ENVELOPE_MAGIC and blob[1] == ENVELOPE_VERSION
    edk_length = int.from_bytes(blob[2:4], "big")
    assert len(blob) == 4 + edk_length + 12 + len(b"secret payload") + 16
    assert b"secret payload" not in blob
    assert sealer.decrypt(blob, context="orders/1") == b"secret payload"
    assert len(blob) - len(b"secret payload") <= sealer.overhead


def test_a_blob_under_another_context_or_tampered_fails(kms: Any, clock: FakeClock) -> None:
    sealer = envelope(kms, new_key(kms), clock)
    blob = sealer.encrypt(b"secret payload", context="orders/1")
    with pytest.raises(DecryptionError) as moved:
        sealer.decrypt(blob, context="orders/2")
    assert moved.value.code == "InvalidTag" and "secret" not in str(moved.value)
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        sealer.decrypt(bytes(tampered), context="orders/1")
    for garbage, code in ((b"", "Malformed"), (b'{"a": 1}', "Malformed"), (blob[:20], "Malformed")):
        with pytest.raises(DecryptionError) as error:
            sealer.decrypt(garbage, context="orders/1")
        assert error.value.code == code
    with pytest.raises(DecryptionError) as version:
        sealer.decrypt(bytes([ENVELOPE_MAGIC, 99]) + blob[2:], context="orders/1")
    assert version.value.code == "Version"


def test_a_record_encrypted_under_key_a_fails_to_decrypt_under_key_b(
    kms: Any, clock: FakeClock
) -> None:
    under_a = envelope(kms, new_key(kms), clock)
    under_b = envelope(kms, new_key(kms), clock)
    blob = under_a.encrypt(b"result", context="k")
    with pytest.raises(DecryptionError) as error:
        under_b.decrypt(blob, context="k")
    assert error.value.code == "IncorrectKeyException"  # AWS's answer to Decrypt(KeyId=B)
    # a fresh envelope on key A (nothing cached) opens it through KMS
    assert envelope(kms, under_a.key_id, clock).decrypt(blob, context="k") == b"result"


def test_kms_refusing_the_caller_is_its_error_not_a_blob_that_does_not_open(
    kms: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key(kms)
    blob = envelope(kms, key, clock).encrypt(b"result", context="k")
    for code in ("AccessDeniedException", "DisabledException", "KMSInvalidStateException"):

        def refused(code: str = code, **_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "Decrypt"
            )

        monkeypatch.setattr(kms, "decrypt", refused)
        with pytest.raises(ClientError) as error:
            envelope(kms, key, clock).decrypt(blob, context="k")
        assert not isinstance(error.value, DecryptionError)
        assert error.value.response["Error"]["Code"] == code


def test_the_data_key_is_reused_for_max_uses_and_max_age(kms: Any, clock: FakeClock) -> None:
    sealer = envelope(kms, new_key(kms), clock, max_uses=3, max_age_s=60)
    counter = KmsCounter(kms)
    blobs = [sealer.encrypt(b"x", context=str(n)) for n in range(7)]
    assert counter.counts == {"GenerateDataKey": 3}  # 3 + 3 + 1
    clock.advance(61)
    sealer.encrypt(b"x", context="late")
    assert counter.counts == {"GenerateDataKey": 4}
    # our own data keys open our blobs without a Decrypt
    assert [sealer.decrypt(b, context=str(n)) for n, b in enumerate(blobs)] == [b"x"] * 7
    assert "Decrypt" not in counter.counts


def test_decrypted_data_keys_are_cached_in_a_bounded_lru(kms: Any, clock: FakeClock) -> None:
    key = new_key(kms)
    writer = envelope(kms, key, clock, max_uses=1)
    blobs = [writer.encrypt(b"x", context="c") for _ in range(3)]  # three data keys
    counter = KmsCounter(kms)
    reader = envelope(kms, key, clock, cache_size=2)
    for blob in blobs + blobs[1:]:
        reader.decrypt(blob, context="c")
    assert counter.counts == {"Decrypt": 3}  # blobs 1 and 2 still cached
    reader.decrypt(blobs[0], context="c")
    assert counter.counts == {"Decrypt": 4}  # blob 0 was evicted


def test_kms_throttles_under_chaos_are_retried_by_the_core(kms: Any, clock: FakeClock) -> None:
    key = new_key(kms)
    patient = clock.policy(max_attempts=30)
    sealer = KmsEnvelope(key, client=kms, policy=patient, clock=clock.monotonic, max_uses=1)
    with chaos(kms, throttle=0.3, error5xx=0.2, seed=7) as faults:
        blobs = [sealer.encrypt(str(n).encode(), context=str(n)) for n in range(20)]
        reader = KmsEnvelope(key, client=kms, policy=patient)
        opened = [reader.decrypt(b, context=str(n)) for n, b in enumerate(blobs)]
    assert opened == [str(n).encode() for n in range(20)]
    assert faults.stats.throttled > 0
    assert clock.slept  # the core backed off


def test_kms_error_codes_are_classified() -> None:

    def error(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Decrypt"
        )

    assert classify(error("ThrottlingException", 400)).kind == "throttle"
    for code in ("KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException"):
        assert classify(error(code, 400)).kind == "transient", code
    for code in ("InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"):
        assert not classify(error(code, 400)).retryable, code


def test_kms_down_raises_after_the_core_gives_up(kms: Any, clock: FakeClock) -> None:
    sealer = envelope(kms, new_key(kms), clock)
    with chaos(kms, throttle=1.0, seed=1), pytest.raises(RetryError):
        sealer.encrypt(b"x", context="c")


def test_configuration_is_checked_and_secrets_stay_out_of_reprs(kms: Any, clock: FakeClock) -> None:
    for bad in ({"max_uses": 0}, {"max_age_s": 0}, {"cache_size": 0}):
        with pytest.raises(ConfigurationError):
            KmsEnvelope("k", client=kms, **bad)
    with pytest.raises(ConfigurationError):
        KmsEnvelope("", client=kms)
    sealer = envelope(kms, new_key(kms), clock)
    sealer.encrypt(b"x", context="c")
    assert sealer.key_id in repr(sealer) and "Plaintext" not in repr(sealer)
    with pytest.raises(ConfigurationError):
        PayloadStore(BUCKET, encryptor=object())  # type: ignore[arg-type]


def test_without_cryptography_a_clear_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigurationError, match=r"resilient-aws\[crypto\]"):
        KmsEnvelope("alias/k")


def test_a_callable_pair_is_an_encryptor() -> None:
    def seal(data: bytes, context: str) -> bytes:
        return context.encode() + b"|" + data[::-1]

    def open_(blob: bytes, context: str) -> bytes:
        bound, _, data = blob.partition(b"|")
        if bound != context.encode():
            raise ValueError("wrong context")
        return data[::-1]

    pair = CallableEncryptor(seal, open_, overhead=64)
    assert isinstance(pair, Encryptor)
    assert pair.decrypt(pair.encrypt(b"abc", context="k"), context="k") == b"abc"
    with pytest.raises(DecryptionError) as error:
        pair.decrypt(pair.encrypt(b"abc", context="k"), context="other")
    assert isinstance(error.value.__cause__, ValueError)
    with pytest.raises(ConfigurationError):
        CallableEncryptor(seal, "nope")  # type: ignore[arg-type]


# -- sealed payloads through the sender and the consumer -----------------------------------------


def lambda_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {
                    name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def sealed_messages(
    kms: Any, clock: FakeClock, count: int
) -> tuple[Any, PayloadStore, list[dict[str, Any]]]:
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    url = sqs.create_queue(QueueName="sealed")["QueueUrl"]
    store = PayloadStore(
        BUCKET, client=s3, policy=clock.policy(), encryptor=envelope(kms, new_key(kms), clock)
    )
    with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
        for n in range(count):
            sender.send_message(json.dumps({"n": n, "pad": "secret" * 50_000}), id=f"m{n}")
    assert sender.result.submitted == count and not sender.result.failed
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert len(messages) == count
    return s3, store, messages


def test_sealed_payloads_round_trip_and_s3_holds_no_plaintext(kms: Any, clock: FakeClock) -> None:
    s3, store, messages = sealed_messages(kms, clock, 3)
    for message in messages:
        pointer = pointer_of(message)
        assert pointer is not None
        stored = s3.get_object(Bucket=BUCKET, Key=pointer.key)["Body"].read()
        assert stored[0] == ENVELOPE_MAGIC and b"secret" not in stored
    seen: list[int] = []
    batch = BatchProcessor(payloads=store).process(
        lambda_event(messages), lambda record: seen.append(record.json_body["n"])
    )
    assert batch.succeeded == 3 and not batch.failed
    assert sorted(seen) == [0, 1, 2]


def test_a_swapped_or_tampered_object_fails_its_record_only_naming_the_message(
    kms: Any, clock: FakeClock
) -> None:
    s3, store, messages = sealed_messages(kms, clock, 4)
    pointers = [pointer_of(m) for m in messages]
    assert all(p is not None for p in pointers)
    keys = [p.key for p in pointers if p is not None]
    # message 0's object now holds message 1's sealed payload; message 2's is tampered with
    moved = s3.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=keys[0], Body=moved)
    tampered = bytearray(s3.get_object(Bucket=BUCKET, Key=keys[2])["Body"].read())
    tampered[-5] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=keys[2], Body=bytes(tampered))
    seen: list[int] = []
    batch = BatchProcessor(payloads=store).process(
        lambda_event(messages), lambda record: seen.append(record.json_body["n"])
    )
    assert batch.total == 4 and batch.succeeded == 2
    failed = {f.item_identifier: f for f in batch.failed}
    assert set(failed) == {messages[0]["MessageId"], messages[2]["MessageId"]}
    for message_id, failure in failed.items():
        assert isinstance(failure.error, PayloadError)
        assert isinstance(failure.error.__cause__, DecryptionError)
        assert failure.error.code == "InvalidTag"
        assert message_id in str(failure.error) and "secret" not in str(failure.error)
    assert len(seen) == 2


def test_a_plain_object_read_by_a_sealing_store_is_refused(kms: Any, clock: FakeClock) -> None:
    s3, store, messages = sealed_messages(kms, clock, 1)
    pointer = pointer_of(messages[0])
    assert pointer is not None
    s3.put_object(Bucket=BUCKET, Key=pointer.key, Body=b'{"n": 0}')  # an unsealed writer
    with pytest.raises(PayloadError) as error:
        store.get(pointer, message_id="m")
    assert error.value.code == "Malformed"

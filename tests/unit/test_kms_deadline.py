"""KMS calls bound by the deadline of the call they serve (issue 17): the consumer's S3 read of a
sealed payload, and ``@idempotent``'s table calls, hand their Lambda deadline to the encryptor,
so a KMS that keeps throttling fails the record at the deadline instead of losing the batch to
the Lambda timeout. Fake S3 and KMS clients, an injected clock: no network, no sleep."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws.consumer import BatchProcessor
from resilient_aws.consumer._processor import NOT_PROCESSED
from resilient_aws.errors import DeadlineExceededError
from resilient_aws.payloads import PayloadConfig, PayloadError, PayloadPointer, PayloadStore
from resilient_aws.payloads.crypto import (
    CallableEncryptor,
    KmsEnvelope,
    decrypt_with,
    encrypt_with,
)
from resilient_aws.retry import Deadline
from resilient_aws.testing import FakeClock, FakeLambdaContext

KEY_ID = "alias/payloads"
TIMEOUT_S = 30.0


class FakeKms:
    """``GenerateDataKey`` and ``Decrypt`` with one data key; ``throttle`` makes every call
    answer ``ThrottlingException``, as a KMS over its request quota does."""

    def __init__(self, *, throttle: bool = False) -> None:
        self.key = os.urandom(32)
        self.throttle = throttle
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.throttle:
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                name,
            )

    def generate_data_key(self, *, KeyId: str, KeySpec: str) -> dict[str, Any]:  # noqa: N803
        self._count("GenerateDataKey")
        return {"Plaintext": self.key, "CiphertextBlob": b"edk:" + KeyId.encode()}

    def decrypt(self, *, CiphertextBlob: bytes, KeyId: str) -> dict[str, Any]:  # noqa: N803
        self._count("Decrypt")
        return {"Plaintext": self.key}


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets = 0

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self.gets += 1
        return {"Body": io.BytesIO(self.objects[Key])}


def patient(clock: FakeClock) -> Any:
    """A policy that, unbounded, would retry KMS for hours."""
    return clock.policy(max_attempts=10_000, max_delay=5.0)


def sealed_event(s3: FakeS3, writer: KmsEnvelope) -> dict[str, Any]:
    """Two SQS records: a pointer to a sealed payload, then a plain message."""
    s3.objects["p/1"] = writer.encrypt(json.dumps({"n": 1}).encode(), context="p/1")
    pointer = PayloadPointer("payloads", "p/1").to_body()
    attributes = {"ExtendedPayloadSize": {"stringValue": "8", "dataType": "Number"}}
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"rh-{message_id}",
                "body": body,
                "attributes": {},
                "messageAttributes": attrs,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
            for message_id, body, attrs in (
                ("sealed", pointer, attributes),
                ("plain", json.dumps({"n": 2}), {}),
            )
        ]
    }


def test_a_throttled_kms_decrypt_stops_at_the_deadline_and_fails_its_record_only() -> None:
    clock = FakeClock()
    s3, kms = FakeS3(), FakeKms(throttle=True)
    event = sealed_event(s3, KmsEnvelope(KEY_ID, client=FakeKms()))
    reader = KmsEnvelope(KEY_ID, client=kms, policy=patient(clock), clock=clock.monotonic)
    store = PayloadStore(
        PayloadConfig(bucket="payloads"), client=s3, policy=clock.policy(), encryptor=reader
    )
    seen: list[int] = []
    context = FakeLambdaContext(timeout_s=TIMEOUT_S, clock=clock.monotonic)
    started = clock.now
    batch = BatchProcessor(payloads=store, clock=clock.monotonic).process(
        event, lambda record: seen.append(record.json_body["n"]), context
    )
    # the handler answers before its timeout: the batch is reported, not lost
    assert clock.now - started < TIMEOUT_S
    assert 1 < kms.calls["Decrypt"] < 100
    failed = {f.item_identifier: f for f in batch.failed}
    sealed = failed["sealed"]
    assert isinstance(sealed.error, PayloadError) and "sealed" in str(sealed.error)
    assert isinstance(sealed.error.__cause__, DeadlineExceededError)
    assert sealed.error.code == "ThrottlingException"
    # what the deadline left no time for is reported untouched, never run half-way
    assert failed["plain"].code == NOT_PROCESSED and seen == []
    assert batch.response == {
        "batchItemFailures": [{"itemIdentifier": "sealed"}, {"itemIdentifier": "plain"}]
    }
    assert reader.policy.deadline is None  # the envelope was never given the call's deadline


def test_the_async_consumer_bounds_the_kms_decrypt_by_the_deadline_too() -> None:
    import asyncio

    clock = FakeClock()
    s3, kms = FakeS3(), FakeKms(throttle=True)
    event = sealed_event(s3, KmsEnvelope(KEY_ID, client=FakeKms()))
    reader = KmsEnvelope(KEY_ID, client=kms, policy=patient(clock), clock=clock.monotonic)
    store = PayloadStore("payloads", client=s3, policy=clock.policy(), encryptor=reader)

    async def record_function(record: Any) -> None:
        await asyncio.sleep(0)

    context = FakeLambdaContext(timeout_s=TIMEOUT_S, clock=clock.monotonic)
    started = clock.now
    batch = asyncio.run(
        BatchProcessor(payloads=store, clock=clock.monotonic).aprocess(
            event, record_function, context
        )
    )
    assert clock.now - started < TIMEOUT_S
    failed = {f.item_identifier: f for f in batch.failed}
    assert isinstance(failed["sealed"].error, PayloadError)
    assert isinstance(failed["sealed"].error.__cause__, DeadlineExceededError)


def test_without_a_deadline_the_envelope_keeps_its_own_policy() -> None:
    clock = FakeClock()
    s3, kms = FakeS3(), FakeKms(throttle=True)
    sealed_event(s3, KmsEnvelope(KEY_ID, client=FakeKms()))
    reader = KmsEnvelope(KEY_ID, client=kms, policy=clock.policy(max_attempts=3))
    store = PayloadStore("payloads", client=s3, policy=clock.policy(), encryptor=reader)
    with pytest.raises(PayloadError) as error:
        store.get(PayloadPointer("payloads", "p/1"), message_id="m")
    assert error.value.code == "ThrottlingException"
    assert kms.calls == {"Decrypt": 3}


def test_the_envelopes_encrypt_and_decrypt_take_a_deadline_per_call() -> None:
    clock = FakeClock()
    kms = FakeKms(throttle=True)
    envelope = KmsEnvelope(KEY_ID, client=kms, policy=patient(clock), clock=clock.monotonic)
    for call in (
        lambda d: envelope.encrypt(b"x", context="c", deadline=d),
        lambda d: envelope.decrypt(
            KmsEnvelope(KEY_ID, client=FakeKms()).encrypt(b"x", context="c"),
            context="c",
            deadline=d,
        ),
    ):
        started = clock.now
        with pytest.raises(DeadlineExceededError):
            call(clock.deadline(10.0))
        assert clock.now - started < 10.0
    assert envelope.policy.deadline is None


def test_the_helpers_pass_the_deadline_only_to_encryptors_that_take_one() -> None:
    deadline = Deadline.after(5.0)
    given: list[Any] = []

    class TakesDeadline:
        overhead = 0

        def encrypt(self, plaintext: bytes, *, context: str, deadline: Any = None) -> bytes:
            given.append(deadline)
            return plaintext

        def decrypt(self, blob: bytes, *, context: str, **options: Any) -> bytes:
            given.append(options.get("deadline"))
            return blob

    class TakesNone:
        overhead = 0

        def encrypt(self, plaintext: bytes, *, context: str) -> bytes:
            return plaintext[::-1]

        def decrypt(self, blob: bytes, *, context: str) -> bytes:
            return blob[::-1]

    assert encrypt_with(TakesDeadline(), b"ab", context="c", deadline=deadline) == b"ab"
    assert decrypt_with(TakesDeadline(), b"ab", context="c", deadline=deadline) == b"ab"
    assert given == [deadline, deadline]
    assert encrypt_with(TakesNone(), b"ab", context="c", deadline=deadline) == b"ba"
    assert decrypt_with(TakesNone(), b"ba", context="c", deadline=deadline) == b"ab"
    pair = CallableEncryptor(lambda d, c: d, lambda b, c: b)
    assert decrypt_with(pair, b"ab", context="c", deadline=deadline) == b"ab"


# -- @idempotent: the replay's KMS Decrypt under the invocation's deadline ------------------------


def test_an_idempotent_replay_whose_kms_decrypt_throttles_stops_at_the_lambda_deadline(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.idempotency import IdempotencyError, idempotent
    from tests.idempotency_support import create_idempotency_table, fake_store

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")
    create_idempotency_table(ddb)
    clock = FakeClock()
    writer_kms = FakeKms()
    runs = 0

    def charge(event: dict[str, Any], context: Any) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        return {"order": event["order_id"]}

    writer = fake_store(ddb, clock, encryptor=KmsEnvelope(KEY_ID, client=writer_kms))
    idempotent(writer, key="order_id")(charge)({"order_id": "o1"}, None)
    throttled = FakeKms(throttle=True)
    reader = fake_store(
        ddb,
        clock,
        encryptor=KmsEnvelope(KEY_ID, client=throttled, policy=patient(clock)),
    )
    clock.now += 1  # a later invocation
    context = FakeLambdaContext(timeout_s=TIMEOUT_S, clock=clock.monotonic)
    started = clock.now
    with pytest.raises(IdempotencyError) as error:
        idempotent(reader, key="order_id")(charge)({"order_id": "o1"}, context)
    assert clock.now - started < TIMEOUT_S
    assert isinstance(error.value.__cause__, DeadlineExceededError)
    assert "ThrottlingException" in str(error.value) and error.value.key is not None
    assert 1 < throttled.calls["Decrypt"] < 100
    assert runs == 1  # neither replayed nor run again

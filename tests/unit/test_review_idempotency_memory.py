"""Review of issue 17: the memory a large sealed result costs when it is stored in S3 (fake
DynamoDB and S3 clients). The sealed blob went to S3 as it is, but its base64 text (4/3 of it,
twice: as bytes and as str, then encoded again to be measured) was built first to decide
whether it fits the record."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from resilient_aws.idempotency import IdempotencyStore
from resilient_aws.idempotency._store import OFFLOADED_PREFIX, SEALED_PREFIX
from resilient_aws.payloads import PayloadConfig, PayloadStore
from resilient_aws.payloads.crypto import CallableEncryptor
from resilient_aws.retry import RetryPolicy

MB = 1024 * 1024


class FakeDynamoDB:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update_item(self, **params: Any) -> dict[str, Any]:
        self.updates.append(params)
        return {}


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:  # noqa: N803
        self.objects[Key] = Body  # kept as given: no copy counted against the store
        return {}


def xor(data: bytes, context: str) -> bytes:
    return b"S" + data  # a stand-in seal: one copy of the plaintext, as AES-GCM makes


def unxor(blob: bytes, context: str) -> bytes:
    return blob[1:]


def store(ddb: FakeDynamoDB, s3: FakeS3) -> IdempotencyStore:
    policy = RetryPolicy(max_attempts=1)
    return IdempotencyStore(
        "idempotency",
        client=ddb,  # type: ignore[arg-type]
        policy=policy,
        encryptor=CallableEncryptor(xor, unxor, overhead=1),
        payloads=PayloadStore(PayloadConfig(bucket="b"), client=s3, policy=policy),
    )


def test_a_large_sealed_result_goes_to_s3_without_its_base64_being_built() -> None:
    ddb, s3 = FakeDynamoDB(), FakeS3()
    results = store(ddb, s3)
    data = json.dumps("r" * (8 * MB))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        results.complete("k", data=data, expires_at=2_000_000_000, validation=None, owner="o")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the UTF-8 bytes and the sealed blob: about 2x; the base64 detour cost 5x or more
    assert peak < 2.6 * len(data), peak / len(data)
    (blob,) = s3.objects.values()
    assert blob == b"S" + data.encode()
    (update,) = ddb.updates
    assert update["ExpressionAttributeValues"][":data"]["S"].startswith(OFFLOADED_PREFIX)


def test_a_small_sealed_result_still_stays_in_the_record_as_base64() -> None:
    ddb, s3 = FakeDynamoDB(), FakeS3()
    store(ddb, s3).complete("k", data='"small"', expires_at=2_000_000_000, validation=None)
    (update,) = ddb.updates
    stored = update["ExpressionAttributeValues"][":data"]["S"]
    import base64

    assert stored == SEALED_PREFIX + base64.b64encode(b'S"small"').decode()
    assert s3.objects == {}

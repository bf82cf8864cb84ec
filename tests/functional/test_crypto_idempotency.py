"""Idempotency results sealed by an encryptor (moto DynamoDB and KMS): a sealed result opens
under its own key and KMS key only; anything else is a typed error, never a replay."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws.idempotency import (
    IdempotencyError,
    IdempotencyResultError,
    IdempotencyStore,
    idempotent,
)
from resilient_aws.idempotency._store import SEALED_PREFIX
from resilient_aws.payloads.crypto import (
    ENVELOPE_MAGIC,
    CallableEncryptor,
    DecryptionError,
    KmsEnvelope,
)
from resilient_aws.testing import FakeClock
from tests.idempotency_support import EPOCH, create_idempotency_table, fake_store
from tests.kms_support import aws_like_kms


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=EPOCH)


@pytest.fixture
def kms(aws: None) -> Any:
    return aws_like_kms("us-east-1")


@pytest.fixture
def table(ddb: Any) -> str:
    return create_idempotency_table(ddb)


def sealer(kms: Any, clock: FakeClock, key_id: str | None = None) -> KmsEnvelope:
    key_id = key_id or str(kms.create_key()["KeyMetadata"]["KeyId"])
    return KmsEnvelope(key_id, client=kms, policy=clock.policy())


def records(ddb: Any) -> dict[str, dict[str, Any]]:
    items = ddb.scan(TableName="idempotency", ConsistentRead=True)["Items"]
    return {item["id"]["S"]: item for item in items}


class Charge:
    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        self.runs += 1
        return {"order": event["order_id"], "card": "4111-secret"}


def handler(store: IdempotencyStore, body: Charge) -> Any:
    return idempotent(store, key="order_id")(body)


def test_a_sealed_result_is_stored_without_plaintext_and_replayed(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, encryptor=sealer(kms, clock))
    body = Charge()
    charge = handler(store, body)
    first = charge({"order_id": "o1"})
    assert charge({"order_id": "o1"}) == first == {"order": "o1", "card": "4111-secret"}
    assert body.runs == 1
    (item,) = records(ddb).values()
    data = item["data"]["S"]
    assert data.startswith(SEALED_PREFIX) and "secret" not in data
    assert base64.b64decode(data[len(SEALED_PREFIX) :])[0] == ENVELOPE_MAGIC
    # a second store (a cold Lambda) on the same KMS key replays it too
    assert handler(fake_store(ddb, clock, table, encryptor=store.encryptor), body)(
        {"order_id": "o1"}
    ) == {"order": "o1", "card": "4111-secret"}
    assert body.runs == 1


def test_a_record_encrypted_under_key_a_fails_to_decrypt_under_key_b(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    body = Charge()
    handler(fake_store(ddb, clock, table, encryptor=sealer(kms, clock)), body)({"order_id": "o1"})
    under_b = fake_store(ddb, clock, table, encryptor=sealer(kms, clock))
    with pytest.raises(IdempotencyResultError) as error:
        handler(under_b, body)({"order_id": "o1"})
    assert isinstance(error.value.__cause__, DecryptionError)
    assert "secret" not in str(error.value)
    assert body.runs == 1  # neither replayed nor run again


def test_kms_refusing_the_caller_is_not_reported_as_tampering(
    ddb: Any, table: str, kms: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AccessDenied (a role without kms:Decrypt, a key policy) or a disabled key: the record
    # may be sound. The call fails and is not run again, but nobody is told of tampering.
    body = Charge()
    first = sealer(kms, clock)
    handler(fake_store(ddb, clock, table, encryptor=first), body)({"order_id": "o1"})
    fresh = sealer(kms, clock, key_id=first.key_id)  # nothing cached: it must ask KMS

    def refused(**_: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": "AccessDeniedException"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "Decrypt",
        )

    monkeypatch.setattr(kms, "decrypt", refused)
    with pytest.raises(IdempotencyError) as error:
        handler(fake_store(ddb, clock, table, encryptor=fresh), body)({"order_id": "o1"})
    assert not isinstance(error.value, IdempotencyResultError)
    assert "AccessDeniedException" in str(error.value)
    assert "tamper" not in str(error.value)
    assert body.runs == 1


def test_swapping_the_data_attribute_between_two_records_fails(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, encryptor=sealer(kms, clock))
    body = Charge()
    charge = handler(store, body)
    charge({"order_id": "o1"})
    charge({"order_id": "o2"})
    one, two = records(ddb).values()
    for item, other in ((one, two), (two, one)):
        ddb.update_item(
            TableName="idempotency",
            Key={"id": item["id"]},
            UpdateExpression="SET #d = :d",
            ExpressionAttributeNames={"#d": "data"},
            ExpressionAttributeValues={":d": other["data"]},
        )
    for order in ("o1", "o2"):
        with pytest.raises(IdempotencyResultError, match="cannot be decrypted") as error:
            charge({"order_id": order})
        assert error.value.key is not None
    assert body.runs == 2


def test_a_sealed_record_without_an_encryptor_and_a_plain_one_with_are_refused(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    body = Charge()
    handler(fake_store(ddb, clock, table, encryptor=sealer(kms, clock)), body)({"order_id": "o1"})
    with pytest.raises(IdempotencyResultError, match="no encryptor"):
        handler(fake_store(ddb, clock, table), body)({"order_id": "o1"})
    handler(fake_store(ddb, clock, table), body)({"order_id": "plain"})
    with pytest.raises(IdempotencyResultError, match="not sealed"):
        handler(fake_store(ddb, clock, table, encryptor=sealer(kms, clock)), body)(
            {"order_id": "plain"}
        )
    assert body.runs == 2


def test_a_garbled_sealed_attribute_is_a_typed_error(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, encryptor=sealer(kms, clock))
    body = Charge()
    handler(store, body)({"order_id": "o1"})
    (item,) = records(ddb).values()
    ddb.update_item(
        TableName="idempotency",
        Key={"id": item["id"]},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":d": {"S": SEALED_PREFIX + "not base64!"}},
    )
    with pytest.raises(IdempotencyResultError, match="cannot be decrypted"):
        handler(store, body)({"order_id": "o1"})


def test_a_callable_pair_seals_results_and_the_size_check_counts_the_overhead(
    ddb: Any, table: str, clock: FakeClock
) -> None:
    def seal(data: bytes, context: str) -> bytes:
        return json.dumps([context, data.decode()]).encode()

    def open_(blob: bytes, context: str) -> bytes:
        bound, data = json.loads(blob)
        if bound != context:
            raise ValueError("moved")
        return str(data).encode()

    store = fake_store(ddb, clock, table, encryptor=CallableEncryptor(seal, open_, overhead=100))
    plain = fake_store(ddb, clock, table)
    body = Charge()
    charge = handler(store, body)
    assert charge({"order_id": "o1"}) == charge({"order_id": "o1"})
    assert body.runs == 1
    data = '{"a": "' + "x" * 3000 + '"}'
    sealed_size = store.record_size("k", data, None)
    assert sealed_size >= plain.record_size("k", data, None) + (len(data) + 100) // 3

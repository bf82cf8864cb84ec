"""Turning encryption on (issue 17): ``accept_plaintext=True`` reads what was stored in clear
before, writes sealed, and logs that once per store without names or values; the default still
refuses plaintext, and a sealed record or object that does not open is refused either way
(moto DynamoDB, S3, SQS and KMS)."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from resilient_aws.batch import SqsSender
from resilient_aws.consumer import BatchProcessor
from resilient_aws.errors import ConfigurationError
from resilient_aws.idempotency import (
    IdempotencyResultError,
    IdempotencyStore,
    hash_json,
    idempotent,
)
from resilient_aws.idempotency._store import OFFLOADED_PREFIX, SEALED_PREFIX
from resilient_aws.payloads import PayloadConfig, PayloadError, PayloadPointer, PayloadStore
from resilient_aws.payloads.crypto import ENVELOPE_MAGIC, CallableEncryptor, KmsEnvelope
from resilient_aws.testing import FakeClock
from tests.idempotency_support import EPOCH, create_idempotency_table, fake_store
from tests.kms_support import aws_like_kms

REGION = "us-east-1"
BUCKET = "payloads"
SECRET = "4111-1111-1111-1111"


@pytest.fixture(autouse=True)
def _service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=EPOCH)


@pytest.fixture
def table(ddb: Any) -> str:
    return create_idempotency_table(ddb)


@pytest.fixture
def kms(aws: None) -> Any:
    return aws_like_kms(REGION)


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def sealer(kms: Any, clock: FakeClock) -> KmsEnvelope:
    return KmsEnvelope(
        str(kms.create_key()["KeyMetadata"]["KeyId"]), client=kms, policy=clock.policy()
    )


class Charge:
    def __init__(self, pad: int = 0) -> None:
        self.runs = 0
        self.pad = pad

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.runs += 1
        return {"order": event["order_id"], "card": SECRET, "pad": "p" * self.pad}


def data_of(ddb: Any) -> dict[str, str]:
    items = ddb.scan(TableName="idempotency", ConsistentRead=True)["Items"]
    return {item["id"]["S"].rsplit("#", 1)[1]: item["data"]["S"] for item in items}


def plaintext_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "without encryption" in r.getMessage()]


# -- idempotency results -----------------------------------------------------------------------


def test_an_encrypting_store_accepting_plaintext_replays_old_results_and_seals_new_ones(
    ddb: Any, table: str, kms: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    body = Charge()
    before = idempotent(fake_store(ddb, clock, table), key="order_id")(body)
    old = [before({"order_id": order}) for order in ("o1", "o2")]
    migrating = fake_store(ddb, clock, table, encryptor=sealer(kms, clock), accept_plaintext=True)
    after = idempotent(migrating, key="order_id")(body)
    with caplog.at_level(logging.WARNING, logger="resilient_aws.idempotency"):
        assert [after({"order_id": order}) for order in ("o1", "o2", "o1")] == [*old, old[0]]
        after({"order_id": "o3"})
    assert body.runs == 3
    # logged once for the store, naming neither a key nor a value
    (message,) = plaintext_logs(caplog)
    assert "accept_plaintext" in message and SECRET not in message and "#" not in message
    stored = data_of(ddb)
    assert [stored[hash_json(o)].startswith(SEALED_PREFIX) for o in ("o1", "o2", "o3")] == [
        False,
        False,
        True,  # written after encryption was turned on: sealed
    ]


def test_by_default_a_plain_result_is_refused_by_an_encrypting_store(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    body = Charge()
    idempotent(fake_store(ddb, clock, table), key="order_id")(body)({"order_id": "o1"})
    strict = fake_store(ddb, clock, table, encryptor=sealer(kms, clock))
    with pytest.raises(IdempotencyResultError, match="accept_plaintext=True") as error:
        idempotent(strict, key="order_id")(body)({"order_id": "o1"})
    assert error.value.key is not None
    assert body.runs == 1


def test_accepting_plaintext_never_accepts_a_sealed_result_that_does_not_open(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    body = Charge()
    sealed_under_a = fake_store(ddb, clock, table, encryptor=sealer(kms, clock))
    idempotent(sealed_under_a, key="order_id")(body)({"order_id": "o1"})
    under_b = fake_store(ddb, clock, table, encryptor=sealer(kms, clock), accept_plaintext=True)
    with pytest.raises(IdempotencyResultError, match="cannot be decrypted"):
        idempotent(under_b, key="order_id")(body)({"order_id": "o1"})
    assert body.runs == 1


def test_a_plain_offloaded_result_is_accepted_only_when_asked(
    ddb: Any, table: str, s3: Any, kms: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    payloads = PayloadStore(BUCKET, client=s3, policy=clock.policy())
    body = Charge(pad=500_000)
    before = idempotent(fake_store(ddb, clock, table, payloads=payloads), key="order_id")(body)
    first = before({"order_id": "o1"})
    (data,) = data_of(ddb).values()
    assert data.startswith(OFFLOADED_PREFIX) and '"sealed":false' in data
    envelope = sealer(kms, clock)
    strict = fake_store(ddb, clock, table, payloads=payloads, encryptor=envelope)
    with pytest.raises(IdempotencyResultError, match="not sealed"):
        idempotent(strict, key="order_id")(body)({"order_id": "o1"})
    migrating = fake_store(
        ddb, clock, table, payloads=payloads, encryptor=envelope, accept_plaintext=True
    )
    with caplog.at_level(logging.WARNING, logger="resilient_aws.idempotency"):
        assert idempotent(migrating, key="order_id")(body)({"order_id": "o1"}) == first
    assert len(plaintext_logs(caplog)) == 1 and body.runs == 1


def test_accept_plaintext_must_be_a_bool(ddb: Any, table: str) -> None:
    with pytest.raises(ConfigurationError):
        IdempotencyStore(table, client=ddb, accept_plaintext="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        PayloadStore(BUCKET, accept_plaintext=1)  # type: ignore[arg-type]


# -- offloaded payloads ------------------------------------------------------------------------


def test_a_payload_store_accepting_plaintext_reads_old_objects_and_refuses_bad_blobs(
    s3: Any, kms: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    plain = PayloadStore(BUCKET, client=s3, policy=clock.policy())
    envelope = sealer(kms, clock)
    migrating = PayloadStore(
        BUCKET, client=s3, policy=clock.policy(), encryptor=envelope, accept_plaintext=True
    )
    old = [plain.put(json.dumps({"n": n, "card": SECRET})) for n in range(2)]
    han = plain.put("好的, " + SECRET)  # UTF-8 text opening with the envelope's magic byte 0xE5
    assert s3.get_object(Bucket=BUCKET, Key=han.key)["Body"].read()[0] == ENVELOPE_MAGIC
    new = migrating.put(json.dumps({"n": 9}))
    assert s3.get_object(Bucket=BUCKET, Key=new.key)["Body"].read()[0] == ENVELOPE_MAGIC
    with caplog.at_level(logging.WARNING, logger="resilient_aws.payloads"):
        assert [json.loads(migrating.get(p))["n"] for p in old] == [0, 1]
        assert migrating.get(han).startswith("好的")
        assert json.loads(migrating.get(new)) == {"n": 9}
    (message,) = plaintext_logs(caplog)
    assert SECRET not in message and old[0].key not in message
    # a sealed object tampered with past its header, or moved, is still refused
    blob = bytearray(s3.get_object(Bucket=BUCKET, Key=new.key)["Body"].read())
    blob[-3] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=new.key, Body=bytes(blob))
    with pytest.raises(PayloadError) as tampered:
        migrating.get(new, message_id="m")
    assert tampered.value.code == "InvalidTag"
    sealed = s3.get_object(Bucket=BUCKET, Key=migrating.put("x").key)["Body"].read()
    moved = PayloadPointer(BUCKET, "elsewhere")
    s3.put_object(Bucket=BUCKET, Key=moved.key, Body=sealed)
    with pytest.raises(PayloadError) as wrong_key:
        migrating.get(moved)
    assert wrong_key.value.code == "InvalidTag"
    # the default still refuses plaintext
    strict = PayloadStore(BUCKET, client=s3, policy=clock.policy(), encryptor=envelope)
    with pytest.raises(PayloadError) as refused:
        strict.get(old[0], message_id="m")
    assert refused.value.code == "Malformed"


def test_accept_plaintext_needs_an_encryptor_that_tells_blobs_from_plaintext(s3: Any) -> None:
    def seal(data: bytes, context: str) -> bytes:
        return b"SEALED" + data[::-1]

    def open_(blob: bytes, context: str) -> bytes:
        if not blob.startswith(b"SEALED"):
            raise ValueError("not ours")
        return blob[6:][::-1]

    with pytest.raises(ConfigurationError, match="is_sealed"):
        PayloadStore(
            BUCKET, client=s3, encryptor=CallableEncryptor(seal, open_), accept_plaintext=True
        )
    pair = CallableEncryptor(seal, open_, is_sealed=lambda blob: blob.startswith(b"SEALED"))
    store = PayloadStore(BUCKET, client=s3, encryptor=pair, accept_plaintext=True)
    plain = PayloadStore(BUCKET, client=s3).put("before")
    assert store.get(plain) == "before"
    assert store.get(store.put("after")) == "after"
    # without an encryptor the flag changes nothing
    assert PayloadStore(BUCKET, client=s3, accept_plaintext=True).get(plain) == "before"


def test_a_consumer_reads_messages_sent_before_encryption_was_turned_on(
    s3: Any, kms: Any, clock: FakeClock
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="migrating")["QueueUrl"]
    big = "p" * 300_000
    before = PayloadStore(PayloadConfig(bucket=BUCKET), client=s3, policy=clock.policy())
    after = PayloadStore(
        PayloadConfig(bucket=BUCKET),
        client=s3,
        policy=clock.policy(),
        encryptor=sealer(kms, clock),
        accept_plaintext=True,
    )
    for store, n in ((before, 0), (after, 1)):
        with SqsSender(url, client=sqs, policy=clock.policy(), payloads=store) as sender:
            sender.send_message(json.dumps({"n": n, "pad": big}), id=f"m{n}")
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {
                    name: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
                    for name, v in m.get("MessageAttributes", {}).items()
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:migrating",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }
    seen: list[int] = []
    batch = BatchProcessor(payloads=after).process(
        event, lambda record: seen.append(record.json_body["n"])
    )
    assert batch.succeeded == 2 and not batch.failed
    assert sorted(seen) == [0, 1]

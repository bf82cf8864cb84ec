"""Idempotency results over the item limit, stored in S3 through ``IdempotencyStore(payloads=)``
(issue 17, moto DynamoDB, S3 and KMS): a 1 MB result is stored and replayed, sync and async,
sealed or not; nothing is orphaned when the record cannot be marked; a missing, changed or
swapped object is a typed error naming the key, never a replay and never a second run."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import boto3
import pytest

from resilient_aws.errors import DeadlineExceededError, IdempotencyError
from resilient_aws.idempotency import (
    COMPLETED,
    INPROGRESS,
    IdempotencyResultError,
    IdempotencyStore,
    hash_json,
    idempotent,
)
from resilient_aws.idempotency._store import OFFLOADED_PREFIX, SEALED_PREFIX
from resilient_aws.payloads import PayloadConfig, PayloadStore
from resilient_aws.payloads.crypto import ENVELOPE_MAGIC, KmsEnvelope
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.idempotency_support import EPOCH, CallCounter, create_idempotency_table, fake_store
from tests.kms_support import aws_like_kms

REGION = "us-east-1"
BUCKET = "results"
MB = 1024 * 1024
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
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def kms(aws: None) -> Any:
    return aws_like_kms(REGION)


def payload_store(s3: Any, clock: FakeClock, **config: Any) -> PayloadStore:
    return PayloadStore(
        PayloadConfig(bucket=BUCKET, prefix="results/", **config), client=s3, policy=clock.policy()
    )


def sealer(kms: Any, clock: FakeClock, key_id: str | None = None) -> KmsEnvelope:
    key_id = key_id or str(kms.create_key()["KeyMetadata"]["KeyId"])
    return KmsEnvelope(key_id, client=kms, policy=clock.policy())


def items(ddb: Any) -> dict[str, dict[str, Any]]:
    found = ddb.scan(TableName="idempotency", ConsistentRead=True)["Items"]
    return {item["id"]["S"]: item for item in found}


def item_of(ddb: Any, order: str) -> dict[str, Any]:
    (item,) = (i for k, i in items(ddb).items() if k.endswith("#" + hash_json(order)))
    return item


def objects(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def reference(item: dict[str, Any]) -> dict[str, Any]:
    data = item["data"]["S"]
    assert data.startswith(OFFLOADED_PREFIX)
    parsed: dict[str, Any] = json.loads(data[len(OFFLOADED_PREFIX) :])
    return parsed


class Report:
    """A side effect whose result is about ``size`` bytes of JSON."""

    def __init__(self, size: int = MB) -> None:
        self.size = size
        self.runs = 0

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        self.runs += 1
        return {"order": event["order_id"], "card": SECRET, "rows": "r" * self.size}


def handler(store: IdempotencyStore, body: Any, **options: Any) -> Any:
    return idempotent(store, key="order_id", **options)(body)


# -- the done-when: a 1 MB result is stored and replayed ----------------------------------------


def test_a_1_mb_result_is_stored_in_s3_and_replayed(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report()
    report = handler(store, body)
    first = report({"order_id": "o1"})
    assert len(json.dumps(first)) > MB
    assert report({"order_id": "o1"}) == first
    assert body.runs == 1
    (item,) = items(ddb).values()
    assert item["status"]["S"] == COMPLETED
    ref = reference(item)
    assert ref["bucket"] == BUCKET and ref["key"].startswith("results/")
    assert ref["sealed"] is False and ref["bytes"] > MB
    assert len(item["data"]["S"]) < 400  # the record holds a pointer, not the result
    assert objects(s3) == [ref["key"]]
    stored = s3.get_object(Bucket=BUCKET, Key=ref["key"])["Body"].read()
    assert json.loads(stored) == first
    # a cold store (another Lambda) replays it too, and a replay deletes nothing
    cold = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    assert handler(cold, body)({"order_id": "o1"}) == first
    assert body.runs == 1 and objects(s3) == [ref["key"]]


@pytest.mark.parametrize("sealed", [False, True])
def test_a_1_mb_result_is_stored_and_replayed_by_an_async_function(
    ddb: Any, table: str, s3: Any, kms: Any, clock: FakeClock, sealed: bool
) -> None:
    encryptor = sealer(kms, clock) if sealed else None
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock), encryptor=encryptor)
    runs = 0

    async def report(event: dict[str, Any]) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0)
        return {"order": event["order_id"], "rows": "r" * MB}

    wrapped = idempotent(store, key="order_id")(report)

    async def twice() -> tuple[Any, Any]:
        return await wrapped({"order_id": "a1"}), await wrapped({"order_id": "a1"})

    first, second = asyncio.run(twice())
    assert first == second and len(first["rows"]) == MB
    assert runs == 1
    (item,) = items(ddb).values()
    assert reference(item)["bytes"] > MB and reference(item)["sealed"] is sealed


def test_a_1_mb_result_sealed_with_kms_is_replayed_and_s3_holds_no_plaintext(
    ddb: Any, table: str, s3: Any, kms: Any, clock: FakeClock
) -> None:
    envelope = sealer(kms, clock)
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock), encryptor=envelope)
    body = Report()
    report = handler(store, body)
    first = report({"order_id": "o1"})
    assert report({"order_id": "o1"}) == first and body.runs == 1
    (item,) = items(ddb).values()
    ref = reference(item)
    assert ref["sealed"] is True
    stored = s3.get_object(Bucket=BUCKET, Key=ref["key"])["Body"].read()
    assert stored[0] == ENVELOPE_MAGIC and SECRET.encode() not in stored
    assert SECRET not in json.dumps(item)
    # a cold store on the same KMS key replays it; one on another KMS key refuses it
    cold = fake_store(
        ddb,
        clock,
        table,
        payloads=payload_store(s3, clock),
        encryptor=sealer(kms, clock, envelope.key_id),
    )
    assert handler(cold, body)({"order_id": "o1"}) == first
    other = fake_store(
        ddb, clock, table, payloads=payload_store(s3, clock), encryptor=sealer(kms, clock)
    )
    with pytest.raises(IdempotencyResultError, match="cannot be decrypted") as error:
        handler(other, body)({"order_id": "o1"})
    assert error.value.key == item["id"]["S"] and SECRET not in str(error.value)
    assert body.runs == 1


def test_a_payload_store_with_its_own_encryptor_seals_the_object_a_second_time(
    ddb: Any, table: str, s3: Any, kms: Any, clock: FakeClock
) -> None:
    from resilient_aws.payloads.crypto import CallableEncryptor

    def seal(data: bytes, context: str) -> bytes:
        return b"outer:" + context.encode() + b":" + data

    def open_(blob: bytes, context: str) -> bytes:
        prefix = b"outer:" + context.encode() + b":"
        if not blob.startswith(prefix):
            raise ValueError("moved")
        return blob[len(prefix) :]

    payloads = PayloadStore(
        PayloadConfig(bucket=BUCKET),
        client=s3,
        policy=clock.policy(),
        encryptor=CallableEncryptor(seal, open_),
    )
    store = fake_store(ddb, clock, table, payloads=payloads, encryptor=sealer(kms, clock))
    body = Report(size=500_000)
    report = handler(store, body)
    assert report({"order_id": "o1"}) == report({"order_id": "o1"}) and body.runs == 1
    (item,) = items(ddb).values()
    stored = s3.get_object(Bucket=BUCKET, Key=reference(item)["key"])["Body"].read()
    assert stored.startswith(b"outer:") and SECRET.encode() not in stored


def test_a_sealed_object_moved_to_another_key_is_refused_never_replayed(
    ddb: Any, table: str, s3: Any, kms: Any, clock: FakeClock
) -> None:
    store = fake_store(
        ddb, clock, table, payloads=payload_store(s3, clock), encryptor=sealer(kms, clock)
    )
    body = Report(size=500_000)
    report = handler(store, body)
    report({"order_id": "o1"})
    report({"order_id": "o2"})
    one, two = item_of(ddb, "o1"), item_of(ddb, "o2")
    # the pointers swapped between the records: size and SHA-256 match, the sealing does not
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
            report({"order_id": order})
        assert error.value.key is not None and error.value.key in str(error.value)
    assert body.runs == 2


def test_an_object_changed_in_s3_is_refused(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body)
    report({"order_id": "o1"})
    (item,) = items(ddb).values()
    s3.put_object(Bucket=BUCKET, Key=reference(item)["key"], Body=b'{"order": "forged"}')
    with pytest.raises(IdempotencyResultError, match="changed or replaced"):
        report({"order_id": "o1"})
    assert body.runs == 1


# -- a missing object, a store that cannot read it ----------------------------------------------


def test_a_missing_object_is_a_typed_error_naming_the_key_and_never_runs_again(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body)
    report({"order_id": "o1"})
    (item,) = items(ddb).values()
    s3.delete_object(Bucket=BUCKET, Key=reference(item)["key"])
    for _ in range(2):
        with pytest.raises(IdempotencyResultError, match="does not exist") as error:
            report({"order_id": "o1"})
        assert error.value.key == item["id"]["S"]
        assert item["id"]["S"] in str(error.value)
    assert body.runs == 1
    # once the record expires, the key runs again (and its replaced pointer deletes nothing)
    clock.advance(3601)
    report({"order_id": "o1"})
    assert body.runs == 2


def test_an_expired_record_whose_object_is_gone_is_taken_over(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body, ttl_s=60)
    report({"order_id": "o1"})
    (old,) = items(ddb).values()
    s3.delete_object(Bucket=BUCKET, Key=reference(old)["key"])  # the lifecycle rule ran
    clock.advance(61)
    assert store.get(old["id"]["S"]) is not None  # no S3 read for an expired record
    report({"order_id": "o1"})
    assert body.runs == 2
    (new,) = items(ddb).values()
    assert objects(s3) == [reference(new)["key"]]


def test_taking_over_an_expired_record_deletes_its_object(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body, ttl_s=60)
    report({"order_id": "o1"})
    (old,) = items(ddb).values()
    clock.advance(61)  # expired, not yet removed by DynamoDB's TTL
    report({"order_id": "o1"})
    assert body.runs == 2
    (new,) = items(ddb).values()
    assert reference(new)["key"] != reference(old)["key"]
    assert objects(s3) == [reference(new)["key"]]


def test_a_store_without_payloads_refuses_an_offloaded_record(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    body = Report(size=500_000)
    handler(fake_store(ddb, clock, table, payloads=payload_store(s3, clock)), body)(
        {"order_id": "o1"}
    )
    with pytest.raises(IdempotencyResultError, match="no payloads="):
        handler(fake_store(ddb, clock, table), body)({"order_id": "o1"})
    assert body.runs == 1


def test_without_payloads_an_oversize_result_is_a_typed_error_naming_the_key(
    ddb: Any, table: str, clock: FakeClock
) -> None:
    body = Report()
    report = handler(fake_store(ddb, clock, table), body)
    with pytest.raises(IdempotencyResultError, match="item limit") as error:
        report({"order_id": "o1"})
    assert error.value.key is not None and error.value.key.endswith(hash_json("o1"))
    assert error.value.key in str(error.value)
    assert "payloads=" in str(error.value) and SECRET not in str(error.value)
    (item,) = items(ddb).values()
    assert item["status"]["S"] == INPROGRESS and "error" in item  # held, never run again
    with pytest.raises(IdempotencyResultError):
        report({"order_id": "o1"})
    assert body.runs == 1


def test_payloads_must_be_a_payload_store(ddb: Any, table: str) -> None:
    from resilient_aws.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="payloads"):
        IdempotencyStore(table, client=ddb, payloads=object())  # type: ignore[arg-type]


def test_a_result_over_the_payload_stores_max_bytes_is_unstorable(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock, max_bytes=600_000))
    body = Report()
    with pytest.raises(IdempotencyResultError, match="max_bytes"):
        handler(store, body)({"order_id": "o1"})
    assert objects(s3) == []


# -- the threshold: PayloadConfig's semantics ---------------------------------------------------


def test_the_payload_stores_threshold_and_always_decide_what_goes_to_s3(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock, threshold=2_000))
    body = Report(size=10)
    handler(store, body)({"order_id": "small"})
    body.size = 3_000
    handler(store, body)({"order_id": "big"})
    assert not item_of(ddb, "small")["data"]["S"].startswith(OFFLOADED_PREFIX)
    assert reference(item_of(ddb, "big"))["bytes"] > 3_000
    always = fake_store(ddb, clock, table, payloads=payload_store(s3, clock, always=True))
    body.size = 1
    assert handler(always, body)({"order_id": "tiny"})["rows"] == "r"
    assert handler(always, body)({"order_id": "tiny"})["rows"] == "r"
    assert len(objects(s3)) == 2 and body.runs == 3


def test_a_sealed_result_under_the_threshold_stays_in_the_record(
    ddb: Any, table: str, s3: Any, kms: Any, clock: FakeClock
) -> None:
    store = fake_store(
        ddb, clock, table, payloads=payload_store(s3, clock), encryptor=sealer(kms, clock)
    )
    body = Report(size=1_000)
    assert handler(store, body)({"order_id": "o1"}) == handler(store, body)({"order_id": "o1"})
    (item,) = items(ddb).values()
    assert item["data"]["S"].startswith(SEALED_PREFIX) and objects(s3) == []


# -- nothing orphaned ---------------------------------------------------------------------------


def test_a_record_that_cannot_be_marked_has_its_object_deleted(
    ddb: Any,
    table: str,
    s3: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body)
    with (
        caplog.at_level(logging.WARNING, logger="resilient_aws.idempotency"),
        chaos(ddb, throttle=1.0, operations={"UpdateItem"}),
    ):
        result = report({"order_id": "o1"})  # the caller still gets its result
    assert result["order"] == "o1"
    assert objects(s3) == []  # every attempt was refused: nothing points to it
    (item,) = items(ddb).values()
    assert item["status"]["S"] == INPROGRESS
    assert not any("left in s3" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", [{"error5xx": 1.0}, {"lost_response": 1.0}])
def test_when_marking_may_have_been_applied_the_object_is_kept_and_named(
    ddb: Any,
    table: str,
    s3: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, float],
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body)
    with (
        caplog.at_level(logging.WARNING, logger="resilient_aws.idempotency"),
        chaos(ddb, operations={"UpdateItem"}, seed=3, **fault),
    ):
        report({"order_id": "o1"})
    (key,) = objects(s3)
    (message,) = [r.getMessage() for r in caplog.records if "left in s3" in r.getMessage()]
    assert key in message and hash_json("o1") in message and SECRET not in message
    (item,) = items(ddb).values()
    if "lost_response" in fault:  # applied: the record points to the object and replays it
        assert reference(item)["key"] == key
        assert report({"order_id": "o1"})["order"] == "o1"
        assert body.runs == 1


def test_an_upload_that_fails_leaves_no_object_and_the_caller_gets_its_result(
    ddb: Any,
    table: str,
    s3: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    counter = CallCounter(ddb)
    with (
        caplog.at_level(logging.ERROR, logger="resilient_aws.idempotency"),
        chaos(s3, throttle=1.0, operations={"PutObject"}),
    ):
        result = handler(store, body)({"order_id": "o1"})
    assert result["order"] == "o1"
    assert objects(s3) == []
    assert "UpdateItem" not in counter.take()  # no record points to an object never written
    (item,) = items(ddb).values()
    assert item["status"]["S"] == INPROGRESS  # refused as in progress until its lease ends
    assert any(hash_json("o1") in r.getMessage() for r in caplog.records)


def test_a_second_completion_deletes_the_object_it_replaces(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    key = "k"
    for _ in range(2):
        store.complete(
            key, data=json.dumps("x" * 500_000), expires_at=int(EPOCH) + 60, validation=None
        )
    (item,) = items(ddb).values()
    assert objects(s3) == [reference(item)["key"]]


# -- the Lambda deadline bounds the S3 calls -----------------------------------------------------


def test_the_s3_read_of_a_replay_stops_at_the_lambda_deadline(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    patient = clock.policy(max_attempts=1000, max_delay=5.0)  # would outlast the invocation
    payloads = PayloadStore(PayloadConfig(bucket=BUCKET), client=s3, policy=patient)
    store = fake_store(ddb, clock, table, payloads=payloads)
    body = Report(size=500_000)
    report = handler(store, body)
    report({"order_id": "o1"}, FakeLambdaContext(timeout_s=30, clock=clock.monotonic))
    context = FakeLambdaContext(timeout_s=30, clock=clock.monotonic)
    started = clock.now
    with (
        chaos(s3, throttle=1.0, operations={"GetObject"}),
        pytest.raises(IdempotencyError) as error,
    ):
        report({"order_id": "o1"}, context)
    assert not isinstance(error.value, IdempotencyResultError)  # S3 down is not "unstorable"
    assert "reading the stored result" in str(error.value)
    assert isinstance(error.value.__cause__.__cause__, DeadlineExceededError)
    assert clock.now - started <= 30
    assert body.runs == 1

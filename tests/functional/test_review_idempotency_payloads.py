"""Review of issue 17's large and sealed idempotency results (moto DynamoDB, S3, KMS): the holes
found, each reproduced first. A record can never make the library delete an object it did not
write, a result the payload store refuses is kept in the record rather than run twice, a
completed record without a result is not replayed by an encrypting store, a pointer to a huge
object is refused before it is read."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from resilient_aws.errors import IdempotencyError
from resilient_aws.idempotency import (
    COMPLETED,
    IdempotencyResultError,
    IdempotencyStore,
    hash_json,
    idempotent,
)
from resilient_aws.idempotency._store import OFFLOADED_PREFIX, SEALED_PREFIX
from resilient_aws.payloads import PayloadConfig, PayloadStore
from resilient_aws.payloads.crypto import KmsEnvelope
from resilient_aws.testing import FakeClock
from tests.idempotency_support import EPOCH, create_idempotency_table, fake_store
from tests.kms_support import aws_like_kms

REGION = "us-east-1"
BUCKET = "results"
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
    client.create_bucket(Bucket="precious")
    return client


@pytest.fixture
def kms(aws: None) -> Any:
    return aws_like_kms(REGION)


def payload_store(s3: Any, clock: FakeClock, **config: Any) -> PayloadStore:
    return PayloadStore(
        PayloadConfig(bucket=BUCKET, prefix="results/", **config), client=s3, policy=clock.policy()
    )


def items(ddb: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ddb.scan(TableName="idempotency", ConsistentRead=True)["Items"]
    return found


def objects(s3: Any, bucket: str = BUCKET) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


class Report:
    def __init__(self, size: int) -> None:
        self.size = size
        self.runs = 0

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        self.runs += 1
        return {"order": event["order_id"], "card": SECRET, "rows": "r" * self.size}


def handler(store: IdempotencyStore, body: Any, **options: Any) -> Any:
    return idempotent(store, key="order_id", **options)(body)


def full_key(order: str) -> str:
    return f"tests.{__name__}.Report#{hash_json(order)}"


def put_record(ddb: Any, key: str, **attributes: dict[str, str]) -> None:
    ddb.put_item(TableName="idempotency", Item={"id": {"S": key}, **attributes})


# -- a record names the object the library deletes ------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "object_key"),
    [("precious", "results/ledger"), (BUCKET, "ledger"), (BUCKET, "other/results/ledger")],
)
def test_taking_over_a_record_never_deletes_an_object_outside_the_stores_bucket_and_prefix(
    ddb: Any,
    table: str,
    s3: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    bucket: str,
    object_key: str,
) -> None:
    """Anyone who can write the table (or a store with another bucket sharing it) could name
    any object the function may delete: a take-over must delete only its own results."""
    s3.put_object(Bucket=bucket, Key=object_key, Body=b"not a result")
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=10)
    pointer = {"bucket": bucket, "key": object_key, "bytes": 12, "sha256": "0", "sealed": False}
    put_record(
        ddb,
        full_key("o1"),
        status={"S": COMPLETED},
        expiration={"N": str(int(EPOCH) - 10)},  # expired: the next call takes it over
        data={"S": OFFLOADED_PREFIX + json.dumps(pointer)},
    )
    with caplog.at_level(logging.WARNING, logger="resilient_aws.idempotency"):
        handler(store, body)({"order_id": "o1"})
    assert body.runs == 1
    assert object_key in objects(s3, bucket)  # still there
    (message,) = [r.getMessage() for r in caplog.records if "not deleted" in r.getMessage()]
    assert f"s3://{bucket}/{object_key}" in message and full_key("o1") in message


def test_a_take_over_still_deletes_its_own_object(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock))
    body = Report(size=500_000)
    report = handler(store, body, ttl_s=60)
    report({"order_id": "o1"})
    (old,) = objects(s3)
    clock.advance(61)
    report({"order_id": "o1"})
    assert body.runs == 2 and old not in objects(s3) and len(objects(s3)) == 1


# -- a result the payload store refuses but the record holds --------------------------------------


def test_a_result_over_max_bytes_that_fits_the_record_stays_inline_and_never_runs_twice(
    ddb: Any, table: str, s3: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """``always=True`` (or a low threshold) with a ``max_bytes`` below the item limit: the
    upload is refused (EntryTooLargeError), the record stayed in progress, and once its lease
    ended the function ran a second time."""
    store = fake_store(
        ddb, clock, table, payloads=payload_store(s3, clock, always=True, max_bytes=2_000)
    )
    body = Report(size=5_000)
    report = handler(store, body, lease_s=60)
    with caplog.at_level(logging.WARNING, logger="resilient_aws.idempotency"):
        first = report({"order_id": "o1"})
    assert not [r for r in caplog.records if "left in s3" in r.getMessage()]
    (item,) = items(ddb)
    assert item["status"]["S"] == COMPLETED
    assert not item["data"]["S"].startswith(OFFLOADED_PREFIX)  # kept in the record
    assert objects(s3) == []
    clock.advance(120)  # the lease is long over
    assert report({"order_id": "o1"}) == first
    assert body.runs == 1
    # what fits neither is refused before it runs twice: held, never run again
    body.size = 500_000
    with pytest.raises(IdempotencyResultError, match="max_bytes"):
        report({"order_id": "o2"})
    with pytest.raises(IdempotencyResultError):
        report({"order_id": "o2"})
    assert body.runs == 2 and objects(s3) == []


# -- an encrypting store replays only sealed results -----------------------------------------------


def test_a_completed_record_without_a_result_is_refused_by_an_encrypting_store(
    ddb: Any, table: str, kms: Any, clock: FakeClock
) -> None:
    """Every result this library (or Powertools) stores has ``data`` (``null`` for ``None``);
    a completed record without it was written by someone else, and an encrypting store must
    not replay it as ``None``, unless accept_plaintext."""
    key_id = str(kms.create_key()["KeyMetadata"]["KeyId"])
    store = fake_store(ddb, clock, table, encryptor=KmsEnvelope(key_id, client=kms))
    body = Report(size=10)
    put_record(
        ddb,
        full_key("o1"),
        status={"S": COMPLETED},
        expiration={"N": str(int(EPOCH) + 3600)},
    )
    with pytest.raises(IdempotencyResultError, match="not sealed") as error:
        handler(store, body)({"order_id": "o1"})
    assert error.value.key == full_key("o1")
    assert body.runs == 0
    lenient = fake_store(
        ddb, clock, table, encryptor=KmsEnvelope(key_id, client=kms), accept_plaintext=True
    )
    assert handler(lenient, body)({"order_id": "o1"}) is None
    # the store's own results are sealed: a record without data is never its own
    assert handler(store, body)({"order_id": "none"}) is not None
    (sealed,) = [i for i in items(ddb) if i["id"]["S"] == full_key("none")]
    assert sealed["data"]["S"].startswith(SEALED_PREFIX)
    assert body.runs == 1
    # an expired one is not replayed at all: it is taken over
    put_record(
        ddb,
        full_key("old"),
        status={"S": COMPLETED},
        expiration={"N": str(int(EPOCH) - 1)},
    )
    assert handler(store, body)({"order_id": "old"})["order"] == "old"
    assert body.runs == 2


# -- a pointer to a huge object ---------------------------------------------------------------------


def test_a_pointer_to_an_object_over_max_bytes_is_refused_before_it_is_read(
    ddb: Any, table: str, s3: Any, clock: FakeClock
) -> None:
    store = fake_store(ddb, clock, table, payloads=payload_store(s3, clock, max_bytes=10_000))
    s3.put_object(Bucket=BUCKET, Key="results/huge", Body=b"x" * 10_001)
    reads: list[Any] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda **kw: reads.append(1))
    pointer = {"bucket": BUCKET, "key": "results/huge", "bytes": 9, "sha256": "0", "sealed": False}
    put_record(
        ddb,
        full_key("o1"),
        status={"S": COMPLETED},
        expiration={"N": str(int(EPOCH) + 3600)},
        data={"S": OFFLOADED_PREFIX + json.dumps(pointer)},
    )
    body = Report(size=10)
    with pytest.raises(IdempotencyResultError, match="PayloadTooLarge") as error:
        handler(store, body)({"order_id": "o1"})
    assert error.value.key == full_key("o1")
    assert "s3://results/results/huge" in str(error.value)
    assert isinstance(error.value, IdempotencyError) and body.runs == 0
    assert len(reads) == 1  # refused, not retried

"""Review of issue 17's claim-check (senders, resolve, sweeper, CLI, outbox) on moto: each test
reproduces a hole found in review, then pins its fix."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from resilient_aws.batch import EventBridgePutter, KinesisPutter
from resilient_aws.cli import main
from resilient_aws.errors import ConfigurationError
from resilient_aws.outbox import Outbox, OutboxEvent
from resilient_aws.payloads import (
    POINTER_CLASS,
    PayloadConfig,
    PayloadError,
    PayloadStore,
    resolve,
    sweep_payloads,
)
from resilient_aws.testing import FakeClock
from tests.batch_targets import eventbridge_to_queue, stream_records
from tests.outbox_support import create_outbox_table

REGION = "us-east-1"
BUCKET = "payloads"
DAY = 86_400


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def age(keys: list[str], days: float) -> None:
    """Move moto's LastModified of ``keys`` ``days`` into the past."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[BUCKET]
    for key in keys:
        bucket.keys[key].last_modified -= datetime.timedelta(days=days)


def put_old(s3: Any, keys: list[str], days: float = 20) -> None:
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"secret payload")
    age(keys, days)


def objects(s3: Any) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


class Faulty:
    """An S3 client whose ``fail(operation, call number)`` picks calls that raise ``error``
    (``after=True``: once the real call was made); everything else goes to ``s3``."""

    def __init__(self, s3: Any, fail: Any, error: BaseException, *, after: bool = False) -> None:
        self._s3, self._fail, self._error, self._after = s3, fail, error, after
        self.calls: dict[str, int] = {}
        self.meta = s3.meta

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)

        def call(**kwargs: Any) -> Any:
            number = self.calls[name] = self.calls.get(name, 0) + 1
            if not self._fail(name, number):
                return real(**kwargs)
            if self._after:
                real(**kwargs)
            raise self._error

        return call


def access_denied(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "AccessDenied", "Message": "denied"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        operation,
    )


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["payloads", "sweep", "--bucket", BUCKET, "--json", "--no-progress", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


# -- the sweeper's retention ----------------------------------------------------------------------


@pytest.mark.parametrize("older_than_s", [1, 60, 3600, DAY - 1])
def test_review_a_retention_under_a_day_is_refused_before_any_call(
    s3: Any, older_than_s: float
) -> None:
    # an object uploaded a minute ago may belong to a message still being sent or in a queue:
    # a sweep "older than 60 s" (seconds meant as days, a typo) would dangle every pointer
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    age(["k"], 1 / 24)  # an hour old
    with pytest.raises(ConfigurationError, match="older_than_s") as raised:
        sweep_payloads(PayloadStore(BUCKET, client=s3), older_than_s=older_than_s)
    assert "86400" in str(raised.value) or "1 day" in str(raised.value)
    assert objects(s3) == ["k"]


def test_review_a_retention_of_a_day_is_accepted(s3: Any) -> None:
    put_old(s3, ["old"], days=2)
    s3.put_object(Bucket=BUCKET, Key="new", Body=b"x")
    result = sweep_payloads(PayloadStore(BUCKET, client=s3), older_than_s=DAY)
    assert (result.deleted, result.kept) == (1, 1)
    assert objects(s3) == ["new"]


def test_review_the_command_refuses_a_retention_under_a_day(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    age(["k"], 1 / 24)
    code, _ = run_cli(capsys, "--older-than", "90m")
    assert code == 2
    assert objects(s3) == ["k"]


# -- what a sweep that ends early did ------------------------------------------------------------


def test_review_a_listing_error_mid_sweep_keeps_the_count_of_what_was_deleted(s3: Any) -> None:
    put_old(s3, ["a", "b", "c"])
    faulty = Faulty(s3, lambda op, n: op == "list_objects_v2" and n == 2, access_denied("List"))
    store = PayloadStore(BUCKET, client=faulty, policy=FakeClock().policy(max_attempts=1))
    with pytest.raises(PayloadError) as raised:
        sweep_payloads(store, older_than_s=15 * DAY, page_size=1)
    result = raised.value.sweep_result  # type: ignore[attr-defined]
    assert (result.listed, result.deleted, result.pages) == (1, 1, 1)
    assert objects(s3) == ["b", "c"]


def test_review_the_command_reports_what_a_sweep_stopped_by_a_listing_error_deleted(
    s3: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.cli._context import Context

    put_old(s3, ["a", "b", "c"])
    faulty = Faulty(s3, lambda op, n: op == "list_objects_v2" and n == 2, access_denied("List"))
    monkeypatch.setattr(Context, "_client", lambda self, service: faulty)
    code, report = run_cli(capsys, "--older-than", "15d", "--page-size", "1", "--max-attempts", "1")
    assert code == 3
    assert (report["listed"], report["deleted"], report["ok"]) == (1, 1, False)
    assert report["stopped"] == "AccessDenied"
    assert objects(s3) == ["b", "c"]


def test_review_ctrl_c_in_the_first_page_reports_what_it_deleted(
    s3: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.cli._context import Context

    put_old(s3, ["a", "b", "c"])
    # the second DeleteObjects of the page (a key's retry) meets the second Ctrl-C
    faulty = Faulty(s3, lambda op, n: op == "delete_objects" and n == 2, KeyboardInterrupt())
    real_delete = s3.delete_objects

    def first_fails_b(**kwargs: Any) -> Any:
        objects_ = kwargs["Delete"]["Objects"]
        if len(objects_) == 3:  # the first request: S3 fails to delete "b"
            kept = [o for o in objects_ if o["Key"] != "b"]
            answer = real_delete(**{**kwargs, "Delete": {**kwargs["Delete"], "Objects": kept}})
            answer.setdefault("Errors", []).append(
                {"Key": "b", "Code": "InternalError", "Message": "injected"}
            )
            return answer
        return real_delete(**kwargs)

    monkeypatch.setattr(s3, "delete_objects", first_fails_b)
    monkeypatch.setattr(Context, "_client", lambda self, service: faulty)
    code, report = run_cli(capsys, "--older-than", "15d")
    assert code == 130
    assert report["interrupted"] is True
    assert (report["listed"], report["deleted"], report["failed"]) == (3, 2, 1)
    assert objects(s3) == ["b"]


# -- what a consumer would take for a pointer -----------------------------------------------------


def test_review_an_inline_detail_with_the_pointer_fields_round_trips(s3: Any) -> None:
    events, sqs = (boto3.client(name, region_name=REGION) for name in ("events", "sqs"))
    url = eventbridge_to_queue(events, sqs, "rule")
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="e/"), client=s3)
    # a small event about someone else's extended payloads: its own fields, not a pointer
    mine = {"ExtendedPayloadSize": 5, "s3BucketName": "other-bucket", "s3Key": "their/key"}
    odd = {"ExtendedPayloadSize": 7}  # marked, no pointer: a consumer would call it invalid
    plain = {"n": 1}
    with EventBridgePutter(client=events, payloads=store) as putter:
        for n, detail in enumerate((mine, odd, plain)):
            putter.put(detail, source="test", detail_type="T", id=f"e{n}")
    assert not putter.result.failed
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    got = [resolve(json.loads(m["Body"]), store)["detail"] for m in messages]
    assert sorted(got, key=json.dumps) == sorted([mine, odd, plain], key=json.dumps)
    assert len(objects(s3)) == 2  # the two that a consumer would misread went to S3


def test_review_kinesis_data_that_looks_like_a_pointer_round_trips(s3: Any) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="r/"), client=s3)
    # e.g. an SQS extended client's message body forwarded to a stream as it is
    forwarded = json.dumps([POINTER_CLASS, {"s3BucketName": "other", "s3Key": "k"}]).encode()
    with KinesisPutter("s", client=kinesis, payloads=store) as putter:
        putter.put(forwarded, "pk", id="r0")
        putter.put(b"plain", "pk", id="r1")
    assert not putter.result.failed
    records = [
        {"kinesis": {"data": base64.b64encode(data).decode(), "sequenceNumber": str(n)}}
        for n, (_, data) in enumerate(stream_records(kinesis, "s"))
    ]
    got = [base64.b64decode(resolve(r, store)["kinesis"]["data"]) for r in records]
    assert got == [forwarded, b"plain"]
    assert len(objects(s3)) == 1


# -- the sweeper and the outbox's undelivered events ---------------------------------------------


def test_review_a_sweep_keeps_the_objects_of_blocked_outbox_events(
    s3: Any, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.outbox_support import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic(monkeypatch)
    create_outbox_table(ddb)
    clock = FakeClock()
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="outbox/", always=True), client=s3)
    outbox = Outbox("orders", client=ddb, policy=clock.policy(), payloads=store, max_attempts=1)
    blocked, delivered = OutboxEvent("T", "a1", {"n": 1}), OutboxEvent("T", "a2", {"n": 2})
    outbox.write(events=[blocked, delivered])
    (stored_blocked,) = [s for s in outbox.pending() if s.event.id == blocked.id]
    outbox.mark_failed(stored_blocked.event, "poison", attempts=0)
    (stored_delivered,) = [s for s in outbox.pending() if s.event.id == delivered.id]
    outbox.mark_delivered(stored_delivered.event)
    assert [s.event.id for s in outbox.blocked()] == [blocked.id]
    age(objects(s3), 30)  # blocked for a month: older than any queue's retention

    keep = {p.key for p in outbox.undelivered_payloads()}
    result = sweep_payloads(store, older_than_s=15 * DAY, keep=keep.__contains__)
    assert (result.listed, result.deleted, result.kept) == (2, 1, 1)
    assert objects(s3) == [stored_blocked.pointer.key]  # type: ignore[union-attr]
    # unblocked, it is delivered as a pointer to an object that still exists
    assert stored_blocked.event.payload.load() == {"n": 1}


def test_review_keep_must_be_callable(s3: Any) -> None:
    with pytest.raises(ConfigurationError, match="keep"):
        sweep_payloads(PayloadStore(BUCKET, client=s3), older_than_s=DAY, keep={"k"})  # type: ignore[arg-type]

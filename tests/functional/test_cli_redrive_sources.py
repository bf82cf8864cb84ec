"""resilient-aws redrive lambda / eventbridge / stream-pointers against moto in process.

The dead-letter messages are built by the library's own source tests' helpers, shaped as AWS
documents them; these tests check the command: options reach the library, the report and the
exit code say what happened.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.cli import main
from tests.batch_targets import depth, make_queue, take_all
from tests.functional.test_redrive_sources import (
    REGION,
    STREAMS_ENDPOINT,
    bus_to_queue,
    eventbridge_dlq_message,
    function,
    on_failure_record,
    pointer_record,
    put,
    sequence,
    table_with_stream,
)
from tests.redrive_support import make_moto_sqs_atomic


@pytest.fixture
def invoked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, Any]]]:
    """moto in process, with Lambda invocations recorded instead of run (no Docker)."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    calls: list[tuple[str, str, Any]] = []
    lock = threading.Lock()

    def invoke(self: Any, name: str, qualifier: Any, body: Any, headers: Any, *_: Any) -> bytes:
        with lock:
            calls.append((name, headers.get("X-Amz-Invocation-Type", ""), json.loads(body)))
        return b"null"

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        make_moto_sqs_atomic(monkeypatch)
        yield calls


@pytest.fixture
def sqs(invoked: list[tuple[str, str, Any]]) -> Any:
    return boto3.client("sqs", region_name=REGION)


def _report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_redrive_lambda_re_invokes_each_failed_event(
    sqs: Any, invoked: list[tuple[str, str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    arn = function("orders")
    dlq, _ = make_queue(sqs, "orders-failures")
    for n in range(12):
        put(sqs, dlq, on_failure_record(arn, n))
    put(sqs, dlq, "not a failure record")

    code = main(["redrive", "lambda", "--from", dlq, "--json", "--wait-time", "0"])

    report = _report(capsys)
    assert code == 1  # one message is not a Lambda failure: reported, left in the queue
    assert (report["command"], report["received"], report["moved"]) == ("redrive lambda", 13, 12)
    assert len(report["failed"]) == 1
    assert sorted(payload["n"] for _, _, payload in invoked) == list(range(12))
    assert {kind for _, kind, _ in invoked} == {"Event"}
    assert depth(sqs, dlq) == 1


def test_redrive_lambda_payloads_to_a_queue(sqs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    arn = function("orders")
    dlq, _ = make_queue(sqs, "orders-failures")
    target, _ = make_queue(sqs, "orders-replay")
    for n in range(5):
        put(sqs, dlq, on_failure_record(arn, n))
    argv = ["redrive", "lambda", "--from", dlq, "--to", target, "--json", "--wait-time", "0"]
    assert main(argv) == 0
    assert _report(capsys)["target"] == target
    bodies = [json.loads(m["Body"]) for m in take_all(sqs, target)]
    assert sorted(b["n"] for b in bodies) == list(range(5))


def test_redrive_lambda_function_and_queue_exclude_each_other(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["redrive", "lambda", "--from", "q", "--function", "f", "--to", "u"]
    assert main(argv) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_redrive_eventbridge_puts_events_back_on_their_bus(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    delivered = bus_to_queue(sqs, "orders")
    dlq, _ = make_queue(sqs, "billing-target-dlq")
    for n in range(15):
        eventbridge_dlq_message(sqs, dlq, n)

    dry = ["redrive", "eventbridge", "--from", dlq, "--dry-run", "--json", "--wait-time", "0"]
    assert main(dry) == 0
    assert len(_report(capsys)["would_move"]) == 15
    assert depth(sqs, delivered) == 0

    assert main(["redrive", "eventbridge", "--from", dlq, "--json", "--wait-time", "0"]) == 0
    report = _report(capsys)
    assert (report["command"], report["moved"], report["ok"]) == ("redrive eventbridge", 15, True)
    arrived = [json.loads(m["Body"]) for m in take_all(sqs, delivered)]
    assert sorted(e["detail"]["order_id"] for e in arrived) == list(range(15))
    assert all(e["time"].startswith("2024-06-01T12:00:00") for e in arrived)
    assert depth(sqs, dlq) == 0


def test_redrive_eventbridge_to_a_missing_bus_is_bad_input(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq, _ = make_queue(sqs, "billing-target-dlq")
    eventbridge_dlq_message(sqs, dlq, 1)
    assert main(["redrive", "eventbridge", "--from", dlq, "--bus", "nope", "--json"]) == 2
    assert _report(capsys)["error"]["type"] == "RedriveNotFoundError"
    assert depth(sqs, dlq) == 1


def test_redrive_stream_pointers_resolves_records_and_reports_expired_ones(
    sqs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # botocore sends DynamoDB Streams calls to an account-based host that moto in process does
    # not serve; the service's classic endpoint, set the AWS way, is the one it does.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", STREAMS_ENDPOINT)
    arn, shard, records = table_with_stream("orders", 20)
    gone_arn, gone_shard, gone = table_with_stream("dropped", 2)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName="dropped")
    dlq, _ = make_queue(sqs, "orders-stream-failures")
    target, _ = make_queue(sqs, "orders-replay")
    fn = f"arn:aws:lambda:{REGION}:123456789012:function:orders-consumer"
    for start in (0, 10):
        first, last = sequence(records[start]), sequence(records[start + 9])
        put(sqs, dlq, pointer_record("dynamodb", arn, shard, first, last, 10, fn))
    put(
        sqs,
        dlq,
        pointer_record(
            "dynamodb", gone_arn, gone_shard, sequence(gone[0]), sequence(gone[1]), 2, fn
        ),
    )
    argv = ["redrive", "stream-pointers", "--from", dlq, "--to", target, "--wait-time", "0"]

    assert main([*argv, "--json"]) == 1  # an expired pointer: not everything moved

    report = _report(capsys)
    assert (report["resolved"], report["records"], report["moved"]) == (2, 20, 2)
    assert report["failed"] == {}
    assert len(report["expired"]) == 1
    assert len(take_all(sqs, target)) == 20
    assert depth(sqs, dlq) == 1  # the expired pointer stays unless --delete-expired

    assert main([*argv, "--delete-expired"]) == 1
    text = capsys.readouterr().out.splitlines()
    assert "0 pointers resolved, 1 expired" in text[0]
    assert ": expired: ResourceNotFoundException: " in text[1]  # message id: kind: reason
    assert depth(sqs, dlq) == 0

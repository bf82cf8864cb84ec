"""resilient-aws redrive sqs --native with botocore's Stubber (moto lacks the move-task APIs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from resilient_aws.cli import _context, main

DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq"
SRC = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:orders-dlq"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    monkeypatch.setattr(_context.Context, "_client", lambda self, service: sqs)
    with Stubber(sqs) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _dlq(stub: Stubber, depth: int) -> None:
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": DLQ_ARN, "ApproximateNumberOfMessages": str(depth)}},
        {"QueueUrl": DLQ, "AttributeNames": ANY},
    )


def _task(stub: Stubber, status: str, moved: int, **extra: Any) -> None:
    task = {
        "Status": status,
        "SourceArn": DLQ_ARN,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": 10,
        **extra,
    }
    if status == "RUNNING":
        task["TaskHandle"] = "task-1"
    stub.add_response("list_message_move_tasks", {"Results": [task]}, {"SourceArn": DLQ_ARN})


def test_native_move_is_followed_to_completion(
    stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    _dlq(stub, 10)
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-1"},
        {"SourceArn": DLQ_ARN, "MaxNumberOfMessagesPerSecond": 50},
    )
    _task(stub, "RUNNING", 3)
    _task(stub, "COMPLETED", 10)
    argv = ["redrive", "sqs", "--from", DLQ, "--native", "--rate", "50", "--poll-interval", "0.001"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "sqs-native"
    assert report["moved"] == 10
    assert report["native"]["status"] == "COMPLETED"
    assert (report["ok"], report["exit_code"]) == (True, 0)


def test_a_failed_move_task_exits_1(stub: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    _dlq(stub, 10)
    stub.add_response("start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": DLQ_ARN})
    _task(stub, "FAILED", 4, FailureReason="AccessDenied on the destination")
    assert main(["redrive", "sqs", "--from", DLQ, "--native"]) == 1
    out = capsys.readouterr().out
    assert "move task FAILED, 4 moved; AccessDenied on the destination" in out


def test_native_refuses_what_only_a_drain_can_do(
    stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    _dlq(stub, 10)
    argv = ["redrive", "sqs", "--from", DLQ, "--native", "--filter", "body.n", "--json"]
    assert main(argv) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "ConfigurationError"
    assert "filter not available" in error["message"]


def test_redrive_options_map_one_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(source_queue_url: str, **options: Any) -> Any:
        from resilient_aws.redrive import RedriveReport

        seen.update(options, source_queue_url=source_queue_url)
        return RedriveReport(source=source_queue_url, target=options["target_queue_url"])

    monkeypatch.setattr("resilient_aws.redrive.redrive_sqs", fake)
    argv = [
        "--region",
        "us-east-1",
        "redrive",
        "sqs",
        "--from",
        DLQ,
        "--to",
        SRC,
        "--max",
        "7",
        "--rate",
        "2.5",
        "--filter",
        "attributes.kind == 'x'",
        "--dry-run",
        "--visibility-timeout",
        "300",
        "--wait-time",
        "20",
        "--run-id",
        "r1",
        "--concurrency",
        "2",
        "--preserve-dedup-id",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert seen.pop("client").meta.service_model.service_name == "sqs"
    seen.pop("policy")
    seen.pop("progress")
    assert seen == {
        "source_queue_url": DLQ,
        "target_queue_url": SRC,
        "max_messages": 7,
        "rate": 2.5,
        "filter": "attributes.kind == 'x'",
        "dry_run": True,
        "native": False,
        "visibility_timeout": 300,
        "wait_time_s": 20,
        "preserve_dedup_id": True,
        "run_id": "r1",
        "concurrency": 2,
        "poll_interval": 5.0,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["redrive"],
        ["redrive", "sqs"],
        ["redrive", "sqs", "--from", DLQ, "--max", "0"],
        ["redrive", "sqs", "--from", DLQ, "--rate", "-1"],
        ["redrive", "sqs", "--from", DLQ, "--wait-time", "x"],
        ["redrive", "nope", "--from", DLQ],
    ],
)
def test_redrive_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: resilient-aws redrive" in capsys.readouterr().err


DRAIN_ARGV = ["--max", "3", "--rate", "4", "--filter", "body.x", "--dry-run", "--run-id", "r"]
DRAIN = {
    "max_messages": 3,
    "rate": 4.0,
    "filter": "body.x",
    "dry_run": True,
    "wait_time_s": 1,
    "run_id": "r",
    "concurrency": 4,
}


@pytest.mark.parametrize(
    ("source", "function", "argv", "expected"),
    [
        (
            "lambda",
            "redrive_lambda",
            ["--function", "orders"],
            {"function_name": "orders", "target_queue_url": None, "visibility_timeout": 120},
        ),
        (
            "lambda",
            "redrive_lambda",
            ["--to", SRC],
            {"function_name": None, "target_queue_url": SRC, "visibility_timeout": 120},
        ),
        (
            "eventbridge",
            "redrive_eventbridge",
            ["--bus", "orders", "--new-time"],
            {"bus_name": "orders", "keep_time": False, "visibility_timeout": 120},
        ),
        (
            "eventbridge",
            "redrive_eventbridge",
            [],
            {"bus_name": None, "keep_time": True, "visibility_timeout": 120},
        ),
        (
            "stream-pointers",
            "redrive_stream_pointers",
            ["--to", SRC, "--delete-expired", "--invoke-identity-arn", "arn:role"],
            {
                "target_queue_url": SRC,
                "function_name": None,
                "delete_expired": True,
                "invoke_identity_arn": "arn:role",
                "visibility_timeout": 300,
            },
        ),
    ],
)
def test_other_sources_map_options_one_to_one(
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    function: str,
    argv: list[str],
    expected: dict[str, Any],
) -> None:
    seen: dict[str, Any] = {}

    def fake(source_queue_url: str, **options: Any) -> Any:
        from resilient_aws.redrive import RedriveReport

        seen.update(options)
        return RedriveReport(source=source_queue_url, kind=source)

    monkeypatch.setattr(f"resilient_aws.redrive.{function}", fake)
    base = ["--region", "us-east-1", "redrive", source, "--from", DLQ, "--no-progress"]
    assert main([*base, *DRAIN_ARGV, *argv]) == 0
    assert seen.pop("client").meta.service_model.service_name == "sqs"
    assert seen.pop("session") is not None
    for name in ("policy", "progress"):
        seen.pop(name)
    assert seen == {**DRAIN, **expected}


def test_with_an_endpoint_every_client_points_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(source_queue_url: str, **options: Any) -> Any:
        from resilient_aws.redrive import RedriveReport

        seen.update(options)
        return RedriveReport(source=source_queue_url)

    monkeypatch.setattr("resilient_aws.redrive.redrive_stream_pointers", fake)
    argv = ["--endpoint-url", "http://127.0.0.1:4566", "--region", "eu-west-1"]
    assert main([*argv, "redrive", "stream-pointers", "--from", DLQ, "--no-progress"]) == 0
    for name, service in (
        ("client", "sqs"),
        ("streams_client", "dynamodbstreams"),
        ("kinesis_client", "kinesis"),
        ("lambda_client", "lambda"),
    ):
        assert seen[name].meta.service_model.service_name == service
        assert seen[name].meta.endpoint_url == "http://127.0.0.1:4566"
        assert seen[name].meta.region_name == "eu-west-1"


def test_expired_pointers_alone_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(source_queue_url: str, **options: Any) -> Any:
        from resilient_aws.redrive import RedriveReport

        return RedriveReport(
            source=source_queue_url,
            kind="stream-pointers",
            received=1,
            expired={"m1": "TrimmedDataAccessException: trimmed"},
        )

    monkeypatch.setattr("resilient_aws.redrive.redrive_stream_pointers", fake)
    argv = ["--region", "us-east-1", "redrive", "stream-pointers", "--from", DLQ, "--no-progress"]
    assert main(argv) == 1


def test_ctrl_c_leaves_a_native_task_running_and_says_how_to_cancel_it(
    stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    _dlq(stub, 10)
    stub.add_response("start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": DLQ_ARN})
    _task(stub, "RUNNING", 3)
    stub.client.meta.events.register(
        "after-call.sqs.ListMessageMoveTasks", lambda **_: signal.raise_signal(signal.SIGINT)
    )
    assert main(["redrive", "sqs", "--from", DLQ, "--native", "--no-progress"]) == 130
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("move task RUNNING, 3 moved")
    assert out[1] == (
        "interrupted: the move task keeps running in SQS; to stop it: "
        "aws sqs cancel-message-move-task --task-handle task-1"
    )

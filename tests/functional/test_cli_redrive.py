"""resilient-aws redrive against moto in process: what moves, what stays, what is reported."""

from __future__ import annotations

import json
import signal
from typing import Any

import boto3
import pytest

from resilient_aws.cli import main
from tests.batch_targets import depth, dlq_with_source, drain, make_queue, take_all
from tests.redrive_support import make_moto_sqs_atomic

REGION = "us-east-1"


@pytest.fixture
def sqs(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    make_moto_sqs_atomic(monkeypatch)  # SQS calls are atomic; moto's, under threads, are not
    return boto3.client("sqs", region_name=REGION)


def _fill(sqs: Any, url: str, count: int, *, groups: int = 0) -> None:
    for start in range(0, count, 10):
        entries = []
        for i in range(start, min(start + 10, count)):
            entry: dict[str, Any] = {
                "Id": str(i - start),
                "MessageBody": json.dumps({"n": i, "kind": "even" if i % 2 == 0 else "odd"}),
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": str(i)}},
            }
            if groups:
                entry["MessageGroupId"] = f"g{i % groups}"
                entry["MessageDeduplicationId"] = f"d{i}"
            entries.append(entry)
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def _json_report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_redrive_sqs_moves_everything_back_to_the_source_queue(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq, source = dlq_with_source(sqs, "orders")
    _fill(sqs, dlq, 35)

    assert main(["redrive", "sqs", "--from", dlq, "--json", "--wait-time", "0"]) == 0

    report = _json_report(capsys)
    assert report["command"] == "redrive sqs"
    assert (report["ok"], report["exit_code"]) == (True, 0)
    assert (report["source"], report["target"]) == (dlq, source)
    assert (report["received"], report["moved"], report["failed"]) == (35, 35, {})
    assert report["interrupted"] is False
    assert depth(sqs, dlq) == 0
    moved = take_all(sqs, source)
    assert sorted(json.loads(m["Body"])["n"] for m in moved) == list(range(35))
    assert all(
        m["MessageAttributes"]["n"]["StringValue"] == str(json.loads(m["Body"])["n"]) for m in moved
    )


def test_dry_run_moves_nothing_and_lists_what_would_move(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq, source = dlq_with_source(sqs, "orders")
    _fill(sqs, dlq, 12)

    assert main(["redrive", "sqs", "--from", dlq, "--dry-run", "--wait-time", "0"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{dlq} -> {source}: 12 received, 12 would move")
    assert out[1] == "would move 12 messages:"
    assert len(out) == 2 + 12
    assert depth(sqs, source) == 0
    assert len(drain(sqs, dlq)) == 12  # all still there, visible again


def test_filter_and_max_leave_the_rest_in_the_dlq(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq, source = dlq_with_source(sqs, "orders")
    _fill(sqs, dlq, 20)

    argv = ["redrive", "sqs", "--from", dlq, "--to", source, "--json", "--wait-time", "0"]
    assert main([*argv, "--filter", "body.kind == 'even'"]) == 0
    report = _json_report(capsys)
    assert (report["received"], report["moved"], report["skipped"]) == (20, 10, 10)
    assert sorted(json.loads(m["Body"])["n"] for m in take_all(sqs, source)) == list(
        range(0, 20, 2)
    )

    assert main([*argv, "--max", "4"]) == 0
    assert _json_report(capsys)["moved"] == 4
    assert len(take_all(sqs, source)) == 4
    assert depth(sqs, dlq) == 6


def test_fifo_group_ids_are_kept(sqs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    dlq, source = dlq_with_source(sqs, "orders", fifo=True)
    _fill(sqs, dlq, 18, groups=3)
    assert main(["redrive", "sqs", "--from", dlq, "--json", "--wait-time", "0"]) == 0
    assert _json_report(capsys)["moved"] == 18
    moved = take_all(sqs, source)
    by_group: dict[str, list[int]] = {}
    for message in moved:
        n = json.loads(message["Body"])["n"]
        assert message["Attributes"]["MessageGroupId"] == f"g{n % 3}"
        by_group.setdefault(message["Attributes"]["MessageGroupId"], []).append(n)
    assert all(numbers == sorted(numbers) for numbers in by_group.values())


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("standard", "TargetTypeMismatchError"),
        ("missing", "QueueNotFoundError"),
    ],
)
def test_a_wrong_target_is_bad_input_and_nothing_moves(
    sqs: Any, capsys: pytest.CaptureFixture[str], target: str, error: str
) -> None:
    dlq, _ = dlq_with_source(sqs, "orders", fifo=True)
    standard, _ = make_queue(sqs, "standard")
    _fill(sqs, dlq, 5, groups=1)
    url = standard if target == "standard" else standard.replace("standard", "nope")
    assert main(["redrive", "sqs", "--from", dlq, "--to", url, "--json"]) == 2
    assert _json_report(capsys)["error"]["type"] == error
    assert depth(sqs, dlq) == 5


def test_a_dlq_without_a_single_source_needs_to(
    sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    lonely, _ = make_queue(sqs, "lonely-dlq")
    assert main(["redrive", "sqs", "--from", lonely]) == 2
    assert "has no source queue" in capsys.readouterr().err


def test_ctrl_c_stops_after_the_batch_in_flight(
    sqs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq, source = dlq_with_source(sqs, "orders")
    _fill(sqs, dlq, 40)
    sent = 0

    def press_ctrl_c(**_: Any) -> None:
        nonlocal sent
        sent += 1
        if sent == 2:
            signal.raise_signal(signal.SIGINT)

    from resilient_aws.cli import _context

    original = _context.Context._client

    def client(self: Any, service: str) -> Any:
        made = original(self, service)
        made.meta.events.register("after-call.sqs.SendMessageBatch", press_ctrl_c)
        return made

    monkeypatch.setattr(_context.Context, "_client", client)
    argv = ["redrive", "sqs", "--from", dlq, "--json", "--concurrency", "1", "--wait-time", "0"]
    assert main(argv) == 130

    report = _json_report(capsys)
    assert report["interrupted"] is True
    assert report["exit_code"] == 130
    arrived = len(take_all(sqs, source))
    assert report["moved"] == arrived  # each one moved was delivered
    assert 0 < arrived < 40
    left = depth(sqs, dlq)
    assert arrived + left == 40  # none lost: the rest wait in the DLQ

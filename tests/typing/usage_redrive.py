"""Documented usage of resilient_aws.redrive; checked with ``mypy --strict``."""

from __future__ import annotations

import json
from typing import Any

import boto3

from resilient_aws.errors import AmbiguousTargetError, QueueNotFoundError, TargetTypeMismatchError
from resilient_aws.redrive import (
    DlqMessage,
    RedriveReport,
    StreamPointer,
    parse_lambda_failure,
    parse_stream_pointer,
    read_pointer,
    redrive_eventbridge,
    redrive_lambda,
    redrive_sqs,
    redrive_stream_pointers,
)
from resilient_aws.retry import RetryPolicy

policy = RetryPolicy(max_attempts=10)
sqs = boto3.client("sqs")


def only_orders(message: DlqMessage) -> bool:
    return message.attribute("kind") == "order" and message.group_id is None


def show(report: RedriveReport) -> None:
    print(f"{report.handled}/{report.expected}: {report.moved} moved")


def drain_dlq(url: str) -> dict[str, Any]:
    try:
        report = redrive_sqs(
            url, client=sqs, policy=policy, filter=only_orders, rate=100.0, progress=show
        )
    except (AmbiguousTargetError, QueueNotFoundError, TargetTypeMismatchError) as refused:
        return {"refused": str(refused)}
    failed: dict[str, str] = report.failed
    ok: bool = report.ok
    return {"ok": ok, "failed": failed, **report.to_dict()}


preview = redrive_sqs("url", dry_run=True, filter="body.type == 'order'")
would: list[str] = preview.would_move
native = redrive_sqs("url", native=True, poll_interval=10.0)
task: dict[str, Any] | None = native.native
redrive_lambda("url", function_name="billing", max_messages=100)
redrive_eventbridge("url", bus_name="replay", keep_time=False)


def replay(records: list[dict[str, Any]], pointer: StreamPointer) -> None:
    print(pointer.kind, pointer.shard_id, len(records))


pointers = redrive_stream_pointers("url", deliver=replay, delete_expired=True)
expired: dict[str, str] = pointers.expired
message = DlqMessage(message_id="m", body=json.dumps({"a": 1}), receipt_handle="r")
payload: bytes = parse_lambda_failure(message).payload
records: list[dict[str, Any]] = read_pointer(parse_stream_pointer(message), policy=policy)

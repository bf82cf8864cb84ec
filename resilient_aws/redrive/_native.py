"""SQS's own redrive: ``StartMessageMoveTask``, followed with ``ListMessageMoveTasks``.

SQS moves the messages itself (DLQs whose sources are SQS queues), so nothing passes through
this process: no filter, dry run or limit. moto does not implement these two APIs; the tests
drive this path with botocore's Stubber.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilient_aws.errors import ConfigurationError
from resilient_aws.redrive._queues import QueueInfo
from resilient_aws.redrive._report import RedriveReport
from resilient_aws.retry import RetryPolicy

__all__ = ["redrive_native"]

_DONE = frozenset({"COMPLETED", "CANCELLED", "FAILED"})
_MAX_RATE = 500  # StartMessageMoveTask's MaxNumberOfMessagesPerSecond upper bound


def redrive_native(
    client: Any,
    source: QueueInfo,
    target: QueueInfo | None,
    *,
    rate: float | None,
    policy: RetryPolicy,
    poll_interval: float,
    progress: Callable[[RedriveReport], None] | None,
) -> RedriveReport:
    """Start a move task and poll it until it completes, fails or is cancelled."""
    if rate is not None and not 1 <= rate <= _MAX_RATE:
        raise ConfigurationError("rate", f"the native move takes 1..{_MAX_RATE} messages/s")
    if not poll_interval > 0:
        raise ConfigurationError("poll_interval", f"must be > 0, got {poll_interval!r}")
    options: dict[str, Any] = {"SourceArn": source.arn}
    if target is not None:
        options["DestinationArn"] = target.arn
    if rate is not None:
        options["MaxNumberOfMessagesPerSecond"] = int(rate)
    handle = str(policy.call(client.start_message_move_task, **options)["TaskHandle"])
    report = RedriveReport(
        source=source.url,
        target=target.url if target is not None else None,
        kind="sqs-native",
        run_id=handle,
        expected=source.depth,
        native={"task_handle": handle, "status": "RUNNING"},
    )
    while True:
        task = _find_task(policy.call(client.list_message_move_tasks, SourceArn=source.arn), handle)
        if task is not None:
            _update(report, task)
        if progress is not None:
            progress(report)
        assert report.native is not None
        if report.native["status"] in _DONE:
            return report
        # Polling is not a retry, but it sleeps on the policy's clock all the same: tests
        # follow a task without waiting, and a Deadline is respected.
        if policy.deadline is not None and not policy.deadline.allows(poll_interval):
            report.native["status"] = "RUNNING"
            report.native["failure_reason"] = (
                "stopped following the task at the deadline; it keeps running in SQS"
            )
            return report
        policy.sleep(poll_interval)


def _find_task(response: dict[str, Any], handle: str) -> dict[str, Any] | None:
    """Our task: SQS gives the handle of running tasks only, so a finished task is the most
    recent one (the list is newest first)."""
    results: list[dict[str, Any]] = response.get("Results", [])
    for task in results:
        if task.get("TaskHandle") == handle:
            return task
    finished = [t for t in results if not t.get("TaskHandle")]
    return finished[0] if finished else None


def _update(report: RedriveReport, task: dict[str, Any]) -> None:
    assert report.native is not None
    moved = int(task.get("ApproximateNumberOfMessagesMoved", 0) or 0)
    report.moved = moved
    report.received = moved
    to_move = task.get("ApproximateNumberOfMessagesToMove")
    if to_move is not None:
        report.expected = int(to_move)
    report.native.update(
        status=str(task.get("Status", "RUNNING")),
        moved=moved,
        to_move=report.expected,
    )
    if task.get("FailureReason"):
        report.native["failure_reason"] = str(task["FailureReason"])

"""``resilient-aws redrive SOURCE``: thin wrappers over :mod:`resilient_aws.redrive`.

Each option maps to one parameter of the library function; this module adds the progress
line, Ctrl-C that stops at the next batch, the report and the exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import FAILED, INTERRUPTED, OK

__all__ = ["run_redrive_sqs"]

_SHOWN = 20


class _Stopped(Exception):  # noqa: N818 - a request, not an error
    """Raised from the progress callback after Ctrl-C: the library stops at its next step."""


def run_redrive_sqs(ctx: Context) -> int:
    """``redrive sqs --from URL [--to URL] ...`` over :func:`resilient_aws.redrive.redrive_sqs`."""
    from resilient_aws.redrive import redrive_sqs

    args = ctx.args
    options: dict[str, Any] = {
        "target_queue_url": args.to,
        "max_messages": args.max,
        "rate": args.rate,
        "filter": args.filter,
        "dry_run": args.dry_run,
        "native": args.native,
        "visibility_timeout": args.visibility_timeout,
        "wait_time_s": args.wait_time,
        "preserve_dedup_id": args.preserve_dedup_id,
        "run_id": args.run_id,
        "concurrency": args.concurrency,
        "poll_interval": args.poll_interval,
    }
    return _run(ctx, "sqs", redrive_sqs, args.source_url, options, client=ctx.client("sqs"))


def _run(
    ctx: Context,
    source: str,
    function: Callable[..., Any],
    source_url: str,
    options: dict[str, Any],
    **clients: Any,
) -> int:
    """Call the library with a progress callback; turn its report into output and an exit code."""
    label = f"redrive {source}"
    progress = ctx.progress(label, unit="messages")
    last: list[Any] = []

    def on_progress(report: Any) -> None:
        if not last:
            last.append(report)
        last[0] = report
        if progress.total is None and report.expected:
            progress.total = int(report.expected)  # the queue's approximate depth
            progress.approximate = True
        problems = len(report.failed) + len(report.undeleted) + len(report.expired)
        progress.update(int(report.handled), failed=problems)
        if ctx.stop.requested:
            raise _Stopped

    started = time.monotonic()
    interrupted = False
    try:
        report = function(source_url, policy=ctx.policy, progress=on_progress, **clients, **options)
    except (_Stopped, KeyboardInterrupt):
        interrupted = True
        report = last[0] if last else None
    progress.finish()
    elapsed = round(time.monotonic() - started, 3)
    if report is None:
        # Stopped before the first batch settled: nothing was deleted from the source.
        return ctx.report(
            {"command": f"redrive {source}", "source": source_url, "interrupted": True},
            [f"{label}: interrupted before a batch settled; nothing was deleted from {source_url}"],
            ok=False,
            exit_code=INTERRUPTED,
        )
    return _report(ctx, label, report, interrupted=interrupted, elapsed=elapsed)


def _report(ctx: Context, label: str, report: Any, *, interrupted: bool, elapsed: float) -> int:
    problems: dict[str, str] = {**report.failed, **report.undeleted, **report.expired}
    if interrupted:
        code = INTERRUPTED
    elif report.ok and not report.expired:
        code = OK
    else:
        code = FAILED
    body = report.to_dict()
    body.pop("ok", None)  # the command's ok (exit code 0) is set by ctx.report
    data = {"command": label, **body, "interrupted": interrupted, "elapsed_s": elapsed}
    text = [str(report)]
    if report.dry_run and report.would_move:
        text.append(f"would move {len(report.would_move):,} messages:")
        text += [f"  {message_id}" for message_id in report.would_move[:_SHOWN]]
        if len(report.would_move) > _SHOWN:
            text.append(f"  ... and {len(report.would_move) - _SHOWN:,} more (--json lists all)")
    for kind, entries in (
        ("failed", report.failed),
        ("delivered, not deleted (the next run delivers it again)", report.undeleted),
        ("expired", report.expired),
    ):
        for message_id, reason in list(entries.items())[:_SHOWN]:
            text.append(f"{message_id}: {kind}: {reason}")
    if len(problems) > _SHOWN:
        text.append(f"... (--json lists all {len(problems):,})")
    if interrupted:
        text.append(_interrupted_note(report))
    return ctx.report(data, text, ok=code == OK, exit_code=code)


def _interrupted_note(report: Any) -> str:
    native = report.native
    if native is not None:
        return (
            f"interrupted: the move task {native.get('task_handle')} keeps running in SQS "
            "(aws sqs cancel-message-move-task --task-handle ... stops it)"
        )
    return (
        "interrupted: nothing was deleted before its copy was delivered; messages this run held "
        "become visible in the source again when their visibility timeout ends"
    )

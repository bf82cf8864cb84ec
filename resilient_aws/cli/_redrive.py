"""``resilient-aws redrive SOURCE``: thin wrappers over :mod:`resilient_aws.redrive`.

Each option maps to one parameter of the library function; this module adds the progress
line, Ctrl-C that stops at the next batch, the report and the exit code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import FAILED, INTERRUPTED, OK

__all__ = [
    "run_redrive_eventbridge",
    "run_redrive_lambda",
    "run_redrive_sqs",
    "run_redrive_stream_pointers",
]

_SHOWN = 20


class _Stopped(Exception):  # noqa: N818 - a request, not an error
    """Raised from the progress callback after Ctrl-C: the library stops at its next step."""


def _drain(args: Any) -> dict[str, Any]:
    """The options every source shares, named as the library names them."""
    return {
        "max_messages": args.max,
        "rate": args.rate,
        "filter": args.filter,
        "dry_run": args.dry_run,
        "visibility_timeout": args.visibility_timeout,
        "wait_time_s": args.wait_time,
        "run_id": args.run_id,
        "concurrency": args.concurrency,
    }


def _clients(ctx: Context, **services: str) -> dict[str, Any]:
    """The DLQ's client, and the session for the rest. With ``--endpoint-url`` every client is
    made here (pointed at it); otherwise the library makes one per region of each ARN."""
    clients: dict[str, Any] = {"client": ctx.client("sqs"), "session": ctx.session}
    if getattr(ctx.args, "endpoint_url", None):
        clients.update({name: ctx.client(service) for name, service in services.items()})
    return clients


def run_redrive_sqs(ctx: Context) -> int:
    """``redrive sqs --from URL [--to URL] ...`` over :func:`resilient_aws.redrive.redrive_sqs`."""
    from resilient_aws.redrive import redrive_sqs

    args = ctx.args
    options: dict[str, Any] = {
        **_drain(args),
        "target_queue_url": args.to,
        "native": args.native,
        "preserve_dedup_id": args.preserve_dedup_id,
        "poll_interval": args.poll_interval,
    }
    return _run(ctx, "sqs", redrive_sqs, args.source_url, options, client=ctx.client("sqs"))


def run_redrive_lambda(ctx: Context) -> int:
    """``redrive lambda --from URL [--function NAME | --to URL]`` over ``redrive_lambda``."""
    from resilient_aws.redrive import redrive_lambda

    args = ctx.args
    options = {**_drain(args), "function_name": args.function_name, "target_queue_url": args.to}
    clients = _clients(ctx, lambda_client="lambda")
    return _run(ctx, "lambda", redrive_lambda, args.source_url, options, **clients)


def run_redrive_eventbridge(ctx: Context) -> int:
    """``redrive eventbridge --from URL [--bus NAME]`` over ``redrive_eventbridge``."""
    from resilient_aws.redrive import redrive_eventbridge

    args = ctx.args
    options = {**_drain(args), "bus_name": args.bus_name, "keep_time": args.keep_time}
    clients = _clients(ctx, events_client="events")
    return _run(ctx, "eventbridge", redrive_eventbridge, args.source_url, options, **clients)


def run_redrive_stream_pointers(ctx: Context) -> int:
    """``redrive stream-pointers --from URL [--to URL | --function NAME]`` over
    ``redrive_stream_pointers``."""
    from resilient_aws.redrive import redrive_stream_pointers

    args = ctx.args
    options = {
        **_drain(args),
        "target_queue_url": args.to,
        "function_name": args.function_name,
        "delete_expired": args.delete_expired,
        "invoke_identity_arn": args.invoke_identity_arn,
    }
    clients = _clients(
        ctx,
        streams_client="dynamodbstreams",
        kinesis_client="kinesis",
        lambda_client="lambda",
    )
    return _run(
        ctx, "stream-pointers", redrive_stream_pointers, args.source_url, options, **clients
    )


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
        # Stopped before the library reported a batch: no count to show, and still nothing
        # deleted that was not delivered first.
        return ctx.report(
            {"command": f"redrive {source}", "source": source_url, "interrupted": True},
            [
                f"{label}: interrupted before the first batch was reported; no message was "
                f"deleted from {source_url} before its copy was delivered"
            ],
            ok=False,
            exit_code=INTERRUPTED,
        )
    return _report(ctx, label, report, interrupted=interrupted, elapsed=elapsed)


def _report(ctx: Context, label: str, report: Any, *, interrupted: bool, elapsed: float) -> int:
    failed, undeleted, expired = (
        {message_id: shown_reason(reason) for message_id, reason in entries.items()}
        for entries in (report.failed, report.undeleted, report.expired)
    )
    problems: dict[str, str] = {**failed, **undeleted, **expired}
    if interrupted:
        code = INTERRUPTED
    elif report.ok and not report.expired:
        code = OK
    else:
        code = FAILED
    body = report.to_dict()
    body.pop("ok", None)  # the command's ok (exit code 0) is set by ctx.report
    body.update(failed=failed, undeleted=undeleted, expired=expired)
    data = {"command": label, **body, "interrupted": interrupted, "elapsed_s": elapsed}
    text = [str(report)]
    if report.dry_run and report.would_move:
        text.append(f"would move {len(report.would_move):,} messages:")
        text += [f"  {message_id}" for message_id in report.would_move[:_SHOWN]]
        if len(report.would_move) > _SHOWN:
            text.append(f"  ... and {len(report.would_move) - _SHOWN:,} more (--json lists all)")
    for kind, entries in (
        ("failed", failed),
        ("delivered, not deleted (the next run delivers it again)", undeleted),
        ("expired", expired),
    ):
        for message_id, reason in list(entries.items())[:_SHOWN]:
            text.append(f"{message_id}: {kind}: {reason}")
    if len(problems) > _SHOWN:
        text.append(f"... (--json lists all {len(problems):,})")
    if interrupted:
        text.append(_interrupted_note(report))
    return ctx.report(data, text, ok=code == OK, exit_code=code)


# JMESPath's type error quotes the value it was given: a card number from the body. The
# function, the types expected and the type received are JMESPath's own words; the value goes.
_JMESPATH_TYPE_ERROR = re.compile(
    r"(FilterError: JMESPathTypeError: In function [^,]*\(\)), invalid type for value: .*"
    r"(, expected one of: \[[^\]]*\], received: \"\w+\")",
    re.DOTALL,
)
# Errors a JMESPath expression raises whose words come from the expression, never from a message.
_FILTER_ERRORS_SHOWN = re.compile(
    r"FilterError: (ArityError|VariadictArityError|UnknownFunctionError|RecursionError): [^\n]*"
    r"|FilterError: TypeError: '[<>=!]+' not supported between instances of '\w+' and '\w+'"
)


def shown_reason(reason: str) -> str:
    """``reason`` as the report shows it: a filter's error names the function and the types,
    never the value from the message it was applied to (``--filter`` is a JMESPath expression,
    and JMESPath's own message quotes the value)."""
    if not reason.startswith("FilterError: "):
        return reason
    typed = _JMESPATH_TYPE_ERROR.fullmatch(reason)
    if typed is not None:
        return f"{typed[1]}, invalid type for value: <not shown>{typed[2]}"
    if _FILTER_ERRORS_SHOWN.fullmatch(reason):
        return reason
    kind = reason.removeprefix("FilterError: ").split(":", 1)[0]
    return f"FilterError: {kind}: (its message is not shown: it may quote the message)"


def _interrupted_note(report: Any) -> str:
    native = report.native
    if native is not None:
        handle = native.get("task_handle")
        return (
            f"interrupted: the move task keeps running in SQS; to stop it: "
            f"aws sqs cancel-message-move-task --task-handle {handle}"
        )
    return (
        "interrupted: nothing was deleted before its copy was delivered; messages this run held "
        "become visible in the source again when their visibility timeout ends"
    )
